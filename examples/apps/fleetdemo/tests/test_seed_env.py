"""Diet Planner's environment: POSTGRES_* instead of DATABASE_URL, and no Redis (REDIS_URL unset).

The database is named by the URL built from POSTGRES_* (checked on the wire by a stand-in server
that speaks the start of the PostgreSQL protocol); without Redis the health bodies do not report
it, the Redis-backed APIs answer 503 and the Celery entry points refuse to start.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from fleetdemo import config, health
from fleetdemo.admin import main as admin_main
from fleetdemo.app import create_app
from fleetdemo.config import ConfigError, load_settings
from fleetdemo.health import Health
from fleetdemo.wsgiapp import create_wsgi_app

from .conftest import SEED_ENV, UNREACHABLE_ENV
from .test_profiles import _wsgi_call

PASSWORD = SEED_ENV["POSTGRES_PASSWORD"]
NOT_CONFIGURED = {"detail": "redis not configured: REDIS_URL is not set"}


# ---- DATABASE_URL from POSTGRES_* ----------------------------------------------------------------


def test_database_url_is_built_from_postgres_variables() -> None:
    settings = load_settings(SEED_ENV)
    url = make_url(settings.database_url)
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+psycopg",
        "127.0.0.1",
        1,
        "diet_planner",
    )
    assert (url.username, url.password) == ("diet_user", PASSWORD)  # quoted, then read back
    assert PASSWORD not in settings.database_url and PASSWORD not in repr(settings)

    no_port = {k: v for k, v in SEED_ENV.items() if k != "POSTGRES_PORT"}
    assert make_url(load_settings(no_port).database_url).port == 5432
    assert make_url(load_settings({**SEED_ENV, "POSTGRES_HOST": "::1"}).database_url).host == "::1"
    socket_url = make_url(
        load_settings({**SEED_ENV, "POSTGRES_HOST": "/run/postgresql"}).database_url
    )
    assert socket_url.query == {"host": "/run/postgresql", "port": "1"}
    # DATABASE_URL, when set, wins over POSTGRES_*.
    both = load_settings({**SEED_ENV, "DATABASE_URL": UNREACHABLE_ENV["DATABASE_URL"]})
    assert both.database_url == UNREACHABLE_ENV["DATABASE_URL"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {name: "" for name in config.POSTGRES_REQUIRED},
            (
                "DATABASE_URL is required but not set (set DATABASE_URL or POSTGRES_HOST, "
                "POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD (+ POSTGRES_PORT, default 5432))"
            ),
        ),
        (
            {"POSTGRES_DB": "", "POSTGRES_USER": " "},
            "DATABASE_URL is not set and POSTGRES_DB, POSTGRES_USER missing: set DATABASE_URL or",
        ),
        ({"POSTGRES_PORT": "5432x"}, "POSTGRES_PORT must be a port number (1-65535)"),
        ({"POSTGRES_PORT": "70000"}, "POSTGRES_PORT must be a port number (1-65535)"),
    ],
)
def test_postgres_variables_errors_name_them(change: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings({**SEED_ENV, **change})
    assert str(exc.value).startswith(message)
    assert PASSWORD not in str(exc.value)


class FakePostgres:
    """Answers the start of the PostgreSQL protocol: records the startup parameters, asks for the
    password in clear text, records it, then refuses the login (SQLSTATE 28P01)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.logins: list[dict[str, str]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                try:
                    self._login(conn)
                except (OSError, struct.error):
                    pass

    @staticmethod
    def _read(conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise OSError("client closed")
            data += chunk
        return data

    def _login(self, conn: socket.socket) -> None:
        while True:
            (length,) = struct.unpack("!I", self._read(conn, 4))
            payload = self._read(conn, length - 4)
            if struct.unpack("!I", payload[:4])[0] not in (80877103, 80877104):
                break
            conn.sendall(b"N")  # no SSL, no GSS encryption: go on in clear
        words = payload[4:].rstrip(b"\0").split(b"\0")
        login = {k.decode(): v.decode() for k, v in zip(words[::2], words[1::2], strict=True)}
        conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        assert self._read(conn, 1) == b"p"
        (length,) = struct.unpack("!I", self._read(conn, 4))
        login["password"] = self._read(conn, length - 4).rstrip(b"\0").decode()
        self.logins.append(login)
        fields = b"SFATAL\0VFATAL\0C28P01\0Mfake server refuses the login\0\0"
        conn.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)

    def close(self) -> None:
        self.server.close()
        self.thread.join(timeout=5)


@pytest.fixture
def fake_postgres() -> Iterator[FakePostgres]:
    server = FakePostgres()
    yield server
    server.close()


def test_migrate_logs_in_with_postgres_variables(
    unreachable_env: dict[str, str],
    fake_postgres: FakePostgres,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("REDIS_URL")
    for name, value in {**SEED_ENV, "POSTGRES_PORT": str(fake_postgres.port)}.items():
        monkeypatch.setenv(name, value)
    assert admin_main(["migrate"]) == 1
    assert fake_postgres.logins, "migrate never reached the database"
    login = fake_postgres.logins[0]
    assert (login["user"], login["database"], login["password"]) == (
        "diet_user",
        "diet_planner",
        PASSWORD,
    )
    err = capsys.readouterr().err
    assert "migration failed" in err and "fake server refuses the login" in err
    assert PASSWORD not in err


# ---- no Redis: health bodies ---------------------------------------------------------------------


def _no_redis_settings(profile: str) -> config.Settings:
    return load_settings({**SEED_ENV, "FLEETDEMO_PROFILE": profile})


def test_redis_url_is_optional() -> None:
    settings = load_settings(SEED_ENV)
    assert (settings.redis_url, settings.celery_broker_url) == (None, None)
    with pytest.raises(ConfigError, match="REDIS_URL must be a URL"):
        load_settings({**SEED_ENV, "REDIS_URL": "http://localhost:6379"})


@pytest.fixture(params=["asgi", "wsgi"])
def no_redis_get(request: pytest.FixtureRequest) -> Any:
    apps: dict[str, Any] = {}

    def call(profile: str, path: str) -> tuple[int, dict[str, Any]]:
        if request.param == "asgi":
            client = apps.setdefault(profile, TestClient(create_app(_no_redis_settings(profile))))
            response = client.get(path)
            return response.status_code, response.json()
        app = apps.setdefault(profile, create_wsgi_app(_no_redis_settings(profile)))
        code, _, body = _wsgi_call(app, path)
        return code, json.loads(body)

    return call


def test_failure_bodies_without_redis_report_the_database_only(no_redis_get: Any) -> None:
    # PostgreSQL refused (port 1): every body fails on the database, none names Redis or Celery.
    assert no_redis_get("default", "/readyz") == (
        503,
        {"status": "fail", "checks": {"database": "fail"}},
    )
    code, body = no_redis_get("default", "/health/detailed")
    assert (code, body["status"], set(body["dependencies"])) == (503, "fail", {"database"})
    code, body = no_redis_get("playpark", "/readyz")
    assert (code, body["checks"]) == (503, {"database": "disconnected"})
    code, body = no_redis_get("brownie", "/health/detailed")
    assert (code, body["dependencies"]) == (503, {"database": "unhealthy"})
    code, body = no_redis_get("fairedge", "/health")
    assert (code, body["status"], body["services"]) == (503, "unhealthy", {"database": "unhealthy"})
    for path in ("/health/redis", "/health/celery"):
        assert no_redis_get("fairedge", path) == (
            503,
            {"status": "unhealthy", "error": "redis not configured: REDIS_URL is not set"},
        )
    code, body = no_redis_get("loyalty", "/ready")
    assert code == 503
    assert set(body["checks"]) == {"database", "database_pool", "database_migration"}
    code, body = no_redis_get("dietplanner", "/api/health/detailed")
    assert (code, body["status"], list(body["checks"])) == (503, "unhealthy", ["database"])
    assert no_redis_get("dietplanner", "/api/health")[0] == 200


@pytest.fixture
def up_no_redis(tmp_path: Path) -> Iterator[Health]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('0002')"))
    yield Health(load_settings(SEED_ENV), engine, None)
    engine.dispose()


def test_healthy_bodies_without_redis(up_no_redis: Health) -> None:
    # The database up and no Redis configured: every body is healthy, with no Redis in it.
    h = up_no_redis
    assert health.readyz(h) == (200, {"status": "pass", "checks": {"database": "pass"}})
    code, body = health.health_detailed(h)
    assert (code, body["status"], list(body["dependencies"])) == (200, "pass", ["database"])
    assert health.playpark_readyz(h) == (
        200,
        {"ok": True, "status": "ready", "checks": {"database": "connected"}},
    )
    code, body = health.brownie_detailed(h)
    assert (code, body["status"], body["dependencies"]) == (200, "healthy", {"database": "healthy"})
    code, body = health.fairedge_health(h)
    assert (code, body["status"], body["services"]) == (200, "healthy", {"database": "healthy"})
    code, body = health.loyalty_ready(h)
    assert (code, body["status"]) == (200, "healthy") and "redis" not in body["checks"]
    code, body = health.dietplanner_detailed(h)
    assert (code, body["status"], list(body["checks"])) == (200, "healthy", ["database"])


# ---- no Redis: the Redis-backed APIs and the Celery entry points ---------------------------------


def test_redis_endpoints_answer_503_not_configured() -> None:
    client = TestClient(create_app(_no_redis_settings("dietplanner")))
    for method, path, payload in [
        ("PUT", "/api/kv/a", {"value": "b"}),
        ("GET", "/api/kv/a", None),
        ("GET", "/api/kv", None),
        ("POST", "/api/tasks/echo", {"message": "hi"}),
        ("GET", "/api/tasks/123", None),
    ]:
        response = client.request(method, path, json=payload)
        assert (response.status_code, response.json()) == (503, NOT_CONFIGURED), path
    assert client.get("/api/items").json() == {"detail": "database unavailable"}


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_celery_refuses_to_start_without_redis(command: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env.update(SEED_ENV)
    celery = Path(sys.executable).with_name("celery")
    result = subprocess.run(
        [str(celery), "-A", "fleetdemo.worker:celery_app", command, "-s", str(tmp_path / "s")]
        if command == "beat"
        else [str(celery), "-A", "fleetdemo.worker:celery_app", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert (
        "fleetdemo: celery worker/beat: Redis is required (broker and task results): "
        "redis not configured: REDIS_URL is not set"
    ) in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
