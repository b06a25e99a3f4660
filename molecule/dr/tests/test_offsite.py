"""Off-site copies of every verified backup set (issue 11 item 2, second bullet; docs/offsite.md).

The single server (group `pyfleet`, with backup_offsite_enabled) copies each set it writes with restic over SFTP to
the backup host (group `pyfleet_backup`), as an SFTP-only user chrooted to its own directory there. Host names come
from the scenario's inventory, so this file runs unchanged in molecule/dr. The tests run in order: a set copied,
stored encrypted, checked, forgotten by retention, fetched back identical; a failed copy fails the unit and keeps
the set; the key does SFTP and nothing else; a missing or wrong password is refused before anything changes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex

import pytest
import testinfra
from helpers import journal, molecule_hosts, recap, run_playbook, wait_for

APP_HOST = molecule_hosts("pyfleet")[0]
BACKUP_HOST = molecule_hosts("pyfleet_backup")[0]
CONFIG_DIR = "/etc/pyfleet/backup"
PROGRAM = "/usr/local/sbin/pyfleet-backup"

testinfra_hosts = [APP_HOST]


@pytest.fixture(scope="module")
def backup_host():
    return testinfra.get_host(f"ansible://{BACKUP_HOST}?ansible_inventory=" + os.environ["MOLECULE_INVENTORY_FILE"],
                              sudo=True)


@pytest.fixture(scope="module")
def config(host) -> dict:
    """The backup program's configuration of the one app on the app host (the role wrote it)."""
    paths = host.check_output(f"ls {CONFIG_DIR}/*.json").split()
    assert len(paths) == 1, paths
    data = json.loads(host.file(paths[0]).content_string)
    assert data["offsite"], "backup_offsite_enabled is not on in this scenario"
    data["_path"] = paths[0]
    return data


@pytest.fixture(scope="module")
def ssh(host, config) -> dict:
    """What ssh resolves for the off-site alias (user, hostname, port), from the role's own ssh configuration."""
    out = host.check_output(f"ssh -G -F {config['offsite']['ssh_config']} {config['offsite']['ssh_host']}")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


@pytest.fixture(scope="module")
def repo_dir(config, ssh) -> str:
    """The app's repository on the backup host: <offsite_root>/<user>/repos/<app> (the chroot's /repos/<app>)."""
    path = config["offsite"]["repository"].split(":", 2)[2]
    return f"/srv/pyfleet-offsite/{ssh['user']}{path}"


def restic(host, config, *args: str, check: bool = True):
    """restic as the program runs it: repository and password file in the environment, ssh with the role's config."""
    offsite = config["offsite"]
    env = (f"RESTIC_REPOSITORY={shlex.quote(offsite['repository'])} "
           f"RESTIC_PASSWORD_FILE={shlex.quote(offsite['password_file'])} RESTIC_CACHE_DIR=/var/tmp/restic-test-cache")
    command = f"ssh -F {offsite['ssh_config']} {offsite['ssh_host']} -s sftp"
    result = host.run(f"env {env} restic -o {shlex.quote('sftp.command=' + command)} "
                      + " ".join(shlex.quote(a) for a in args))
    if check:
        assert result.rc == 0, result.stderr
    return result


def snapshots(host, config) -> dict[str, dict]:
    out = restic(host, config, "snapshots", "--json", "--tag", f"pyfleet-app:{config['app']}").stdout
    found = {}
    for snap in json.loads(out or "[]"):
        for tag in snap.get("tags") or []:
            if tag.startswith("pyfleet-set:"):
                found[tag.split(":", 1)[1]] = snap
    return found


def local_sets(host, config) -> list[str]:
    names = host.check_output(f"ls -1 {config['root']}/{config['app']}").split()
    return sorted(n for n in names if re.match(r"^\d{8}T\d{6}Z$", n))


def attempt(host, command: str) -> tuple[int, str]:
    """Run a command that may end with ssh's own 255 (testinfra takes that for a lost connection): its exit code and
    its output (stdout and stderr)."""
    out = host.run(f"{{ {command} ; }} 2>&1; echo \"exit=$?\"").stdout
    body, _sep, code = out.rstrip("\n").rpartition("exit=")
    return int(code), body


def databases_unit(config) -> str:
    return next(s["unit"] for s in config["schedules"] if "postgresql" in s["components"]) + ".service"


def run_unit(host, unit: str):
    return host.run(f"systemctl start {unit}")


