"""Shared testinfra helpers for the Molecule scenarios (outcomes, not implementation details)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import testinfra.utils.ansible_runner

APP = "fleetdemo"
API = "http://127.0.0.1:8000"
REPO = Path(__file__).resolve().parents[3]


def molecule_hosts(group: str = "all") -> list[str]:
    return testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts(group)


def journal(host, unit: str, lines: int = 40) -> str:
    return host.run(f"journalctl -u {unit} --no-pager -n {lines}").stdout


def assert_running(host, unit: str) -> None:
    svc = host.service(unit)
    assert svc.is_running, f"{unit} is not running; journal:\n{journal(host, unit)}"
    assert svc.is_enabled, f"{unit} is not enabled at boot"


def http_json(host, method: str, path: str, body: dict | None = None) -> tuple[int, dict | str]:
    """One request from inside the host (the API listens on its loopback)."""
    cmd = f"curl -s -o /tmp/resp -w '%{{http_code}}' -X {method} {API}{path}"
    if body is not None:
        cmd += f" -H 'content-type: application/json' -d '{json.dumps(body)}'"
    code = int(host.check_output(cmd) or 0)
    text = host.file("/tmp/resp").content_string
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text


def wait_for(predicate, timeout: float = 60, interval: float = 1.0):
    """Poll until predicate() returns a truthy value; returns it, or the last falsy value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def run_playbook(playbook: str, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook REPO/<playbook> against the scenario's inventory (with its group_vars), as an operator would."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook), *args],
        capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false",
                 ANSIBLE_NOCOLOR="1"),
    )


def recap(output: str) -> dict[str, int]:
    """The PLAY RECAP counters of a playbook run (one host): {'ok': 12, 'changed': 0, ...}."""
    line = next((ln for ln in output.splitlines()[::-1] if re.search(r"\bok=\d+\s+changed=\d+", ln)), "")
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks and handlers that reported changed in a playbook run's default output."""
    names, task = [], ""
    for line in output.splitlines():
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.+?)\]", line)
        if header:
            task = header.group(1)
        elif line.startswith("changed:") and task and (not names or names[-1] != task):
            names.append(task)
    return names


def drop_ssh_connections(address: str) -> None:
    """Ends the controller's SSH connections to an address (Ansible's and testinfra's reused masters): a host
    replaced behind the same address must be reached afresh, not through a master of the old one."""
    out = subprocess.run(["ss", "-Htnp", "dst", address, "dport", "=", ":22"], capture_output=True, text=True,
                         check=True).stdout
    for pid in sorted(set(re.findall(r"pid=(\d+)", out))):
        subprocess.run(["kill", pid], check=False, capture_output=True)


def remove_host(name: str) -> tuple[str, str]:
    """Removes the host's container, as a lost server; returns its Docker network and address. The controller's SSH
    connections to that address end first: a host started there later must be reached afresh."""
    inspect = subprocess.run(
        ["docker", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}}{{end}}",
         name], capture_output=True, text=True, check=True).stdout.split()
    network, address = inspect[0], inspect[1]
    drop_ssh_connections(address)
    subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
    return network, address


def start_blank_host(name: str, network: str, address: str) -> None:
    """A blank container of that name takes the lost host's place, on its Docker network and address, with the test
    host's run flags; then it is made reachable over SSH as the scenario's prepare step did
    (molecule/shared/prepare-ssh.yml), so the inventory reaches it unchanged."""
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from testhost import IMAGE, RUN_FLAGS  # noqa: PLC0415

    drop_ssh_connections(address)
    subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", name, "--network", network, "--ip", address,
                    *RUN_FLAGS, IMAGE], check=True, capture_output=True)
    variables = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_variables(name)
    result = run_playbook("molecule/shared/prepare-ssh.yml", "--limit", f"{name},localhost", "-e",
                          f"ansible_ssh_private_key_file={variables['ansible_ssh_private_key_file']}")
    assert result.returncode == 0, f"the blank host is not reachable over SSH\n{result.stdout[-4000:]}"


def replace_host_with_a_blank_one(name: str) -> None:
    """The host's container is removed and a blank one of the same name takes its place (remove_host,
    start_blank_host)."""
    start_blank_host(name, *remove_host(name))
