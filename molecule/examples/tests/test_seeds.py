"""Diet Planner (seed 004) and FairEdge (seed 002), converged from their examples, answer their guides' own checks
through nginx: the health calls of the guides' runbooks, the static frontend, the restricted metrics path, the
Celery processes and their log file."""

from __future__ import annotations

import ipaddress
import json

import pytest
from helpers import wait_for
from seed_examples import example_vars, host


def _https(example: str, path: str, source: str = "") -> tuple[int, str]:
    """A request to the example's first server name through nginx on the host (TLS, as the guides' curl calls)."""
    name = example_vars(example)["nginx_server_names"][0]
    interface = f"--interface {source} " if source else ""
    result = host(example).run(
        f"curl -sk {interface}--resolve {name}:443:{source or '127.0.0.1'} -o /tmp/examples-resp "
        f"-w '%{{http_code}}' https://{name}{path}")
    return int(result.stdout or 0), host(example).file("/tmp/examples-resp").content_string


def _eth0(example: str) -> str:
    return host(example).check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")


def test_dietplanner_answers_its_morning_health_check():
    """Guide: `curl -f https://<api>/api/health` → {"status": "healthy", "timestamp": …, "uptime": …}."""
    code, text = _https("dietplanner", "/api/health")
    assert code == 200, text
    body = json.loads(text)
    assert body["status"] == "healthy", body
    assert isinstance(body["uptime"], (int, float)), body


def test_dietplanner_runs_as_a_wsgi_app_under_sync_workers():
    unit = f"{example_vars('dietplanner')['app_name']}-api.service"
    command = host("dietplanner").check_output(f"systemctl show -p ExecStart --value {unit}")
    assert "fleetdemo.wsgi:application" in command, command
    assert "--worker-class sync" in command or "-k sync" in command, command


def test_dietplanner_metrics_are_restricted_to_the_allowed_networks():
    """/api/metrics is public in the guide's deployment; the example allows only the networks it names."""
    restricted = {entry["path"]: entry for entry in example_vars("dietplanner")["nginx_restricted_locations"]}
    assert "/api/metrics" in restricted, restricted
    allowed = [ipaddress.ip_network(a, strict=False) for a in restricted["/api/metrics"]["allow"]]
    code, text = _https("dietplanner", "/api/metrics")
    assert code == 200 and "request" in text, (code, text[:300])
    outside = _eth0("dietplanner")
    assert not any(ipaddress.ip_address(outside) in net for net in allowed), (outside, allowed)
    code = _https("dietplanner", "/api/metrics", source=outside)[0]
    assert code == 403
    # The health path next to it is not restricted.
    code = _https("dietplanner", "/api/health", source=outside)[0]
    assert code == 200


def test_fairedge_answers_its_primary_health_check():
    """Guide: `curl https://api…/health` → {"status": "healthy", "services": {database, redis, celery}, …}."""
    def healthy():
        code, text = _https("fairedge", "/health")
        return code == 200 and json.loads(text)
    body = wait_for(healthy, timeout=60, interval=2)
    assert body, _https("fairedge", "/health")
    assert body["status"] == "healthy", body
    assert body["services"] == {"database": "healthy", "redis": "healthy", "celery": "healthy"}, body


@pytest.mark.parametrize("service", ["database", "redis", "celery"])
def test_fairedge_answers_its_service_checks(service):
    code, text = _https("fairedge", f"/health/{service}")
    assert code == 200, text


def test_fairedge_serves_its_frontend_build_at_the_root():
    code, text = _https("fairedge", "/")
    assert code == 200 and "pyfleet-examples-frontend" in text, (code, text[:300])
    # A client-side route falls back to the single-page app's index.html.
    code, text = _https("fairedge", "/dashboard/opportunities")
    assert code == 200 and "pyfleet-examples-frontend" in text, (code, text[:300])


def test_fairedge_celery_logs_to_its_file_with_the_guides_arguments():
    settings = example_vars("fairedge")
    name, log = settings["app_name"], settings["app_celery_log_file"]
    h = host("fairedge")
    worker = h.check_output(f"systemctl show -p ExecStart --value {name}-worker.service")
    for argument in settings.get("app_celery_worker_args", []):
        assert argument in worker, (argument, worker)
    assert wait_for(lambda: h.file(log).exists and h.file(log).size > 0, timeout=60), f"{log} empty or missing"
    assert h.file(log).user == name
