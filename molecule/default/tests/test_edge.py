"""The edge of the default stack (nginx TLS reverse proxy, ufw, logrotate), verified by its outcomes.

Also: a broken nginx template never reaches the running server, and the maintenance switch.
"""

from __future__ import annotations

import re
import subprocess
import uuid

import edge
import pytest
from helpers import APP, assert_running, http_json, molecule_hosts, run_playbook, wait_for

testinfra_hosts = molecule_hosts("pyfleet")

SITE = f"/etc/nginx/sites-available/{APP}.conf"
TLS_DIR = f"/etc/nginx/tls/{APP}"


def _curl(host, args: str) -> str:
    return host.check_output(f"curl -sS --max-time 10 --cacert {TLS_DIR}/ca.pem {args}")


def test_nginx_running_and_config_valid(host):
    assert_running(host, "nginx")
    assert host.run("nginx -t -q").rc == 0
    assert host.file(f"/etc/nginx/sites-enabled/{APP}.conf").linked_to == f"/etc/nginx/sites-available/{APP}.conf"
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_private_keys_are_not_readable_by_others(host):
    for key in ("ca.key", "selfsigned.key"):
        f = host.file(f"{TLS_DIR}/{key}")
        assert f.user == "root" and f.mode == 0o600, f"{key}: {f.user} {oct(f.mode)}"
    assert host.file(TLS_DIR).mode == 0o750


@pytest.mark.parametrize(("flag", "protocol", "ok"), [
    ("-tls1_2", "TLSv1.2", True),
    ("-tls1_3", "TLSv1.3", True),
    ("-tls1_1", "TLSv1.1", False),
    ("-tls1", "TLSv1", False),
])
def test_tls_versions(host, flag, protocol, ok):
    out = host.run(
        f"echo | openssl s_client -connect 127.0.0.1:443 -servername localhost {flag} -cipher DEFAULT@SECLEVEL=0"
    )
    # s_client prints "New, <protocol>, Cipher is <cipher>" for a completed handshake, "(NONE)" otherwise.
    negotiated = re.search(r"^New, (\S+), Cipher is (\S+)", out.stdout, re.M)
    handshake = out.rc == 0 and bool(negotiated) and negotiated.group(1) == protocol and negotiated.group(2) != "(NONE)"
    print(f"TLS handshake {flag}: {'accepted' if handshake else 'refused'}")
    assert handshake is ok, out.stdout[-800:] + out.stderr[-800:]


def test_http_redirects_to_https_with_hsts(host):
    head = _curl(host, "-o /dev/null -D - http://localhost/readyz")
    assert re.search(r"^HTTP/1.1 301", head, re.M), head
    assert "Location: https://localhost/readyz" in head, head
    head = _curl(host, "-o /dev/null -D - https://localhost/readyz")
    assert re.search(r"^HTTP/2 200", head, re.M), head
    assert "strict-transport-security: max-age=63072000" in head.lower(), head
    for header in ("x-content-type-options: nosniff", "x-frame-options: deny", "referrer-policy:"):
        assert header in head.lower(), head
    print("redirect + HSTS:", [line for line in head.splitlines() if "strict" in line.lower()])


def test_proxy_reaches_the_app_over_https(host):
    body = _curl(host, "https://localhost/readyz")
    assert '"database":"pass"' in body.replace(" ", ""), body


def test_metrics_only_from_allowed_networks(host):
    assert _curl(host, "-o /dev/null -w '%{http_code}' https://localhost/metrics") == "200"
    # The controller reaches the container from the Docker bridge, which nginx_metrics_allow does not list.
    ip = edge.container_ip(host)
    out = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", f"https://{ip}/metrics"],
                         capture_output=True, text=True, timeout=30, check=False).stdout
    print(f"/metrics from outside the allowed networks: HTTP {out}")
    assert out == "403"


def test_sslyze_mozilla_intermediate(host):
    verdict, out = edge.sslyze_verdict(host, "localhost", host.file(f"{TLS_DIR}/ca.pem").content_string)
    print(f"sslyze --mozilla_config=intermediate: {verdict}")
    assert "OK - Compliant" in verdict, out[-3000:]


