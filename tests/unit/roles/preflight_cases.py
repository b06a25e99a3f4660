"""Many preflight cases in one ansible-playbook run: one local host per case (its variables are the case), results
read from the ansible.posix.json callback. Shared by the roles' preflight tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def run_cases(tmp: Path, hosts: dict[str, dict], playbook: list, **env: str) -> dict:
    """Runs `playbook` over one local host per case; returns the JSON report. Every case must have run."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"hosts": {case: {**local, **variables} for case, variables in hosts.items()}}}
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "play.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"),
         "--forks", "20"],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                 ANSIBLE_NOCOLOR="1", **env),
    )
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    missing = set(hosts) - set(report["stats"])
    assert not missing, f"cases that did not run: {missing}\n{proc.stderr[-3000:]}"
    return report


def results(report: dict) -> Iterator[tuple[str, str, dict, dict]]:
    """(task name, host, the host's result, each loop item of it or the result itself) of every task run."""
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                for item in result.get("results") or [result]:
                    yield task["task"]["name"], host, result, item


def first_failures(report: dict) -> dict[str, str | None]:
    """{case: the message of its host's first failure, or None when every task passed}."""
    failures: dict[str, str | None] = dict.fromkeys(report["stats"])
    for _task, host, _result, item in results(report):
        if item.get("failed") and failures[host] is None:
            failures[host] = str(item.get("msg"))
    return failures


def assert_outcome(case: str, failure: str | None, expected: str | None) -> None:
    """Good input (expected None) passes every check; bad input fails with a message containing `expected`."""
    if expected is None:
        assert failure is None, f"{case}: good input refused: {failure}"
    else:
        assert failure is not None, f"{case}: bad input accepted"
        assert expected in " ".join(failure.split()), f"{case}: {failure}"
