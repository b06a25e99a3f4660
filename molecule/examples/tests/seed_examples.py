"""The seed examples as converge.yml ran them: each example's own inventory plus the override of the test host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import testinfra
import yaml
from helpers import REPO

WORK = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "examples"
# Example -> the scenario's container it was converged on.
CONVERGED = {"dietplanner": "pyfleet-examples-dietplanner", "fairedge": "pyfleet-examples-fairedge"}


def example_vars(example: str) -> dict:
    """The example's own settings (group_vars/pyfleet.yml), unrendered."""
    return yaml.safe_load((REPO / f"examples/{example}/inventory/group_vars/pyfleet.yml").read_text())


def host(example: str):
    """The example's host as the scenario's inventory reaches it (SSH, sudo)."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{CONVERGED[example]}?ansible_inventory={inventory}")


def run_example(example: str, playbook: str, *args: str, override: Path | None = None,
                timeout: float = 900) -> subprocess.CompletedProcess:
    """ansible-playbook <playbook> with the example's inventory and the scenario's override, as converge.yml runs it."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", f"examples/{example}/inventory",
         "-i", str(override or WORK / f"{example}.yml"), playbook,
         "-e", f"{example}_secrets_dir={WORK / f'secrets-{example}'}", *args],
        capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false",
                 ANSIBLE_NOCOLOR="1"),
    )
