"""Unit tests of plugins/module_utils/backup.py: sets, verification, selection, retention, command lines."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b

NOW = dt.datetime(2025, 1, 24, 12, 0, 0, tzinfo=dt.UTC)


def make_set(root: Path, set_id: str, app: str = "fleetdemo", components=("postgresql", "redis"),
             content: bytes = b"PGDMP-data") -> Path:
    path = root / app / set_id
    (path / "postgresql").mkdir(parents=True)
    (path / "postgresql" / "fleetdemo.dump").write_bytes(content)
    files = b.file_records(str(path), "postgresql/fleetdemo.dump")
    comps: dict = {"postgresql": {"databases": {"fleetdemo": {"file": "postgresql/fleetdemo.dump",
                                                              "tables": {"public.items": 3}}}}}
    if "redis" in components:
        (path / "redis").mkdir()
        (path / "redis" / "dump.rdb").write_bytes(b"REDIS0011")
        files.update(b.file_records(str(path), "redis/dump.rdb"))
        comps["redis"] = {"file": "redis/dump.rdb", "keyspace": {"db0": {"keys": 2, "expires": 0}}}
    manifest = {"format": 1, "id": set_id, "app": app, "created_at": "x", "components": comps, "files": files}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_set_ids_are_utc_timestamps():
    assert b.new_set_id(NOW) == "20250124T120000Z"
    assert b.set_time("20250124T120000Z") == NOW
    assert b.set_time("latest") is None


def test_a_good_set_is_complete_and_verified(tmp_path):
    path = make_set(tmp_path, "20250124T110000Z")
    info = b.check_set(str(path), app="fleetdemo", now=NOW)
    assert info.good and info.complete and info.verified
    assert info.age_seconds == 3600
    assert info.components == ["postgresql", "redis"]
    assert info.problems == []


def test_a_truncated_file_is_named_with_both_sizes(tmp_path):
    path = make_set(tmp_path, "20250124T110000Z")
    (path / "postgresql" / "fleetdemo.dump").write_bytes(b"PGD")
    info = b.check_set(str(path), app="fleetdemo")
    assert not info.good
    assert info.problems == ["postgresql/fleetdemo.dump is 3 bytes, the manifest says 10 (truncated or replaced)"]


def test_same_size_different_content_is_a_checksum_mismatch(tmp_path):
    path = make_set(tmp_path, "20250124T110000Z")
    (path / "redis" / "dump.rdb").write_bytes(b"REDIS0012")
    info = b.check_set(str(path), app="fleetdemo")
    assert info.verified is False
    assert info.problems[0].startswith("redis/dump.rdb: sha256 ")
    assert "does not match the manifest" in info.problems[0]
    # Without checksums only sizes are checked: the damage goes unseen, and verified says so (None).
    assert b.check_set(str(path), checksums=False).verified is None


def test_missing_manifest_other_app_and_wrong_id(tmp_path):
    path = make_set(tmp_path, "20250124T110000Z")
    assert b.check_set(str(path), app="other").problems == ["set belongs to app 'fleetdemo', not 'other'"]
    os.rename(path, path.with_name("20250124T110001Z"))
    renamed = b.check_set(str(path.with_name("20250124T110001Z")))
    assert "does not match the directory name" in renamed.problems[0]
    (path.with_name("20250124T110001Z") / "manifest.json").unlink()
    missing = b.check_set(str(path.with_name("20250124T110001Z")))
    assert missing.problems == ["manifest.json is missing"] and not missing.complete


def test_a_manifest_cannot_point_outside_the_set(tmp_path):
    path = make_set(tmp_path, "20250124T110000Z")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["../../etc/passwd"] = {"size": 1, "sha256": "0"}
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert "points outside the set" in " ".join(b.check_set(str(path)).problems)


def test_list_select_latest_and_incomplete(tmp_path):
    make_set(tmp_path, "20250124T100000Z")
    make_set(tmp_path, "20250124T110000Z", components=("postgresql",))
    (tmp_path / "fleetdemo" / ".tmp-20250124T115900Z").mkdir()
    sets = b.list_sets(str(tmp_path / "fleetdemo"), app="fleetdemo", now=NOW)
    assert [s.id for s in sets] == ["20250124T115900Z", "20250124T110000Z", "20250124T100000Z"]
    assert not sets[0].complete and "incomplete" in sets[0].problems[0]
    assert b.select_set(sets, "latest").id == "20250124T110000Z"
    assert b.select_set(sets, "latest", ["redis"]).id == "20250124T100000Z"
    assert b.select_set(sets, "20250124T100000Z").id == "20250124T100000Z"
    with pytest.raises(b.BackupError, match="backup set '20250124T115900Z' not found"):
        b.select_set(sets, "20250124T115900Z")
    with pytest.raises(b.BackupError, match="no complete, verified backup set holding mongodb found"):
        b.select_set(sets, "latest", ["mongodb"])


def test_retention_keeps_the_newest_of_each_component_whatever_its_age(tmp_path):
    for hour in range(8, 12):
        make_set(tmp_path, f"20250124T{hour:02d}0000Z", components=("postgresql",))
    make_set(tmp_path, "20250110T000000Z")  # old, but the only set holding redis
    sets = b.list_sets(str(tmp_path / "fleetdemo"), now=NOW)
    policy = b.Retention(keep_all_hours=0, keep_daily=0, keep_weekly=0, keep_last=2)
    doomed = [s.id for s in b.retention_plan(sets, policy, now=NOW)]
    assert doomed == ["20250124T090000Z", "20250124T080000Z"]
    policy = b.Retention(keep_all_hours=2.4, keep_daily=0, keep_weekly=0, keep_last=1)
    # 2.4 h: 08:00 and 09:00 are too old; the redis set is older still but the newest good one of redis.
    assert [s.id for s in b.retention_plan(sets, policy, now=NOW)] == ["20250124T090000Z", "20250124T080000Z"]


COPY_TEXT = b"""--
SET statement_timeout = 0;
COPY public.items (id, name, value) FROM stdin;
1\talpha\t1
2\tbeta\tline one\\nline two
\\.
COPY public."Odd Name" (id) FROM stdin;
\\.
COPY public.alembic_version (version_num) FROM stdin;
abc
\\.
"""


def test_rows_are_counted_from_the_dump_itself():
    counts = b.count_copy_rows(COPY_TEXT.splitlines(keepends=True))
    assert counts == {"public.items": 2, 'public."Odd Name"': 0, "public.alembic_version": 1}
    with pytest.raises(b.BackupError, match="ends inside the data of table public.items"):
        b.count_copy_rows(COPY_TEXT.splitlines(keepends=True)[:4])


def test_count_comparisons():
    assert b.compare_counts({"public.items": 3}, {"public.items": 3, "public.empty": 0}) == []
    assert b.compare_counts({"public.items": 3}, {"public.items": 2, "public.new": 1}) == [
        "public.items: 2 rows, the manifest says 3", "public.new: 1 rows, not in the manifest"]
    info = b.parse_info("# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=100\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n")
    assert b.parse_keyspace(info) == {"db0": {"keys": 5, "expires": 2}, "db3": {"keys": 1, "expires": 0}}
    expected = {"db0": {"keys": 5, "expires": 2}}
    assert b.compare_keyspace(expected, {"db0": {"keys": 4, "expires": 1}}) == []  # a TTL key expired
    assert b.compare_keyspace(expected, {"db0": {"keys": 2, "expires": 0}}) == [
        "redis db0: 2 keys, the manifest says 3..5"]
    assert b.compare_keyspace({}, {"db1": {"keys": 1, "expires": 0}}) == ["redis db1: 1 keys, the manifest says 0"]


def test_command_lines_keep_passwords_out_of_argv():
    assert b.pg_dump_argv("app", "/s/app.dump") == [
        "runuser", "-u", "postgres", "--", "pg_dump", "-p", "5432", "-d", "app", "-f", "/s/app.dump", "-Fc"]
    assert b.pg_dump_argv("app", "/s/app.dir", fmt="directory", jobs=4)[-3:] == ["-Fd", "-j", "4"]
    serial = b.pg_restore_argv("app__restore_x", "/s/app.dump")
    assert "--exit-on-error" in serial and "--single-transaction" in serial and serial[-1] == "/s/app.dump"
    parallel = b.pg_restore_argv("app__restore_x", "/s/app.dir", jobs=4)
    assert "--single-transaction" not in parallel and parallel[parallel.index("-j") + 1] == "4"
    assert b.redis_cli_argv("BGSAVE", port=6380) == [
        "redis-cli", "--no-auth-warning", "-h", "127.0.0.1", "-p", "6380", "BGSAVE"]
    assert b.psql_argv("postgres", "SELECT 1")[-6:] == ["-p", "5432", "-d", "postgres", "-c", "SELECT 1"]
    assert b.scratch_name("fleetdemo", "20250124T120000Z") == "fleetdemo__restore_20250124t120000z"
    assert b.previous_name("fleetdemo", NOW) == "fleetdemo__pre_20250124t120000z"
    assert b.quote_ident('we"ird') == '"we""ird"' and b.quote_literal("it's") == "'it''s'"


def test_mongodb_command_lines_and_archive_checks(tmp_path):
    uri = "mongodb://admin:s3cret@127.0.0.1:27017/playpark?authSource=admin"
    assert b.mongo_config_text(uri) == f'uri: "{uri}"\n'
    dump = b.mongodump_argv("/s/.mongo.conf", "/s/mongodb/m.archive.gz", "playpark")
    assert dump == ["mongodump", "--config=/s/.mongo.conf", "--archive=/s/mongodb/m.archive.gz", "--gzip",
                    "--db=playpark"]
    assert not any("s3cret" in arg for arg in dump)
    restore = b.mongorestore_argv("/c", "/a.gz", drop=True, dry_run=True, ns_include="playpark.*")
    assert restore == ["mongorestore", "--config=/c", "--archive=/a.gz", "--gzip", "--stopOnError", "--drop",
                       "--nsInclude=playpark.*", "--dryRun"]
    good = tmp_path / "good.archive.gz"
    good.write_bytes(gzip.compress(b.MONGO_ARCHIVE_MAGIC.to_bytes(4, "little") + b"x" * 1000))
    assert b.check_mongo_archive(str(good)) == []
    wrong = tmp_path / "wrong.archive.gz"
    wrong.write_bytes(gzip.compress(b"not an archive"))
    assert b.check_mongo_archive(str(wrong)) == ["wrong.archive.gz is not a mongodump archive (bad magic number)"]
    cut = tmp_path / "cut.archive.gz"
    cut.write_bytes(good.read_bytes()[:20])
    assert "is not a complete gzip stream" in b.check_mongo_archive(str(cut))[0]


def fake_age(calls: list, argv) -> tuple[int, str, str] | None:
    """Stands in for `age -r … -o OUT IN` (an age-looking file holding the plaintext reversed); None for any other
    command."""
    if argv[0] != "age" or "-o" not in argv:
        return None
    calls.append(argv)
    plain = Path(argv[-1]).read_bytes()
    Path(argv[argv.index("-o") + 1]).write_bytes(b.AGE_MAGIC + b"-> X25519 fake\n--- mac\n" + plain[::-1])
    return 0, "", ""


class FakeRunner:
    """Plays PostgreSQL and Redis for the backup program."""

    def __init__(self, rdb: Path, fail_on: str | None = None):
        self.rdb = rdb
        self.calls: list[list[str]] = []
        self.envs: list[dict | None] = []
        self.lastsave = 100
        # Redis's clock in whole seconds, still in LASTSAVE's second (a restart); each TIME call is a second later.
        self.now = self.clock = 100
        self.fail_on = fail_on

    def run(self, argv, env=None, stdout=None):
        self.calls.append(argv)
        self.envs.append(env)
        if self.fail_on and self.fail_on in argv:
            return 1, "", f"{self.fail_on}: boom"
        if "pg_dump" in argv and "--version" not in argv:
            Path(argv[argv.index("-f") + 1]).write_bytes(b"PGDMP" + b"0" * 100)
            return 0, "", ""
        if "psql" in argv:
            sql = argv[-1]
            if "pg_database_size" in sql:
                return 0, "fleetdemo\t8388608\n", ""
            return 0, ("fleetdemo\n" if "datdba" in sql else "15.8\n"), ""
        if argv[0] == "redis-cli":
            command = argv[6:]
            if command == ["LASTSAVE"]:
                return 0, f"{self.lastsave}\n", ""
            if command == ["TIME"]:
                self.now, self.clock = self.clock, self.clock + 1
                return 0, f"{self.now}\n123456\n", ""
            if command == ["BGSAVE"]:
                self.lastsave = self.now  # the save ends in the current second
                self.rdb.write_bytes(b"REDIS0011-data")
                return 0, "Background saving started\n", ""
            if command == ["INFO", "keyspace"]:
                return 0, "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n", ""
            if command == ["INFO", "persistence"]:
                return 0, "rdb_bgsave_in_progress:0\r\nrdb_last_bgsave_status:ok\r\n", ""
            if command == ["INFO", "server"]:
                return 0, "redis_version:7.0.15\r\n", ""
        return 0, "tool 1.0\n", ""

    def consume(self, argv, consumer, env=None):
        self.calls.append(argv)
        self.envs.append(env)
        return 0, consumer(COPY_TEXT.splitlines(keepends=True)), ""


def job_config(tmp_path: Path, **extra) -> dict:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "app.env").write_text("SECRET_KEY=x\n")
    config = {"app": "fleetdemo", "root": str(tmp_path / "backups"), "host": "h1", "keep_count": 2,
              "postgresql": {"databases": ["fleetdemo"]},
              "redis": {"password": "pw", "rdb_path": str(tmp_path / "dump.rdb"), "timeout": 5},
              "files": {"paths": [str(tmp_path / "etc"), str(tmp_path / "missing")]}}
    config.update(extra)
    return config


def test_a_remote_postgresql_is_dumped_with_its_connection_in_the_environment_only(tmp_path, monkeypatch):
    """backup_postgresql_host: pg_dump and psql run as root with libpq's settings (TLS, client certificate,
    password) in their environment, never in argv; the catalog queries use the dumped database (the role may
    connect to nothing else); the manifest names the server."""
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    runner = FakeRunner(tmp_path / "dump.rdb")
    remote = {"databases": ["fleetdemo"], "port": 5433, "host": "10.0.0.5", "user": "fleetdemo",
              "password": "s3cret-pw", "sslmode": "verify-full", "sslrootcert": "/etc/ssl/db-ca.crt",
              "sslcert": "/etc/pyfleet/backup/client.crt", "sslkey": "/etc/pyfleet/backup/client.key"}
    result = b.BackupJob(job_config(tmp_path, postgresql=remote), runner, log=lambda m: None, clock=lambda: NOW,
                         sleep=lambda s: None).run(["postgresql"])
    pg = [(argv, env) for argv, env in zip(runner.calls, runner.envs, strict=True)
          if {"psql", "pg_dump"} & set(argv) and "--version" not in argv]
    assert {"psql", "pg_dump"} <= {name for argv, _env in pg for name in argv}
    for argv, env in pg:
        assert argv[:4] == ["runuser", "-u", "root", "--"], argv
        assert "s3cret-pw" not in " ".join(argv) and "postgres" not in argv[argv.index("-d") + 1:][:1], argv
        assert env == {"PGHOST": "10.0.0.5", "PGUSER": "fleetdemo", "PGPASSWORD": "s3cret-pw",
                       "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/ssl/db-ca.crt",
                       "PGSSLCERT": "/etc/pyfleet/backup/client.crt", "PGSSLKEY": "/etc/pyfleet/backup/client.key",
                       "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "pyfleet-backup"}, env
    info = b.check_set(result["path"], app="fleetdemo", now=NOW)
    assert info.verified and not info.problems, info.problems
    detail = json.loads(Path(result["path"], "manifest.json").read_text())["components"]["postgresql"]
    assert detail["host"] == "10.0.0.5" and detail["port"] == 5433 and detail["os_user"] == "root"


def test_a_redis_save_in_the_second_of_the_last_one_is_still_seen(tmp_path, monkeypatch):
    """LASTSAVE counts whole seconds and a restarted Redis sets it to its start: a BGSAVE ending in that same second
    would leave it where it was and the run would wait out the timeout. BGSAVE waits for the next second instead."""
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    runner = FakeRunner(tmp_path / "dump.rdb")
    slept: list[float] = []
    result = b.BackupJob(job_config(tmp_path), runner, log=lambda m: None, clock=lambda: NOW,
                         sleep=slept.append).run(["redis"])
    assert result["components"] == ["redis"]
    redis = [c[6:] for c in runner.calls if c[0] == "redis-cli"]
    assert redis[:5] == [["INFO", "keyspace"], ["LASTSAVE"], ["TIME"], ["TIME"], ["BGSAVE"]], redis
    assert slept and slept[0] <= 0.1 and runner.lastsave == 101


def test_backup_job_writes_a_complete_verified_set(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    runner = FakeRunner(tmp_path / "dump.rdb")
    result = b.BackupJob(job_config(tmp_path), runner, log=lambda m: None, clock=lambda: NOW,
                         sleep=lambda s: None).run()
    assert result["id"] == "20250124T120000Z" and result["components"] == ["postgresql", "redis", "files"]
    info = b.check_set(result["path"], app="fleetdemo", now=NOW)
    assert info.good, info.problems
    manifest = info.manifest
    assert manifest["components"]["postgresql"]["databases"]["fleetdemo"]["tables"]["public.items"] == 2
    assert manifest["components"]["redis"]["keyspace"] == {"db0": {"keys": 3, "expires": 0}}
    assert manifest["components"]["redis"]["keys_exact"] is True
    assert sorted(manifest["files"]) == ["files/files.tar.gz", "postgresql/fleetdemo.dump", "redis/dump.rdb"]
    # The Redis password travels in the environment only.
    assert not any("pw" in arg for argv in runner.calls for arg in argv)
    assert {"REDISCLI_AUTH": "pw"} in runner.envs
    assert not [n for n in os.listdir(tmp_path / "backups" / "fleetdemo") if n.startswith(".tmp-")]


def test_a_failed_run_leaves_no_set_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    runner = FakeRunner(tmp_path / "dump.rdb", fail_on="pg_dump")
    with pytest.raises(b.BackupError, match=r"pg_dump of fleetdemo failed \(rc=1\): pg_dump: boom"):
        b.BackupJob(job_config(tmp_path), runner, log=lambda m: None, clock=lambda: NOW).run()
    assert os.listdir(tmp_path / "backups" / "fleetdemo") == [".lock"]


def test_unconfigured_components_are_refused(tmp_path):
    job = b.BackupJob(job_config(tmp_path, mongodb=None), FakeRunner(tmp_path / "dump.rdb"), log=lambda m: None)
    with pytest.raises(b.BackupError, match="component\\(s\\) mongodb are not configured for fleetdemo"):
        job.run(["mongodb"])


def test_backup_job_prunes_by_retention(tmp_path, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    config = job_config(tmp_path, redis=None, files=None, keep_all_hours=0, keep_daily=0, keep_weekly=0)
    moments = iter([NOW + dt.timedelta(hours=h) for h in range(3)])
    for _round in range(3):
        moment = next(moments)
        result = b.BackupJob(config, FakeRunner(tmp_path / "dump.rdb"), log=lambda m: None,
                             clock=lambda moment=moment: moment).run()
    assert result["deleted"] == ["20250124T120000Z"]
    assert sorted(os.listdir(tmp_path / "backups" / "fleetdemo")) == [".lock", "20250124T130000Z", "20250124T140000Z"]
