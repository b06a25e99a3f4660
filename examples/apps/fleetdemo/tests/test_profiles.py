"""FLEETDEMO_PROFILE: each seed's health paths, body shapes and failure codes, through both front-ends.

Failure bodies come from the real checks against closed ports (connection refused); healthy bodies
from a real SQLite database and a Redis check that reports "up" (the app tests run no Redis).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from fleetdemo import config, health
from fleetdemo.app import create_app
from fleetdemo.clients import CheckResult, make_redis
from fleetdemo.config import ConfigError, load_settings
from fleetdemo.health import PROFILES, Health
from fleetdemo.wsgiapp import create_wsgi_app

from .conftest import SEED_ENV, UNREACHABLE_ENV

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
Get = Callable[[str, str], tuple[int, str, bytes]]  # (profile, path) -> status, type, body


def _settings(profile: str) -> config.Settings:
    env = dict(UNREACHABLE_ENV)
    if profile != "default":
        env["FLEETDEMO_PROFILE"] = profile
    return load_settings(env)


def _wsgi_call(
    app: Any, path: str, method: str = "GET", body: bytes = b""
) -> tuple[int, str, bytes]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=path,
        CONTENT_LENGTH=str(len(body)),
        **{"wsgi.input": io.BytesIO(body)},
    )
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    out = b"".join(app(environ, start_response))
    assert seen["headers"]["Content-Length"] == str(len(out))
    return int(seen["status"].split()[0]), seen["headers"]["Content-Type"], out


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def get(request: pytest.FixtureRequest) -> Get:
    apps: dict[str, Any] = {}

    def call(profile: str, path: str) -> tuple[int, str, bytes]:
        if request.param == "asgi":
            client = apps.setdefault(profile, TestClient(create_app(_settings(profile))))
            response = client.get(path)
            return response.status_code, response.headers["content-type"], response.content
        app = apps.setdefault(profile, create_wsgi_app(_settings(profile)))
        return _wsgi_call(app, path)

    return call


def _json(get: Get, profile: str, path: str, status: int) -> dict[str, Any]:
    code, content_type, body = get(profile, path)
    assert (code, content_type) == (status, "application/json"), body
    data: dict[str, Any] = json.loads(body)
    return data


# ---- configuration ----------------------------------------------------------------------------


def test_profile_setting() -> None:
    assert load_settings(UNREACHABLE_ENV).profile == "default"
    assert load_settings({**UNREACHABLE_ENV, "FLEETDEMO_PROFILE": " "}).profile == "default"
    for name in config.PROFILES:
        assert load_settings({**UNREACHABLE_ENV, "FLEETDEMO_PROFILE": name}).profile == name
    with pytest.raises(ConfigError, match="FLEETDEMO_PROFILE must be one of playpark, brownie"):
        load_settings({**UNREACHABLE_ENV, "FLEETDEMO_PROFILE": "flask"})
    assert set(PROFILES) == {"default", *config.PROFILES}


def test_wsgi_module_refuses_an_unknown_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**UNREACHABLE_ENV, "FLEETDEMO_PROFILE": "playpark2"}.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("fleetdemo.wsgi", None)
    with pytest.raises(ConfigError, match="FLEETDEMO_PROFILE"):
        __import__("fleetdemo.wsgi")


# ---- failure answers (PostgreSQL and Redis refused), both front-ends ---------------------------


def test_default_profile_is_unchanged(get: Get) -> None:
    assert get("default", "/readyz") == (
        503,
        "application/json",
        b'{"status":"fail","checks":{"database":"fail","redis":"fail"}}',
    )
    code, _, body = get("default", "/healthz")
    assert code == 200
    assert (
        body == b'{"status":"pass","version":"1.0.0","host":"%s"}' % socket.gethostname().encode()
    )
    assert _json(get, "default", "/health/detailed", 503)["status"] == "fail"
    for path in ("/health", "/ready", "/api/health", "/api/metrics", "/health/database"):
        assert get("default", path)[0] == 404, path


@pytest.mark.parametrize("profile", sorted(config.PROFILES))
def test_collection_default_probe_stays_in_every_profile(get: Get, profile: str) -> None:
    assert get(profile, "/readyz")[0] == 503
    assert get(profile, "/healthz")[0] == 200
    code, content_type, body = get(profile, "/metrics")
    assert code == 200 and content_type.startswith("text/plain")
    assert b"# TYPE fleetdemo_http_requests_total counter" in body


def test_playpark(get: Get) -> None:
    live = _json(get, "playpark", "/healthz", 200)
    assert TIMESTAMP.match(live.pop("timestamp"))
    assert live == {
        "ok": True,
        "status": "healthy",
        "version": "1.0.0",
        "environment": "production",
    }
    assert _json(get, "playpark", "/readyz", 503) == {
        "ok": False,
        "status": "not_ready",
        "checks": {"database": "disconnected", "redis": "disconnected"},
    }
    assert get("playpark", "/health")[0] == 404


def test_brownie(get: Get) -> None:
    live = _json(get, "brownie", "/health", 200)
    assert TIMESTAMP.match(live.pop("timestamp"))
    assert live == {"status": "healthy", "version": "1.0.0"}
    detailed = _json(get, "brownie", "/health/detailed", 503)
    assert TIMESTAMP.match(detailed.pop("timestamp"))
    assert detailed == {
        "status": "unhealthy",
        "version": "1.0.0",
        "dependencies": {"database": "unhealthy", "redis": "unhealthy"},
    }


def test_fairedge(get: Get) -> None:
    body = _json(get, "fairedge", "/health", 503)
    assert TIMESTAMP.match(body.pop("timestamp"))
    assert body == {
        "status": "unhealthy",
        "services": {"database": "unhealthy", "redis": "unhealthy", "celery": "degraded"},
        "version": "1.0.0",
    }
    database = _json(get, "fairedge", "/health/database", 503)
    assert database["status"] == "unhealthy" and "Connection refused" in database["error"]
    assert set(database["pool_stats"]) == {"size", "checked_in", "checked_out", "overflow"}
    assert database["pool_stats"]["size"] == 5 and database["latency_ms"] >= 0
    cache = _json(get, "fairedge", "/health/redis", 503)
    assert cache["status"] == "unhealthy" and "Connection refused" in cache["error"]
    celery = _json(get, "fairedge", "/health/celery", 503)
    assert celery == {"status": "unhealthy", "last_heartbeat": None}


def test_loyalty(get: Get) -> None:
    body = _json(get, "loyalty", "/health", 503)
    assert TIMESTAMP.match(body.pop("timestamp")) and body["status"] == "unhealthy"
    database = body["checks"]["database"]
    assert set(body["checks"]) == {"database"} and database["status"] == "unhealthy"
    assert "Connection refused" in database["message"] and re.match(r"^\d+ms$", database["latency"])
    ready = _json(get, "loyalty", "/ready", 503)
    assert ready["status"] == "unhealthy" and TIMESTAMP.match(ready["timestamp"])
    checks = ready["checks"]
    assert set(checks) == {"database", "database_pool", "database_migration", "redis"}
    assert checks["database"] == {"status": "unhealthy"}
    assert checks["database_pool"]["status"] == "healthy"  # nothing checked out
    assert checks["database_migration"] == {"status": "unhealthy", "message": "database down"}
    assert checks["redis"] == {"status": "unhealthy"}


def test_dietplanner(get: Get) -> None:
    live = _json(get, "dietplanner", "/api/health", 200)
    assert TIMESTAMP.match(live.pop("timestamp")) and isinstance(live.pop("uptime"), int)
    assert live == {"status": "healthy"}
    detailed = _json(get, "dietplanner", "/api/health/detailed", 503)
    assert detailed["status"] == "unhealthy" and detailed["version"] == "1.0.0"
    assert isinstance(detailed["uptime"], int) and TIMESTAMP.match(detailed["timestamp"])
    assert {name: c["status"] for name, c in detailed["checks"].items()} == {
        "database": "unhealthy",
        "redis": "unhealthy",
    }
    code, content_type, text_body = get("dietplanner", "/api/metrics")
    assert code == 200 and content_type.startswith("text/plain")
    assert b'path="/api/health",status="200"' in text_body


# ---- healthy answers: a real SQLite database, Redis reported up -------------------------------


class _UpHealth(Health):
    heartbeat_value: str | None = "1764213600"

    def redis(self) -> CheckResult:
        return CheckResult(True, 0.3)

    def heartbeat(self, cache_ok: bool) -> str | None:
        return self.heartbeat_value if cache_ok else None


@pytest.fixture
def up(tmp_path: Path) -> Iterator[_UpHealth]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('0002')"))
    h = _UpHealth(load_settings(UNREACHABLE_ENV), engine, make_redis(UNREACHABLE_ENV["REDIS_URL"]))
    yield h
    engine.dispose()


def test_healthy_bodies(up: _UpHealth) -> None:
    assert health.playpark_readyz(up) == (
        200,
        {"ok": True, "status": "ready", "checks": {"database": "connected", "redis": "connected"}},
    )
    code, body = health.brownie_detailed(up)
    assert code == 200 and body["dependencies"] == {"database": "healthy", "redis": "healthy"}
    code, body = health.fairedge_health(up)
    assert (code, body["status"]) == (200, "healthy")
    assert body["services"] == {"database": "healthy", "redis": "healthy", "celery": "healthy"}
    assert health.fairedge_celery(up) == (
        200,
        {"status": "healthy", "last_heartbeat": "1764213600"},
    )
    code, body = health.fairedge_database(up)
    assert code == 200 and body["status"] == "healthy" and "error" not in body
    code, body = health.loyalty_health(up)
    assert code == 200 and body["checks"]["database"]["message"] == "Database connection OK"
    code, body = health.loyalty_ready(up)
    assert code == 200 and body["status"] == "healthy"
    assert body["checks"]["database_migration"] == {
        "status": "healthy",
        "message": "database at 0002",
    }
    code, body = health.dietplanner_detailed(up)
    assert (code, body["status"]) == (200, "healthy")
    assert health.readyz(up) == (
        200,
        {"status": "pass", "checks": {"database": "pass", "redis": "pass"}},
    )


def test_stale_heartbeat_degrades_fairedge_and_warns_by_default(up: _UpHealth) -> None:
    up.heartbeat_value = None
    code, body = health.fairedge_health(up)
    assert (code, body["status"], body["services"]["celery"]) == (200, "degraded", "degraded")
    assert health.fairedge_celery(up) == (503, {"status": "unhealthy", "last_heartbeat": None})
    code, body = health.health_detailed(up)
    assert (code, body["status"]) == (200, "warn")


def test_loyalty_ready_fails_when_migrations_are_behind(up: _UpHealth) -> None:
    with up.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    code, body = health.loyalty_ready(up)
    assert code == 503 and body["status"] == "unhealthy"
    assert body["checks"]["database_migration"] == {
        "status": "unhealthy",
        "message": "database at 0001, code expects 0002",
    }


# ---- WSGI front-end: the items API in-process, then gunicorn's sync worker for real -------------


def test_wsgi_items_api_validates_and_reports_the_database() -> None:
    app = create_wsgi_app(_settings("dietplanner"))
    code, _, body = _wsgi_call(app, "/api/items", "POST", b'{"name": ""}')
    assert code == 422 and b"string_too_short" in body and b"missing" in body
    assert _wsgi_call(app, "/api/items", "POST", b'{"name": "a", "value": "b"}')[:2] == (
        503,
        "application/json",
    )
    assert _wsgi_call(app, "/api/items")[2] == b'{"detail":"database unavailable"}'
    assert _wsgi_call(app, "/api/items/a", "DELETE")[0] == 503
    assert _wsgi_call(app, "/api/health", "POST")[0] == 405
    assert _wsgi_call(app, "/nope")[0] == 404
    code, _, text_body = _wsgi_call(app, "/api/metrics")
    assert b'path="/api/items",status="422"' in text_body
    assert b'path="<unmatched>",status="404"' in text_body


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_wsgi_entry_under_gunicorn_sync_worker(tmp_path: Path) -> None:
    # Diet Planner's environment as examples/dietplanner writes it: POSTGRES_*, no Redis.
    port = _free_port()
    env = {**os.environ, **SEED_ENV, "FLEETDEMO_PROFILE": "dietplanner"}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn), "--worker-class", "sync", "--workers", "1",
               "--bind", f"127.0.0.1:{port}", "fleetdemo.wsgi:application"]  # fmt: skip
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                code, body = _http(base + "/api/health")
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not answer in 30 s"
                time.sleep(0.2)
        live = json.loads(body)
        assert code == 200 and live["status"] == "healthy" and isinstance(live["uptime"], int)
        code, body = _http(base + "/api/health/detailed")
        checks = json.loads(body)["checks"]
        assert code == 503 and list(checks) == ["database"]
        assert (
            checks["database"]["status"] == "unhealthy"
            and "port 1 failed" in checks["database"]["error"]
        )
        assert _http(base + "/readyz")[0] == 503
        code, body = _http(base + "/api/metrics")
        assert code == 200
        assert (
            b'fleetdemo_http_requests_total{method="GET",path="/api/health",status="200"}' in body
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    output = (tmp_path / "gunicorn.log").read_text()
    assert "Booting worker" in output and "GET /api/health 200" in output
