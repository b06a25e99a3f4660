"""A backup host's clients (pgBackRest's repository users, restic's SFTP users) are every host that keeps backups
there, whatever the run targets: a run for one host (`-e pyfleet_hosts=<host>`, as disaster-recovery.yml does) must
not leave the others out, or the repository play would take their keys and units away."""

from __future__ import annotations

import pytest
from wiring_probe import probe

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


def clients(tmp_path, *args: str) -> dict:
    return probe(tmp_path, PROBE, INVENTORY, *args)["bk"]


@pytest.mark.parametrize("target", [[], ["-e", "pyfleet_hosts=db1"], ["-e", "pyfleet_hosts=db2"]],
                         ids=["the pyfleet group", "one host", "the other host"])
def test_every_client_stays_whatever_the_run_targets(tmp_path, target):
    assert clients(tmp_path, *target) == {"pgbackrest": ["db1", "db2"], "offsite": ["db1"]}
