"""The default scenario: the reference app's whole single-server stack, verified by its outcomes."""

from __future__ import annotations

import re
import uuid

import pytest
from helpers import API, APP, assert_running, http_json, journal, molecule_hosts, wait_for

testinfra_hosts = molecule_hosts("pyfleet")

UNITS = [f"{APP}-api.service", f"{APP}-worker.service", f"{APP}-beat.service"]


@pytest.mark.parametrize("unit", ["postgresql", "redis-server", *UNITS])
def test_services_active_and_enabled(host, unit):
    assert_running(host, unit)


def test_data_services_listen_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:5432").is_listening
    assert host.socket("tcp://127.0.0.1:6379").is_listening
    assert host.socket("tcp://127.0.0.1:8000").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:6379").is_listening
    assert not host.socket("tcp://0.0.0.0:8000").is_listening


def test_redis_requires_a_password(host):
    out = host.run("redis-cli -h 127.0.0.1 ping").stdout
    assert "NOAUTH" in out, out


def test_api_ready_with_healthy_dependencies(host):
    code, body = http_json(host, "GET", "/readyz")
    assert code == 200, body
    assert body["checks"] == {"database": "pass", "redis": "pass"}


def test_detailed_health_reaches_pass_once_beat_and_worker_run(host):
    def detailed():
        code, body = http_json(host, "GET", "/health/detailed")
        return body if code == 200 and body.get("status") == "pass" else None

    body = wait_for(detailed, timeout=60, interval=2)
    assert body, f"/health/detailed never passed; beat journal:\n{journal(host, f'{APP}-beat.service')}"
    assert {name: dep["status"] for name, dep in body["dependencies"].items()} == {
        "database": "pass",
        "redis": "pass",
        "celery": "pass",
    }


def test_worker_consumes_a_task(host):
    message = f"molecule-{uuid.uuid4()}"
    code, body = http_json(host, "POST", "/api/tasks/echo", {"message": message})
    assert code == 202, body

    def done():
        result = http_json(host, "GET", f"/api/tasks/{body['task_id']}")[1]
        return result if result.get("state") == "done" else None

    result = wait_for(done, timeout=30)
    assert result, f"task never ran; worker journal:\n{journal(host, f'{APP}-worker.service')}"
    assert result["result"]["message"] == message


def test_rows_round_trip_through_postgresql(host):
    name = f"item-{uuid.uuid4().hex[:8]}"
    code, row = http_json(host, "POST", "/api/items", {"name": name, "value": "v1"})
    assert code == 201, row
    code, fetched = http_json(host, "GET", f"/api/items/{name}")
    assert code == 200 and fetched["value"] == "v1"


def test_metrics_are_prometheus_text(host):
    code, text = http_json(host, "GET", "/metrics")
    assert code == 200
    assert re.search(r"^fleetdemo_http_requests_total\{", text, re.M), text[:500]


def test_env_file_is_private(host):
    env = host.file(f"/etc/{APP}/{APP}.env")
    assert env.user == "root"
    assert env.group == APP
    assert env.mode == 0o640
    assert "SECRET_KEY=" in env.content_string
    assert host.file(f"/etc/{APP}").mode == 0o750


def test_release_layout(host):
    current = host.file(f"/opt/{APP}/current")
    assert current.is_symlink
    assert current.linked_to == f"/opt/{APP}/releases/1.0.0"
    assert host.file(f"/opt/{APP}/releases/1.0.0").user == "root"
    shared = host.file(f"/opt/{APP}/shared")
    assert shared.user == APP and shared.mode == 0o750


def test_app_user_cannot_log_in(host):
    user = host.user(APP)
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == f"/opt/{APP}"


def test_venv_interpreter_is_python_311(host):
    out = host.check_output(f"/opt/{APP}/current/venv/bin/python --version")
    assert out.startswith("Python 3.11."), out


def test_units_run_as_app_user_without_capabilities(host):
    for unit in UNITS:
        props = host.service(unit).systemd_properties
        assert props["User"] == APP
        assert props["NoNewPrivileges"] == "yes"
        assert props["ProtectSystem"] == "strict"
        caps = host.check_output(f"systemctl show -p CapabilityBoundingSet --value {unit}")
        assert caps == "", f"{unit} keeps capabilities: {caps}"


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_exposure_at_most_2(host, unit):
    out = host.check_output(f"systemd-analyze security {unit} --no-pager")
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    print(f"systemd-analyze security {unit}: {score}")
    assert score <= 2.0, out


def test_a_fresh_api_start_logs_no_errors(host):
    """gunicorn's control socket goes to the unit's runtime directory, not the read-only home (issue 16.4)."""
    unit = f"{APP}-api.service"
    host.check_output(f"systemctl restart {unit}")
    ready = f"curl -s -o /dev/null -w '%{{http_code}}' {API}/readyz"
    assert wait_for(lambda: host.run(ready).stdout == "200", timeout=90, interval=2), journal(host, unit)
    invocation = host.check_output(f"systemctl show -p InvocationID --value {unit}")
    log = host.check_output(f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={invocation}")
    assert "Booting worker" in log, log
    errors = [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line]
    assert not errors, log
    runtime = host.file(f"/run/{APP}-api")
    assert runtime.is_directory and (runtime.user, runtime.mode) == (APP, 0o700)
