"""The fleet as its users see it: one address in front of two app servers, a database tier only they reach, and
releases rolled over the app servers under load without a failed request.

Tests run in file order: the rolling deploys come last and leave the fleet on a newer release.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))
from helpers import run_playbook  # noqa: E402
from releases import make_release  # noqa: E402

LB, APP1, APP2, DB = "pyfleet-fleet-lb", "pyfleet-fleet-app1", "pyfleet-fleet-app2", "pyfleet-fleet-db"
ADDRESS = {LB: "172.30.77.10", APP1: "172.30.77.11", APP2: "172.30.77.12", DB: "172.30.77.13"}
FRONT = f"https://{ADDRESS[LB]}"


def _host(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


def _get(path: str, timeout: float = 10) -> tuple[int, dict]:
    """One request through the load balancer, from the controller (a host outside the fleet)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the fleet's self-signed certificate; TLS itself is tested elsewhere
    request = urllib.request.Request(FRONT + path, headers={"Host": "fleet.test"})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
        return response.status, json.loads(response.read())


def _port_open(address: str, port: int, timeout: float = 3) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _probe_from(host, address: str, port: int) -> bool:
    """Whether `host` can open a TCP connection to address:port (bash's /dev/tcp, 3 s)."""
    result = host.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/{port}'")
    return result.rc == 0


class Load:
    """A bounded load generator: `workers` threads sending GET /healthz through the load balancer until stopped
    (or `limit` seconds), counting every answer that is not a 200 and every connection error as failed."""

    def __init__(self, workers: int = 4, limit: float = 420):
        self.workers, self.limit = workers, limit
        self.sent = 0
        self.failed: list[str] = []
        self.versions: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status, body = _get("/healthz")
                outcome = None if status == 200 else f"HTTP {status}"
            except Exception as exc:  # noqa: BLE001 - every failure counts, whatever its kind
                outcome, body = f"{type(exc).__name__}: {exc}", {}
            with self._lock:
                self.sent += 1
                if outcome:
                    self.failed.append(outcome)
                else:
                    self.versions.append((time.monotonic(), body.get("version", "?"), body.get("host", "?")))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def report(self, what: str) -> str:
        line = f"{what}: requests sent {self.sent}, failed {len(self.failed)}"
        print(line, Counter(self.failed).most_common(3))
        return line


def _serving(samples: int = 24) -> Counter:
    """(version, host) of `samples` answers through the load balancer."""
    seen: Counter = Counter()
    for _ in range(samples):
        _, body = _get("/healthz")
        seen[(body["version"], body["host"])] += 1
    return seen


def test_the_load_balancer_reaches_both_app_servers():
    seen = _serving()
    assert {host for _, host in seen} == {APP1, APP2}, seen
    assert {version for version, _ in seen} == {"1.0.0"}, seen


def test_readiness_through_the_load_balancer_sees_database_and_redis():
    status, body = _get("/readyz")
    assert status == 200, body
    assert body["checks"] == {"database": "pass", "redis": "pass"}, body


@pytest.mark.parametrize("port", [5432, 6379])
def test_data_ports_are_closed_outside_the_app_tier(port):
    assert not _port_open(ADDRESS[DB], port), f"{port} on the database host answers the controller"
    assert not _probe_from(_host(LB), ADDRESS[DB], port), f"{port} on the database host answers the load balancer"
    assert _probe_from(_host(APP1), ADDRESS[DB], port), f"{port} on the database host refuses app server 1"


def test_app_port_is_open_to_the_load_balancer_only():
    assert _probe_from(_host(LB), ADDRESS[APP1], 8000)
    assert not _probe_from(_host(DB), ADDRESS[APP1], 8000)
    assert not _port_open(ADDRESS[APP2], 8000)


def test_only_the_load_balancer_serves_the_web():
    assert _port_open(ADDRESS[LB], 443)
    for name in (APP1, APP2, DB):
        assert not _port_open(ADDRESS[name], 443), f"443 answers on {name}"
        assert not _port_open(ADDRESS[name], 80), f"80 answers on {name}"


def test_forwarded_client_address_reaches_the_app_and_forgeries_do_not():
    """The app believes X-Forwarded-For from the load balancer alone: the access log of the app server shows the
    controller's address for a request through the LB, and the LB's own address for a forged header sent to the
    app server directly from the load balancer host... which is the one trusted peer, so the forgery is sent from
    the database host instead, whose address must show."""
    marker = f"/healthz?xff-probe={time.time_ns()}"
    _get(marker)
    db = _host(DB)
    forged = f"/healthz?xff-forged={time.time_ns()}"
    db.run(f"curl -s -H 'X-Forwarded-For: 203.0.113.7' http://{ADDRESS[APP1]}:8000{forged}")
    logs = _host(APP1).run("journalctl -u fleetdemo-api --no-pager -n 400").stdout
    logs += _host(APP2).run("journalctl -u fleetdemo-api --no-pager -n 400").stdout
    assert "203.0.113.7" not in logs, "a forged X-Forwarded-For from outside the load balancers was believed"
    assert "xff-probe" in logs


def test_rolling_deploy_under_load_drops_no_request(tmp_path):
    wheelhouse = make_release(tmp_path / "wh-1.1.0", "1.1.0")
    with Load() as load:
        time.sleep(2)
        started = time.monotonic()
        result = run_playbook("playbooks/deploy.yml", "-e", "app_version=1.1.0", "-e",
                              f"app_wheelhouse_dir={wheelhouse}", timeout=600)
        rollout = time.monotonic() - started
        time.sleep(2)
    print(load.report(f"rolling deploy 1.0.0 -> 1.1.0 ({rollout:.0f} s)"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Drain this batch" in result.stdout
    assert load.sent > 50, f"the load generator sent only {load.sent} requests"
    assert load.failed == [], Counter(load.failed)
    seen = _serving()
    assert {version for version, _ in seen} == {"1.1.0"}, seen
    assert {host for _, host in seen} == {APP1, APP2}, seen


def test_broken_release_stops_at_the_first_host_without_a_failed_request(tmp_path):
    wheelhouse = make_release(tmp_path / "wh-1.2.0", "1.2.0", broken=True)
    with Load() as load:
        time.sleep(2)
        result = run_playbook("playbooks/deploy.yml", "-e", "app_version=1.2.0", "-e",
                              f"app_wheelhouse_dir={wheelhouse}", "-e", "app_health_retries=5", timeout=600)
        time.sleep(2)
    print(load.report("broken release 1.2.0"))
    assert result.returncode != 0, "a release that cannot start was reported deployed"
    assert "failed its health gate" in result.stdout
    assert load.failed == [], Counter(load.failed)
    # The first app server is back on 1.1.0 but stays drained; the second never saw 1.2.0.
    assert _host(APP1).file("/opt/fleetdemo/current").linked_to.endswith("/1.1.0")
    assert _host(APP2).file("/opt/fleetdemo/current").linked_to.endswith("/1.1.0")
    seen = _serving()
    assert seen and {version for version, _ in seen} == {"1.1.0"}, seen
    assert {host for _, host in seen} == {APP2}, seen
    # A good deploy of the live release puts the drained host back.
    again = run_playbook("playbooks/deploy.yml", "-e", "app_version=1.1.0", "-e",
                         f"app_wheelhouse_dir={make_release(tmp_path / 'wh-1.1.0', '1.1.0')}", timeout=600)
    assert again.returncode == 0, again.stdout[-3000:]
    assert {host for _, host in _serving()} == {APP1, APP2}
