"""FastAPI application factory: health, metrics and the small data API."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import redis
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from kombu.exceptions import KombuError
from pydantic import BaseModel, Field
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from fleetdemo import metrics
from fleetdemo.clients import (
    HEARTBEAT_KEY,
    KV_PREFIX,
    TASK_PREFIX,
    check_database,
    check_redis,
    make_engine,
    make_redis,
)
from fleetdemo.config import Settings
from fleetdemo.logs import setup_logging
from fleetdemo.models import items
from fleetdemo.tasks import ECHO_TASK, create_celery


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    value: str


class ItemOut(BaseModel):
    id: int
    name: str
    value: str
    created_at: datetime | None


class KVIn(BaseModel):
    value: str


class EchoIn(BaseModel):
    message: str


def create_app(settings: Settings) -> FastAPI:
    logger = setup_logging(settings.log_dir)
    engine = make_engine(settings.database_url)
    cache = make_redis(settings.redis_url)
    celery = create_celery(settings)
    started = time.monotonic()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logger.info("fleetdemo %s started", settings.app_version)
        yield
        engine.dispose()
        cache.close()

    app = FastAPI(title="fleetdemo", version=settings.app_version, lifespan=lifespan)

    @app.middleware("http")
    async def log_and_measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - start
            route = request.scope.get("route")
            route_path = getattr(route, "path", None) or "<unmatched>"
            metrics.observe(request.method, route_path, status, elapsed)
            logger.info("%s %s %d %.1fms", request.method, request.url.path, status, elapsed * 1000)

    @app.exception_handler(SQLAlchemyError)
    async def database_error(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        logger.error("database error: %s", exc.__class__.__name__)
        return JSONResponse({"detail": "database unavailable"}, status_code=503)

    @app.exception_handler(redis.RedisError)
    async def redis_error(_: Request, exc: redis.RedisError) -> JSONResponse:
        logger.error("redis error: %s", exc)
        return JSONResponse({"detail": "redis unavailable"}, status_code=503)

    # ---- health -----------------------------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        # The host name tells which server of a fleet answered (behind a load balancer).
        return {"status": "pass", "version": settings.app_version, "host": socket.gethostname()}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        checks = {
            "database": check_database(engine).status,
            "redis": check_redis(cache).status,
        }
        ok = all(value == "pass" for value in checks.values())
        body = {"status": "pass" if ok else "fail", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/health/detailed")
    def health_detailed() -> JSONResponse:
        database = check_database(engine)
        cache_check = check_redis(cache)
        last_heartbeat: str | None = None
        if cache_check.ok:
            try:
                last_heartbeat = cache.get(HEARTBEAT_KEY)  # type: ignore[assignment]
            except redis.RedisError:
                last_heartbeat = None
        celery_status = "pass" if last_heartbeat else "warn"
        if not (database.ok and cache_check.ok):
            status = "fail"
        else:
            status = celery_status
        body = {
            "status": status,
            "version": settings.app_version,
            "uptime_seconds": round(time.monotonic() - started, 1),
            "dependencies": {
                "database": database.as_dict(),
                "redis": cache_check.as_dict(),
                "celery": {"status": celery_status, "last_heartbeat": last_heartbeat},
            },
        }
        return JSONResponse(body, status_code=503 if status == "fail" else 200)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    # ---- items (PostgreSQL) -----------------------------------------------------------------

    @app.post("/api/items", status_code=201)
    def create_item(item: ItemIn) -> ItemOut:
        try:
            with engine.begin() as conn:
                row = conn.execute(
                    insert(items).values(name=item.name, value=item.value).returning(items)
                ).one()
        except IntegrityError:
            raise HTTPException(409, f"item {item.name!r} already exists") from None
        return ItemOut(**row._mapping)

    @app.get("/api/items")
    def list_items() -> list[ItemOut]:
        with engine.connect() as conn:
            rows = conn.execute(select(items).order_by(items.c.id)).all()
        return [ItemOut(**row._mapping) for row in rows]

    @app.get("/api/items/{name}")
    def get_item(name: str) -> ItemOut:
        with engine.connect() as conn:
            row = conn.execute(select(items).where(items.c.name == name)).one_or_none()
        if row is None:
            raise HTTPException(404, f"item {name!r} not found")
        return ItemOut(**row._mapping)

    @app.delete("/api/items/{name}", status_code=204)
    def delete_item(name: str) -> Response:
        with engine.begin() as conn:
            deleted = conn.execute(delete(items).where(items.c.name == name)).rowcount
        if not deleted:
            raise HTTPException(404, f"item {name!r} not found")
        return Response(status_code=204)

    # ---- key/value (Redis) ------------------------------------------------------------------

    @app.put("/api/kv/{key}")
    def put_kv(key: str, body: KVIn) -> dict[str, str]:
        cache.set(KV_PREFIX + key, body.value)
        return {"key": key, "value": body.value}

    @app.get("/api/kv/{key}")
    def get_kv(key: str) -> dict[str, str]:
        value = cache.get(KV_PREFIX + key)
        if value is None:
            raise HTTPException(404, f"key {key!r} not found")
        return {"key": key, "value": str(value)}

    @app.get("/api/kv")
    def list_kv() -> dict[str, str]:
        keys = sorted(cache.scan_iter(match=KV_PREFIX + "*", count=500))
        found = cache.mget(keys) if keys else []
        return {
            str(k)[len(KV_PREFIX) :]: str(v)
            for k, v in zip(keys, found, strict=True)  # type: ignore[arg-type]
            if v is not None
        }

    # ---- tasks (Celery) ---------------------------------------------------------------------

    @app.post("/api/tasks/echo", status_code=202)
    def enqueue_echo(body: EchoIn) -> dict[str, str]:
        try:
            result = celery.send_task(ECHO_TASK, args=[body.message])
        except (KombuError, redis.RedisError, OSError) as exc:
            logger.error("could not enqueue echo task: %s", exc)
            raise HTTPException(503, "task broker unavailable") from None
        return {"task_id": str(result.id)}

    @app.get("/api/tasks/{task_id}")
    def task_state(task_id: str) -> dict[str, Any]:
        raw = cache.get(TASK_PREFIX + task_id)
        if raw is None:
            return {"task_id": task_id, "state": "pending", "result": None}
        return {"task_id": task_id, "state": "done", "result": json.loads(str(raw))}

    return app
