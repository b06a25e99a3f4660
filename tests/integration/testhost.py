"""A throw-away Debian 12 systemd test host (the project's image) for playbook-level tests."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "scripts" / "lib"))
from testhost_flags import image, run_argv, run_flags  # noqa: E402  (flags live in .config/molecule/config.yml)

IMAGE = image()  # kept for callers that start a host themselves: [..., *RUN_FLAGS, IMAGE]
RUN_FLAGS = run_flags()


class ContainerHost:
    """A running container plus an inventory that reuses the demo's group_vars, reached over SSH as a sudo user with
    a throw-away key, as users reach a server (molecule/shared/prepare-ssh.yml sets sshd up, as in every scenario)."""

    def __init__(self, tmp: Path, prefix: str = "pyfleet-it"):
        self.name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.inventory = tmp / "inventory"
        self.key = tmp / "ssh" / "id_ed25519"

    def start(self) -> ContainerHost:
        subprocess.run(run_argv(self.name), check=True, capture_output=True)
        address = subprocess.run(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", self.name],
            capture_output=True, text=True, check=True).stdout.strip()
        self.inventory.mkdir(parents=True)
        (self.inventory / "group_vars").symlink_to(REPO / "inventories/demo/group_vars")
        (self.inventory / "hosts.yml").write_text(
            f"pyfleet:\n  hosts:\n    {self.name}:\n"
            f"      ansible_connection: ssh\n      ansible_host: {address}\n"
            f"      ansible_user: pyfleetop\n      ansible_become: true\n      ansible_become_method: sudo\n"
            f"      ansible_ssh_private_key_file: {self.key}\n"
            "      ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null\n"
            "      ansible_python_interpreter: /usr/bin/python3\n"
        )
        prepared = self.playbook("molecule/shared/prepare-ssh.yml", "-e", f"ansible_ssh_private_key_file={self.key}")
        if prepared.returncode != 0:
            self.stop()
            raise RuntimeError(f"test host {self.name} not reachable over SSH\n{prepared.stdout[-4000:]}")
        self.exec("touch /root/.pyfleet-mark")
        return self

    def stop(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)

    def exec(self, script: str) -> str:
        out = subprocess.run(["docker", "exec", self.name, "sh", "-c", script], capture_output=True, text=True,
                             check=False)
        return out.stdout

    def playbook(self, playbook: str, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false",
                   ANSIBLE_NOCOLOR="1", MOLECULE_PROJECT_DIRECTORY=str(REPO))
        return subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(REPO / playbook), *args],
            capture_output=True, text=True, env=env, cwd=REPO, check=False,
        )

    def state(self) -> str:
        """Fingerprint of what a deploy touches: packages, users, files changed since boot (minus systemd's)."""
        return self.exec(
            "dpkg-query -W -f='${Package} ${Version}\\n' | sha256sum; getent passwd | sha256sum; "
            "find /opt /etc /var/lib /srv /usr -xdev -newer /root/.pyfleet-mark -not -type d "
            "-not -path '/var/lib/systemd/*' -not -path /etc/mtab 2>/dev/null | sort"
        )
