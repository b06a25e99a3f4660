"""Releases on the default stack: a good release goes live, a broken one is rolled back by the health gate.

Runs after test_default.py (pytest's file order) because it changes the live release.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import zipfile
from pathlib import Path

from helpers import APP, changed_tasks, http_json, molecule_hosts, run_playbook
from releases import _record_line, make_release

testinfra_hosts = molecule_hosts("pyfleet")


def deploy(version: str, wheelhouse: Path, **more) -> subprocess.CompletedProcess:
    extra = {"app_version": version, "app_wheelhouse_dir": str(wheelhouse), "app_health_retries": 5, **more}
    return run_playbook("playbooks/deploy.yml", "-e", json.dumps(extra))


def live_release(host) -> str:
    return host.file(f"/opt/{APP}/current").linked_to


def test_good_release_goes_live_and_keeps_the_previous_one(host, tmp_path):
    result = deploy("1.0.1", make_release(tmp_path / "good", "1.0.1"))
    assert result.returncode == 0, result.stdout[-4000:]
    assert live_release(host) == f"/opt/{APP}/releases/1.0.1"
    assert host.file(f"/opt/{APP}/releases/1.0.0/venv/bin/python").exists
    code, body = http_json(host, "GET", "/healthz")
    assert code == 200 and body["version"] == "1.0.1"


def rebuilt(wheelhouse: Path, build_id: str) -> Path:
    """The same wheelhouse, app_version unchanged, its app wheel holding one more file, with a manifest.txt."""
    (wheel,) = wheelhouse.glob(f"{APP}-*.whl")
    with zipfile.ZipFile(wheel) as zin:
        files = {item.filename: zin.read(item) for item in zin.infolist()}
    (record,) = [name for name in files if name.endswith(".dist-info/RECORD")]
    files[f"{APP}/build_id.txt"] = build_id.encode()
    lines = [_record_line(name, data) for name, data in files.items() if name != record] + [f"{record},,"]
    files[record] = ("\n".join(lines) + "\n").encode()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in files.items():
            zout.writestr(name, data)
    manifest = "".join(f"{whl.name}  sha256:{hashlib.sha256(whl.read_bytes()).hexdigest()}\n"
                       for whl in sorted(wheelhouse.glob("*.whl")))
    (wheelhouse / "manifest.txt").write_text(manifest)
    return wheelhouse


def test_a_rebuilt_wheelhouse_of_the_same_version_is_installed(host, tmp_path):
    """Same app_version, other wheels: the wheelhouse's identity is part of the release's, so it is installed (A.6)."""
    venv = f"/opt/{APP}/releases/1.0.1/venv"
    site = host.check_output(f"{venv}/bin/python -c 'import {APP}, os; print(os.path.dirname({APP}.__file__))'")
    assert not host.file(f"{site}/build_id.txt").exists
    api = f"{APP}-api.service"
    invocation = host.check_output(f"systemctl show -p InvocationID --value {api}")
    wheelhouse = rebuilt(make_release(tmp_path / "rebuilt", "1.0.1"), "rebuilt-1")
    result = deploy("1.0.1", wheelhouse)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "pyfleet.server.app : Install the release into its own venv (no package index)" in \
        changed_tasks(result.stdout), result.stdout[-4000:]
    assert host.file(f"{site}/build_id.txt").content_string == "rebuilt-1"
    # the role's identity of a wheelhouse: sha256 of manifest.txt as Ansible's file lookup reads it (no final newline)
    manifest_id = hashlib.sha256((wheelhouse / "manifest.txt").read_text().rstrip("\n").encode()).hexdigest()
    assert host.file(f"{venv}/.pyfleet-wheelhouse").content_string == manifest_id
    assert host.check_output(f"systemctl show -p InvocationID --value {api}") != invocation, "not restarted"
    assert live_release(host) == f"/opt/{APP}/releases/1.0.1"


def test_broken_release_is_rolled_back_with_the_reason(host, tmp_path):
    """Its API crash-loops: the gate stops waiting early and shows the unit's state and journal (12 A.4)."""
    result = deploy("1.0.2", make_release(tmp_path / "broken", "1.0.2", broken=True), app_health_retries=60)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-4000:]
    assert "fleetdemo 1.0.2 failed its health gate" in out, out[-4000:]
    assert f"Rolled back to /opt/{APP}/releases/1.0.1" in out, out[-4000:]
    # 60 retries would take 2 minutes; a crash loop ends the wait after two restarts by systemd
    attempts = int(re.search(r"is unhealthy after (\d+) attempts?", out)[1])
    assert attempts < 30, out[-4000:]
    assert f"Stopped waiting early: {APP}-api.service is crash-looping" in out, out[-4000:]
    assert f"{APP}-api.service ActiveState=" in out and "NRestarts=" in out, out[-4000:]
    # The journal's last lines: the crash itself, or (socket-activated, restarted several times) gunicorn's verdict.
    assert "journal lines:" in out, out[-4000:]
    assert "deliberately broken release" in out or "Worker failed to boot" in out, out[-4000:]
    assert live_release(host) == f"/opt/{APP}/releases/1.0.1"
    code, body = http_json(host, "GET", "/readyz")
    assert code == 200, body
    code, body = http_json(host, "GET", "/healthz")
    assert body["version"] == "1.0.1"