def test_firewall_policy_and_rules(host):
    out = host.check_output("ufw status verbose")
    print(out)
    assert "Status: active" in out
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in out
    assert re.search(r"^22/tcp\s+LIMIT IN\s+Anywhere", out, re.M), out
    assert re.search(r"^443/tcp\s+ALLOW IN\s+Anywhere", out, re.M), out
    assert re.search(r"^5432/tcp\s+ALLOW IN\s+10\.0\.0\.0/8", out, re.M), out


def test_only_allowed_ports_answer_from_outside(host):
    # Throw-away listeners on every interface: 22 (no sshd in the test image) must get through, 9999 must not.
    for port in (22, 9999):
        host.run(f"systemd-run --unit pyfleet-listen-{port} python3 -m http.server --bind 0.0.0.0 {port}")
    try:
        for port in (22, 9999):  # both listening before the probe, or a slow start reads as "closed"
            assert wait_for(lambda p=port: host.socket(f"tcp://0.0.0.0:{p}").is_listening, timeout=60), port
        seen = edge.probe_ports(host, [22, 80, 443, 8000, 5432, 6379, 9999])
    finally:
        for port in (22, 9999):
            host.run(f"systemctl stop pyfleet-listen-{port}")
    print("ports seen from a second container:", {p: "open" if o else "closed" for p, o in seen.items()})
    assert seen == {22: True, 80: True, 443: True, 8000: False, 5432: False, 6379: False, 9999: False}


def test_forced_rotation_keeps_the_app_logging(host):
    log = f"/var/log/{APP}/app.log"
    http_json(host, "GET", "/readyz")
    host.run(f"rm -f {log}.1 {log}.2.gz")
    rules = f"/etc/logrotate.d/pyfleet-{APP} /etc/logrotate.d/pyfleet-nginx-{APP}"
    rotate = host.run(f"logrotate --force --verbose {rules}")
    assert rotate.rc == 0, rotate.stderr
    assert host.file(f"{log}.1").exists, rotate.stderr
    marker = f"/readyz?rotation={uuid.uuid4().hex[:8]}"
    http_json(host, "GET", marker)
    _curl(host, f"-o /dev/null https://localhost{marker}")
    new = host.file(log)
    assert new.user == APP and new.group == APP and new.mode == 0o640
    assert wait_for(lambda: "/readyz" in host.file(log).content_string, timeout=30), "the app stopped logging"
    path = marker.split("?", maxsplit=1)[0]
    access_log = host.file(f"/var/log/nginx/{APP}/access.log")
    assert wait_for(lambda: path in access_log.content_string, timeout=30), "nginx kept writing to the rotated file"
    print("rotation:", host.check_output(f"ls -l /var/log/{APP} /var/log/nginx/{APP}"))


def _nginx_play(host, *extra: str) -> subprocess.CompletedProcess:
    return run_playbook("molecule/default/nginx-only.yml", "--limit", host.backend.host, *extra, timeout=600)


def _status(host, path: str) -> str:
    return host.check_output(
        f"curl -s -o /dev/null -w '%{{http_code}}' --cacert /etc/nginx/tls/{APP}/ca.pem https://localhost{path}"
    )


def test_broken_template_never_reaches_the_running_server(host):
    before = host.file(SITE).sha256sum
    master = host.check_output("cat /run/nginx.pid")
    result = _nginx_play(host, "-e", "nginx_proxy_read_timeout=not-a-duration")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert "failed `nginx -t`" in out and "the previous configuration was kept" in out, out[-3000:]
    print("broken template refused:", [line.strip() for line in out.splitlines() if "nginx -t" in line][:2])
    assert host.file(SITE).sha256sum == before, "the broken site file stayed in place"
    assert host.check_output("cat /run/nginx.pid") == master
    assert host.run("nginx -t -q").rc == 0
    assert not host.run(f"ls /etc/nginx/sites-available/ | grep '^{APP}.conf.'").stdout.strip(), "backup left"
    assert _status(host, "/readyz") == "200"


def test_maintenance_switch(host):
    result = _nginx_play(host, "-e", "nginx_maintenance=true")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    try:
        assert _status(host, "/readyz") == "503"
        page = host.check_output(f"curl -s --cacert /etc/nginx/tls/{APP}/ca.pem https://localhost/")
        assert "Down for maintenance" in page, page
        assert _status(host, "/metrics") == "200"
    finally:
        result = _nginx_play(host, "-e", "nginx_maintenance=false")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert _status(host, "/readyz") == "200"
