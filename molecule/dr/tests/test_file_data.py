"""File data is restored like the databases (issue 16): the app's data path (/opt/fleetdemo/shared in the demo)
goes into the set with owners and modes; after files are deleted, modified and added, restore.yml brings back the
identical tree (sha256 of every file, owners, modes, links), the stray file is gone, the previous tree is kept
beside it, the app is healthy; check mode predicts the restore before it and nothing after it.

Runs after test_backup_restore.py and takes its own set (alphabetical order; it depends only on the converged host).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import http_json, molecule_hosts, run_playbook

REPO = Path(__file__).resolve().parents[3]
ROOT = "/var/backups/pyfleet/fleetdemo"
DATA = "/opt/fleetdemo/shared"
KEY = f"files:{DATA}"
STATE: dict = {}

testinfra_hosts = molecule_hosts("pyfleet")


def listing(host) -> str:
    """Every entry under the data path: type, mode, owner, group, link target; then the sha256 of every file."""
    tree = host.check_output(f"cd {DATA} && find . -printf '%p %y %m %u %g %l\\n' | sort")
    sums = host.check_output(f"cd {DATA} && find . -type f -print0 | sort -z | xargs -0r sha256sum")
    return tree + "\n" + sums


def restore_check(set_id: str) -> dict:
    """The restore module in check mode for the files component alone: what it predicts, as JSON."""
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "pyfleet", "-i", inventory, "-b", "--check",
         "-m", "pyfleet.server.restore", "-a", f"app=fleetdemo set={set_id} components=files"],
        capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    plays = json.loads(result.stdout)["plays"]
    return next(iter(plays[0]["tasks"][0]["hosts"].values()))


def test_write_files_under_the_data_path_and_take_a_set(host):
    host.check_output(
        f"set -e; cd {DATA}; mkdir -p uploads/pkg; printf 'release one\\n' > uploads/pkg/pkg-1.0.tar.gz; "
        "printf 'keep me\\n' > keep.txt; printf 'change me\\n' > change.txt; ln -sfn uploads/pkg latest; "
        "printf 'no name\\n' > numeric-owner.txt; chown 4242:4242 numeric-owner.txt; "
        "chown -R fleetdemo:fleetdemo uploads keep.txt change.txt; chmod 0640 keep.txt change.txt; "
        "chmod 2750 uploads; chmod 0604 uploads/pkg/pkg-1.0.tar.gz")
    STATE["before"] = listing(host)
    result = run_playbook("playbooks/backup.yml")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    STATE["set"] = set_id = re.search(r"fleetdemo set (\d{8}T\d{6}Z): ", out).group(1)
    manifest = json.loads(host.file(f"{ROOT}/{set_id}/manifest.json").content_string)
    [entry] = manifest["components"]["files"]["data"]
    assert (entry["path"], entry["data"], entry["owner"], entry["group"], entry["mode"]) == (
        DATA, True, "fleetdemo", "fleetdemo", "0750")
    assert manifest["files"][entry["file"]]["sha256"] == entry["sha256"]
    assert host.file(f"{ROOT}/{set_id}/{entry['file']}").mode == 0o600
    # Config and code are archived for reference only, without the data path.
    members = host.check_output(f"tar -tzf {ROOT}/{set_id}/files/files.tar.gz")
    assert "etc/fleetdemo/" in members and "opt/fleetdemo/shared" not in members


def test_check_mode_predicts_the_restore_of_changed_file_data(host):
    host.check_output(
        f"set -e; cd {DATA}; rm keep.txt; printf 'modified after the backup\\n' > change.txt; "
        "printf 'stray\\n' > uploads/stray.txt; chmod 0777 uploads/pkg/pkg-1.0.tar.gz")
    assert listing(host) != STATE["before"]
    plan = restore_check(STATE["set"])
    assert plan["changed"] is True and plan["restored"] == [KEY], plan
    assert host.file(f"{DATA}/uploads/stray.txt").exists  # check mode changed nothing


def test_restore_brings_back_the_identical_tree_and_removes_the_stray_file(host):
    result = run_playbook("playbooks/restore.yml", "-e", f"restore_set={STATE['set']}")
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, out[-4000:]
    assert re.search(rf"restored [^;]*{re.escape(KEY)}[^;]* from {STATE['set']}", out), out[-3000:]
    assert listing(host) == STATE["before"]
    assert not host.file(f"{DATA}/uploads/stray.txt").exists
    assert host.file(f"{DATA}/numeric-owner.txt").uid == 4242
    # The previous tree is kept beside it (same filesystem), stray file included; no staging copy is left.
    kept = host.check_output("ls -d /opt/fleetdemo/.shared.pre-* | tail -n 1")
    assert host.file(f"{kept}/uploads/stray.txt").content_string == "stray\n"
    assert not host.file("/opt/fleetdemo/.shared.pyfleet-restore").exists
    # restore.yml proved the app healthy; it serves again.
    assert host.service("fleetdemo-api").is_running
    assert http_json(host, "GET", "/api/items")[0] == 200


def test_check_mode_after_the_restore_predicts_nothing(host):
    plan = restore_check(STATE["set"])
    assert plan["changed"] is False and plan["unchanged"] == [KEY], plan
    host.check_output("rm -rf /opt/fleetdemo/.shared.pre-*")
