"""Free space is checked before a backup writes anything: a set that would not fit is refused with the numbers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from test_backup import NOW, FakeRunner, job_config, make_set

MIB = 1024 * 1024


class StatVfs:
    def __init__(self, free: int):
        self.f_bavail = free // 4096
        self.f_frsize = 4096


class SizedRunner(FakeRunner):
    """PostgreSQL says the database is ``db_size`` bytes."""

    def __init__(self, rdb: Path, db_size: int):
        super().__init__(rdb)
        self.db_size = db_size

    def run(self, argv, env=None, stdout=None):
        if "psql" in argv and "pg_database_size" in argv[-1]:
            self.calls.append(argv)
            assert "'fleetdemo'" in argv[-1]
            return 0, f"fleetdemo\t{self.db_size}\n", ""
        return super().run(argv, env, stdout)


def test_a_set_that_would_not_fit_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    earlier = make_set(tmp_path / "backups", "20250124T110000Z")
    before = sorted(p.name for p in earlier.rglob("*"))
    (tmp_path / "dump.rdb").write_bytes(b"R" * (3 * MIB))
    monkeypatch.setattr(b.os, "statvfs", lambda path: StatVfs(200 * MIB))
    runner = SizedRunner(tmp_path / "dump.rdb", db_size=900 * MIB)
    job = b.BackupJob(job_config(tmp_path), runner, clock=lambda: NOW)
    with pytest.raises(b.BackupError) as caught:
        job.run()
    message = str(caught.value)
    root = tmp_path / "backups"
    # 900 MiB database + 3 MiB RDB + a few bytes of files, +10 % margin, + 64 MiB reserve.
    assert message.startswith(f"not enough space for a backup of fleetdemo: needs ~1057 MiB in {root}, 200 MiB free ")
    assert "postgresql ~900 MiB, redis ~3 MiB, files ~0.0 MiB" in message
    assert message.endswith("nothing was written and the earlier sets are intact")
    assert not any("pg_dump" in argv for argv in runner.calls)
    assert not any(argv[0] == "redis-cli" for argv in runner.calls)
    assert sorted(os.listdir(root / "fleetdemo")) == [".lock", "20250124T110000Z"]
    assert sorted(p.name for p in earlier.rglob("*")) == before


def test_a_set_that_fits_is_written_and_records_its_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    (tmp_path / "dump.rdb").write_bytes(b"R" * MIB)
    monkeypatch.setattr(b.os, "statvfs", lambda path: StatVfs(2048 * MIB))
    logs: list[str] = []
    result = b.BackupJob(job_config(tmp_path), SizedRunner(tmp_path / "dump.rdb", db_size=900 * MIB),
                         log=logs.append, clock=lambda: NOW).run()
    info = b.check_set(result["path"], app="fleetdemo", now=NOW)
    assert info.good, info.problems
    estimate = info.manifest["estimated_size"]
    assert estimate["components"] == {"postgresql": 900 * MIB, "redis": MIB, "files": len("SECRET_KEY=x\n")}
    assert estimate["free"] == 2048 * MIB
    assert any(line.startswith("space: needs ~1055 MiB (postgresql ~900 MiB") for line in logs)


def test_encryption_needs_room_for_the_largest_file_twice_and_the_margin_is_configurable(tmp_path, monkeypatch):
    (tmp_path / "dump.rdb").write_bytes(b"")
    monkeypatch.setattr(b.os, "statvfs", lambda path: StatVfs(1000 * MIB))
    config = job_config(tmp_path, redis=None, files=None, space_margin=0, space_reserve_mb=0,
                        age_recipients=["age1" + "q" * 58])
    job = b.BackupJob(config, SizedRunner(tmp_path / "dump.rdb", db_size=600 * MIB), clock=lambda: NOW)
    os.makedirs(job.app_dir)
    with pytest.raises(b.BackupError, match=r"needs ~1200 MiB in .*, 1000 MiB free \(postgresql ~600 MiB; \+0% "):
        job.check_space(["postgresql"])
    config["age_recipients"] = []
    assert job.check_space(["postgresql"])["bytes"] == 600 * MIB


def test_files_are_counted_without_following_symlinks(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_bytes(b"x" * 10)
    (tree / "sub" / "b").write_bytes(b"y" * 5)
    (tree / "big").symlink_to("/dev/zero")
    assert b._tree_size(str(tree)) == 15
    assert b._tree_size(str(tree / "a")) == 10
    assert b._tree_size(str(tmp_path / "nothing")) == 0
