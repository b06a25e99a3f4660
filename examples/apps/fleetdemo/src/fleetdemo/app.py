"""FastAPI application factory: health, metrics and the small data API."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from kombu.exceptions import KombuError
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from fleetdemo import metrics, store
from fleetdemo.clients import (
    KV_PREFIX,
    TASK_PREFIX,
    make_engine,
    make_redis,
)
from fleetdemo.config import REDIS_NOT_CONFIGURED, Settings
from fleetdemo.health import PROFILES, Health, Route
from fleetdemo.logs import setup_logging
from fleetdemo.store import ItemIn, ItemOut
from fleetdemo.tasks import ECHO_TASK, create_celery


class KVIn(BaseModel):
    value: str


class EchoIn(BaseModel):
    message: str


def create_app(settings: Settings) -> FastAPI:
    logger = setup_logging(settings.log_dir)
    engine = make_engine(settings.database_url)
    # No REDIS_URL: the deployment has no Redis; the key/value and task APIs answer 503.
    cache = make_redis(settings.redis_url) if settings.redis_url else None
    celery = create_celery(settings)

    def redis_client() -> redis.Redis:
        if cache is None:
            raise HTTPException(503, REDIS_NOT_CONFIGURED)
        return cache

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logger.info("fleetdemo %s started", settings.app_version)
        yield
        engine.dispose()
        if cache is not None:
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

    # ---- health (the profile's paths) and metrics -------------------------------------------

    health = Health(settings, engine, cache)
    profile = PROFILES[settings.profile]
    for path, answer in profile.all_routes.items():
        app.add_api_route(path, _json_endpoint(health, answer), methods=["GET"])

    def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    for path in profile.metrics_paths:
        app.add_api_route(path, prometheus_metrics, methods=["GET"])

    # ---- items (PostgreSQL) -----------------------------------------------------------------

    @app.post("/api/items", status_code=201)
    def create_item(item: ItemIn) -> ItemOut:
        try:
            return store.create_item(engine, item)
        except IntegrityError:
            raise HTTPException(409, f"item {item.name!r} already exists") from None

    @app.get("/api/items")
    def list_items() -> list[ItemOut]:
        return store.list_items(engine)

    @app.get("/api/items/{name}")
    def get_item(name: str) -> ItemOut:
        found = store.get_item(engine, name)
        if found is None:
            raise HTTPException(404, f"item {name!r} not found")
        return found

    @app.delete("/api/items/{name}", status_code=204)
    def delete_item(name: str) -> Response:
        if not store.delete_item(engine, name):
            raise HTTPException(404, f"item {name!r} not found")
        return Response(status_code=204)

    # ---- key/value (Redis) ------------------------------------------------------------------

    @app.put("/api/kv/{key}")
    def put_kv(key: str, body: KVIn) -> dict[str, str]:
        redis_client().set(KV_PREFIX + key, body.value)
        return {"key": key, "value": body.value}

    @app.get("/api/kv/{key}")
    def get_kv(key: str) -> dict[str, str]:
        value = redis_client().get(KV_PREFIX + key)
        if value is None:
            raise HTTPException(404, f"key {key!r} not found")
        return {"key": key, "value": str(value)}

    @app.get("/api/kv")
    def list_kv() -> dict[str, str]:
        cache = redis_client()
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
        redis_client()  # the worker writes the result to Redis, and it is the default broker
        try:
            result = celery.send_task(ECHO_TASK, args=[body.message])
        except (KombuError, redis.RedisError, OSError) as exc:
            logger.error("could not enqueue echo task: %s", exc)
            raise HTTPException(503, "task broker unavailable") from None
        return {"task_id": str(result.id)}

    @app.get("/api/tasks/{task_id}")
    def task_state(task_id: str) -> dict[str, Any]:
        raw = redis_client().get(TASK_PREFIX + task_id)
        if raw is None:
            return {"task_id": task_id, "state": "pending", "result": None}
        return {"task_id": task_id, "state": "done", "result": json.loads(str(raw))}

    return app


def _json_endpoint(health: Health, answer: Route) -> Callable[[], JSONResponse]:
    def endpoint() -> JSONResponse:
        status, body = answer(health)
        return JSONResponse(body, status_code=status)

    endpoint.__name__ = answer.__name__  # FastAPI's operation id, as before the profiles
    return endpoint
