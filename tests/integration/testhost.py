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
    """A running container plus an inventory that reuses the demo's group_vars."""

    def __init__(self, tmp: Path, prefix: str = "pyfleet-it"):
        self.name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.inventory = tmp / "inventory"

    def start(self) -> ContainerHost:
        subprocess.run(run_argv(self.name), check=True, capture_output=True)
        self.exec("systemctl is-system-running --wait || true; touch /root/.pyfleet-mark")
        self.inventory.mkdir(parents=True)
        (self.inventory / "group_vars").symlink_to(REPO / "inventories/demo/group_vars")
        (self.inventory / "hosts.yml").write_text(
            f"pyfleet:\n  hosts:\n    {self.name}:\n      ansible_connection: community.docker.docker\n"
            "      ansible_python_interpreter: /usr/bin/python3\n"
        )
        return self

    def stop(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)

    def exec(self, script: str) -> str:
        out = subprocess.run(["docker", "exec", self.name, "sh", "-c", script], capture_output=True, text=True,
                             check=False)
        return out.stdout

    def playbook(self, playbook: str, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false",
                   ANSIBLE_NOCOLOR="1")
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