def tree_digest(host, path: str) -> str:
    """sha256, owner, group and mode of every file below path, by relative path."""
    return host.check_output(
        f"cd {shlex.quote(path)} && find . -type f -printf '%P %u %g %m\\n' | sort | while read -r f u g m; do "
        f"echo \"$f $u $g $m $(sha256sum < \"$f\" | cut -d' ' -f1)\"; done")


@pytest.fixture(scope="module")
def marker(host, config) -> str:
    """A value written to Redis that an RDB keeps as plain bytes (short strings are not compressed)."""
    value = "pfo" + secrets.token_hex(8)
    env = f"REDISCLI_AUTH={shlex.quote(config['redis']['password'])}"
    host.check_output(f"env {env} redis-cli -p {config['redis']['port']} SET pyfleet:offsite:probe {value}")
    return value


@pytest.fixture(scope="module")
def copied_set(host, config, marker) -> str:
    """One run of the scheduled databases unit: a new set, copied off the host."""
    before = set(local_sets(host, config))
    unit = databases_unit(config)
    result = run_unit(host, unit)
    assert result.rc == 0, result.stderr + journal(host, unit, 60)
    new = sorted(set(local_sets(host, config)) - before)
    assert new, "no new set"
    return new[-1]  # a timer's run may have written one too


def test_a_backup_run_copies_the_set_off_the_host(host, config, copied_set):
    assert copied_set in snapshots(host, config)
    log = journal(host, databases_unit(config), 80)
    assert f"off-site: set {copied_set} copied as snapshot" in log, log
    assert "off-site: restic check passed (data read: 100%)" in log, log


def test_the_copy_holds_the_files_of_the_set(host, config, copied_set):
    snap = snapshots(host, config)[copied_set]
    assert snap["hostname"] == APP_HOST
    listing = restic(host, config, "ls", "--json", snap["id"]).stdout
    stored = {json.loads(line)["path"] for line in listing.splitlines() if '"path"' in line}
    manifest = json.loads(host.file(f"{config['root']}/{config['app']}/{copied_set}/manifest.json").content_string)
    set_dir = f"{config['root']}/{config['app']}/{copied_set}"
    assert {f"{set_dir}/{rel}" for rel in manifest["files"]} | {f"{set_dir}/manifest.json"} <= stored


def test_the_repository_on_the_backup_host_is_encrypted(host, backup_host, config, copied_set, marker, repo_dir):
    # The marker is in the set as plain bytes (the RDB), so a repository storing it unencrypted would show it.
    rdb = f"{config['root']}/{config['app']}/{copied_set}/redis/dump.rdb"
    assert host.run(f"grep -c -F {marker} {rdb}").rc == 0, "the test's marker is not in the set's RDB in clear"
    assert backup_host.file(f"{repo_dir}/config").exists
    assert backup_host.file(f"{repo_dir}/keys").is_directory
    found = backup_host.run(f"grep -r -l -F {marker} {repo_dir}")
    assert found.rc == 1, f"plain text of the set in the repository: {found.stdout}"
    password = host.file(config["offsite"]["password_file"]).content_string.strip()
    # The password never reaches the backup host: restic check runs on the app host (docs/offsite.md). (Given to
    # grep encoded: sudo logs this command line in the backup host's journal.)
    encoded = base64.b64encode(password.encode()).decode()
    leaked = backup_host.run(f"echo {encoded} | base64 -d | grep -r -l -F -s -f - /etc /srv /var /root /home /tmp")
    assert leaked.stdout.strip() == "", leaked.stdout


def test_the_password_is_root_only_and_nowhere_else(host, config, copied_set):
    secret = host.file(config["offsite"]["password_file"])
    assert (secret.user, secret.group, secret.mode) == ("root", "root", 0o600)
    password = secret.content_string.strip()
    assert len(password) >= 16
    assert password not in host.file(config["_path"]).content_string
    assert password not in host.check_output(f"cat /etc/systemd/system/{databases_unit(config)}")
    assert password not in host.run("journalctl --no-pager -n 2000").stdout
    key = host.file(f"{CONFIG_DIR}/offsite/id_ed25519")
    assert (key.user, key.mode) == ("root", 0o600)
    assert host.file(f"{CONFIG_DIR}/offsite").mode == 0o700


