"""No secret of the app on a command line, in sudo's log, the journal or `-vvv` output during a deploy (12 A.8).

One deploy.yml -vvv over SSH as a non-root operator with sudo (as on most servers): the migration, the switch, the
restart and the gate all run. Meanwhile a sampler on the host records every process's command line. The demo's secrets
(SECRET_KEY and the PostgreSQL and Redis passwords, read from the env file on the host) must appear in none of
them. Runs after test_release.py (file order), which left 1.0.1 live: it deploys the inventory's 1.0.0 again.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
from helpers import APP, molecule_hosts, run_playbook

testinfra_hosts = molecule_hosts("pyfleet")

OPERATOR = "pyfleetop"
SAMPLER = "pyfleet-test-ps-sampler"
PS_LOG = "/root/pyfleet-test-ps.log"


def secrets(host) -> dict[str, str]:
    env = dict(line.split("=", 1) for line in host.file(f"/etc/{APP}/{APP}.env").content_string.splitlines()
               if "=" in line and not line.startswith("#"))
    values = {name: value.strip().strip('"') for name, value in env.items()}
    found = {
        "SECRET_KEY": values["SECRET_KEY"],
        "database password": urlsplit(values["DATABASE_URL"]).password,
        "Redis password": urlsplit(values["REDIS_URL"]).password,
    }
    assert all(value and len(value) >= 16 for value in found.values()), "the demo's secrets are not where expected"
    return found


@pytest.fixture(scope="module")
def deploy(host):
    """(playbook output, process samples, journal) of one deploy.yml -vvv through sudo."""
    host.check_output(
        f"id {OPERATOR} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {OPERATOR}; "
        f"echo '{OPERATOR} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{OPERATOR}; chmod 0440 /etc/sudoers.d/{OPERATOR}"
    )
    cursor = host.check_output("journalctl --show-cursor -n 0 --quiet | sed -n 's/^-- cursor: //p'")
    host.check_output(f"rm -f {PS_LOG}; systemd-run --unit={SAMPLER} --quiet /bin/sh -c "
                      f"'while :; do ps -ww -eo args >> {PS_LOG}; sleep 0.05; done'")
    try:
        result = run_playbook("playbooks/deploy.yml", "-vvv", "-e",
                              json.dumps({"ansible_user": OPERATOR, "app_allow_downgrade": True}))
    finally:
        host.run(f"systemctl stop {SAMPLER}")
    samples = host.file(PS_LOG).content_string
    journal = host.check_output(f"journalctl --after-cursor '{cursor}' --no-pager --quiet -o cat")
    return result, samples, journal


def test_the_deploy_ran_through_sudo_with_a_migration(deploy):
    result, samples, journal = deploy
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # the checks below can fail: -vvv output, the migration's command line sampled, sudo's log in the journal
    assert "ESTABLISH SSH CONNECTION FOR USER: pyfleetop" in output
    assert "TASK [pyfleet.server.app : Run the database migrations" in output
    assert re.search(rf"/releases/1\.0\.0/venv/bin/{APP}-admin migrate", samples), "no sample during the migration"
    assert re.search(rf"{OPERATOR} : .*USER=root ; COMMAND=", journal), "sudo's log is not in the journal"


@pytest.mark.parametrize("where", ["-vvv output", "process list", "journal (sudo, units)"])
def test_no_secret_anywhere(host, deploy, where):
    result, samples, journal = deploy
    text = {"-vvv output": result.stdout + result.stderr, "process list": samples,
            "journal (sudo, units)": journal}[where]
    leaks = [name for name, value in secrets(host).items() if value in text]
    assert leaks == [], f"{', '.join(leaks)} found in the {where}"
