"""fetch-backup.yml: copies on the controller stay private, and a non-root connection streams instead of slurping.

ansible.builtin.fetch with become reads a file through slurp (base64, whole file in memory on both ends); the play
must fetch as the connecting user from a private staging copy instead, and leave nothing behind on the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import stat
from pathlib import Path

import pytest
from helpers import APP, molecule_hosts, run_playbook

testinfra_hosts = molecule_hosts("pyfleet")
OPERATOR = "pyfleetop"
# Read before prepare-ssh.yml's pyfleet-test.conf (sshd takes the first value it reads).
ROOT_LOGIN = "/etc/ssh/sshd_config.d/00-pyfleet-test-root.conf"


@pytest.fixture(scope="module")
def operator(host):
    """A non-root login with passwordless sudo, as on most real servers (the scenario connects as it already)."""
    host.check_output(
        f"id {OPERATOR} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {OPERATOR}; "
        f"echo '{OPERATOR} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{OPERATOR}; chmod 0440 /etc/sudoers.d/{OPERATOR}"
    )
    result = run_playbook("playbooks/backup.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    return OPERATOR


@contextlib.contextmanager
def root_login(host):
    """SSH as root with the scenario's key for a while (its sshd refuses root otherwise: prepare-ssh.yml)."""
    public_key = Path(host.ansible.get_variables()["ansible_ssh_private_key_file"] + ".pub").read_text().strip()
    host.check_output(f"install -d -m 0700 /root/.ssh && printf '%s\\n' '{public_key}' > /root/.ssh/authorized_keys && "
                      f"printf 'PermitRootLogin prohibit-password\\n' > {ROOT_LOGIN} && systemctl reload ssh")
    try:
        yield
    finally:
        host.check_output(f"rm -f {ROOT_LOGIN} /root/.ssh/authorized_keys && systemctl reload ssh")


def host_set_checksums(host, set_path: str) -> dict[str, str]:
    out = host.check_output(f"cd {set_path} && find . -type f -not -name '.*' -exec sha256sum {{}} +")
    return {line.split()[1][2:]: line.split()[0] for line in out.splitlines()}


def fetched(tmp_path, host) -> tuple[str, dict[str, str]]:
    app_dir = tmp_path / "offsite" / host.backend.get_hostname() / APP
    (set_dir,) = list(app_dir.iterdir())
    sums = {}
    for path in [app_dir.parent, app_dir, *sorted(set_dir.rglob("*")), set_dir]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)} on the controller"
        if path.is_file():
            sums[str(path.relative_to(set_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return set_dir.name, sums


@pytest.mark.parametrize("connect_as", ["root", OPERATOR])
def test_fetch_streams_a_private_copy(host, operator, tmp_path, connect_as):
    extra = ["-e", f"pyfleet_offsite_dir={tmp_path / 'offsite'}", "-vvv", "-e", f"ansible_user={connect_as}"]
    if connect_as == "root":
        with root_login(host):
            result = run_playbook("playbooks/fetch-backup.yml", *extra)
    else:
        result = run_playbook("playbooks/fetch-backup.yml", *extra)
    assert result.returncode == 0, result.stdout[-4000:]

    set_id, sums = fetched(tmp_path, host)
    assert sums == host_set_checksums(host, f"/var/backups/pyfleet/{APP}/{set_id}")
    assert any(name.startswith("files/") for name in sums), sorted(sums)

    # Streamed by the connection's own transfer from where this user may read, never slurped through become.
    # -vvv lines go to stderr when ANSIBLE_VERBOSE_TO_STDERR is set (Molecule's verify sets it): read both.
    output = result.stdout + result.stderr
    sources = re.findall(r"FETCH (\S+) TO ", output)
    where = rf"/var/backups/pyfleet/{APP}/{set_id}/" if connect_as == "root" else r"/var/tmp/pyfleet-fetch-[^/]+/"
    assert all(re.match(where, src) for src in sources), sources
    assert sorted(re.sub(where, "", src) for src in sources) == sorted(sums), (sources, sorted(sums))
    assert "slurp" not in output
    assert host.check_output("ls -A /var/tmp | grep -c '^pyfleet-fetch-' || true") == "0", "staging copy left behind"
