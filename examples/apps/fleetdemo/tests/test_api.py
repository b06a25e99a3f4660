from __future__ import annotations

import importlib
import logging
import socket
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fleetdemo.app import create_app
from fleetdemo.config import ConfigError, load_settings

from .conftest import UNREACHABLE_ENV


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(load_settings(UNREACHABLE_ENV)))


def test_healthz_does_not_touch_dependencies(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "pass", "version": "1.0.0", "host": socket.gethostname()}


def test_readyz_fails_when_dependencies_are_down(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "fail", "checks": {"database": "fail", "redis": "fail"}}


def test_health_detailed_reports_each_dependency(client: TestClient) -> None:
    response = client.get("/health/detailed")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["version"] == "1.0.0"
    assert body["uptime_seconds"] >= 0
    deps = body["dependencies"]
    assert deps["database"]["status"] == "fail" and deps["database"]["error"]
    assert deps["redis"]["status"] == "fail" and "latency_ms" in deps["redis"]
    assert deps["celery"] == {"status": "warn", "last_heartbeat": None}


def test_data_endpoints_return_503_when_backends_are_down(client: TestClient) -> None:
    assert client.get("/api/items").status_code == 503
    assert client.get("/api/kv").status_code == 503


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE fleetdemo_http_requests_total counter" in text
    assert 'fleetdemo_http_requests_total{method="GET",path="/healthz",status="200"}' in text
    assert "fleetdemo_http_request_duration_seconds_bucket" in text


def test_log_dir_gets_request_lines(tmp_path: Path) -> None:
    settings = load_settings({**UNREACHABLE_ENV, "LOG_DIR": str(tmp_path)})
    TestClient(create_app(settings)).get("/healthz")
    for handler in logging.getLogger("fleetdemo").handlers:
        handler.flush()
    assert "GET /healthz 200" in (tmp_path / "app.log").read_text()


def test_main_module_refuses_to_start_without_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", UNREACHABLE_ENV["REDIS_URL"])
    monkeypatch.setenv("SECRET_KEY", UNREACHABLE_ENV["SECRET_KEY"])
    sys.modules.pop("fleetdemo.main", None)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        importlib.import_module("fleetdemo.main")
