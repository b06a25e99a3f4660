"""The fleet as its users see it: one address in front of two app servers, a database tier only they reach, and
releases rolled over the app servers under load without a failed request.

Tests run in file order: the rolling deploys come last and leave the fleet on a newer release.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter

import pytest
import testinfra
from helpers import run_playbook
from load import Load, get_json
from releases import make_release

LB, APP1, APP2, DB = "pyfleet-fleet-lb", "pyfleet-fleet-app1", "pyfleet-fleet-app2", "pyfleet-fleet-db"
ADDRESS = {LB: "172.30.77.10", APP1: "172.30.77.11", APP2: "172.30.77.12", DB: "172.30.77.13"}
FRONT = f"https://{ADDRESS[LB]}"
SERVER_NAME = "fleet.test"


def _host(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


def _get(path: str) -> tuple[int, dict]:
    """One request through the load balancer, from the controller (a host outside the fleet)."""
    return get_json(FRONT + path, SERVER_NAME)


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


def _serving(samples: int = 24) -> Counter:
    """(version, host) of `samples` answers through the load balancer."""
    seen: Counter = Counter()
    for _sample in range(samples):
        body = _get("/healthz")[1]
        seen[(body["version"], body["host"])] += 1
    return seen


def _versions(seen: Counter) -> set[str]:
    return {version for version, _host in seen}


def _hosts(seen: Counter) -> set[str]:
    return {host for _version, host in seen}


def test_the_load_balancer_reaches_both_app_servers():
    seen = _serving()
    assert _hosts(seen) == {APP1, APP2}, seen
    assert _versions(seen) == {"1.0.0"}, seen


def test_readiness_through_the_load_balancer_sees_database_and_redis():
    status, body = _get("/readyz")
    assert status == 200, body
    assert body["checks"] == {"database": "pass", "redis": "pass"}, body


def test_the_morning_health_check_probes_the_app_servers():
    result = run_playbook("playbooks/healthcheck.yml", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    for name in (APP1, APP2):
        assert f"ok: [{name}]" in result.stdout
    # The load balancer and the database host have no app endpoint: left out, not counted as failed.
    recaps = {line.split()[0]: line for line in result.stdout.splitlines() if " ok=" in line}
    assert set(recaps) <= {LB, APP1, APP2, DB} and {APP1, APP2} <= set(recaps), result.stdout[-2000:]
    assert all("failed=0" in line for line in recaps.values()), recaps
    assert "All endpoints on all hosts are healthy" in result.stdout


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
    """The app believes X-Forwarded-For from the load balancers alone. Through the LB, the API's access log shows
    the controller's address (the Docker network's gateway), not the LB's. A forged header sent straight to an app
    server from the database host is ignored: the log shows the database host's address."""
    probe = f"xff-probe-{time.time_ns()}"
    for _request in range(4):  # both app servers get some
        _get(f"/healthz?{probe}")
    db = _host(DB)
    # Port 8000 is closed to the database host: open it for this one request, then close it again.
    app1 = _host(APP1)
    app1.run(f"ufw insert 1 allow from {ADDRESS[DB]} to any port 8000 proto tcp comment xff-test")
    try:
        forged = f"xff-forged-{time.time_ns()}"
        db.run(f"curl -s -H 'X-Forwarded-For: 203.0.113.7' 'http://{ADDRESS[APP1]}:8000/healthz?{forged}'")
    finally:
        app1.run(f"ufw delete allow from {ADDRESS[DB]} to any port 8000 proto tcp")
    logs = app1.run("journalctl -u fleetdemo-api --no-pager -n 400").stdout
    logs += _host(APP2).run("journalctl -u fleetdemo-api --no-pager -n 400").stdout
    probe_lines = [line for line in logs.splitlines() if probe in line]
    forged_lines = [line for line in logs.splitlines() if forged in line]
    assert probe_lines and all("172.30.77.1:" in line for line in probe_lines), probe_lines
    assert forged_lines and all(f"{ADDRESS[DB]}:" in line for line in forged_lines), forged_lines
    assert not any("203.0.113.7" in line for line in forged_lines), "a forged X-Forwarded-For was believed"


def test_rolling_deploy_under_load_drops_no_request(tmp_path):
    wheelhouse = make_release(tmp_path / "wh-1.1.0", "1.1.0")
    with Load(FRONT + "/healthz", SERVER_NAME) as load:
        time.sleep(2)
        started = time.monotonic()
        result = run_playbook("playbooks/deploy.yml", "-e", "app_version=1.1.0", "-e",
                              f"app_wheelhouse_dir={wheelhouse}", timeout=900)
        rollout = time.monotonic() - started
        time.sleep(2)
    print(load.report(f"rolling deploy 1.0.0 -> 1.1.0 ({rollout:.0f} s)"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Drain this batch" in result.stdout
    assert load.sent > 50, f"the load generator sent only {load.sent} requests"
    assert load.failed == [], Counter(load.failed)
    seen = _serving()
    assert _versions(seen) == {"1.1.0"}, seen
    assert _hosts(seen) == {APP1, APP2}, seen


def test_broken_release_stops_at_the_first_host_without_a_failed_request(tmp_path):
    wheelhouse = make_release(tmp_path / "wh-1.2.0", "1.2.0", broken=True)
    with Load(FRONT + "/healthz", SERVER_NAME) as load:
        time.sleep(2)
        result = run_playbook("playbooks/deploy.yml", "-e", "app_version=1.2.0", "-e",
                              f"app_wheelhouse_dir={wheelhouse}", "-e", "app_health_retries=5", timeout=900)
        time.sleep(2)
    print(load.report("broken release 1.2.0"))
    assert result.returncode != 0, "a release that cannot start was reported deployed"
    assert "failed its health gate" in result.stdout
    assert load.failed == [], Counter(load.failed)
    # The first app server is back on 1.1.0 but stays drained; the second never saw 1.2.0.
    assert _host(APP1).file("/opt/fleetdemo/current").linked_to.endswith("/1.1.0")
    assert _host(APP2).file("/opt/fleetdemo/current").linked_to.endswith("/1.1.0")
    seen = _serving()
    assert seen and _versions(seen) == {"1.1.0"}, seen
    assert _hosts(seen) == {APP2}, seen
    # A good deploy of the live release puts the drained host back.
    again = run_playbook("playbooks/deploy.yml", "-e", "app_version=1.1.0", "-e",
                         f"app_wheelhouse_dir={make_release(tmp_path / 'wh-1.1.0', '1.1.0')}", timeout=900)
    assert again.returncode == 0, again.stdout[-3000:]
    assert _hosts(_serving()) == {APP1, APP2}
