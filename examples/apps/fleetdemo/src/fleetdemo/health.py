"""Health endpoints for both front-ends (ASGI app.py, WSGI wsgi.py): the checks and the bodies.

FLEETDEMO_PROFILE picks a seed system's health contract (paths, body shapes, failure codes); the
default routes (/healthz, /readyz, /health/detailed) stay in every profile unless the profile
answers the same path itself. Every body is built from the real PostgreSQL/Redis checks. Without
REDIS_URL (a deployment with no Redis) the bodies do not report Redis (nor Celery, whose broker it
is): a dependency the deployment does not have never makes a body unhealthy.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from fleetdemo.clients import (
    HEARTBEAT_KEY,
    POOL_MAX_OVERFLOW,
    CheckResult,
    check_database,
    check_redis,
)
from fleetdemo.config import REDIS_NOT_CONFIGURED, Settings

JSON_TYPE = "application/json"
FAILURE_STATUS = 503

Body = dict[str, Any]
Answer = tuple[int, Body]  # (HTTP status, JSON body)
Route = Callable[["Health"], Answer]


def render_json(body: Body) -> bytes:
    """The bytes Starlette's JSONResponse writes, so both front-ends answer identically."""
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _word(ok: bool) -> str:
    return "healthy" if ok else "unhealthy"


def _code(ok: bool) -> int:
    return 200 if ok else FAILURE_STATUS