def test_a_unit_that_cannot_run_never_lands(host, tmp_path):
    unit = host.file(f"/etc/systemd/system/{APP}-api.service")
    before = unit.content_string
    result = deploy("1.0.1", make_release(tmp_path / "good", "1.0.1"), app_api_command="no-such-server --port 1")
    assert result.returncode != 0, result.stdout[-4000:]
    assert "failed to validate" in result.stdout, result.stdout[-4000:]
    assert unit.content_string == before
    assert host.service(f"{APP}-api.service").is_running


def test_a_venv_without_its_server_never_goes_live(host, tmp_path):
    """Units unchanged (so not validated again) and a venv without gunicorn: refused before the switch (12 A.4)."""
    host.check_output(f"rm /opt/{APP}/releases/1.0.2/venv/bin/gunicorn")
    result = deploy("1.0.2", make_release(tmp_path / "broken", "1.0.2", broken=True))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-4000:]
    assert f"fleetdemo 1.0.2: /opt/{APP}/releases/1.0.2/venv/bin lacks gunicorn" in out, out[-4000:]
    assert live_release(host) == f"/opt/{APP}/releases/1.0.1"
    assert host.service(f"{APP}-api.service").is_running


def test_site_never_moves_the_live_release_backwards(host):
    """After deploy.yml rolled 1.0.1 out, site.yml with the inventory's 1.0.0 is refused before any change."""
    assert live_release(host) == f"/opt/{APP}/releases/1.0.1"
    api = f"{APP}-api.service"
    invocation = host.check_output(f"systemctl show -p InvocationID --value {api}")
    result = run_playbook("playbooks/site.yml")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-4000:]
    assert "app_version 1.0.0 is older than 1.0.1, the live release of fleetdemo on pyfleet-default" in out, out[-4000:]
    assert "app_allow_downgrade=true" in out
    assert "changed=0" in result.stdout, result.stdout[-2000:]
    assert live_release(host) == f"/opt/{APP}/releases/1.0.1"
    assert host.check_output(f"systemctl show -p InvocationID --value {api}") == invocation


def test_a_rollback_asked_for_passes_preflight(host):
    """app_allow_downgrade lets the same older app_version through (preflight only, in check mode: cheap)."""
    result = run_playbook("playbooks/deploy.yml", "--check", "--tags", "app_preflight",
                          "-e", json.dumps({"app_allow_downgrade": True}))
    assert result.returncode == 0, result.stdout[-4000:]
    assert "live release 1.0.1; this run deploys 1.0.0" in result.stdout
    assert live_release(host) == f"/opt/{APP}/releases/1.0.1"
