"""The system role's preflight refuses bad unattended-upgrades and journald settings, naming the variable (issue 13,
item 5). One ansible-playbook run on the controller, one local host per case (preflight only asserts and runs the
read-only `systemd-analyze timespan`)."""

from __future__ import annotations

import pytest
from preflight_cases import assert_outcome, first_failures, run_cases

# case: (variables, expected text or None when the input is good)
CASES: dict[str, tuple[dict, str | None]] = {
    "good-defaults": ({}, None),
    "good-off": ({"system_unattended_upgrades": False, "system_journald_max_retention": "2weeks",
                  "system_journald_system_max_use": "2G"}, None),
    "retention-not-a-span": (
        {"system_journald_max_retention": "30 dayz"},
        "system_journald_max_retention '30 dayz' is not a systemd time span",
    ),
    "max-use-not-a-size": ({"system_journald_system_max_use": "2 GB"}, "system_journald_system_max_use a size"),
    "storage-unknown": (
        {"system_journald_storage": "disk"}, "system_journald_storage must be one of: persistent, auto, volatile",
    ),
    "origin-with-quote": (
        {"system_unattended_upgrades_origins": ['origin=Debian";']}, "system_unattended_upgrades_origins must be",
    ),
    "reboot-time": ({"system_unattended_upgrades_reboot_time": "4am"}, "system_unattended_upgrades_reboot_time a time"),
}

PLAYBOOK = [
    {
        "name": "Preflight cases",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [{"name": "Preflight of the system role",
                   "ansible.builtin.include_role": {"name": "pyfleet.server.system", "tasks_from": "preflight"}}],
    }
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, str | None]:
    tmp = tmp_path_factory.mktemp("system-preflight")
    return first_failures(run_cases(tmp, {case: variables for case, (variables, _e) in CASES.items()}, PLAYBOOK))


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight(results, case):
    assert_outcome(case, results[case], CASES[case][1])