class Health:
    """The dependency checks of one process (one engine, one Redis client)."""

    def __init__(self, settings: Settings, engine: Engine, cache: redis.Redis | None) -> None:
        self.settings = settings
        self.engine = engine
        self.cache = cache
        self.started = time.monotonic()
        self._migration_head: str | None = None

    # ---- checks (overridden in the shape tests to show the healthy bodies) ------------------

    def database(self) -> CheckResult:
        return check_database(self.engine)

    @property
    def has_redis(self) -> bool:
        """Does this deployment have Redis (REDIS_URL set)? If not, no body reports it."""
        return self.cache is not None

    def redis(self) -> CheckResult:
        if self.cache is None:
            return CheckResult(False, 0.0, REDIS_NOT_CONFIGURED)
        return check_redis(self.cache)

    def heartbeat(self, cache_ok: bool) -> str | None:
        """Last Celery heartbeat written by beat's task (None: stale, absent or Redis down)."""
        if not cache_ok or self.cache is None:
            return None
        try:
            return self.cache.get(HEARTBEAT_KEY)  # type: ignore[return-value]
        except redis.RedisError:
            return None

    def pool_stats(self) -> dict[str, int]:
        pool: Any = self.engine.pool
        return {
            "size": pool.size(),
            "checked_in": pool.checkedin(),
            "checked_out": pool.checkedout(),
            "overflow": pool.overflow(),
        }

    def migration(self) -> tuple[bool, str]:
        """Is the database at the Alembic head shipped in this wheel? (ok, message)"""
        if self._migration_head is None:
            from alembic.script import ScriptDirectory

            from fleetdemo.admin import alembic_config

            config = alembic_config(self.settings.database_url)
            self._migration_head = str(ScriptDirectory.from_config(config).get_current_head())
        try:
            with self.engine.connect() as conn:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (SQLAlchemyError, OSError) as exc:
            return False, f"migration state unknown: {type(exc).__name__}"
        if current != self._migration_head:
            return False, f"database at {current}, code expects {self._migration_head}"
        return True, f"database at {current}"

    def uptime(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def data_stores(self) -> dict[str, CheckResult]:
        """The database, then Redis when the deployment has it (the order of every body)."""
        results = {"database": self.database()}
        if self.has_redis:
            results["redis"] = self.redis()
        return results


def _not_configured() -> Answer:
    """A Redis-only health path (FairEdge's /health/redis, /health/celery) without Redis."""
    return FAILURE_STATUS, {"status": "unhealthy", "error": REDIS_NOT_CONFIGURED}


# ---- default (FLEETDEMO_PROFILE unset) ----------------------------------------------------------


def healthz(h: Health) -> Answer:
    # The host name tells which server of a fleet answered (behind a load balancer).
    return 200, {"status": "pass", "version": h.settings.app_version, "host": socket.gethostname()}


def readyz(h: Health) -> Answer:
    checks = {name: result.status for name, result in h.data_stores().items()}
    ok = all(value == "pass" for value in checks.values())
    return _code(ok), {"status": "pass" if ok else "fail", "checks": checks}


def health_detailed(h: Health) -> Answer:
    results = h.data_stores()
    dependencies: Body = {name: result.as_dict() for name, result in results.items()}
    status = "pass"
    if h.has_redis:
        last_heartbeat = h.heartbeat(results["redis"].ok)
        status = "pass" if last_heartbeat else "warn"
        dependencies["celery"] = {"status": status, "last_heartbeat": last_heartbeat}
    if not all(result.ok for result in results.values()):
        status = "fail"
    body = {
        "status": status,
        "version": h.settings.app_version,
        "uptime_seconds": h.uptime(),
        "dependencies": dependencies,
    }
    return (FAILURE_STATUS if status == "fail" else 200), body


# ---- playpark: /healthz liveness, /readyz readiness with "ok" ---------------------------------


def playpark_healthz(h: Health) -> Answer:
    return 200, {
        "ok": True,
        "status": "healthy",
        "timestamp": _timestamp(),
        "version": h.settings.app_version,
        "environment": h.settings.environment,
    }


def playpark_readyz(h: Health) -> Answer:
    results = h.data_stores()
    ok = all(r.ok for r in results.values())
    checks = {name: "connected" if r.ok else "disconnected" for name, r in results.items()}
    return _code(ok), {"ok": ok, "status": "ready" if ok else "not_ready", "checks": checks}


# ---- brownie: /health liveness, /health/detailed with a "dependencies" map ----------------------


def brownie_health(h: Health) -> Answer:
    return 200, {"status": "healthy", "timestamp": _timestamp(), "version": h.settings.app_version}


def brownie_detailed(h: Health) -> Answer:
    dependencies = {name: _word(result.ok) for name, result in h.data_stores().items()}
    ok = all(value == "healthy" for value in dependencies.values())
    return _code(ok), {
        "status": _word(ok),
        "timestamp": _timestamp(),
        "version": h.settings.app_version,
        "dependencies": dependencies,
    }


# ---- fairedge: /health with a "services" map, one path per service -----------------------------


def fairedge_health(h: Health) -> Answer:
    results = h.data_stores()
    services = {name: _word(result.ok) for name, result in results.items()}
    status = "healthy"
    if h.has_redis:
        # A stale Celery heartbeat (beat not running yet, or stopped) degrades the API: 200, and
        # the collection's health_check reads "degraded" as a warning; a data store down fails it.
        status = "healthy" if h.heartbeat(results["redis"].ok) is not None else "degraded"
        services["celery"] = status
    if not all(result.ok for result in results.values()):
        status = "unhealthy"
    body = {
        "status": status,
        "timestamp": _timestamp(),
        "services": services,
        "version": h.settings.app_version,
    }
    return _code(status != "unhealthy"), body


def _service_body(result: CheckResult) -> Body:
    body: Body = {"status": _word(result.ok), "latency_ms": result.latency_ms}
    if result.error:
        body["error"] = result.error
    return body


def fairedge_database(h: Health) -> Answer:
    result = h.database()
    return _code(result.ok), {**_service_body(result), "pool_stats": h.pool_stats()}


def fairedge_redis(h: Health) -> Answer:
    if not h.has_redis:
        return _not_configured()
    result = h.redis()
    return _code(result.ok), _service_body(result)


def fairedge_celery(h: Health) -> Answer:
    if not h.has_redis:
        return _not_configured()
    last_heartbeat = h.heartbeat(h.redis().ok)
    ok = last_heartbeat is not None
    return _code(ok), {"status": _word(ok), "last_heartbeat": last_heartbeat}


# ---- loyalty: /health and /ready with a "checks" map of objects with "status" -------------------


def _loyalty_database(result: CheckResult) -> Body:
    return {
        "status": _word(result.ok),
        "message": "Database connection OK" if result.ok else result.error,
        "latency": f"{round(result.latency_ms)}ms",
    }


def _loyalty_answer(checks: dict[str, Body]) -> Answer:
    ok = all(check["status"] == "healthy" for check in checks.values())
    return _code(ok), {"status": _word(ok), "timestamp": _timestamp(), "checks": checks}


def loyalty_health(h: Health) -> Answer:
    return _loyalty_answer({"database": _loyalty_database(h.database())})


def loyalty_ready(h: Health) -> Answer:
    database = h.database()
    pool = h.pool_stats()
    pool_ok = pool["checked_out"] < pool["size"] + POOL_MAX_OVERFLOW
    migration_ok, migration_message = h.migration() if database.ok else (False, "database down")
    checks: dict[str, Body] = {
        "database": {"status": _word(database.ok)},
        "database_pool": {"status": _word(pool_ok), **pool},
        "database_migration": {"status": _word(migration_ok), "message": migration_message},
    }
    if h.has_redis:
        checks["redis"] = {"status": _word(h.redis().ok)}
    return _loyalty_answer(checks)


# ---- dietplanner: /api/health (status, uptime), /api/health/detailed, /api/metrics -------------


def dietplanner_health(h: Health) -> Answer:
    return 200, {"status": "healthy", "timestamp": _timestamp(), "uptime": int(h.uptime())}


def dietplanner_detailed(h: Health) -> Answer:
    checks = {name: _service_body(result) for name, result in h.data_stores().items()}
    ok = all(check["status"] == "healthy" for check in checks.values())
    return _code(ok), {
        "status": _word(ok),
        "timestamp": _timestamp(),
        "uptime": int(h.uptime()),
        "version": h.settings.app_version,
        "checks": checks,
    }


# ---- the profiles ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    name: str
    routes: Mapping[str, Route]  # GET path -> answer; the default routes are added underneath
    metrics_paths: tuple[str, ...] = ("/metrics",)
    all_routes: Mapping[str, Route] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "all_routes", {**DEFAULT_ROUTES, **self.routes})


DEFAULT_ROUTES: dict[str, Route] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/health/detailed": health_detailed,
}

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("default", {}),
        Profile("playpark", {"/healthz": playpark_healthz, "/readyz": playpark_readyz}),
        Profile("brownie", {"/health": brownie_health, "/health/detailed": brownie_detailed}),
        Profile(
            "fairedge",
            {
                "/health": fairedge_health,
                "/health/database": fairedge_database,
                "/health/redis": fairedge_redis,
                "/health/celery": fairedge_celery,
            },
        ),
        Profile("loyalty", {"/health": loyalty_health, "/ready": loyalty_ready}),
        Profile(
            "dietplanner",
            {"/api/health": dietplanner_health, "/api/health/detailed": dietplanner_detailed},
            metrics_paths=("/metrics", "/api/metrics"),
        ),
    )
}
