"""The backup program under systemd (issue 11, item 1): journal priorities on stderr, node_exporter textfile metrics
after every run (docs/monitoring.md names them), and the OnFailure= hook (--on-failure)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as lib

FILES = Path(__file__).resolve().parents[4] / "roles" / "backup" / "files"
CLI = FILES / "pyfleet_backup_cli.py"

CALENDAR_UTC = """  Original form: *:0/15
Normalized form: *-*-* *:00/15:00
    Next elapse: Fri 2026-11-27 01:15:00 UTC
       From now: 8min left
       Iter. #2: Fri 2026-11-27 01:30:00 UTC
       From now: 23min left
       Iter. #3: Fri 2026-11-27 01:45:00 UTC
       From now: 38min left
"""
# In another time zone every elapse is followed by its UTC time; a DST change makes one gap an hour longer.
CALENDAR_PARIS = """  Original form: Sun *-*-* 02:30
Normalized form: Sun *-*-* 02:30:00
    Next elapse: Sun 2026-03-22 02:30:00 CET
       (in UTC): Sun 2026-03-22 01:30:00 UTC
       From now: 3 months left
       Iter. #2: Sun 2026-03-29 03:30:00 CEST
       (in UTC): Sun 2026-03-29 01:30:00 UTC
       Iter. #3: Sun 2026-04-05 02:30:00 CEST
       (in UTC): Sun 2026-04-05 00:30:00 UTC
