"""The example inventories of real fleets (examples/<system>/inventory) pass site.yml's syntax check and every
role's preflight, run for real on the fleet's hosts over SSH: each example host is mapped onto a test host of the
same tier, nothing else of the example changes. Preflight only (tags: only the `always` checks run) in check mode:
nothing on the hosts changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
# Example host -> the fleet's test host of the same tier.
EXAMPLES = {
    "brownie": {
        "brownie-lb1": "172.30.77.10",
        "brownie-api1": "172.30.77.11",
        "brownie-api2": "172.30.77.12",
        "brownie-api3": "172.30.77.11",
        "brownie-db1": "172.30.77.13",
        # No backup host in this scenario: the load balancer's host stands in (preflight reads, changes nothing).
        "brownie-backup1": "172.30.77.10",
    },
}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ANSIBLE_PLAYBOOK, *args], capture_output=True, text=True, cwd=REPO, timeout=600,
                          check=False, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                                                ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="false"))


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_passes_the_syntax_check(example):
    result = _run("-i", f"examples/{example}/inventory", "playbooks/site.yml", "--syntax-check")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_passes_every_preflight_on_real_hosts(example, tmp_path):
    key = yaml.safe_load((REPO / "molecule/fleet/group_vars/all.yml").read_text())["ansible_ssh_private_key_file"]
    ssh = {"ansible_user": "pyfleetop", "ansible_ssh_private_key_file": key, "ansible_become": True,
           "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
           "ansible_python_interpreter": "/usr/bin/python3"}
    hosts = {name: {"ansible_host": address, **ssh} for name, address in EXAMPLES[example].items()}
    overrides = {"all": {"hosts": hosts}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(overrides))
    # The app's wheel as preflight looks for it (the example's real wheelhouse is the operator's build).
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    group_vars = yaml.safe_load((REPO / f"examples/{example}/inventory/group_vars/pyfleet.yml").read_text())
    package = group_vars["app_package"]
    (wheelhouse / f"{package.replace('-', '_')}-{group_vars['app_version']}-py3-none-any.whl").write_bytes(b"")
    result = _run("-i", f"examples/{example}/inventory", "-i", str(tmp_path / "hosts.yml"),
                  "playbooks/site.yml", "--check", "--tags", "pyfleet-preflight-only",
                  "-e", f"{example}_secrets_dir={tmp_path / 'secrets'}", "-e", f"app_wheelhouse_dir={wheelhouse}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # Every host ran the topology check and its roles' preflights, and nothing else.
    assert "Check that the tiers fit together" in output
    for role in ("nginx", "app", "postgresql", "redis", "ufw"):
        assert f"pyfleet.server.{role} : " in output, f"no preflight of the {role} role ran"
    # preflight_common warns about a <role>_* variable the role does not know (a typo would be ignored otherwise).
    assert "does not know" not in output, "the example names a variable no role knows"
    recaps = [line for line in output.splitlines() if " ok=" in line and "changed=" in line]
    assert len(recaps) == len(EXAMPLES[example]), recaps
    assert all("changed=0" in line and "failed=0" in line for line in recaps), recaps
