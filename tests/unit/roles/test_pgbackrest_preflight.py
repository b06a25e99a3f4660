"""pgBackRest's bad input is refused before anything changes, naming the variable; its SSH forced command runs
pgBackRest's remote commands and nothing else.

One ansible-playbook run on the controller for the preflight cases (connection local, preflight only asserts), as
test_dbtier_preflight.py does: the database host's preflight (entry point `preflight`), the repository host's
(tasks/repository_preflight.yml) and the postgresql role's archive settings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from preflight_cases import assert_outcome, first_failures, run_cases

REPO = Path(__file__).resolve().parents[3]
GATE = REPO / "roles/pgbackrest/files/pyfleet-pgbackrest-ssh"

DB = {"pgbackrest_repo_host": "repo-good", "pgbackrest_repo_address": "10.0.0.50", "pgbackrest_keys_dir": "/tmp/k"}
REPO_HOST = {"pgbackrest_repo_clients": ["db-good"], "pgbackrest_keys_dir": "/tmp/k",
             # The controller need not run systemd: the calendars are checked by a stand-in that accepts them.
             "pgbackrest_full_on_calendar": "weekly", "pgbackrest_diff_on_calendar": "daily"}
PG = {"postgresql_users": [{"name": "app", "password": "app-password-1234"}],
      "postgresql_databases": [{"name": "app", "owner": "app"}]}

# case: (tasks file, variables, expected text or None when the input is good)
CASES: dict[str, tuple[str, dict, str | None]] = {
    "db-good": ("preflight", DB, None),
    "repo-good": ("repository_preflight", REPO_HOST, None),
    "db-no-repo-host": (
        "preflight", {**DB, "pgbackrest_repo_host": ""},
        "pgbackrest_repo_host must name another host of the inventory, the backup repository host",
    ),
    "db-own-repo": (
        "preflight", {**DB, "pgbackrest_repo_host": "db-own-repo"},
        "a database host cannot keep its own off-host backups",
    ),
    "db-bad-stanza": (
        "preflight", {**DB, "pgbackrest_stanza": "app 1"},
        "pgbackrest_stanza must be letters, digits, '_' or '-' (got 'app 1')",
    ),
    "db-archive-timeout-zero": (
        "preflight", {**DB, "pgbackrest_archive_timeout": 0},
        "pgbackrest_archive_timeout 1 to 3600 seconds (got '0')",
    ),
    "db-queue-max-words": (
        "preflight", {**DB, "pgbackrest_archive_push_queue_max": "a lot"},
        "pgbackrest_archive_push_queue_max a size like 4GiB or empty (got 'a lot')",
    ),
    "repo-user-postgres": (
        "repository_preflight", {**REPO_HOST, "pgbackrest_repo_user": "postgres"},
        "pgbackrest_repo_user must be a plain system user name other than root or postgres (got 'postgres')",
    ),
    "repo-path-var": (
        "repository_preflight", {**REPO_HOST, "pgbackrest_repo_path": "/var/"},
        "pgbackrest_repo_path an absolute directory of its own (got '/var/')",
    ),
    "repo-retention-zero": (
        "repository_preflight", {**REPO_HOST, "pgbackrest_retention_full": 0},
        "pgbackrest_retention_full and pgbackrest_retention_diff at least 1 (got '0', '6')",
    ),
    "repo-unknown-client": (
        "repository_preflight", {**REPO_HOST, "pgbackrest_repo_clients": ["db.nowhere"]},
        "pgbackrest_repo_clients must name other hosts of the inventory",
    ),
    "pg-archive-setting-twice": (
        "postgresql", {**PG, "postgresql_archive_command": "pgbackrest --stanza=x archive-push %p",
                       "postgresql_settings": {"archive_timeout": 30}},
        "postgresql_settings must not set archive_mode, archive_command or archive_timeout while "
        "postgresql_archive_command is set",
    ),
    "pg-archive-good": ("postgresql", {**PG, "postgresql_archive_command": "pgbackrest --stanza=x archive-push %p"},
                        None),
}

PLAYBOOK = [
    {
        "name": "Preflight cases",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {
                "name": f"Preflight {tasks}",
                "ansible.builtin.include_role": {"name": f"pyfleet.server.{role}", "tasks_from": tasks_from},
                "when": f"case_tasks == '{tasks}'",
            }
            for tasks, role, tasks_from in (("preflight", "pgbackrest", "preflight"),
                                            ("repository_preflight", "pgbackrest", "repository_preflight"),
                                            ("postgresql", "postgresql", "preflight"))
        ],
    }
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, str | None]:
    tmp = tmp_path_factory.mktemp("pgbackrest-preflight")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    # systemd-analyze calendar: the real one where the controller has it, else a stand-in accepting the test's words.
    if not shutil.which("systemd-analyze"):
        stub = bin_dir / "systemd-analyze"
        stub.write_text('#!/bin/sh\ncase "$3" in weekly|daily) exit 0;; esac\necho "bad calendar" >&2\nexit 1\n')
        stub.chmod(0o755)
    hosts = {case: {"case_tasks": tasks, **variables} for case, (tasks, variables, _expected) in CASES.items()}
    return first_failures(run_cases(tmp, hosts, PLAYBOOK, PATH=f"{bin_dir}:{os.environ['PATH']}"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight(results, case):
    assert_outcome(case, results[case], CASES[case][2])


def run_gate(command: str | None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    return subprocess.run([sys.executable, str(GATE)], capture_output=True, text=True, env=env, check=False)


@pytest.mark.parametrize("command", [
    None, "", "id", "sh -c id", "pgbackrest version", "pgbackrest expire", "/bin/sh -c 'pgbackrest x:remote'",
    "pgbackrest 'unbalanced", "pgbackrest --stanza=a archive-push:remote; id",
])
def test_the_forced_command_refuses_anything_but_pgbackrest_remote_commands(command):
    result = run_gate(command)
    assert result.returncode == 1 and "may only run pgBackRest's remote commands" in result.stderr, result


def test_the_forced_command_runs_pgbackrest_without_a_shell(tmp_path):
    """A remote command is executed as /usr/bin/pgbackrest with the words as arguments: where pgBackRest is not
    installed (the controller), the exec itself fails, after the gate let it through."""
    result = run_gate("pgbackrest --stanza=a --process=0 --remote-type=repo archive-push:remote")
    if Path("/usr/bin/pgbackrest").exists():
        pytest.skip("pgbackrest is installed here: the scenario molecule/dr covers the real run")
    assert result.returncode != 1 or "FileNotFoundError" in result.stderr, result
    assert "may only run" not in result.stderr and "FileNotFoundError" in result.stderr, result


def test_a_host_without_pgbackrest_skips_the_role_without_a_repository_host(tmp_path):
    """site.yml imports the role on every host with `when:`; ansible-core templates a task's delegate_to before its
    when, so a host without a backup host (pgbackrest_repo_host '') must still skip every task, not fail (the
    default, backup-restore and fleet scenarios failed so)."""
    playbook = tmp_path / "skip.yml"
    playbook.write_text("""
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.import_role:
        name: pyfleet.server.pgbackrest
        rolespec_validate: false
      vars: {pgbackrest_preflight: false, pgbackrest_repo_host: "", pgbackrest_repo_address: "",
             pgbackrest_repo_clients: []}
      when: false
""")
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(playbook)],
                            capture_output=True, text=True, timeout=300, check=False,
                            env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout and "ok=0" in result.stdout