"""


def test_calendar_interval_is_the_longest_gap_in_utc():
    assert lib.calendar_interval(CALENDAR_UTC) == 900
    assert lib.calendar_interval(CALENDAR_PARIS) == 7 * 86400
    assert lib.calendar_interval("Failed to parse calendar specification") == 0


@pytest.fixture()
def cli(monkeypatch):
    monkeypatch.setenv("PYFLEET_LIB", str(FILES))
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    spec = importlib.util.spec_from_file_location("pyfleet_backup_cli_metrics", CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "journal", lambda priority, message: None)

    # systemd-analyze is the host's; here a fixed answer keeps the test independent of the machine.
    def fake_run(self, argv, env=None, stdout=None):
        if argv[:2] == ["systemd-analyze", "calendar"]:
            expression = argv[-1]
            daily = "    Next elapse: Fri 2026-11-27 03:30:00 UTC\n       Iter. #2: Sat 2026-11-28 03:30:00 UTC\n"
            return 0, CALENDAR_UTC if expression == "*:0/15" else daily, ""
        return real_run(self, argv, env, stdout)

    real_run = module.SubprocessRunner.run
    monkeypatch.setattr(module.SubprocessRunner, "run", fake_run)
    return module


def make_config(tmp_path: Path, **extra) -> Path:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "app.env").write_text("SECRET_KEY=x\n" * 100)
    (tmp_path / "metrics").mkdir(exist_ok=True)
    config = {
        "app": "fleetdemo", "root": str(tmp_path / "backups"), "host": "h1",
        "files": {"paths": [str(tmp_path / "etc")]},
        "metrics_dir": str(tmp_path / "metrics"),
        "randomized_delay_sec": 60,
        "schedules": [
            {"name": "databases", "components": ["postgresql"], "on_calendar": "*:0/15",
             "unit": "pyfleet-backup-fleetdemo-databases"},
            {"name": "files", "components": ["files"], "on_calendar": "*-*-* 03:30:00",
             "unit": "pyfleet-backup-fleetdemo-files"},
        ],
        **extra,
    }
    path = tmp_path / "conf" / "fleetdemo.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def samples(tmp_path: Path) -> dict[tuple[str, str], float]:
    text = (tmp_path / "metrics" / "pyfleet-backup-fleetdemo.prom").read_text()
    found = {}
    for metric in lib.METRIC_HELP:
        for (_app, component), value in lib.read_metric_samples(text, metric).items():
            found[(metric, component)] = value
    return found


def test_a_good_run_publishes_the_sets_metrics_atomically(tmp_path, cli, capsys):
    config = make_config(tmp_path)
    before = time.time()
    assert cli.main(["--json", "--config", str(config)]) == 0
    result = json.loads(capsys.readouterr().out)
    prom = tmp_path / "metrics" / "pyfleet-backup-fleetdemo.prom"
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    # Only the file and its lock: the temporary file was renamed, not left behind.
    assert sorted(os.listdir(tmp_path / "metrics")) == [".pyfleet-backup-fleetdemo.prom.lock",
                                                        "pyfleet-backup-fleetdemo.prom"]
    values = samples(tmp_path)
    manifest = json.loads((Path(result["path"]) / "manifest.json").read_text())
    files_size = sum(r["size"] for rel, r in manifest["files"].items() if rel.startswith("files/"))
    assert before - 2 <= values[("last_success_timestamp_seconds", "files")] <= time.time() + 1
    assert values[("last_size_bytes", "files")] == files_size > 0
    assert values[("last_duration_seconds", "files")] == pytest.approx(manifest["duration_seconds"], abs=0.001)
    assert values[("interval_seconds", "files")] == 86400 + 60
    assert values[("last_failure_timestamp_seconds", "files")] == 0
    text = prom.read_text()
    assert "# TYPE pyfleet_backup_last_success_timestamp_seconds gauge" in text
    assert 'pyfleet_backup_last_size_bytes{app="fleetdemo",component="files"} ' in text


def test_a_failed_run_still_publishes_and_keeps_the_last_success(tmp_path, cli, capsys):
    config = make_config(tmp_path)
    assert cli.main(["--quiet", "--config", str(config)]) == 0
    good = samples(tmp_path)[("last_success_timestamp_seconds", "files")]
    # The files path disappears and turns into a file: the data path check fails the run.
    data = tmp_path / "data"
    data.write_text("not a directory")
    conf = json.loads(config.read_text())
    conf["files"]["data_paths"] = [str(data)]
    config.write_text(json.dumps(conf))
    assert cli.main(["--quiet", "--config", str(config)]) == 1
    assert "FAILED: files: data path" in capsys.readouterr().err
    assert samples(tmp_path)[("last_success_timestamp_seconds", "files")] == good


def test_no_metrics_directory_means_no_metrics_and_no_error(tmp_path, cli, capsys):
    config = make_config(tmp_path)
    shutil.rmtree(tmp_path / "metrics")
    assert cli.main(["--config", str(config)]) == 0
    assert not (tmp_path / "metrics").exists()
    assert "metrics:" not in capsys.readouterr().err


def test_the_hook_records_the_failure_and_runs_the_operators_command(tmp_path, cli, capsys):
    marker = tmp_path / "hook-env.json"
    command = [sys.executable, "-c",
               "import json, os; json.dump({k: v for k, v in os.environ.items() if k.startswith('PYFLEET_BACKUP')},"
               f" open({str(marker)!r}, 'w')); print('paged the operator')"]
    config = make_config(tmp_path, on_failure_command=command)
    assert cli.main(["--quiet", "--config", str(config)]) == 0
    good = samples(tmp_path)
    before = time.time()
    rc = cli.main(["--on-failure", "pyfleet-backup-fleetdemo-files.service", "--config-dir", str(config.parent)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "FAILED: pyfleet-backup-fleetdemo-files.service (backup of fleetdemo, schedule files: files) failed; " \
           "its output: journalctl -u pyfleet-backup-fleetdemo-files.service" in err
    assert "backup_on_failure_command" in err and "paged the operator" in err
    assert json.loads(marker.read_text()) == {
        "PYFLEET_BACKUP_APP": "fleetdemo", "PYFLEET_BACKUP_SCHEDULE": "files",
        "PYFLEET_BACKUP_UNIT": "pyfleet-backup-fleetdemo-files.service", "PYFLEET_BACKUP_COMPONENTS": "files"}
    after = samples(tmp_path)
    assert before - 1 <= after[("last_failure_timestamp_seconds", "files")] <= time.time() + 1
    assert after[("last_success_timestamp_seconds", "files")] == good[("last_success_timestamp_seconds", "files")]
    # A later good run rewrites the file and keeps the failure time (the alert compares the two).
    assert cli.main(["--quiet", "--config", str(config)]) == 0
    assert samples(tmp_path)[("last_failure_timestamp_seconds", "files")] == after[
        ("last_failure_timestamp_seconds", "files")]
    assert samples(tmp_path)[("last_success_timestamp_seconds", "files")] >= after[
        ("last_success_timestamp_seconds", "files")]


def test_the_hook_fails_loudly_on_an_unknown_unit_or_a_failing_command(tmp_path, cli, capsys):
    config = make_config(tmp_path, on_failure_command=["/bin/false"])
    assert cli.main(["--on-failure", "pyfleet-backup-other-files.service", "--config-dir", str(config.parent)]) == 1
    assert "pyfleet-backup-other-files.service failed, and no backup configuration in" in capsys.readouterr().err
    assert cli.main(["--on-failure", "pyfleet-backup-fleetdemo-files.service",
                     "--config-dir", str(config.parent)]) == 1
    err = capsys.readouterr().err
    assert "backup_on_failure_command /bin/false failed (rc=1)" in err
    # The failure is recorded before the command runs, whatever the command does.
    assert samples(tmp_path)[("last_failure_timestamp_seconds", "files")] > 0


def test_under_systemd_each_line_carries_its_journal_priority(tmp_path):
    """JOURNAL_STREAM names stderr (as systemd sets it): progress at <6>, a failure at <3>, no time stamp."""
    config = make_config(tmp_path, metrics_dir="")
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err:
        st = os.fstat(err.fileno())
        env = dict(os.environ, PYFLEET_LIB=str(FILES), JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        good = subprocess.run([sys.executable, str(CLI), "--config", str(config), "--components", "files"],
                              stderr=err, env=env, check=False)
        bad = subprocess.run([sys.executable, str(CLI), "--config", str(config), "--components", "redis"],
                             stderr=err, env=env, check=False)
    lines = err_path.read_text().splitlines()
    assert (good.returncode, bad.returncode) == (0, 1), lines
    assert any(line.startswith("<6>set ") and " complete: " in line for line in lines), lines
    assert "<3>FAILED: component(s) redis are not configured for fleetdemo" in lines
    assert all(line.startswith(("<3>", "<4>", "<6>")) for line in lines), lines