def test_the_repository_belongs_to_the_sftp_user_in_its_chroot(backup_host, ssh, repo_dir):
    user = ssh["user"]
    chroot = backup_host.file(f"/srv/pyfleet-offsite/{user}")
    assert (chroot.user, chroot.mode) == ("root", 0o755)
    repos = backup_host.file(f"/srv/pyfleet-offsite/{user}/repos")
    assert (repos.user, repos.mode) == (user, 0o700)
    assert backup_host.file(repo_dir).user == user
    keys = backup_host.file(f"/etc/ssh/pyfleet-offsite/{user}.keys")
    assert (keys.user, keys.mode) == ("root", 0o644)
    assert keys.content_string.splitlines()[-1].startswith("restrict ssh-ed25519 ")
    effective = backup_host.check_output(f"sshd -T -C user={user},host=client,addr=127.0.0.2")
    assert "forcecommand internal-sftp -d /repos" in effective
    assert f"chrootdirectory /srv/pyfleet-offsite/{user}" in effective.replace("%u", user)
    assert "allowtcpforwarding no" in effective
    assert "permittty no" in effective


def test_restic_check_reads_the_stored_data_back(host, config, copied_set):
    result = restic(host, config, "check", "--read-data")
    assert "no errors were found" in result.stdout


@pytest.mark.parametrize("command", ["id", "sh -c id", "cat /etc/passwd", "restic version"])
def test_the_offsite_key_cannot_run_a_command(host, config, command):
    offsite = config["offsite"]
    rc, out = attempt(host, f"ssh -F {offsite['ssh_config']} {offsite['ssh_host']} {shlex.quote(command)}")
    assert rc != 0
    assert "uid=" not in out and "root:x:" not in out and "restic 0." not in out
    assert "This service allows sftp connections only." in out, out


def test_the_offsite_key_gets_no_shell_nor_forwarding(host, config):
    offsite = config["offsite"]
    rc, out = attempt(host, f"echo id | ssh -tt -F {offsite['ssh_config']} {offsite['ssh_host']}")
    assert rc != 0 and "uid=" not in out, out
    assert "PTY allocation request failed" in out, out
    rc, out = attempt(host, f"timeout 20 ssh -F {offsite['ssh_config']} -W 127.0.0.1:22 {offsite['ssh_host']} "
                            "</dev/null")
    assert rc != 0 and "SSH-2.0" not in out, out


def test_sftp_sees_only_its_own_chroot(host, config):
    offsite = config["offsite"]
    result = host.run(f"printf 'ls /\\ncd /etc\\n' | sftp -b - -F {offsite['ssh_config']} {offsite['ssh_host']}")
    listing = result.stdout
    assert "/repos" in listing
    assert "/etc" not in listing.replace("cd /etc", "")
    assert result.rc != 0, "cd /etc succeeded inside the chroot"


def test_a_failed_copy_fails_the_unit_and_keeps_the_set(host, config, copied_set):
    """The backup host's key in known_hosts replaced: ssh refuses, restic fails, the unit fails and its OnFailure
    hook reports it; the set written is kept and verifies. With the key back, the next run copies both."""
    known = f"{CONFIG_DIR}/offsite/known_hosts"
    unit = databases_unit(config)
    before = set(local_sets(host, config))
    host.check_output(f"cp -p {known} {known}.test-saved")
    try:
        host.check_output("rm -f /var/tmp/pfo-wrong* && ssh-keygen -q -t ed25519 -N '' -f /var/tmp/pfo-wrong")
        wrong = " ".join(host.file("/var/tmp/pfo-wrong.pub").content_string.split()[:2])
        alias = host.file(known).content_string.split()[0]
        host.check_output(f"echo {shlex.quote(alias + ' ' + wrong)} > {known}")
        result = run_unit(host, unit)
        assert result.rc != 0
        assert host.run(f"systemctl is-failed {unit}").stdout.strip() == "failed"
        log = journal(host, unit, 80)
        assert "FAILED: off-site copy:" in log and "is kept on this host as written" in log, log
        hook = wait_for(lambda: f"FAILED: {unit}" in journal(host, f"pyfleet-backup-failed@{unit}.service", 40),
                        timeout=30)
        assert hook, journal(host, f"pyfleet-backup-failed@{unit}.service", 40)
        new = sorted(set(local_sets(host, config)) - before)
        assert new, "no new set"
    finally:
        host.check_output(f"mv {known}.test-saved {known}")
    host.run(f"systemctl reset-failed {unit}")
    result = run_unit(host, unit)
    assert result.rc == 0, journal(host, unit, 60)
    copied = snapshots(host, config)
    assert new[-1] in copied, "the set written while the copy failed was not copied by the next run"
    verify = host.run(f"python3 -c 'import sys; sys.path.insert(0, \"/usr/local/lib/pyfleet\"); import pyfleet_backup "
                      f"as b; i = b.check_set(\"{config['root']}/{config['app']}/{new[-1]}\", checksums=True); "
                      "print(i.good, i.problems)'")
    assert verify.stdout.startswith("True"), verify.stdout


