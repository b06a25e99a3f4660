"""Root never follows a symlink that postgres or redis could have planted when it takes their files into a set."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from test_backup import NOW, FakeRunner, job_config


def root_file(tmp_path: Path) -> Path:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret:19000:0:99999:7:::\n")
    os.chmod(secret, 0o600)
    return secret


class PlantingRunner(FakeRunner):
    """pg_dump 'as postgres' leaves ``plant(target)`` instead of (or inside) its dump."""

    def __init__(self, rdb: Path, plant):
        super().__init__(rdb)
        self.plant = plant
        self.targets: list[str] = []

    def run(self, argv, env=None, stdout=None):
        if "pg_dump" in argv and "--version" not in argv:
            self.calls.append(argv)
            target = argv[argv.index("-f") + 1]
            self.targets.append(target)
            self.plant(Path(target))
            return 0, "", ""
        return super().run(argv, env, stdout)


def run_job(tmp_path, runner, **config):
    return b.BackupJob(job_config(tmp_path, redis=None, files=None, **config), runner, clock=lambda: NOW).run()


def test_a_symlinked_dump_is_refused_and_its_target_untouched(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    secret = root_file(tmp_path)
    runner = PlantingRunner(tmp_path / "dump.rdb", lambda target: target.symlink_to(secret))
    with pytest.raises(b.BackupError, match=r"the dump of fleetdemo \(postgresql/\.stage-fleetdemo\)/fleetdemo\.dump "
                                            r"is a symlink where a file was expected; refusing to follow it as root"):
        run_job(tmp_path, runner)
    st = secret.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    assert secret.read_text().startswith("root:")
    assert os.listdir(tmp_path / "backups" / "fleetdemo") == [".lock"]


def test_a_symlink_inside_a_directory_format_dump_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    secret = root_file(tmp_path)

    def plant(target: Path) -> None:
        target.mkdir()
        (target / "toc.dat").write_bytes(b"PGDMP")
        (target / "3001.dat.gz").symlink_to(secret)

    runner = PlantingRunner(tmp_path / "dump.rdb", plant)
    with pytest.raises(b.BackupError, match=r"fleetdemo\.dir/3001\.dat\.gz is a symlink where a file was expected"):
        run_job(tmp_path, runner, postgresql={"databases": ["fleetdemo"], "format": "directory", "jobs": 2})
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_a_symlinked_directory_dump_is_not_walked(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    secret = root_file(elsewhere)
    os.chmod(elsewhere, 0o700)
    runner = PlantingRunner(tmp_path / "dump.rdb", lambda target: target.symlink_to(elsewhere))
    with pytest.raises(b.BackupError, match=r"fleetdemo\.dir is a symlink where a file was expected"):
        run_job(tmp_path, runner, postgresql={"databases": ["fleetdemo"], "format": "directory"})
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o700
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_a_directory_format_dump_is_staged_then_secured(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)

    def plant(target: Path) -> None:
        target.mkdir()
        (target / "toc.dat").write_bytes(b"PGDMP")
        (target / "3001.dat.gz").write_bytes(b"data")
        os.chmod(target / "3001.dat.gz", 0o666)

    runner = PlantingRunner(tmp_path / "dump.rdb", plant)
    result = run_job(tmp_path, runner, postgresql={"databases": ["fleetdemo"], "format": "directory"})
    # pg_dump wrote into a staging directory of its own, never straight into the set.
    assert runner.targets == [str(tmp_path / "backups" / "fleetdemo" / ".tmp-20250124T120000Z" / "postgresql" /
                                  ".stage-fleetdemo" / "fleetdemo.dir")]
    set_dir = Path(result["path"])
    assert sorted(os.listdir(set_dir / "postgresql")) == ["fleetdemo.dir"]
    assert stat.S_IMODE((set_dir / "postgresql").stat().st_mode) == 0o750
    assert stat.S_IMODE((set_dir / "postgresql" / "fleetdemo.dir").stat().st_mode) == 0o750
    for name in ("toc.dat", "3001.dat.gz"):
        assert stat.S_IMODE((set_dir / "postgresql" / "fleetdemo.dir" / name).stat().st_mode) == 0o640
    info = b.check_set(str(set_dir), app="fleetdemo", now=NOW)
    assert info.good, info.problems
    assert sorted(info.manifest["files"]) == ["postgresql/fleetdemo.dir/3001.dat.gz",
                                              "postgresql/fleetdemo.dir/toc.dat"]


def test_a_symlinked_rdb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    secret = root_file(tmp_path)
    rdb = tmp_path / "redis-dir" / "dump.rdb"
    rdb.parent.mkdir()

    class RedisPlants(FakeRunner):
        def run(self, argv, env=None, stdout=None):
            rc, out, err = super().run(argv, env, stdout)
            if argv[-1] == "BGSAVE":  # redis (or whoever runs as redis) swaps its RDB for a link
                rdb.unlink()
                rdb.symlink_to(secret)
            return rc, out, err

    config = job_config(tmp_path, postgresql=None, files=None)
    config["redis"]["rdb_path"] = str(rdb)
    with pytest.raises(b.BackupError, match=rf"the RDB {rdb} is a symlink; refusing to follow it as root"):
        b.BackupJob(config, RedisPlants(rdb), clock=lambda: NOW, sleep=lambda s: None).run()
    assert os.listdir(tmp_path / "backups" / "fleetdemo") == [".lock"]


def test_fifos_and_other_files_are_refused(tmp_path):
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "pipe")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(b.BackupError, match=r"d/pipe is neither a regular file nor a directory; refusing it"):
            b.secure_tree(fd, "d", None, "d")
    finally:
        os.close(fd)
