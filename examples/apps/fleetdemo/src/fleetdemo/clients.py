"""Connections to PostgreSQL and Redis, and the dependency checks used by the health endpoints."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

CHECK_TIMEOUT_SECONDS = 2
POOL_SIZE = 5
POOL_MAX_OVERFLOW = 5
HEARTBEAT_KEY = "fleetdemo:celery:heartbeat"
HEARTBEAT_TTL_SECONDS = 60
KV_PREFIX = "fleetdemo:kv:"
TASK_PREFIX = "fleetdemo:task:"
TASK_RESULT_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    latency_ms: float
    error: str | None = None

    @property
    def status(self) -> str:
        return "pass" if self.ok else "fail"

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"status": self.status, "latency_ms": self.latency_ms}
        if self.error:
            data["error"] = self.error
        return data


def make_engine(database_url: str) -> Engine:
    return create_engine(
        database_url,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_MAX_OVERFLOW,
        pool_timeout=CHECK_TIMEOUT_SECONDS,
        connect_args={"connect_timeout": CHECK_TIMEOUT_SECONDS},
    )


def make_redis(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(
        redis_url,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
        decode_responses=True,
    )


def _error_text(exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def check_database(engine: Engine) -> CheckResult:
    start = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        return CheckResult(False, _elapsed_ms(start), _error_text(exc))
    return CheckResult(True, _elapsed_ms(start))


def check_redis(client: redis.Redis) -> CheckResult:
    start = time.perf_counter()
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return CheckResult(False, _elapsed_ms(start), _error_text(exc))
    return CheckResult(True, _elapsed_ms(start))


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
