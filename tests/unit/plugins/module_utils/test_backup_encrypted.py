"""Encrypted sets (age), PostgreSQL directory format included: what the program writes and what verification
proves; end to end with the real age when it is installed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from test_backup import NOW, FakeRunner, fake_age, job_config

RECIPIENT = "age1" + "q" * 58
DUMP_FILES = {"toc.dat": b"PGDMP-toc-of-fleetdemo", "3001.dat.gz": b"rows of items" * 50, "3002.dat.gz": b""}


class DirectoryDumpRunner(FakeRunner):
    """pg_dump -Fd writes a directory; age 'encrypts' with the real header and reversed bytes."""

    def run(self, argv, env=None, stdout=None):
        if "pg_dump" in argv and "--version" not in argv:
            self.calls.append(argv)
            target = Path(argv[argv.index("-f") + 1])
            target.mkdir()
            for name, data in DUMP_FILES.items():
                (target / name).write_bytes(data)
            return 0, "", ""
        encrypted = fake_age(self.calls, argv)
        if encrypted is not None:
            return encrypted
        return super().run(argv, env, stdout)


def encrypted_job(tmp_path: Path, runner) -> dict:
    config = job_config(tmp_path, files=None, age_recipients=[RECIPIENT],
                        postgresql={"databases": ["fleetdemo"], "format": "directory", "jobs": 2})
    return b.BackupJob(config, runner, clock=lambda: NOW, sleep=lambda s: None).run()


@pytest.fixture()
def encrypted_set(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    return Path(encrypted_job(tmp_path, DirectoryDumpRunner(tmp_path / "dump.rdb"))["path"])


def rewrite(set_dir: Path, change) -> None:
    manifest = json.loads((set_dir / "manifest.json").read_text())
    change(manifest)
    (set_dir / "manifest.json").write_text(json.dumps(manifest))


def test_every_file_of_an_encrypted_directory_dump_is_in_the_manifest(encrypted_set):
    info = b.check_set(str(encrypted_set), app="fleetdemo", now=NOW)
    assert info.good, info.problems
    assert info.to_dict()["encrypted"] is True
    assert info.notes and "can only be checked with the key" in info.notes[0]
    files = info.manifest["files"]
    expected = sorted([f"postgresql/fleetdemo.dir/{name}.age" for name in DUMP_FILES] + ["redis/dump.rdb.age"])
    assert sorted(files) == expected
    for name, plain in DUMP_FILES.items():
        rel = f"postgresql/fleetdemo.dir/{name}.age"
        on_disk = (encrypted_set / rel).read_bytes()
        assert files[rel]["sha256"] == hashlib.sha256(on_disk).hexdigest() and files[rel]["size"] == len(on_disk)
        assert files[rel]["plain_sha256"] == hashlib.sha256(plain).hexdigest()
        assert files[rel]["plain_size"] == len(plain)
        assert not (encrypted_set / "postgresql" / "fleetdemo.dir" / name).exists()  # no plain copy left
    assert info.manifest["components"]["postgresql"]["databases"]["fleetdemo"]["file"] == "postgresql/fleetdemo.dir"


def test_a_file_of_the_dump_directory_missing_from_the_manifest_is_a_problem(encrypted_set):
    rewrite(encrypted_set, lambda m: m["files"].pop("postgresql/fleetdemo.dir/3002.dat.gz.age"))
    info = b.check_set(str(encrypted_set), app="fleetdemo", now=NOW)
    assert not info.good
    assert info.problems == ["postgresql/fleetdemo.dir/3002.dat.gz.age is in the set but not in the manifest "
                             "(a restore would not check it)"]


def test_a_dump_directory_without_its_toc_is_a_problem(encrypted_set):
    rewrite(encrypted_set, lambda m: m["files"].pop("postgresql/fleetdemo.dir/toc.dat.age"))
    (encrypted_set / "postgresql" / "fleetdemo.dir" / "toc.dat.age").unlink()
    info = b.check_set(str(encrypted_set), app="fleetdemo", now=NOW)
    assert info.problems == ["postgresql fleetdemo: postgresql/fleetdemo.dir/toc.dat.age is not in the manifest; a "
                             "directory-format dump cannot be restored without it"]


def test_what_cannot_be_proven_without_the_key_is_a_problem_not_good(encrypted_set):
    def drop_plain(manifest):
        del manifest["files"]["postgresql/fleetdemo.dir/toc.dat.age"]["plain_sha256"]

    rewrite(encrypted_set, drop_plain)
    info = b.check_set(str(encrypted_set), app="fleetdemo", now=NOW)
    assert not info.good and not info.notes
    assert info.problems == ["postgresql/fleetdemo.dir/toc.dat.age: the manifest does not say what it decrypts to "
                             "(plain_sha256, plain_size), so its content cannot be proven without the key"]


def test_a_plain_file_in_an_encrypted_set_and_a_missing_component_file_are_problems(encrypted_set):
    plain = encrypted_set / "redis" / "dump.rdb"
    plain.write_bytes(b"REDIS0011")

    def swap(manifest):
        del manifest["files"]["redis/dump.rdb.age"]
        manifest["files"]["redis/dump.rdb"] = b.file_records(str(encrypted_set), "redis/dump.rdb")["redis/dump.rdb"]

    rewrite(encrypted_set, swap)
    problems = b.check_set(str(encrypted_set), app="fleetdemo", now=NOW).problems
    assert problems == ["redis: redis/dump.rdb.age is not in the manifest",
                        "redis/dump.rdb is not encrypted, in a set whose manifest says it is"]


def test_a_plain_directory_format_set_still_verifies_and_needs_its_toc(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    config = job_config(tmp_path, files=None, redis=None,
                        postgresql={"databases": ["fleetdemo"], "format": "directory"})
    result = b.BackupJob(config, DirectoryDumpRunner(tmp_path / "dump.rdb"), clock=lambda: NOW).run()
    info = b.check_set(result["path"], app="fleetdemo", now=NOW)
    assert info.good and info.notes == []
    (Path(result["path"]) / "postgresql" / "fleetdemo.dir" / "stray").write_bytes(b"x")
    assert b.check_set(result["path"], now=NOW).problems == [
        "postgresql/fleetdemo.dir/stray is in the set but not in the manifest (a restore would not check it)"]


def test_an_age_that_writes_no_age_file_fails_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)

    class BrokenAge(DirectoryDumpRunner):
        def run(self, argv, env=None, stdout=None):
            if argv[0] == "age" and "-o" in argv:
                shutil.copyfile(argv[-1], argv[argv.index("-o") + 1])  # "encrypted" = a plain copy
                return 0, "", ""
            return super().run(argv, env, stdout)

    with pytest.raises(b.BackupError, match=r"age encryption of postgresql/fleetdemo.dir/3001.dat.gz: .* is not an "
                                            r"age file \(no age-encryption.org/v1 header\)"):
        encrypted_job(tmp_path, BrokenAge(tmp_path / "dump.rdb"))
    assert os.listdir(tmp_path / "backups" / "fleetdemo") == [".lock"]


@pytest.mark.skipif(not (shutil.which("age") and shutil.which("age-keygen")),
                    reason="age/age-keygen not installed on this controller (Debian package age)")
def test_end_to_end_with_the_real_age(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    identity = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True,
                               text=True).stdout.strip()

    class RealAge(DirectoryDumpRunner):
        def run(self, argv, env=None, stdout=None):
            if argv[0] == "age":
                proc = subprocess.run(argv, capture_output=True, text=True, check=False)
                return proc.returncode, proc.stdout, proc.stderr
            return super().run(argv, env, stdout)

    config = job_config(tmp_path, files=None, age_recipients=[recipient],
                        postgresql={"databases": ["fleetdemo"], "format": "directory", "jobs": 2})
    result = b.BackupJob(config, RealAge(tmp_path / "dump.rdb"), clock=lambda: NOW, sleep=lambda s: None).run()
    info = b.check_set(result["path"], app="fleetdemo", now=NOW)
    assert info.good, info.problems
    assert len(info.manifest["files"]) == len(DUMP_FILES) + 1
    expected = {f"postgresql/fleetdemo.dir/{name}.age": data for name, data in DUMP_FILES.items()}
    expected["redis/dump.rdb.age"] = b"REDIS0011-data"
    assert sorted(info.manifest["files"]) == sorted(expected)
    for rel, record in info.manifest["files"].items():
        out = tmp_path / "plain"
        subprocess.run(b.age_decrypt_argv(str(identity), str(Path(result["path"]) / rel), str(out)), check=True,
                       capture_output=True)
        # age opens -o lazily: an empty plaintext leaves no file behind.
        plain = out.read_bytes() if out.exists() else b""
        out.unlink(missing_ok=True)
        assert plain == expected[rel], rel
        assert hashlib.sha256(plain).hexdigest() == record["plain_sha256"] and len(plain) == record["plain_size"]
