"""The database tier's bad input is refused by the postgresql and redis preflights, naming the variable.

One ansible-playbook run on the controller (connection local, nothing changes: preflight only asserts): each
inventory host is one case, with its variables as host_vars, so the cases run side by side in a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from preflight_cases import assert_outcome, first_failures, run_cases

REPO = Path(__file__).resolve().parents[3]

USERS = [{"name": "app", "password": "app-password-1234"}]
DATABASES = [{"name": "app", "owner": "app"}]
FLEET = {
    "postgresql_listen_addresses": ["127.0.0.1", "10.0.0.4"],
    "postgresql_remote_clients": ["10.0.1.5", "10.0.2.0/24", "fd00::7"],
}
CLIENT = {
    "postgresql_client_server": "good-fleet",
    "postgresql_client_user": "app",
    "postgresql_client_dir": "/etc/app/pki",
    "postgresql_client_group": "app",
}
REDIS_PASSWORD = "redis-password-0123456789"

# case: (role, variables, expected text or None when the input is good)
CASES: dict[str, tuple[str, dict, str | None]] = {
    "good-single": ("postgresql", {}, None),
    "good-single-no-remote": ("postgresql", {"postgresql_remote_clients": []}, None),
    "good-fleet": ("postgresql", {**FLEET, "postgresql_client_cert_auth": True}, None),
    "good-client": ("postgresql", CLIENT, None),
    "client-address-not-ip": (
        "postgresql", {**FLEET, "postgresql_remote_clients": ["10.0.1.5", "app1.example"]},
        "postgresql_remote_clients[1] must be an IP address or a CIDR network (e.g. 10.0.1.5 or 10.0.1.0/24), "
        "got 'app1.example'",
    ),
    "client-cidr-out-of-range": (
        "postgresql", {**FLEET, "postgresql_remote_clients": ["10.0.0.0/33"]},
        "postgresql_remote_clients[0] must be an IP address or a CIDR network",
    ),
    "remote-clients-loopback-listen": (
        "postgresql", {"postgresql_remote_clients": ["10.0.1.5"], "postgresql_listen_addresses": ["127.0.0.1", "::1"]},
        "postgresql_remote_clients is set (10.0.1.5) but postgresql_listen_addresses (127.0.0.1, ::1) is loopback only",
    ),
    "client-cert-without-tls": (
        "postgresql", {"postgresql_client_cert_auth": True},
        "postgresql_client_cert_auth needs postgresql_ssl",
    ),
    "remote-clients-without-tls": (
        "postgresql", {**FLEET, "postgresql_ssl": False},
        "postgresql_ssl is false but postgresql_remote_clients is set",
    ),
    "renew-not-below-lifetime": (
        "postgresql", {"postgresql_tls_days": 30, "postgresql_tls_renew_days": 30},
        "postgresql_tls_renew_days (30) must be at least 1 and less than postgresql_tls_days (30)",
    ),
    "tls-name-with-slash": (
        "postgresql", {"postgresql_tls_names": ["db.example", "10.0.0.0/8"]},
        "postgresql_tls_names[1] must be a DNS name or an IP address, got '10.0.0.0/8'",
    ),
    "database-name-with-quote": (
        "postgresql", {**FLEET, "postgresql_databases": [{"name": 'a"b', "owner": "app"}]},
        "postgresql_databases entry 'a\"b' cannot have a rule for postgresql_remote_clients",
    ),
    "client-server-not-in-inventory": (
        "postgresql", {**CLIENT, "postgresql_client_server": "db.nowhere"},
        "postgresql_client_server must be the inventory name of the database host whose CA signs this host's "
        "certificate, got 'db.nowhere' (not a host of the inventory)",
    ),
    "client-server-without-ca": (
        "postgresql", {**CLIENT, "postgresql_client_server": "good-single-no-remote"},
        "postgresql_client_server 'good-single-no-remote' does not run the PostgreSQL CA",
    ),
    "client-dir-relative": (
        "postgresql", {**CLIENT, "postgresql_client_dir": "pki"},
        "postgresql_client_dir must be an absolute directory",
    ),
    "client-user-empty": (
        "postgresql", {**CLIENT, "postgresql_client_user": ""},
        "postgresql_client_user must be the database role this host connects as",
    ),
    "redis-good-remote": ("redis", {"redis_bind": ["127.0.0.1", "-::1", "10.0.0.4"]}, None),
    "redis-bind-network": (
        "redis", {"redis_bind": ["127.0.0.1", "10.0.0.0/8"]},
        "redis_bind[1] must be an IP address of this host (a leading '-' marks it optional) or '*', got '10.0.0.0/8'",
    ),
    "redis-remote-short-password": (
        "redis", {"redis_bind": ["127.0.0.1", "10.0.0.4"], "redis_password": "short"},
        "redis_bind exposes Redis beyond loopback (10.0.0.4): redis_password is required",
    ),
}

PLAYBOOK = [
    {
        "name": "Preflight cases",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Preflight of the case's role",
                "ansible.builtin.include_role": {"name": "pyfleet.server.{{ case_role }}", "tasks_from": "preflight"},
            }
        ],
    }
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, str | None]:
    """{case: the failure message of its host, or None when the preflight passed}."""
    tmp = tmp_path_factory.mktemp("dbtier-preflight")
    hosts = {}
    for case, (role, variables, _expected) in CASES.items():
        base = {"postgresql_users": USERS, "postgresql_databases": DATABASES} if role == "postgresql" else {
            "redis_password": REDIS_PASSWORD}
        hosts[case] = {"case_role": role, **base, **variables}
    return first_failures(run_cases(tmp, hosts, PLAYBOOK))


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight(results, case):
    assert_outcome(case, results[case], CASES[case][2])


def test_postgresql_and_redis_read_the_collection_s_ip_pattern():
    ufw = (REPO / "roles/ufw/files/ip_network.regex").resolve()
    for role in ("postgresql", "redis"):
        link = REPO / "roles" / role / "files" / "ip_network.regex"
        assert link.is_symlink() and link.resolve() == ufw, role