def test_retention_forgets_the_oldest_copies(host, config):
    """backup_offsite_keep_last: 2 in this scenario (the other tiers 0): after more runs, the two newest copies."""
    for _run in range(2):
        result = host.run(f"{PROGRAM} --config {config['_path']} --components postgresql --json")
        assert result.rc == 0, result.stderr
    copied = snapshots(host, config)
    newest = local_sets(host, config)[-2:]
    assert sorted(copied) == newest, (sorted(copied), newest)
    assert "off-site: retention forgot the copies of" in result.stderr
    # The local sets are the local retention's business: the forgotten copies' sets are still here.
    assert len(local_sets(host, config)) > 2
    # And they are not copied again by the next run.
    again = host.run(f"{PROGRAM} --config {config['_path']} --offsite-only --json")
    assert again.rc == 0, again.stderr
    assert json.loads(again.stdout)["copied"] == []


def test_a_set_fetched_back_from_restic_is_identical(host, config):
    """The newest copied set moved away locally; fetch-offsite.yml brings it back from the backup host."""
    set_id = max(snapshots(host, config))
    path = f"{config['root']}/{config['app']}/{set_id}"
    original = tree_digest(host, path)
    aside = f"/var/tmp/pyfleet-offsite-aside-{set_id}"
    host.check_output(f"mv {path} {aside}")
    try:
        check = run_playbook("playbooks/fetch-offsite.yml", "--limit", APP_HOST, "-e", f"offsite_set={set_id}",
                             "--check")
        assert check.returncode == 0, check.stdout[-3000:]
        assert recap(check.stdout)["changed"] >= 1
        assert not host.file(path).exists
        run = run_playbook("playbooks/fetch-offsite.yml", "--limit", APP_HOST, "-e", f"offsite_set={set_id}")
        assert run.returncode == 0, run.stdout[-3000:]
        assert "fetched into" in run.stdout and set_id in run.stdout, run.stdout[-3000:]
        assert tree_digest(host, path) == original
        assert host.file(path).mode == host.file(aside).mode
        again = run_playbook("playbooks/fetch-offsite.yml", "--limit", APP_HOST, "-e", f"offsite_set={set_id}")
        assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout[-3000:]
        assert not [n for n in host.check_output(f"ls -a {config['root']}/{config['app']}").split()
                    if n.startswith(".tmp-")]
    finally:
        host.run(f"test -d {path} && rm -rf {aside} || mv {aside} {path}")


def test_fetch_offsite_refuses_without_a_set(host):
    result = run_playbook("playbooks/fetch-offsite.yml", "--limit", APP_HOST)
    assert result.returncode != 0
    assert "Refused, nothing was changed: name the set with -e offsite_set=" in result.stdout


PREFLIGHT = ("playbooks/site.yml", "--limit", APP_HOST, "--check", "--tags", "backup_preflight")


def test_a_missing_password_is_refused_before_anything_changes(host):
    result = run_playbook(*PREFLIGHT, "-e", "backup_offsite_password=")
    assert result.returncode != 0
    assert "backup_offsite_enabled is true but backup_offsite_password is not set" in result.stdout, \
        result.stdout[-3000:]
    assert recap(result.stdout).get("changed", 0) == 0


def test_a_wrong_password_is_refused_before_anything_changes(host, config):
    wrong = "not-the-password-" + secrets.token_hex(6)
    result = run_playbook(*PREFLIGHT, "-e", f"backup_offsite_password={wrong}", "-vvv")
    assert result.returncode != 0
    assert "backup_offsite_password does not open the off-site repository" in result.stdout, result.stdout[-3000:]
    assert wrong not in result.stdout + result.stderr, "the password was printed"
    assert recap(result.stdout).get("changed", 0) == 0
    # The right one still opens it (the preflight of the scenario's own value passes).
    good = run_playbook(*PREFLIGHT)
    assert good.returncode == 0, good.stdout[-3000:]
