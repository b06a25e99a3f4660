"""Celery application factory shared by the worker and the API (which only enqueues)."""

from __future__ import annotations

from celery import Celery

from fleetdemo.clients import CHECK_TIMEOUT_SECONDS
from fleetdemo.config import Settings

HEARTBEAT_TASK = "fleetdemo.heartbeat"
ECHO_TASK = "fleetdemo.echo"
HEARTBEAT_INTERVAL_SECONDS = 10.0


def create_celery(settings: Settings) -> Celery:
    app = Celery("fleetdemo", broker=settings.celery_broker_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=CHECK_TIMEOUT_SECONDS,
        broker_transport_options={
            "socket_timeout": CHECK_TIMEOUT_SECONDS,
            "socket_connect_timeout": CHECK_TIMEOUT_SECONDS,
        },
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        beat_schedule={
            "heartbeat": {"task": HEARTBEAT_TASK, "schedule": HEARTBEAT_INTERVAL_SECONDS},
        },
    )
    return app
