"""Diet Planner watches itself (issue 13): site.yml's Monitoring play put Prometheus, Alertmanager and
blackbox_exporter on the host, the exporters on loopback, targets from the inventory. Every target is up; stopping
the API fires ApiDown and AppDown, visible in Alertmanager's API and delivered to a webhook receiver this test runs on
the host (converge.yml's override points Alertmanager at it and shortens `for:`); the API is started again and the
host left healthy for the tests after this one. A backup run made to fail fires SystemdUnitFailed."""

from __future__ import annotations

import json
import re

import pytest
from helpers import wait_for
from seed_examples import example_vars, host

PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
WEBHOOK_PORT = 9199  # converge.yml's override: monitoring_alertmanager_receivers
WEBHOOK_LOG = "/tmp/pyfleet-test-webhook.jsonl"
WEBHOOK_UNIT = "pyfleet-test-webhook"
# A webhook receiver: every POST body on one line of WEBHOOK_LOG.
WEBHOOK = f"""
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('content-length', 0)))
        with open({WEBHOOK_LOG!r}, 'ab') as f:
            f.write(body.replace(b'\\n', b' ') + b'\\n')
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(('127.0.0.1', {WEBHOOK_PORT}), H).serve_forever()
"""


def _dp():
    return host("dietplanner")


def _get(url: str, *params: str):
    """GET from inside the host; params are name=value pairs, URL-encoded by curl (PromQL has braces and quotes)."""
    encoded = "".join(f" --data-urlencode '{p}'" for p in params)
    result = _dp().run(f"curl -sfG --max-time 5 '{url}'{encoded}")
    return json.loads(result.stdout) if result.rc == 0 and result.stdout else None


def _query(expr: str) -> list[dict]:
    data = _get(f"{PROMETHEUS}/api/v1/query", f"query={expr}")
    return data["data"]["result"] if data else []


def _targets() -> list[dict]:
    data = _get(f"{PROMETHEUS}/api/v1/targets", "state=active")
    return data["data"]["activeTargets"] if data else []


def _firing(alertname: str) -> list[dict]:
    alerts = _get(f"{ALERTMANAGER}/api/v2/alerts", "active=true", "silenced=false", "inhibited=false") or []
    return [a for a in alerts if a["labels"].get("alertname") == alertname and a["status"]["state"] == "active"]


def _healthy() -> bool:
    return _dp().run("curl -sf --max-time 5 http://127.0.0.1:5001/api/health").rc == 0


