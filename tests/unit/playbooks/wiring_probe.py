"""Runs a probe play against a throw-away inventory with the playbooks' own group_vars (the wiring) and the roles,
and returns what each host's `PROBE <json>` debug message said: how the wiring resolves for that inventory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def probe(tmp_path: Path, play: str, inventory: dict, *args: str) -> dict[str, object]:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "group_vars").symlink_to(REPO / "playbooks" / "group_vars")
    (tmp_path / "roles").symlink_to(REPO / "roles")
    (tmp_path / "playbooks" / "probe.yml").write_text(play)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
         str(tmp_path / "playbooks" / "probe.yml"), *args],
        capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                 ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    found: dict[str, object] = {}
    host = None
    for line in result.stdout.splitlines():
        if line.startswith("ok: ["):
            host = line[5:line.index("]")]
        if '"msg": "PROBE ' in line:
            found[host] = json.loads(json.loads("{" + line.strip().rstrip(",") + "}")["msg"].removeprefix("PROBE "))
    return found
