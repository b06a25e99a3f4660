"""AppLock: the one lock of an app's sets, shared by backup runs, retention and restores (real flock, tmp dirs)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b

# A second process holds the lock: flock locks belong to open file descriptions, so a child is the honest holder.
HOLDER = """
import sys, time
sys.path.insert(0, {lib!r})
import backup as b
with b.AppLock({root!r}, "fleetdemo", 5, purpose="restore of 20250124T120000Z"):
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
"""


def hold(tmp_path: Path, seconds: float) -> subprocess.Popen:
    lib = str(Path(b.__file__).parent)
    code = HOLDER.format(lib=lib, root=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_lock_is_a_root_owned_0600_file_in_the_app_directory(tmp_path):
    with b.AppLock(str(tmp_path), "fleetdemo", 0, purpose="backup postgresql") as lock:
        path = tmp_path / "fleetdemo" / ".lock"
        assert lock.path == str(path)
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.geteuid()
        assert path.read_text().startswith(f"pid {os.getpid()}: backup postgresql since ")
    # Released: the holder's line is gone, the file stays.
    assert path.read_text() == ""


def test_a_second_holder_waits_then_gives_up_naming_the_holder(tmp_path):
    proc = hold(tmp_path, 30)
    try:
        waits: list[str] = []
        started = time.monotonic()
        with pytest.raises(b.LockBusy) as caught:
            with b.AppLock(str(tmp_path), "fleetdemo", 0.6, purpose="backup files", poll=0.1, log=waits.append):
                pytest.fail("the lock was taken while another process held it")
        waited = time.monotonic() - started
        assert 0.5 <= waited < 5
        assert isinstance(caught.value, b.BackupError)
        assert f"pid {proc.pid}: restore of 20250124T120000Z" in str(caught.value)
        assert "gave up after 0.6 s of waiting (backup files not started)" in str(caught.value)
        assert caught.value.holder.startswith(f"pid {proc.pid}: restore of")
        assert len(waits) == 1 and "held by pid" in waits[0]
    finally:
        proc.kill()
        proc.wait()


def test_a_waiter_gets_the_lock_when_the_holder_lets_go(tmp_path):
    proc = hold(tmp_path, 0.5)
    try:
        started = time.monotonic()
        with b.AppLock(str(tmp_path), "fleetdemo", 10, poll=0.05):
            waited = time.monotonic() - started
        assert 0.2 < waited < 5
    finally:
        proc.wait()


def test_a_released_lock_is_taken_at_once(tmp_path):
    with b.AppLock(str(tmp_path), "fleetdemo", 0):
        pass
    proc = hold(tmp_path, 0)
    proc.wait()
    started = time.monotonic()
    with b.AppLock(str(tmp_path), "fleetdemo", 0):
        assert time.monotonic() - started < 0.5


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("root:x:0:0\n")
    (tmp_path / "fleetdemo").mkdir(mode=0o751)
    (tmp_path / "fleetdemo" / ".lock").symlink_to(target)
    with pytest.raises(b.BackupError, match=r"\.lock is a symlink; refusing to use it as the lock"):
        with b.AppLock(str(tmp_path), "fleetdemo", 0):
            pass
    assert target.read_text() == "root:x:0:0\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks apply when running as root")
def test_a_lock_or_directory_not_owned_by_root_is_refused(tmp_path):
    app_dir = tmp_path / "fleetdemo"
    app_dir.mkdir(mode=0o751)
    lock = app_dir / ".lock"
    lock.write_text("")
    os.chown(lock, 65534, 65534)
    with pytest.raises(b.BackupError, match=r"is owned by uid 65534, not root; refusing to use it"):
        b.AppLock(str(tmp_path), "fleetdemo", 0).acquire()
    lock.unlink()
    os.chmod(app_dir, 0o777)
    with pytest.raises(b.BackupError, match=r"must be owned by root and writable by root only"):
        b.AppLock(str(tmp_path), "fleetdemo", 0).acquire()


def test_without_create_a_missing_directory_is_an_error_and_nothing_is_made(tmp_path):
    with pytest.raises(b.BackupError, match="does not exist; nothing to lock"):
        b.AppLock(str(tmp_path), "fleetdemo", 0, create=False).acquire()
    assert not (tmp_path / "fleetdemo").exists()


def test_backup_runs_and_retention_take_the_lock(tmp_path, monkeypatch):
    from test_backup import NOW, FakeRunner, job_config

    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    config = job_config(tmp_path, redis=None, files=None)
    seen: list[str] = []

    class Spy(FakeRunner):
        def run(self, argv, env=None, stdout=None):
            seen.append((tmp_path / "backups" / "fleetdemo" / ".lock").read_text())
            return super().run(argv, env, stdout)

    job = b.BackupJob(config, Spy(tmp_path / "dump.rdb"), clock=lambda: NOW)
    job.run()
    assert seen and all(line.startswith(f"pid {os.getpid()}: backup postgresql since") for line in seen)
    proc = hold(tmp_path / "backups", 30)
    try:
        with pytest.raises(b.LockBusy, match="held by pid .*: restore of"):
            b.BackupJob(config, FakeRunner(tmp_path / "dump.rdb"), clock=lambda: NOW, lock_timeout=0.2).run()
        with pytest.raises(b.LockBusy, match=r"\(retention not started\)"):
            b.BackupJob(config, FakeRunner(tmp_path / "dump.rdb"), clock=lambda: NOW, lock_timeout=0.2).prune()
    finally:
        proc.kill()
        proc.wait()
    assert len(os.listdir(tmp_path / "backups" / "fleetdemo")) == 2  # .lock and the one set
