"""Bad input is refused by site.yml's preflight, with the variable named, before the host changes at all."""

from __future__ import annotations

import json

import pytest
from testhost import ContainerHost

UBUNTU_2404 = """PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    h = ContainerHost(tmp_path_factory.mktemp("preflight")).start()
    yield h
    h.stop()


def _extra(**overrides) -> str:
    return json.dumps(overrides)


CASES = {
    "missing-secret": (
        _extra(app_env={"DATABASE_URL": "postgresql://u:p@127.0.0.1/db", "REDIS_URL": "redis://127.0.0.1"}),
        ["app_env is missing required variable(s) SECRET_KEY"],
    ),
    "empty-secret": (
        _extra(app_env={"SECRET_KEY": "", "DATABASE_URL": "postgresql://db", "REDIS_URL": "redis://r"}),
        ["app_env is missing required variable(s) SECRET_KEY"],
    ),
    "bad-port": (_extra(app_port=70000), ["app_port must be a TCP port between 1 and 65535", "70000"]),
    "port-not-a-number": (_extra(app_port="http"), ["app_port"]),
    "missing-wheelhouse": (
        _extra(app_wheelhouse_dir="/nonexistent/wheelhouse"),
        ["app_wheelhouse_dir ('/nonexistent/wheelhouse') must be a directory on the controller"],
    ),
    "short-redis-password": (_extra(redis_password="short"), ["redis_password is required and must be at least 16"]),
    "database-owner-unknown": (
        _extra(postgresql_databases=[{"name": "db", "owner": "nobody"}]),
        ["postgresql_databases entry 'db' must name an owner listed in postgresql_users"],
    ),
    "tls-files-missing": (
        _extra(nginx_tls_source="files", nginx_tls_cert_src="/nonexistent/cert.pem",
               nginx_tls_key_src="/nonexistent/key.pem"),
        ["nginx_tls_source 'files' needs readable files on the controller", "/nonexistent/cert.pem"],
    ),
    "acme-without-email": (
        _extra(nginx_tls_source="acme", nginx_server_names=["edge.example.org"]),
        ["nginx_tls_source 'acme' needs nginx_acme_email"],
    ),
    "acme-without-domain": (
        _extra(nginx_tls_source="acme", nginx_acme_email="ops@example.org", nginx_server_names=["localhost"]),
        ["at least one fully qualified domain"],
    ),
    "ufw-invalid-cidr": (
        _extra(ufw_rules=[{"port": 5432, "from": "10.0.0.0/33"}]),
        ["ufw_rules[0].from '10.0.0.0/33' is not 'any', an IP address or a valid CIDR network"],
    ),
    "ufw-rules-block-ssh": (
        _extra(ufw_rules=[{"port": "20:25", "rule": "deny"}]),
        ["ufw_rules[0] (deny 20:25) would block SSH on port 22"],
    ),
    "ufw-no-ssh-source": (_extra(ufw_ssh_from=[]), ["ufw would lock SSH out"]),
    "backup-cron-fields": (
        _extra(backup_schedules=[{"name": "databases", "components": ["postgresql"], "minute": "*/15", "hour": "*"}]),
        ["backup_schedules entry 'databases' uses cron fields (minute, hour)", "on_calendar: '*-*-* *:0/15:00'"],
    ),
    "backup-bad-calendar": (
        _extra(backup_schedules=[{"name": "nightly", "components": ["files"], "on_calendar": "every night"}]),
        ["backup_schedules entry 'nightly': on_calendar 'every night' is not a systemd calendar expression"],
    ),
    "backup-cron-enabled": (
        _extra(backup_cron_enabled=False),
        ["backup_cron_enabled is gone", "set backup_timers_enabled: false instead"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_before_anything_changes(host, case):
    extra, expected = CASES[case]
    before = host.state()
    result = host.playbook("playbooks/site.yml", "-e", extra)
    out = result.stdout + result.stderr
    assert result.returncode != 0, f"{case}: site.yml accepted bad input\n{out[-3000:]}"
    for text in expected:
        assert text in out, f"{case}: expected {text!r} in the output\n{out[-3000:]}"
    assert "changed=0" in out, f"{case}: something changed\n{out[-3000:]}"
    assert host.state() == before, f"{case}: the host changed"


def test_unsupported_os_is_refused(host):
    original = host.exec("cat /etc/os-release")
    host.exec(f"cp /etc/os-release /root/os-release.orig && printf '%s' '{UBUNTU_2404}' > /etc/os-release")
    try:
        before = host.state()
        result = host.playbook("playbooks/site.yml")
        out = result.stdout + result.stderr
        assert result.returncode != 0, out[-3000:]
        assert "Ubuntu 24.04 does not provide Python 3.11 from its own package archive" in out, out[-3000:]
        assert host.state() == before
    finally:
        host.exec("cp /root/os-release.orig /etc/os-release")
    assert host.exec("cat /etc/os-release") == original
