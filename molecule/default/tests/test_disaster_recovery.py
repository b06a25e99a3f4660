"""Disaster recovery, for real: back up, fetch the set off the host, lose the host, rebuild, compare the data.

Runs last in this scenario (conftest.py): it replaces the host. The data the earlier tests left is part of what is
backed up and must come back.
"""

from __future__ import annotations

import json
import re
import subprocess

from helpers import APP, http_json, molecule_hosts, replace_host_with_a_blank_one, run_playbook

testinfra_hosts = molecule_hosts("pyfleet")
ROWS = {f"dr-row-{i}": f"value {i} ✓" for i in range(25)}
KEYS = {f"dr-key-{i}": f"kv {i}" for i in range(10)}
UPLOAD = f"/opt/{APP}/shared/dr-upload.txt"


def playbook(name: str, *args: str) -> subprocess.CompletedProcess:
    result = run_playbook(name, *args)
    assert result.returncode == 0, f"{name} failed\n{result.stdout[-5000:]}\n{result.stderr[-2000:]}"
    return result


def data(host) -> tuple[dict, dict]:
    rows = {row["name"]: row["value"] for row in http_json(host, "GET", "/api/items")[1]}
    keys = http_json(host, "GET", "/api/kv")[1]
    return rows, keys


def test_lost_server_is_rebuilt_from_its_last_offsite_set(host, tmp_path):
    for name, value in ROWS.items():
        assert http_json(host, "POST", "/api/items", {"name": name, "value": value})[0] == 201
    for key, value in KEYS.items():
        assert http_json(host, "PUT", f"/api/kv/{key}", {"value": value})[0] == 200
    backed_up = data(host)
    assert backed_up[0].keys() >= ROWS.keys() and backed_up[1].keys() >= KEYS.keys()
    # File data (the demo's data path, shared/): restored with its owner and mode (issue 16).
    host.check_output(f"printf 'uploaded before the backup\\n' > {UPLOAD} && chown {APP}:{APP} {UPLOAD} "
                      f"&& chmod 0640 {UPLOAD}")

    playbook("playbooks/backup.yml")
    offsite = tmp_path / "offsite"
    playbook("playbooks/fetch-backup.yml", "-e", json.dumps({"pyfleet_offsite_dir": str(offsite)}))
    # Written after the last off-site set: lost with the server (that is the RPO).
    assert http_json(host, "POST", "/api/items", {"name": "after-backup", "value": "lost"})[0] == 201

    hostname = host.backend.get_hostname()
    replace_host_with_a_blank_one(hostname)
    assert not host.file(f"/opt/{APP}").exists, "the replacement host is not blank"

    extra = json.dumps({"dr_backup_dir": str(offsite / hostname)})
    result = playbook("playbooks/disaster-recovery.yml", "-e", extra)
    report = re.search(r"rebuilt and healthy in [0-9.]+ s \(RTO\).*?min old", result.stdout, re.S)
    assert report, result.stdout[-3000:]
    print("disaster recovery:", " ".join(report.group(0).split()))

    assert data(host) == backed_up
    assert http_json(host, "GET", "/api/items/after-backup")[0] == 404
    upload = host.file(UPLOAD)
    assert (upload.content_string, upload.user, upload.group, upload.mode) == (
        "uploaded before the backup\n", APP, APP, 0o640)

    again = playbook("playbooks/disaster-recovery.yml", "-e", extra)
    recap = re.findall(r"changed=(\d+)", again.stdout)
    assert recap and all(n == "0" for n in recap), f"a second recovery run changed something\n{again.stdout[-4000:]}"
