"""Zero-downtime release on one server, and which forwarded headers the API trusts (issue 10, parts 3 and 4).

Runs last (pytest's file order): it deploys a new release while a load generator inside the host sends requests
through nginx for the whole rollout. The API's port belongs to <app>-api.socket, so the restart of the API
service only makes new connections wait in the socket's backlog: not one request may fail.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

from helpers import APP, http_json, journal, molecule_hosts, run_playbook, wait_for
from releases import make_release

testinfra_hosts = molecule_hosts("pyfleet")

API_UNIT = f"{APP}-api.service"
SOCKET_UNIT = f"{APP}-api.socket"
NEW = "1.0.3"
# The trusted front ends after the deploy below: nginx's loopback address and one more loopback address.
TRUSTED = ["127.0.0.1", "127.0.0.3"]
# Resource limits the same deploy sets on every app unit.
LIMITS = {"app_memory_max": "1G", "app_cpu_quota": "150%", "app_tasks_max": "512"}

# The load generator, run inside the host (loopback only) as a transient unit: THREADS clients, each on a keep-alive
# HTTPS connection to nginx, GET /healthz in a loop until STOP exists or MAX_SECONDS passed (it stops by itself).
# Every answer that is not a 200 with a version, and every connection error, is a failure. Responses that arrive
# once AFTER exists are counted apart (the rollout is over by then). Writes a JSON summary to OUT.
LOAD = textwrap.dedent("""\
    import http.client, json, os, ssl, threading, time
    THREADS, MAX_SECONDS, PAUSE = 2, 900, 0.05
    STOP, AFTER, OUT = "/tmp/zd-load.stop", "/tmp/zd-load.after", "/tmp/zd-load.json"
    CTX = ssl.create_default_context(cafile="/etc/nginx/tls/%(app)s/ca.pem")
    lock = threading.Lock()
    stats = {"sent": 0, "failed": 0, "errors": [], "versions": {}, "after": {}, "slowest_ms": 0}

    def client():
        deadline = time.monotonic() + MAX_SECONDS
        conn = None
        while time.monotonic() < deadline and not os.path.exists(STOP):
            after = os.path.exists(AFTER)
            start = time.monotonic()
            error, version = None, None
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection("localhost", 443, timeout=60, context=CTX)
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    error = "HTTP %%d" %% resp.status
                else:
                    version = json.loads(body)["version"]
                if resp.will_close:
                    conn.close()
                    conn = None
            except Exception as exc:  # every kind of failure counts
                error = "%%s: %%s" %% (type(exc).__name__, exc)
                if conn is not None:
                    conn.close()
                conn = None
            elapsed = (time.monotonic() - start) * 1000
            with lock:
                stats["sent"] += 1
                stats["slowest_ms"] = max(stats["slowest_ms"], round(elapsed))
                if error:
                    stats["failed"] += 1
                    if len(stats["errors"]) < 10:
                        stats["errors"].append(error)
                else:
                    seen = stats["after"] if after else stats["versions"]
                    seen[version] = seen.get(version, 0) + 1
            time.sleep(PAUSE)

    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(OUT + ".tmp", "w") as f:
        json.dump(stats, f)
    os.rename(OUT + ".tmp", OUT)
