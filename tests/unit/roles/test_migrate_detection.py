"""The app role's migration task: which outputs and exit statuses count as changed or failed (12 A.5), and the
preflight that refuses a bad app_migrate_changed_pattern before anything changes.

The real expressions (changed_when, failed_when and their vars from tasks/activate.yml, the preflight block from
tasks/preflight.yml) are evaluated by ansible-playbook on localhost in one run; nothing is executed on a host.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "app"
ALEMBIC_UPGRADED = ("INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n"
                    "INFO  [alembic.runtime.migration] Running upgrade  -> 0001, create items\n")
ALEMBIC_CURRENT = "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n"
TOOL = ["^Created tables?", "^Upgraded from [0-9]+", "Applying [a-z_]+\\.[0-9]+"]

# (id, app_migrate_changed_pattern, app_migrate_changed_rc, rc, stdout, stderr) -> (changed, failed)
CASES = [
    ("alembic-upgraded", None, None, 0, "", ALEMBIC_UPGRADED, True, False),
    ("alembic-current", None, None, 0, "", ALEMBIC_CURRENT, False, False),
    ("string-is-one-regex", "Running upgrade", None, 0, "", ALEMBIC_UPGRADED, True, False),
    ("string-with-comma-stays-one", "^Upgraded [0-9]{1,3}$", None, 0, "Upgraded 12\n", "", True, False),
    ("list-created", TOOL, None, 0, "Created tables\n", "", True, False),
    ("list-upgraded", TOOL, None, 0, "checking\nUpgraded from 3 to 4\n", "", True, False),
    ("list-django-style", TOOL, None, 0, "  Applying items.0002... OK\n", "", True, False),
    ("list-up-to-date", TOOL, None, 0, "Database is up-to-date\nNo changes: tables created earlier\n", "",
     False, False),
    ("line-anchor-not-mid-line", TOOL, None, 0, "Nothing Created tables\n", "", False, False),
    ("empty-list-never-changed", [], None, 0, ALEMBIC_UPGRADED, "", False, False),
    ("rc-convention-changed", [], 3, 3, "", "", True, False),
    ("rc-convention-nothing", [], 3, 0, "", "", False, False),
    ("rc-convention-other-rc-fails", [], 3, 1, "", "boom", False, True),
    ("failure-without-rc-convention", None, None, 3, "", "", False, True),
]

# (id, app_migrate_changed_pattern, app_migrate_changed_rc) -> message part, None when accepted
PREFLIGHT = [
    ("default", None, None, None),
    ("string", "Running upgrade", None, None),
    ("list", TOOL, 2, None),
    ("invalid-regex", ["ok", "Running (upgrade"], None,
     'app_migrate_changed_pattern entry "Running (upgrade" is not a valid regular expression'),
    ("empty-entry", ["ok", ""], None, "app_migrate_changed_pattern must be a regular expression or a list of them"),
    ("mapping", {"a": 1}, None, "app_migrate_changed_pattern must be a regular expression or a list of them"),
    ("rc-zero", None, 0, "app_migrate_changed_rc null or an exit status from 1 to 255 (got 0)"),
]


def _tasks(name: str) -> list[dict]:
    return yaml.safe_load((ROLE / "tasks" / name).read_text())


def _defaults() -> dict:
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


@pytest.fixture(scope="module")
def outcome(tmp_path_factory) -> dict[str, str]:
    """CASE <id> <changed> <failed> and PREFLIGHT <id> <message> lines of one ansible-playbook run, by id."""
    tmp = tmp_path_factory.mktemp("migrate")
    migrate = next(t for t in _tasks("activate.yml") if t["name"].startswith("Run the database migrations"))
    check = next(t for t in _tasks("preflight.yml") if t["name"] == "Check the migration's changed detection")
    (tmp / "check.yml").write_text(yaml.safe_dump([check]))
    defaults = _defaults()
    tasks = []
    for cid, pattern, changed_rc, rc, stdout, stderr, _changed, _failed in CASES:
        tasks.append({
            "name": cid,
            "ansible.builtin.debug": {
                "msg": f"CASE {cid} {{{{ ({migrate['changed_when']}) | bool }}}} "
                       f"{{{{ ({migrate['failed_when']}) | bool }}}}",
            },
            "vars": {
                **migrate["vars"],
                "__app_migrate": {"rc": rc, "stdout": stdout, "stderr": stderr},
                "app_migrate_changed_pattern": defaults["app_migrate_changed_pattern"] if pattern is None else pattern,
                "app_migrate_changed_rc": changed_rc,
            },
        })
    for pid, pattern, changed_rc, _message in PREFLIGHT:
        tasks.append({
            "name": f"preflight {pid}",
            "vars": {
                "app_migrate_changed_pattern": defaults["app_migrate_changed_pattern"] if pattern is None else pattern,
                "app_migrate_changed_rc": changed_rc,
            },
            "block": [
                {"ansible.builtin.include_tasks": str(tmp / "check.yml")},
                {"ansible.builtin.debug": {"msg": f"PREFLIGHT {pid} accepted"}},
            ],
            "rescue": [{"ansible.builtin.debug": {"msg": f"PREFLIGHT {pid} {{{{ ansible_failed_result.msg }}}}"}}],
        })
    play = tmp / "play.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], width=1000))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play)],
        capture_output=True, text=True, check=False, timeout=120,
        env=dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0"),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    messages = [task["hosts"]["localhost"].get("msg", "")
                for play_ in json.loads(result.stdout)["plays"] for task in play_["tasks"]]
    found = {}
    for msg in messages:
        match = re.match(r"^(CASE|PREFLIGHT) (\S+) (.*)$", str(msg), re.S)
        if match:
            found[f"{match[1]} {match[2]}"] = match[3]
    return found


@pytest.mark.parametrize(("cid", "pattern", "changed_rc", "rc", "stdout", "stderr", "changed", "failed"), CASES,
                         ids=[c[0] for c in CASES])
def test_changed_and_failed(outcome, cid, pattern, changed_rc, rc, stdout, stderr, changed, failed):
    assert outcome[f"CASE {cid}"] == f"{changed} {failed}"


@pytest.mark.parametrize(("pid", "pattern", "changed_rc", "message"), PREFLIGHT, ids=[p[0] for p in PREFLIGHT])
def test_preflight(outcome, pid, pattern, changed_rc, message):
    got = outcome[f"PREFLIGHT {pid}"]
    if message is None:
        assert got == "accepted"
    else:
        assert message in got, got
