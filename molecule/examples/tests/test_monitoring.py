"""Diet Planner watches itself (issue 13): site.yml's Monitoring play put Prometheus, Alertmanager and
blackbox_exporter on the host, the exporters on loopback, targets from the inventory. Every target is up; stopping
the API fires ApiDown and AppDown, visible in Alertmanager's API and delivered to a webhook receiver this test runs on
the host (converge.yml's override points Alertmanager at it and shortens `for:`); the API is started again and the
host left healthy for the tests after this one. A backup run made to fail fires SystemdUnitFailed; with the good
sets moved away it fires BackupTooOld. A certificate about to expire, served by nginx, fires CertificateExpiringSoon.
Each test puts back what it changed and sees its alert resolve."""

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


def _health_url() -> str:
    """The health probe's target: the app's readiness path through the host's own nginx TLS (wiring.yml)."""
    path = example_vars("dietplanner")["app_health_url"].split(":5001", 1)[1]
    return f"https://127.0.0.1:443{path}"


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
    # postgres_exporter's own query file (WalArchiveFailing/WalArchiveLagging): PostgreSQL's archiver statistics.
    for metric in ("last_success_timestamp_seconds", "last_failure_timestamp_seconds", "oldest_pending_age_seconds"):
        series = _query(f'pyfleet_wal_archive_{metric}{{job="postgres"}}')
        assert [r["metric"]["host"] for r in series] == ["dietplanner1"], (metric, series)
    health = _query(f'probe_success{{job="health-{app}"}}')
    assert [(r["metric"]["instance"], r["value"][1]) for r in health] == [(_health_url(), "1")], health
    # Through nginx's TLS, verified (no insecure_skip_verify) against the site's local CA under the site's name.
    assert _query(f'probe_http_ssl{{job="health-{app}"}} == 1'), "the health probe did not use TLS"
    blackbox = _dp().file("/etc/prometheus/blackbox.yml").content_string
    assert "insecure_skip_verify" not in blackbox.split("tls_connect:")[0], blackbox
    assert _dp().file("/etc/prometheus/pyfleet-blackbox-ca.pem").content_string == _dp().file(
        f"/etc/nginx/tls/{app}/ca.pem").content_string


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
        # The probe went through nginx: it answered 502 (no upstream) for the health URL.
        assert api_down[0]["labels"]["instance"] == _health_url(), api_down
        assert wait_for(lambda: _query(f'probe_http_status_code{{job="health-{app}"}} == 502'), timeout=20), \
            _query(f'probe_http_status_code{{job="health-{app}"}}')
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


def test_an_expiring_certificate_fires_certificate_expiring_soon():
    """nginx serves a certificate that expires in 2 days (the threshold is 30), signed by the site's own local CA for
    the site's names: the TLS probe reads its expiry and CertificateExpiringSoon fires for the app and that endpoint,
    while the health probe (which verifies the certificate) stays green. The original comes back and it resolves."""
    dp = _dp()
    settings = example_vars("dietplanner")
    app = settings["app_name"]
    tls = f"/etc/nginx/tls/{app}"
    chain = f"{tls}/selfsigned-fullchain.pem"
    assert chain in dp.check_output("nginx -T 2>/dev/null | grep ssl_certificate"), "nginx serves another file"
    names = ",".join(f"DNS:{name}" for name in settings["nginx_server_names"])

    def fired():
        return [a for a in _firing("CertificateExpiringSoon") if a["labels"].get("app") == app]

    assert wait_for(lambda: not fired(), timeout=60, interval=2), "CertificateExpiringSoon fires before the test"
    dp.check_output(f"cp -a {chain} {chain}.test-saved")
    try:
        dp.check_output(
            f"set -e; cd /tmp; printf 'subjectAltName={names}\\n' > short.ext;"
            f" openssl req -new -key {tls}/selfsigned.key -subj /CN={settings['nginx_server_names'][0]} -out short.csr;"
            f" openssl x509 -req -in short.csr -CA {tls}/ca.pem -CAkey {tls}/ca.key -set_serial 0x$(openssl rand"
            f" -hex 8) -days 2 -extfile short.ext -out short.pem;"
            f" cat short.pem {tls}/ca.pem > {chain}; rm -f short.ext short.csr short.pem;"
            " nginx -t -q && systemctl reload nginx")
        alert = wait_for(fired, timeout=60, interval=2)
        assert alert, _query(f'probe_ssl_earliest_cert_expiry{{job="tls-{app}"}} - time()')
        labels = alert[0]["labels"]
        expected = ("127.0.0.1:443", f"tls-{app}", "warning")
        assert (labels["instance"], labels["job"], labels["severity"]) == expected, labels
        days = float(_query(f'(probe_ssl_earliest_cert_expiry{{job="tls-{app}"}} - time()) / 86400')[0]["value"][1])
        assert 1 < days <= 2, days
        # The short-lived certificate is trusted: the health probe through nginx still succeeds.
        assert [r["value"][1] for r in _query(f'probe_success{{job="health-{app}"}}')] == ["1"]
    finally:
        dp.run(f"mv {chain}.test-saved {chain} && systemctl reload nginx")
    assert wait_for(lambda: not fired(), timeout=60, interval=2), fired()


