"""A backup host's clients (pgBackRest's repository users, restic's SFTP users) are every host that keeps backups
there, whatever the run targets: a run for one host (`-e pyfleet_hosts=<host>`, as disaster-recovery.yml does) must
not leave the others out, or the repository play would take their keys and units away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROBE = """
- name: Repository clients probe
  hosts: pyfleet_backup
  gather_facts: false
  connection: local
  vars: {app_name: shop, app_port: 8000}
  tasks:
    - name: Clients
      ansible.builtin.debug:
        msg: "PROBE {{ {'pgbackrest': pgbackrest_repo_clients,
                        'offsite': offsite_clients | map(attribute='host') | list} | to_json }}"
"""
INVENTORY = {"all": {"children": {
    "pyfleet": {"hosts": {"db1": {"ansible_host": "10.0.0.1", "backup_offsite_enabled": True},
                          "db2": {"ansible_host": "10.0.0.2"}}},
    "pyfleet_backup": {"hosts": {"bk": {"ansible_host": "10.0.0.9"}}},
}}}


def clients(tmp_path: Path, *args: str) -> dict:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "group_vars").symlink_to(REPO / "playbooks" / "group_vars")
    (tmp_path / "roles").symlink_to(REPO / "roles")
    (tmp_path / "playbooks" / "probe.yml").write_text(PROBE)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(INVENTORY))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
         str(tmp_path / "playbooks" / "probe.yml"), *args],
        capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                 ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    line = next(ln for ln in result.stdout.splitlines() if '"msg": "PROBE ' in ln)
    return json.loads(json.loads("{" + line.strip().rstrip(",") + "}")["msg"].removeprefix("PROBE "))


@pytest.mark.parametrize("target", [[], ["-e", "pyfleet_hosts=db1"], ["-e", "pyfleet_hosts=db2"]],
                         ids=["the pyfleet group", "one host", "the other host"])
def test_every_client_stays_whatever_the_run_targets(tmp_path, target):
    assert clients(tmp_path, *target) == {"pgbackrest": ["db1", "db2"], "offsite": ["db1"]}
