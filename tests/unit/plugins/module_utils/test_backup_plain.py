"""backup_postgresql_format: plain (issue 12 B): pg_dump plain SQL gzipped by the program into <db>.sql.gz,
read back whole before the set is complete, verified like every other file, encrypted like every other file."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from test_backup import COPY_TEXT, NOW, FakeRunner, job_config

TRAILER = b"\n--\n-- PostgreSQL database dump complete\n--\n\n"
# What pg_dump --format=plain writes (newer versions put a \restrict/\unrestrict pair around it).
PLAIN_DUMP = b"--\n-- PostgreSQL database dump\n--\n\\restrict abc\n" + COPY_TEXT + TRAILER + b"\\unrestrict abc\n\n"


class PlainDumpRunner(FakeRunner):
    """pg_dump --format=plain writes SQL on stdout (streamed in odd-sized blocks, as a pipe delivers it)."""

    def __init__(self, rdb: Path, sql: bytes = PLAIN_DUMP, rc: int = 0, **kwargs):
        super().__init__(rdb, **kwargs)
        self.sql = sql
        self.rc = rc

    def consume(self, argv, consumer, env=None):
        if "pg_dump" in argv:
            self.calls.append(argv)
            value = consumer(io.BufferedReader(io.BytesIO(self.sql), buffer_size=7))
            return self.rc, value, "pg_dump: error: query failed: connection lost" if self.rc else ""
        return super().consume(argv, consumer, env)


def plain_job(tmp_path: Path, runner, **extra) -> dict:
    config = job_config(tmp_path, files=None, redis=None, postgresql={"databases": ["fleetdemo"], "format": "plain"},
                        **extra)
    return b.BackupJob(config, runner, log=lambda m: None, clock=lambda: NOW, sleep=lambda s: None).run()


def test_a_plain_set_holds_the_gzipped_sql_its_row_counts_and_its_format(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    runner = PlainDumpRunner(tmp_path / "dump.rdb")
    result = plain_job(tmp_path, runner)
    info = b.check_set(result["path"], app="fleetdemo", now=NOW)
    assert info.good, info.problems
    detail = info.manifest["components"]["postgresql"]["databases"]["fleetdemo"]
    assert detail["file"] == "postgresql/fleetdemo.sql.gz" and detail["format"] == "plain"
    assert detail["compression"] == "gzip" and detail["sql_bytes"] == len(PLAIN_DUMP)
    assert detail["tables"] == {"public.items": 2, 'public."Odd Name"': 0, "public.alembic_version": 1}
    assert sorted(info.manifest["files"]) == ["postgresql/fleetdemo.sql.gz"]
    dump = Path(result["path"]) / "postgresql" / "fleetdemo.sql.gz"
    assert gzip.decompress(dump.read_bytes()) == PLAIN_DUMP
    assert info.manifest["files"]["postgresql/fleetdemo.sql.gz"]["sha256"] == hashlib.sha256(
        dump.read_bytes()).hexdigest()
    assert dump.stat().st_mode & 0o777 == 0o640
    assert info.to_dict()["postgresql_format"] == "plain"
    # pg_dump writes to stdout as postgres, nothing on disk; no shell anywhere.
    (dump_call,) = [c for c in runner.calls if "pg_dump" in c and "--version" not in c]
    assert dump_call == ["runuser", "-u", "postgres", "--", "pg_dump", "-p", "5432", "-d", "fleetdemo",
                         "--format=plain"]
    assert not any(arg in ("sh", "/bin/sh", "bash", "gzip") for c in runner.calls for arg in c)
    assert not [n for n in os.listdir(dump.parent) if n.startswith(".stage-")]


@pytest.mark.parametrize(("sql", "rc", "message"), [
    (PLAIN_DUMP[:PLAIN_DUMP.index(b"abc\n\\.")], 0, "ends inside the data of table public.alembic_version"),
    (PLAIN_DUMP.replace(b"-- PostgreSQL database dump complete", b"-- something else"), 0,
     "does not end with pg_dump's '-- PostgreSQL database dump complete'"),
    (PLAIN_DUMP[:40], 1, r"pg_dump of fleetdemo failed \(rc=1\): pg_dump: error: query failed"),
])
def test_a_plain_dump_cut_short_leaves_no_set_behind(tmp_path, monkeypatch, sql, rc, message):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    with pytest.raises(b.BackupError, match=message):
        plain_job(tmp_path, PlainDumpRunner(tmp_path / "dump.rdb", sql=sql, rc=rc))
    assert os.listdir(tmp_path / "backups" / "fleetdemo") == [".lock"]


def test_an_unknown_format_is_refused_before_anything_runs(tmp_path):
    runner = PlainDumpRunner(tmp_path / "dump.rdb")
    config = job_config(tmp_path, files=None, redis=None, postgresql={"databases": ["fleetdemo"], "format": "sql"})
    with pytest.raises(b.BackupError, match=r"format 'sql' is not one of custom, directory, plain "
                                            r"\(backup_postgresql_format\)"):
        b.BackupJob(config, runner, log=lambda m: None, clock=lambda: NOW).run()
    assert not [c for c in runner.calls if "pg_dump" in c and "--version" not in c]


def test_read_plain_dump_reads_to_the_end(tmp_path):
    good = tmp_path / "good.sql.gz"
    good.write_bytes(gzip.compress(PLAIN_DUMP))
    counts, size, problems = b.read_plain_dump(str(good))
    assert problems == [] and size == len(PLAIN_DUMP) and counts["public.items"] == 2
    cut = tmp_path / "cut.sql.gz"
    cut.write_bytes(good.read_bytes()[:-12])  # the gzip trailer (CRC, length) is gone
    assert "cut.sql.gz is not a complete gzip stream" in b.read_plain_dump(str(cut))[2][0]
    flipped = bytearray(good.read_bytes())
    flipped[-6] ^= 0xFF  # the recorded length no longer matches
    bad = tmp_path / "bad.sql.gz"
    bad.write_bytes(bytes(flipped))
    assert "bad.sql.gz is not a complete gzip stream" in b.read_plain_dump(str(bad))[2][0]
    custom = tmp_path / "custom.sql.gz"
    custom.write_bytes(b"PGDMP" + b"0" * 100)
    assert "not a complete gzip stream" in b.read_plain_dump(str(custom))[2][0]


def test_the_format_list_is_the_one_the_role_accepts():
    specs = (Path(__file__).resolve().parents[4] / "roles" / "backup" / "meta" / "argument_specs.yml").read_text()
    assert f"choices: [{', '.join(b.PG_FORMATS)}]" in specs
    preflight = (Path(__file__).resolve().parents[4] / "roles" / "backup" / "tasks" / "preflight.yml").read_text()
    assert f"backup_postgresql_format in {list(b.PG_FORMATS)}" in preflight
    assert [b.pg_dump_file_name("db", f) for f in b.PG_FORMATS] == ["db.dump", "db.dir", "db.sql.gz"]


def test_sets_of_every_format_report_it(tmp_path):
    assert b.postgresql_format({"components": {"postgresql": {"databases": {"a": {"file": "x"}}}}}) == "custom"
    assert b.postgresql_format({"components": {"redis": {}}}) is None
    assert b.postgresql_format({"components": {"postgresql": {"databases": {
        "a": {"format": "plain"}, "b": {"format": "directory"}}}}}) == "directory,plain"


class EncryptingRunner(PlainDumpRunner):
    def run(self, argv, env=None, stdout=None):
        if argv[0] == "age" and "-o" in argv:
            self.calls.append(argv)
            plain = Path(argv[-1]).read_bytes()
            Path(argv[argv.index("-o") + 1]).write_bytes(b.AGE_MAGIC + b"-> X25519 fake\n--- mac\n" + plain[::-1])
            return 0, "", ""
        return super().run(argv, env, stdout)


def test_an_encrypted_plain_set_keeps_what_the_dump_decrypts_to(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    result = plain_job(tmp_path, EncryptingRunner(tmp_path / "dump.rdb"), age_recipients=["age1" + "q" * 58])
    info = b.check_set(result["path"], app="fleetdemo", now=NOW)
    assert info.good, info.problems
    record = info.manifest["files"]["postgresql/fleetdemo.sql.gz.age"]
    assert list(info.manifest["files"]) == ["postgresql/fleetdemo.sql.gz.age"]
    assert not (Path(result["path"]) / "postgresql" / "fleetdemo.sql.gz").exists()
    # The plain sha256 is that of the gzip file that was read back whole before it was encrypted.
    assert record["plain_size"] > 0 and len(record["plain_sha256"]) == 64