def test_a_backup_without_a_good_set_fires_backup_too_old():
    """No good set left (the sets moved away, as a wiped disk would) and a scheduled run that fails (it finds the
    app's lock taken, as during a restore) and publishes the metrics from the sets on disk: the newest good set's time
    is 0, older than twice the schedule's interval, and BackupTooOld fires for the app, component and host. The sets,
    configuration and metrics are put back and it resolves. (A good run first, so the test does not depend on
    earlier ones.)"""
    dp = _dp()
    app = example_vars("dietplanner")["app_name"]
    unit = f"pyfleet-backup-{app}-databases.service"
    config = f"/etc/pyfleet/backup/{app}.json"
    root = f"/var/backups/pyfleet/{app}"
    aside = f"/var/backups/pyfleet/.{app}.test-moved"
    program = dp.check_output(f"systemctl show -p ExecStart --value {unit}").split("path=", 1)[1].split(" ", 1)[0]
    metric = f'pyfleet_backup_last_success_timestamp_seconds{{app="{app}",component="postgresql"}}'

    def fired():
        # Only the databases' component: the example's weekly files schedule has never run here (its 0 fires too).
        return [a for a in _firing("BackupTooOld")
                if a["labels"].get("app") == app and a["labels"].get("component") == "postgresql"]

    # A good scheduled run first: quiet.
    dp.check_output(f"systemctl start {unit}")
    assert wait_for(lambda: _query(f"{metric} > 0") and not fired(), timeout=60, interval=2), (_query(metric),
                                                                                               fired())
    sets = dp.check_output(f"find {root} -mindepth 1 -maxdepth 1 -type d -name '[!.]*' -printf '%f\\n'").split()
    assert sets, f"no backup set in {root}"
    dp.check_output(f"cp -a {config} {config}.test-saved && mkdir -p {aside}")
    try:
        dp.check_output(f"cd {root} && mv {' '.join(sets)} {aside}/")
        # Give up at once on a taken lock (the default waits an hour), and hold the lock the whole run.
        dp.check_output(f"python3 -c \"import json; p='{config}'; c=json.load(open(p)); c['lock_wait_timeout']=0;"
                        f" json.dump(c, open(p, 'w'))\"")
        run = dp.run(f"flock {root}/.lock systemctl start {unit}")
        assert run.rc != 0, f"{unit} did not fail"
        assert "is held by" in dp.check_output(f"journalctl -q -u {unit} -n 20"), "not the lock"
        alert = wait_for(fired, timeout=60, interval=2)
        assert alert, _query(metric)
        labels = alert[0]["labels"]
        expected = ("postgresql", "dietplanner1", "critical")
        assert (labels["component"], labels["host"], labels["severity"]) == expected, labels
        assert _query(metric)[0]["value"][1] == "0"
    finally:
        dp.run(f"mv {aside}/* {root}/ && rmdir {aside}")
        dp.run(f"mv {config}.test-saved {config}")
        dp.run(f"systemctl reset-failed {unit} 'pyfleet-backup-failed@*'")
        dp.run(f"{program} --config {config} --publish-metrics")
    assert wait_for(lambda: not fired(), timeout=60, interval=2), fired()
    assert float(_query(metric)[0]["value"][1]) > 0, _query(metric)
