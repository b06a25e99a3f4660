"""Celery worker and beat entry point: ``celery -A fleetdemo.worker:celery_app worker|beat``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from celery import Task

from fleetdemo.clients import (
    HEARTBEAT_KEY,
    HEARTBEAT_TTL_SECONDS,
    TASK_PREFIX,
    TASK_RESULT_TTL_SECONDS,
    make_redis,
)
from fleetdemo.config import redis_url_or_exit, settings_or_exit
from fleetdemo.logs import setup_logging
from fleetdemo.tasks import ECHO_TASK, HEARTBEAT_TASK, create_celery

settings = settings_or_exit()
redis_url = redis_url_or_exit(settings, "celery worker/beat")  # broker + heartbeat store
logger = setup_logging(settings.log_dir)
celery_app = create_celery(settings)
_redis = make_redis(redis_url)


@celery_app.task(name=HEARTBEAT_TASK)
def heartbeat() -> str:
    """Record that a worker is alive; /health/detailed reads this key."""
    now = datetime.now(UTC).isoformat()
    _redis.set(HEARTBEAT_KEY, now, ex=HEARTBEAT_TTL_SECONDS)
    return now


@celery_app.task(name=ECHO_TASK, bind=True)
def echo(self: Task, message: str) -> str:
    """Write ``message`` to Redis under fleetdemo:task:<task id> (no result backend needed)."""
    task_id = str(self.request.id)
    payload = {"message": message, "finished_at": datetime.now(UTC).isoformat()}
    _redis.set(TASK_PREFIX + task_id, json.dumps(payload), ex=TASK_RESULT_TTL_SECONDS)
    logger.info("echo task %s done", task_id)
    return task_id
