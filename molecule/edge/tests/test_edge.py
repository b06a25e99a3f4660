"""The edge scenario: the demo stack's edge outcomes, a broken template that never goes live, maintenance."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from edge_checks import (  # noqa: F401
    test_firewall_policy_and_rules,
    test_forced_rotation_keeps_the_app_logging,
    test_http_redirects_to_https_with_hsts,
    test_metrics_only_from_allowed_networks,
    test_nginx_running_and_config_valid,
    test_only_allowed_ports_answer_from_outside,
    test_private_keys_are_not_readable_by_others,
    test_proxy_reaches_the_app_over_https,
    test_sslyze_mozilla_intermediate,
    test_tls_versions,
)
from helpers import APP, molecule_hosts

testinfra_hosts = molecule_hosts("pyfleet")

REPO = Path(__file__).resolve().parents[3]
SITE = f"/etc/nginx/sites-available/{APP}.conf"


def _nginx_play(host, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         "--limit", host.backend.host, str(REPO / "molecule/edge/nginx-only.yml"), *extra],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )


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