def test_every_target_is_up():
    """Each job the inventory calls for is scraped, and every target answers (health 'up')."""
    app = example_vars("dietplanner")["app_name"]
    expected = {"prometheus", "alertmanager", "blackbox", "node", "postgres",
                f"app-{app}", f"health-{app}", f"tls-{app}"}

    def all_up():
        targets = _targets()
        jobs = {t["labels"]["job"] for t in targets}
        return targets if expected <= jobs and all(t["health"] == "up" for t in targets) else None

    targets = wait_for(all_up, timeout=60, interval=2)
    assert targets, [(t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"]) for t in _targets()]
    # No Redis on this host: no redis target.
    assert "redis" not in {t["labels"]["job"] for t in targets}
    # The exporters see what they watch: PostgreSQL (as the pg_monitor role), the systemd units, and the health probe
    # through blackbox_exporter succeeds (so ApiDown below starts quiet).
    assert [r["value"][1] for r in _query("pg_up")] == ["1"], _query("pg_up")
    assert _query('node_systemd_unit_state{name="postgresql.service",state="active"}==1'), "no systemd collector"
    assert [r["value"][1] for r in _query(f'probe_success{{job="health-{app}"}}')] == ["1"]


def test_exporters_listen_on_loopback_only():
    """This host is its own monitoring host: node_exporter and postgres_exporter on 127.0.0.1 alone, no
    redis_exporter, and no password in any exporter's command line."""
    listeners = _dp().check_output("ss -Hltn")
    for port in (9100, 9187):
        addresses = re.findall(rf"\s(\S+):{port}\s", listeners)
        assert addresses == ["127.0.0.1"], (port, listeners)
    assert not re.search(r":9121\s", listeners), listeners
    for unit in ("prometheus-node-exporter", "prometheus-postgres-exporter"):
        svc = _dp().service(unit)
        assert svc.is_running and svc.is_enabled, unit
    args = _dp().check_output("ps -eo args | grep -i exporter | grep -v grep")
    assert "password" not in args.lower(), args


@pytest.fixture
def webhook():
    """A webhook receiver on the host for the length of one test (a transient systemd unit)."""
    dp = _dp()
    dp.run(f"rm -f {WEBHOOK_LOG}; systemctl stop {WEBHOOK_UNIT} 2>/dev/null; systemctl reset-failed {WEBHOOK_UNIT}")
    dp.check_output(f"systemd-run --unit {WEBHOOK_UNIT} python3 -c \"{WEBHOOK}\"")
    assert wait_for(lambda: f":{WEBHOOK_PORT} " in dp.check_output("ss -Hltn"), timeout=10)
    yield lambda: [json.loads(line) for line in dp.run(f"cat {WEBHOOK_LOG}").stdout.splitlines() if line]
    dp.run(f"systemctl stop {WEBHOOK_UNIT}")


def test_stopping_the_api_fires_api_down_and_delivers_it(webhook):
    dp = _dp()
    app = example_vars("dietplanner")["app_name"]
    # Quiet first. An earlier test (a restore through restore.yml) stops the API for a while and ApiDown may still be
    # active in Alertmanager: it resolves one rule evaluation after the probe succeeds again.
    assert _healthy(), "the API is not healthy before the test"
    assert wait_for(lambda: not _firing("ApiDown"), timeout=120, interval=2), "ApiDown fires while the API is healthy"
    # The socket unit too: it holds the port and would start the API again at the next probe.
    dp.check_output(f"systemctl stop {app}-api.socket {app}-api.service")
    try:
        api_down = wait_for(lambda: _firing("ApiDown"), timeout=60, interval=2)
        assert api_down, "ApiDown never fired in Alertmanager"
        assert api_down[0]["labels"]["app"] == app and api_down[0]["labels"]["severity"] == "critical", api_down
        assert wait_for(lambda: _firing("AppDown"), timeout=30, interval=2), "AppDown never fired"

        def delivered():
            return [a for body in webhook() if body.get("status") == "firing"
                    for a in body["alerts"] if a["labels"]["alertname"] == "ApiDown"]

        sent = wait_for(delivered, timeout=60, interval=2)
        assert sent and sent[0]["labels"]["app"] == app, webhook()
    finally:
        dp.run(f"systemctl start {app}-api.socket {app}-api.service")
        assert wait_for(_healthy, timeout=60, interval=1), "the API did not come back"
    # Healthy again: the probe succeeds and ApiDown resolves.
    assert wait_for(lambda: not _firing("ApiDown"), timeout=60, interval=2), "ApiDown still fires"


def test_a_failed_backup_fires_systemd_unit_failed():
    """A scheduled backup run that fails (its configuration made unreadable for one run) leaves its unit failed:
    SystemdUnitFailed fires for that unit. The configuration is put back and the unit's failed state cleared."""
    dp = _dp()
    app = example_vars("dietplanner")["app_name"]
    unit = f"pyfleet-backup-{app}-databases.service"
    config = f"/etc/pyfleet/backup/{app}.json"
    assert dp.file(config).exists, config

    def fired():
        return [a for a in _firing("SystemdUnitFailed") if a["labels"].get("name") == unit]

    dp.check_output(f"mv {config} {config}.test-moved")
    try:
        assert dp.run(f"systemctl start {unit}").rc != 0, f"{unit} did not fail"
        alert = wait_for(fired, timeout=60, interval=2)
        assert alert and alert[0]["labels"]["host"] == "dietplanner1", _firing("SystemdUnitFailed")
    finally:
        dp.run(f"mv {config}.test-moved {config}")
        dp.run(f"systemctl reset-failed {unit} 'pyfleet-backup-failed@*'")
    assert wait_for(lambda: not fired(), timeout=60, interval=2), fired()
