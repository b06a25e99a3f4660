"""The backup program (roles/backup/files/pyfleet_backup_cli.py): around a busy lock it waits, bounded, and a
give-up is a loud failure (exit 75, stderr, syslog), never a silent skip; it logs to stderr (the journal, with
priorities, under systemd); it publishes node_exporter metrics after every run; its --on-failure hook."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

FILES = Path(__file__).resolve().parents[4] / "roles" / "backup" / "files"

HOLDER = """
import sys, time
sys.path.insert(0, {lib!r})
import pyfleet_backup as b
with b.AppLock({root!r}, "fleetdemo", 5, purpose="backup postgresql,redis"):
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
"""


@pytest.fixture()
def cli(monkeypatch):
    monkeypatch.setenv("PYFLEET_LIB", str(FILES))
    spec = importlib.util.spec_from_file_location("pyfleet_backup_cli_under_test", FILES / "pyfleet_backup_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    journal: list[tuple[int, str]] = []
    monkeypatch.setattr(module, "journal", lambda priority, message: journal.append((priority, message)), raising=False)
    module.journal_lines = journal
    return module


def files_config(tmp_path: Path, **extra) -> Path:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "app.env").write_text("SECRET_KEY=x\n")
    config = {"app": "fleetdemo", "root": str(tmp_path / "backups"), "host": "h1",
              "files": {"paths": [str(tmp_path / "etc")]}, **extra}
    path = tmp_path / "fleetdemo.json"
    path.write_text(json.dumps(config))
    return path


def hold(root: Path, seconds: float) -> subprocess.Popen:
    code = HOLDER.format(lib=str(FILES), root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", code, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_busy_lock_is_waited_for_by_default(tmp_path, cli, capsys):
    config = files_config(tmp_path)
    proc = hold(tmp_path / "backups", 1.0)
    try:
        started = time.monotonic()
        rc = cli.main(["--quiet", "--json", "--config", str(config)])
        waited = time.monotonic() - started
    finally:
        proc.wait()
    assert rc == 0, capsys.readouterr()
    assert waited >= 0.5
    result = json.loads(capsys.readouterr().out)
    assert result["components"] == ["files"] and os.path.isdir(result["path"])
    # --quiet: progress lines are not printed; nothing else is written anywhere (no private log file any more).
    assert "waiting up to" not in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["backups", "etc", "fleetdemo.json"]


def test_progress_goes_to_stderr_with_a_time_stamp_by_hand(tmp_path, cli, capsys, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    config = files_config(tmp_path)
    proc = hold(tmp_path / "backups", 1.0)
    try:
        rc = cli.main(["--config", str(config)])
    finally:
        proc.wait()
    assert rc == 0
    err = capsys.readouterr().err
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ fleetdemo \[\d+\] waiting up to 3600 s for the lock of "
                     r"fleetdemo, held by pid", err, re.M), err
    assert re.search(r"fleetdemo \[\d+\] set \d{8}T\d{6}Z complete: ", err), err
    assert not cli.journal_lines


def test_giving_up_is_a_loud_failure_naming_the_holder(tmp_path, cli, capsys):
    config = files_config(tmp_path)
    proc = hold(tmp_path / "backups", 30)
    try:
        started = time.monotonic()
        rc = cli.main(["--quiet", "--wait-timeout", "0.5", "--config", str(config)])
        waited = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    assert rc == 75
    assert 0.4 <= waited < 10
    err = capsys.readouterr().err
    assert f"fleetdemo [{os.getpid()}] FAILED: the lock {tmp_path}/backups/fleetdemo/.lock of fleetdemo is held by " \
           f"pid {proc.pid}: backup postgresql,redis since " in err
    assert "; gave up after 0.5 s of waiting (backup files not started)" in err
    assert cli.journal_lines and cli.journal_lines[0][0] == cli.syslog.LOG_ERR
    assert cli.journal_lines[0][1].startswith("fleetdemo: FAILED: the lock ")
    assert sorted(os.listdir(tmp_path / "backups" / "fleetdemo")) == [".lock"]


def test_the_wait_comes_from_the_config_and_json_reports_the_failure(tmp_path, cli, capsys):
    config = files_config(tmp_path, lock_wait_timeout=0.3)
    proc = hold(tmp_path / "backups", 30)
    try:
        rc = cli.main(["--json", "--config", str(config)])
    finally:
        proc.kill()
        proc.wait()
    assert rc == 75
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] is True and "is held by pid" in out["msg"]


def test_the_program_is_installed_as_a_python3_script():
    """Installed as /usr/local/sbin/pyfleet-backup itself (no /bin/sh wrapper), isolated from PYTHON* variables.
    The collection's copy has no shebang (ansible-test sanity allows no python3 one): the role adds it."""
    path = FILES / "pyfleet_backup_cli.py"
    assert not path.read_text().startswith("#!")
    assert not os.access(path, os.X_OK)
    assert not (FILES / "pyfleet-backup").exists()
    tasks = yaml.safe_load((FILES.parent / "tasks" / "configure.yml").read_text())
    install = next(task["ansible.builtin.copy"] for task in tasks if task["name"] == "Install the backup program")
    lookup = "{{ lookup('ansible.builtin.file', 'pyfleet_backup_cli.py') }}"
    assert install["content"] == f"#!/usr/bin/python3 -I\n{lookup}\n"
    assert (install["dest"], install["mode"]) == ("{{ _backup_program }}", "0755")


def test_a_run_with_cron_s_path_finds_runuser(tmp_path, cli, monkeypatch):
    # Under cron (before the timers) jobs got PATH=/usr/bin:/bin, without runuser (/usr/sbin, every PostgreSQL
    # command). systemd's PATH has /usr/sbin; the program still sets its own, whoever starts it.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert cli.main(["--quiet", "--config", str(files_config(tmp_path))]) == 0
    rc, _out, err = cli.SubprocessRunner().run(["runuser", "--help"])
    assert rc == 0, err
