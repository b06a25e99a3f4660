"""The app role's unit checker (roles/app/files/pyfleet-check-unit) accepts a good unit and refuses bad ones.

It runs the real `systemd-analyze verify` (skipped where the machine has none), as the role's `validate` does on a
host: paths below `current/` are checked in the release being deployed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROLE = Path(__file__).resolve().parents[3] / "roles" / "app"
SCRIPT = ROLE / "files" / "pyfleet-check-unit"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")

UNIT = """[Unit]
Description=fleetdemo API
After=network-online.target

[Service]
Type={type}
ExecStart={current}/venv/bin/{command} --port 8000
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, Path]:
    """(current, release): the release holds an executable venv/bin/serve; current/ does not exist yet."""
    current, release = tmp_path / "app" / "current", tmp_path / "app" / "releases" / "1.0.0"
    (release / "venv" / "bin").mkdir(parents=True)
    serve = release / "venv" / "bin" / "serve"
    serve.write_text("#!/bin/sh\nexit 0\n")
    serve.chmod(0o755)
    return current, release


def check(tmp_path: Path, current: Path, release: Path, **unit: str) -> subprocess.CompletedProcess:
    path = tmp_path / "fleetdemo-api.service"
    path.write_text(UNIT.format(current=current, **{"type": "simple", "command": "serve", **unit}))
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    result = subprocess.run([str(SCRIPT), str(path), str(current), str(release)], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(scratch)}, check=False, timeout=60)
    assert list(scratch.iterdir()) == [], "the checker left its copy behind"
    return result


def test_accepts_a_unit_whose_command_is_in_the_new_release(tmp_path, release):
    result = check(tmp_path, *release)
    assert result.returncode == 0, result.stderr


def test_refuses_a_command_the_release_lacks(tmp_path, release):
    result = check(tmp_path, *release, command="no-such-server")
    assert result.returncode == 1
    assert "no-such-server" in result.stderr and "not executable" in result.stderr, result.stderr


def test_refuses_a_setting_systemd_cannot_parse(tmp_path, release):
    result = check(tmp_path, *release, type="sometimes")
    assert result.returncode == 1
    assert "sometimes" in result.stderr, result.stderr


def test_refuses_wrong_usage(tmp_path):
    result = subprocess.run([str(SCRIPT), str(tmp_path / "unit.service")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 2
    assert "usage:" in result.stderr
