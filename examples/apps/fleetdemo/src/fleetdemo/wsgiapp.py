"""WSGI application factory, served by fleetdemo.wsgi (gunicorn's sync worker).

For seeds served by a WSGI server (Diet Planner is a Flask app). A small adapter, no framework:
the profile's health paths, /metrics (plus the profile's metrics paths) and the items API, all
answered by the same functions as the ASGI app (fleetdemo.health, fleetdemo.store).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from fleetdemo import metrics, store
from fleetdemo.clients import make_engine, make_redis
from fleetdemo.config import Settings
from fleetdemo.health import JSON_TYPE, PROFILES, Body, Health, render_json
from fleetdemo.logs import setup_logging

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
# (status, body, content type, route label for the metrics)
Result = tuple[int, bytes, str, str]

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
ITEMS = "/api/items"
ITEM = "/api/items/{name}"


def _json(status: int, body: Body | list[Any], route: str) -> Result:
    return status, render_json(body), JSON_TYPE, route  # type: ignore[arg-type]


def _detail(status: int, detail: str, route: str) -> Result:
    return _json(status, {"detail": detail}, route)


def create_wsgi_app(settings: Settings) -> WSGIApp:
    logger = setup_logging(settings.log_dir)
    engine = make_engine(settings.database_url)
    cache = make_redis(settings.redis_url) if settings.redis_url else None
    health = Health(settings, engine, cache)
    profile = PROFILES[settings.profile]

    def items_api(method: str, path: str, environ: dict[str, Any]) -> Result:
        if path == ITEMS and method == "GET":
            found = store.list_items(engine)
            return _json(200, [i.model_dump(mode="json") for i in found], ITEMS)
        if path == ITEMS and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                item = store.ItemIn.model_validate_json(environ["wsgi.input"].read(length))
            except ValidationError as exc:
                return _json(422, {"detail": exc.errors(include_url=False)}, ITEMS)
            try:
                created = store.create_item(engine, item)
            except IntegrityError:
                return _detail(409, f"item {item.name!r} already exists", ITEMS)
            return _json(201, created.model_dump(mode="json"), ITEMS)
        name = path[len(ITEMS) + 1 :]
        if method == "GET":
            one = store.get_item(engine, name)
            if one is None:
                return _detail(404, f"item {name!r} not found", ITEM)
            return _json(200, one.model_dump(mode="json"), ITEM)
        if method == "DELETE":
            if not store.delete_item(engine, name):
                return _detail(404, f"item {name!r} not found", ITEM)
            return 204, b"", JSON_TYPE, ITEM
        return _detail(405, "Method Not Allowed", ITEM)

    def dispatch(method: str, path: str, environ: dict[str, Any]) -> Result:
        answer = profile.all_routes.get(path)
        if path in profile.metrics_paths or answer is not None:
            if method not in ("GET", "HEAD"):
                return _detail(405, "Method Not Allowed", path)
            if answer is not None:
                status, body = answer(health)
                return _json(status, body, path)
            text, content_type = metrics.render()
            return 200, text, content_type, path
        if path == ITEMS or (path.startswith(ITEMS + "/") and "/" not in path[len(ITEMS) + 1 :]):
            try:
                return items_api(method, path, environ)
            except SQLAlchemyError as exc:
                logger.error("database error: %s", exc.__class__.__name__)
                return _detail(503, "database unavailable", ITEMS)
        return _detail(404, "Not Found", "<unmatched>")

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start = time.perf_counter()
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO") or "/"
        status, body, content_type, route = 500, b"", JSON_TYPE, "<unmatched>"
        try:  # the health checks catch their own errors; a crash still counts as a 500
            status, body, content_type, route = dispatch(method, path, environ)
        finally:
            elapsed = time.perf_counter() - start
            metrics.observe(method, route, status, elapsed)
            logger.info("%s %s %d %.1fms", method, path, status, elapsed * 1000)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response(f"{status} {REASONS.get(status, '')}".rstrip(), headers)
        return [] if method == "HEAD" else [body]

    logger.info("fleetdemo %s started (wsgi, profile %s)", settings.app_version, settings.profile)
    return application