""") % {"app": APP}


def deploy(version: str, wheelhouse: Path, **more) -> subprocess.CompletedProcess:
    extra = {"app_version": version, "app_wheelhouse_dir": str(wheelhouse), "app_health_retries": 5, **more}
    return run_playbook("playbooks/deploy.yml", "-e", json.dumps(extra))


def seen_client(host, source: str, forged: str) -> str:
    """The client address the API logs for a request straight to it from `source`, with a forged X-Forwarded-For."""
    probe = uuid.uuid4().hex
    host.check_output(
        f"curl -sS -o /dev/null --max-time 10 --interface {source} -H 'X-Forwarded-For: {forged}' "
        f"http://127.0.0.1:8000/healthz?probe={probe}"
    )

    def logged():
        out = host.run(f"journalctl -u {API_UNIT} --no-pager -o cat --since -5min | grep -F {probe}").stdout
        return out.strip()

    line = wait_for(logged, timeout=10, interval=0.5)
    assert line, f"no access log line for probe {probe}; journal:\n{journal(host, API_UNIT)}"
    return line.split(" - ", 1)[0].rsplit(":", 1)[0]


def test_the_api_port_belongs_to_a_socket_unit(host):
    socket = host.service(SOCKET_UNIT)
    assert socket.is_running and socket.is_enabled, journal(host, SOCKET_UNIT)
    props = host.service(API_UNIT).systemd_properties
    assert SOCKET_UNIT in props["Requires"].split(), props["Requires"]
    listen = host.check_output(f"systemctl show -p Listen --value {SOCKET_UNIT}")
    assert listen == "127.0.0.1:8000 (Stream)", listen


def test_a_release_goes_live_under_load_without_a_failed_request(host, tmp_path):
    code, body = http_json(host, "GET", "/healthz")
    assert code == 200, body
    old = body["version"]
    assert old != NEW
    host.check_output("rm -f /tmp/zd-load.stop /tmp/zd-load.after /tmp/zd-load.json")
    host.check_output(f"cat > /tmp/zd-load.py <<'EOF'\n{LOAD}EOF")
    unit = f"zd-load-{uuid.uuid4().hex[:8]}"
    host.check_output(f"systemd-run --unit {unit} --collect -p RuntimeMaxSec=960 /usr/bin/python3 /tmp/zd-load.py")
    try:
        time.sleep(3)  # the load runs before the deploy starts
        started = time.monotonic()
        result = deploy(NEW, make_release(tmp_path / "new", NEW), app_forwarded_allow_ips=TRUSTED, **LIMITS)
        took = time.monotonic() - started
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        host.check_output("touch /tmp/zd-load.after")
        time.sleep(3)  # a few seconds of load on the new release
    finally:
        host.run("touch /tmp/zd-load.stop")
    summary = wait_for(lambda: host.file("/tmp/zd-load.json").exists, timeout=90, interval=1)
    assert summary, f"the load generator wrote no summary:\n{journal(host, unit)}"
    stats = json.loads(host.file("/tmp/zd-load.json").content_string)
    print(
        f"zero-downtime deploy {old} -> {NEW} ({took:.0f} s): requests sent {stats['sent']}, "
        f"failed {stats['failed']}, slowest {stats['slowest_ms']} ms; versions during the rollout "
        f"{stats['versions']}, after it {stats['after']}"
    )
    assert stats["failed"] == 0, stats["errors"]
    assert stats["versions"].get(old, 0) > 0, stats  # the load really ran while the old release was live
    assert sum(stats["after"].values()) > 0, stats
    assert set(stats["after"]) == {NEW}, stats
    assert host.file(f"/opt/{APP}/current").linked_to == f"/opt/{APP}/releases/{NEW}"


def test_forwarded_headers_are_trusted_from_the_listed_front_ends_only(host):
    """A forged X-Forwarded-For changes the client address the app sees only from app_forwarded_allow_ips."""
    assert seen_client(host, "127.0.0.1", "203.0.113.7") == "203.0.113.7"
    assert seen_client(host, "127.0.0.3", "203.0.113.8") == "203.0.113.8"
    assert seen_client(host, "127.0.0.2", "203.0.113.9") == "127.0.0.2"


def test_resource_limits_reach_every_app_unit(host):
    for unit in (API_UNIT, f"{APP}-worker.service", f"{APP}-beat.service"):
        props = host.check_output(f"systemctl show -p MemoryMax -p CPUQuotaPerSecUSec -p TasksMax {unit}")
        assert sorted(props.splitlines()) == ["CPUQuotaPerSecUSec=1.500000s", "MemoryMax=1073741824", "TasksMax=512"], (
            unit, props)


def test_preflight_names_a_bad_forwarder_or_limit(host):
    """Refused in preflight (check mode, preflight only: cheap), before anything changes."""
    def preflight(**bad) -> str:
        extra = {"app_allow_downgrade": True, **bad}  # the inventory's app_version is older than the live one
        result = run_playbook("playbooks/deploy.yml", "--check", "--tags", "app_preflight", "-e", json.dumps(extra))
        out = " ".join((result.stdout + result.stderr).split())  # the YAML callback wraps long messages
        assert result.returncode != 0, out[-4000:]
        return out

    out = preflight(app_forwarded_allow_ips=["127.0.0.1", "10.0.0.1/8"])
    assert "app_forwarded_allow_ips entry '10.0.0.1/8' must be an IP address, a CIDR network without host bits" in out
    out = preflight(app_memory_max="lots", app_cpu_quota="1.5")
    assert "app_memory_max must be a size such as 1G or 512M, a percentage or infinity (got lots)" in out, out[-4000:]
    assert "app_cpu_quota must be a percentage such as 150% (got 1.5)" in out, out[-4000:]
