"""The exporters role's bad input is refused by its preflight, naming the variable (one ansible-playbook run on the
controller, one local host per case; preflight only asserts, nothing changes)."""

from __future__ import annotations

import pytest
from preflight_cases import assert_outcome, first_failures, run_cases

LISTEN = "exporters_listen_address must be one IP address of this host"
PORTS = "exporters_ports needs exactly the keys node, postgres and redis, each a different TCP port"

# case: (variables, expected text or None when the input is good)
CASES: dict[str, tuple[dict, str | None]] = {
    "good-loopback": ({}, None),
    "good-fleet-with-redis": ({"exporters_listen_address": "10.0.0.4", "exporters_redis": True,
                               "exporters_redis_password": "redis-password-0123456789"}, None),
    "good-ipv6": ({"exporters_listen_address": "fd00::4"}, None),
    "every-interface": ({"exporters_listen_address": "0.0.0.0"}, LISTEN),
    "every-interface-v6": ({"exporters_listen_address": "::"}, LISTEN),
    "a-name": ({"exporters_listen_address": "db1.example"}, LISTEN + " that the monitoring host reaches"),
    "a-network": ({"exporters_listen_address": "10.0.0.0/8"}, LISTEN),
    "ports-shared": ({"exporters_ports": {"node": 9100, "postgres": 9100, "redis": 9121}}, PORTS),
    "ports-missing": ({"exporters_ports": {"node": 9100, "postgres": 9187}}, PORTS),
    "ports-unknown-key": ({"exporters_ports": {"node": 9100, "postgres": 9187, "redis": 9121, "mongo": 9216}}, PORTS),
    "port-out-of-range": ({"exporters_ports": {"node": 70000, "postgres": 9187, "redis": 9121}}, PORTS),
    "textfile-relative": ({"exporters_textfile_directory": "metrics"},
                          "exporters_textfile_directory must be an absolute path"),
    "postgres-port-bad": ({"exporters_postgres_port": 0}, "exporters_postgres_port and exporters_redis_port TCP ports"),
    "redis-password-two-lines": ({"exporters_redis": True, "exporters_redis_password": "one\ntwo"},
                                 "exporters_redis_password must be a string on one line"),
}

PLAYBOOK = [
    {
        "name": "Preflight cases",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [{"name": "Preflight of the exporters", "ansible.builtin.include_role": {
            "name": "pyfleet.server.exporters", "tasks_from": "preflight"}}],
    }
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, str | None]:
    tmp = tmp_path_factory.mktemp("exporters-preflight")
    return first_failures(run_cases(tmp, {case: variables for case, (variables, _message) in CASES.items()}, PLAYBOOK))


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight(results, case):
    assert_outcome(case, results[case], CASES[case][1])
