"""The jobs role's preflight refuses bad pyfleet_jobs entries, naming the job and the key (issue 13, item 4).

One ansible-playbook run on the controller (connection local, nothing changes: the preflight only asserts and runs
the read-only `systemd-analyze calendar`): each inventory host is one case, with its variables as host_vars.
"""

from __future__ import annotations

import pytest
from preflight_cases import assert_outcome, first_failures, run_cases

APP = {
    "jobs_app_user": "demo", "jobs_app_group": "demo", "jobs_app_root": "/opt/demo",
    "jobs_app_env_file": "/etc/demo/demo.env", "jobs_app_read_write_paths": ["/var/lib/demo", "/var/log/demo"],
}
HOSTS = {"jobs_postgresql_hosts": ["db1"], "jobs_app_hosts": ["app1", "app2"], **APP}
VACUUM = {"name": "vacuum", "on_calendar": "Sun *-*-* 03:00:00", "sql": "VACUUM ANALYZE;", "database": "demo"}
WARM = {"name": "warm-cache", "on_calendar": "*-*-* 0/6:00:00", "command": "demo-admin warm-cache --all"}

# case: (jobs_list, extra variables, expected text or None when the input is good)
CASES: dict[str, tuple[list, dict, str | None]] = {
    "good": ([VACUUM, WARM, {**WARM, "name": "everywhere", "run_on": "all", "timeout": "30min",
                             "randomized_delay": 300, "enabled": False}], {}, None),
    "good-empty": ([], {"jobs_postgresql_hosts": [], "jobs_app_hosts": []}, None),
    "bad-calendar": (
        [VACUUM, {**WARM, "on_calendar": "every sixth hour"}], {},
        "pyfleet_jobs[warm-cache].on_calendar: 'every sixth hour' is not a systemd calendar expression",
    ),
    "unknown-key": (
        [{**VACUUM, "schedule": "weekly"}], {},
        "pyfleet_jobs[vacuum]: unknown key(s) schedule (known: name, description, on_calendar",
    ),
    "duplicate-name": ([VACUUM, {**VACUUM, "database": "other"}], {}, "'vacuum' is there twice"),
    "both-sql-and-command": (
        [{**VACUUM, "command": "demo-admin x"}], {},
        "pyfleet_jobs[vacuum]: set exactly one of sql (SQL run as postgres) and command",
    ),
    "neither": (
        [{"name": "nothing", "on_calendar": "daily"}], {},
        "pyfleet_jobs[nothing]: set exactly one of sql",
    ),
    "sql-without-database": (
        [{k: v for k, v in VACUUM.items() if k != "database"}], {},
        "pyfleet_jobs[vacuum]: a sql job needs database",
    ),
    "sql-without-postgresql": (
        [VACUUM], {"jobs_postgresql_hosts": []},
        "pyfleet_jobs[vacuum]: a sql job needs a host that runs the postgresql role",
    ),
    "command-without-app": (
        [WARM], {"jobs_app_hosts": []},
        "pyfleet_jobs[warm-cache]: a command job needs a host that runs the app",
    ),
    "command-without-app-values": (
        [WARM], {"jobs_app_user": ""},
        "the command jobs of pyfleet_jobs run as the app: jobs_app_user",
    ),
    "bad-name": ([{**VACUUM, "name": "Vacuum Weekly"}], {}, "name must be 1-40 characters of a-z"),
    "bad-run-on": ([{**WARM, "run_on": "first"}], {}, "pyfleet_jobs[warm-cache]: run_on must be one"),
    "run-on-sql": ([{**VACUUM, "run_on": "all"}], {}, "pyfleet_jobs[vacuum]: run_on is for command jobs"),
    "bad-timeout": ([{**VACUUM, "timeout": "an hour"}], {}, "timeout must be a time span"),
    "command-multiline": (
        [{**WARM, "command": "demo-admin a\nrm -rf /"}], {}, "pyfleet_jobs[warm-cache]: command must be one line",
    ),
    "not-a-list": ({"vacuum": VACUUM}, {}, "pyfleet_jobs must be a list of jobs"),
}

PLAYBOOK = [
    {
        "name": "Preflight cases",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [{"name": "Preflight of the jobs role",
                   "ansible.builtin.include_role": {"name": "pyfleet.server.jobs", "tasks_from": "preflight",
                                                    "rolespec_validate": False}}],
    }
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, str | None]:
    """{case: the failure message of its host, or None when the preflight passed}."""
    tmp = tmp_path_factory.mktemp("jobs-preflight")
    hosts = {case: {**HOSTS, "jobs_list": jobs, **extra} for case, (jobs, extra, _expected) in CASES.items()}
    return first_failures(run_cases(tmp, hosts, PLAYBOOK))


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight(results, case):
    assert_outcome(case, results[case], CASES[case][2])
