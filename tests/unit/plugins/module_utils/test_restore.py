"""Unit tests of plugins/module_utils/restore.py: refusals, the scratch-database swap, Redis rollback, idempotence."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import re
import zlib
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from ansible_collections.pyfleet.server.plugins.module_utils import restore as r

SET_ID = "20250124T110000Z"
NOW = dt.datetime(2025, 1, 24, 12, 0, 0, tzinfo=dt.UTC)
AGE_HEADER = b"age-encryption.org/v1\n"


def make_set(root: Path, app: str = "fleetdemo", mongodb: bool = False, pg_host: str | None = None) -> Path:
    path = root / "fleetdemo" / SET_ID
    (path / "postgresql").mkdir(parents=True)
    (path / "postgresql" / "fleetdemo.dump").write_bytes(b"PGDMP" + b"1" * 50)
    (path / "redis").mkdir()
    (path / "redis" / "dump.rdb").write_bytes(b"REDIS0011-new")
    comps = {
        "postgresql": {"databases": {"fleetdemo": {"file": "postgresql/fleetdemo.dump", "owner": "fleetdemo",
                                                   "tables": {"public.items": 3}}}},
        "redis": {"file": "redis/dump.rdb", "keyspace": {"db0": {"keys": 2, "expires": 0}}, "keys_exact": True},
    }
    if pg_host:
        comps["postgresql"]["host"] = pg_host
    files = {**b.file_records(str(path), "postgresql/fleetdemo.dump"), **b.file_records(str(path), "redis/dump.rdb")}
    if mongodb:
        (path / "mongodb").mkdir()
        (path / "mongodb" / "m.archive.gz").write_bytes(gzip.compress(b.MONGO_ARCHIVE_MAGIC.to_bytes(4, "little")))
        files.update(b.file_records(str(path), "mongodb/m.archive.gz"))
        comps["mongodb"] = {"file": "mongodb/m.archive.gz", "database": "playpark"}
    b.write_manifest(str(path), {"format": 1, "id": SET_ID, "app": app, "components": comps, "files": files})
    return path


class FakeHost:
    """PostgreSQL databases with comments, a Redis with an RDB file, systemctl; records every command."""

    def __init__(self, rdb: Path, restore_rc: int = 0, scratch_rows: int = 3, redis_keys_after: int = 2):
        self.dbs = {"postgres": "", "fleetdemo": ""}  # name -> COMMENT ON DATABASE
        self.content = {"fleetdemo": "live data"}  # name -> what the database holds
        self.noconn: set[str] = set()  # databases with ALLOW_CONNECTIONS false
        self.rdb = rdb
        self.restore_rc = restore_rc
        self.scratch_rows = scratch_rows
        self.redis_keys_after = redis_keys_after
        self.redis_up = True
        self.redis_run = 1
        self.db_size = 8 * 1024 * 1024  # what the live database takes on disk
        self.redis_dirty = 0  # writes since the last save
        self.calls: list[list[str]] = []
        self.envs: list[dict | None] = []

    def sql_calls(self) -> list[str]:
        return [c[-1] for c in self.calls if "psql" in c]

    def __call__(self, argv, env=None):
        self.calls.append(argv)
        self.envs.append(env)
        if "psql" in argv:
            return self.psql(argv[argv.index("-d") + 1], argv[-1])
        if "pg_restore" in argv:
            if "-l" in argv:
                return 0, "; Archive created", ""
            if self.restore_rc:
                return self.restore_rc, "", "pg_restore: error: could not read input file: end of file"
            source = Path(argv[-1])
            if source.is_dir() and not (source / "toc.dat").is_file():
                return 1, "", f'pg_restore: error: could not open input file "{source}/toc.dat": No such file'
            self.content[argv[argv.index("-d") + 1]] = "set data"
            return 0, "", ""
        if argv[0] == "systemctl":
            self.redis_up = argv[1] == "start"
            if self.redis_up:
                self.redis_run += 1  # a new run_id; the RDB just loaded counts as the last save
                self.redis_dirty = 0
            return 0, "", ""
        if argv[0] == "redis-cli":
            if not self.redis_up:
                return 1, "Could not connect to Redis at 127.0.0.1:6379: Connection refused", ""
            command = argv[6:]
            if command == ["INFO", "keyspace"]:
                keys = self.redis_keys_after if self.rdb.read_bytes() == b"REDIS0011-new" else 5
                return 0, f"# Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n", ""
            if command == ["INFO", "persistence"]:
                return 0, (f"loading:0\r\nrdb_changes_since_last_save:{self.redis_dirty}\r\n"
                           f"rdb_last_save_time:{1700000000 + self.redis_run}\r\n"), ""
            if command == ["INFO", "server"]:
                return 0, f"redis_version:7.0.15\r\nrun_id:run{self.redis_run:038d}\r\n", ""
            if command[:2] == ["CONFIG", "GET"]:
                return 0, "appendonly\nno\n", ""
        if argv[0].endswith("redis-check-rdb"):
            return 0, "RDB looks OK", ""
        if argv[:2] == ["age", "-d"]:  # "encrypted" = the age header + plain
            data = Path(argv[-1]).read_bytes()
            if not data.startswith(AGE_HEADER):
                return 1, "", "age: error: no identity matched any of the recipients"
            if len(data) > len(AGE_HEADER):  # like the real age: -o is opened on the first write only
                Path(argv[argv.index("-o") + 1]).write_bytes(data[len(AGE_HEADER):])
            return 0, "", ""
        if argv[0] in ("mongorestore",):
            return 0, "", "done"
        return 0, "", ""

    def psql(self, database: str, sql: str):
        if database in self.noconn:
            return 2, "", f'psql: error: FATAL:  database "{database}" is not currently accepting connections'
        if sql.startswith("BEGIN; ") and sql.endswith("; COMMIT;"):
            # One transaction: every statement applies, or (first error) none does.
            saved = (dict(self.dbs), dict(self.content), set(self.noconn))
            for statement in sql[len("BEGIN; "):-len("; COMMIT;")].split("; "):
                rc, out, err = self.statement(database, statement)
                if rc:
                    self.dbs, self.content, self.noconn = saved
                    return rc, out, err
            return 0, "", ""
        return self.statement(database, sql)

    def statement(self, database: str, sql: str):
        if m := re.match(r"SELECT 1 FROM pg_database WHERE datname = '(.+)'", sql):
            return 0, "1\n" if m.group(1) in self.dbs else "", ""
        if m := re.match(r"SELECT datallowconn FROM pg_database WHERE datname = '(.+)'", sql):
            return 0, ("f" if m.group(1) in self.noconn else "t") + "\n", ""
        if sql == "SHOW data_directory":
            return 0, f"{self.rdb.parent}\n", ""
        if m := re.match(r"SELECT pg_database_size\('(.+)'\)", sql):
            return 0, f"{self.db_size}\n", ""
        if m := re.match(r"SELECT shobj_description.*datname = '(.+)'", sql):
            return 0, self.dbs.get(m.group(1), "") + "\n", ""
        if sql == b.ROW_COUNT_SQL:  # counts only (what the module read before it read checksums)
            rc, out, err = self.statement(database, r.CONTENT_SQL)
            return rc, "".join(line.rsplit("\t", 1)[0] + "\n" for line in out.splitlines()), err
        if sql == r.CONTENT_SQL:
            content = self.content.get(database, "")
            rows = self.scratch_rows if "__restore_" in database else 3 if content == "set data" else 7
            checksum = zlib.crc32(content.encode())
            if rows == 3:
                return 0, f"public.items\t3\t{checksum}\n", ""
            return 0, f"public.alembic_version\t1\t77\npublic.items\t{rows}\t{checksum}\n", ""
        if m := re.match(r'DROP DATABASE IF EXISTS "(.+)" WITH \(FORCE\)', sql):
            self.dbs.pop(m.group(1), None)
            self.content.pop(m.group(1), None)
        elif m := re.match(r'CREATE DATABASE "(.+)" OWNER', sql):
            self.dbs[m.group(1)] = ""
            self.content[m.group(1)] = ""
        elif m := re.match(r'ALTER DATABASE "(.+)" RENAME TO "(.+)"', sql):
            old, new = m.groups()
            if old not in self.dbs:
                return 1, "", f'ERROR:  database "{old}" does not exist'
            if new in self.dbs:
                return 1, "", f'ERROR:  database "{new}" already exists'
            self.dbs[new] = self.dbs.pop(old)
            self.content[new] = self.content.pop(old, "")
            if old in self.noconn:
                self.noconn.discard(old)
                self.noconn.add(new)
        elif m := re.match(r'ALTER DATABASE "(.+)" WITH ALLOW_CONNECTIONS (true|false)', sql):
            (self.noconn.discard if m.group(2) == "true" else self.noconn.add)(m.group(1))
        elif m := re.match(r"COMMENT ON DATABASE \"(.+)\" IS '(.+)'", sql):
            self.dbs[m.group(1)] = m.group(2)
        elif sql.startswith("SELECT count(pg_terminate_backend"):
            return 0, "0\n", ""
        elif sql.startswith("SELECT datname FROM pg_database WHERE left"):
            return 0, "\n".join(sorted((d for d in self.dbs if "__pre_" in d), reverse=True)), ""
        return 0, "", ""


def params(tmp_path: Path, **extra) -> dict:
    values = {"app": "fleetdemo", "root": str(tmp_path / "backups"), "set": "latest", "path": None,
              "components": [], "databases": [], "force": False, "keep_previous": 1,
              "state_dir": str(tmp_path / "state"), "timeout": 5, "postgresql_port": 5432,
              "postgresql_os_user": "postgres", "postgresql_jobs": 2, "redis_host": "127.0.0.1", "redis_port": 6379,
              "redis_password": "pw", "redis_service": "redis-server", "redis_rdb_path": str(tmp_path / "dump.rdb"),
              "mongodb_uri": None, "age_identity": None}
    values.update(extra)
    return values


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_set(tmp_path / "backups")
    (tmp_path / "dump.rdb").write_bytes(b"REDIS0011-live")
    return tmp_path


def restorer(tmp_path, host, check_mode=False, **extra):
    return r.Restorer(r.RestoreOptions.from_params(params(tmp_path, **extra)), host, check_mode=check_mode,
                      clock=lambda: NOW, sleep=lambda s: None)


def test_postgresql_is_swapped_in_only_after_the_scratch_copy_matches(env):
    host = FakeHost(env / "dump.rdb")
    result = restorer(env, host).execute()
    assert result["changed"] and result["restored"] == ["postgresql/fleetdemo", "redis"]
    sql = host.sql_calls()
    create = 'CREATE DATABASE "fleetdemo__restore_20250124t110000z" OWNER "fleetdemo" TEMPLATE template0'
    (swap,) = [s for s in sql if s.startswith("BEGIN;")]
    assert sql.index(create) < sql.index(swap)
    assert swap.split("; ")[1:4] == [
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'fleetdemo' "
        "AND pid <> pg_backend_pid()",
        'ALTER DATABASE "fleetdemo" RENAME TO "fleetdemo__pre_20250124t120000z"',
        'ALTER DATABASE "fleetdemo__restore_20250124t110000z" RENAME TO "fleetdemo"',
    ]
    assert swap.endswith("; COMMIT;") and "ALLOW_CONNECTIONS false" not in swap
    restore_call = next(c for c in host.calls if "pg_restore" in c and "-l" not in c)
    assert restore_call[:4] == ["runuser", "-u", "postgres", "--"]
    assert "--exit-on-error" in restore_call and "--single-transaction" in restore_call
    assert set(host.dbs) == {"postgres", "fleetdemo", "fleetdemo__pre_20250124t120000z"}
    assert host.dbs["fleetdemo"].startswith(f"pyfleet restore {SET_ID} ")
    # Redis: the set's RDB is live, the previous one kept.
    assert (env / "dump.rdb").read_bytes() == b"REDIS0011-new"
    assert (env / "dump.rdb.pre-20250124t120000z").read_bytes() == b"REDIS0011-live"
    assert {"REDISCLI_AUTH": "pw"} in host.envs and not any("pw" == a for c in host.calls for a in c)


def test_the_same_set_twice_is_a_no_op_unless_forced(env):
    host = FakeHost(env / "dump.rdb")
    restorer(env, host).execute()
    host.calls.clear()
    again = restorer(env, host).execute()
    assert again["changed"] is False and again["restored"] == []
    assert again["msg"] == f"postgresql/fleetdemo, redis already restored from {SET_ID}; nothing to do"
    assert not [s for s in host.sql_calls() if s.startswith(("ALTER", "CREATE", "DROP"))]
    forced = restorer(env, host, force=True).execute()
    assert forced["changed"] is True


def test_a_database_replaced_since_is_restored_again(env):
    host = FakeHost(env / "dump.rdb")
    restorer(env, host).execute()
    host.dbs["fleetdemo"] = ""  # someone recreated the database: the marker alone does not count
    assert restorer(env, host).execute()["restored"] == ["postgresql/fleetdemo"]


def test_check_mode_predicts_without_touching_anything(env):
    host = FakeHost(env / "dump.rdb")
    result = restorer(env, host, check_mode=True).execute()
    assert result["changed"] is True
    assert result["actions"] == [f"would restore postgresql/fleetdemo from {SET_ID}",
                                 f"would restore redis from {SET_ID}"]
    assert not [s for s in host.sql_calls() if s.startswith(("ALTER", "CREATE", "DROP", "COMMENT"))]
    assert not [c for c in host.calls if c[0] == "systemctl"]
    assert (env / "dump.rdb").read_bytes() == b"REDIS0011-live"
    assert '"restored_set": null' in result["diff"]["before"]
    assert f'"restored_set": "{SET_ID}"' in result["diff"]["after"]


def test_a_failed_load_drops_the_scratch_database_and_leaves_the_live_one(env):
    host = FakeHost(env / "dump.rdb", restore_rc=1)
    with pytest.raises(r.RestoreError) as err:
        restorer(env, host, components=["postgresql"]).execute()
    assert str(err.value).startswith(
        "pg_restore into the scratch database fleetdemo__restore_20250124t110000z failed (rc=1); "
        "the live database fleetdemo was not touched: pg_restore: error: could not read input file")
    assert set(host.dbs) == {"postgres", "fleetdemo"}
    assert not [s for s in host.sql_calls() if 'ALTER DATABASE "fleetdemo"' in s]


def test_row_counts_that_differ_from_the_manifest_are_refused(env):
    host = FakeHost(env / "dump.rdb", scratch_rows=2)
    with pytest.raises(r.RestoreError, match=r"does not match the manifest of 20250124T110000Z \(public.alembic_"
                                             r"version: 1 rows, not in the manifest; public.items: 2 rows, the "
                                             r"manifest says 3\); the live database fleetdemo was not touched"):
        restorer(env, host, components=["postgresql"]).execute()
    assert set(host.dbs) == {"postgres", "fleetdemo"}


def test_redis_goes_back_to_the_previous_rdb_when_the_keys_do_not_match(env):
    host = FakeHost(env / "dump.rdb", redis_keys_after=1)
    with pytest.raises(r.RestoreError, match="Redis did not come back with the data of 20250124T110000Z "
                                             r"\(redis db0: 1 keys, the manifest says 2\); the previous RDB was put"):
        restorer(env, host, components=["redis"]).execute()
    assert (env / "dump.rdb").read_bytes() == b"REDIS0011-live"
    assert host.redis_up


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "manifest.json").unlink(), "refused, nothing was changed: manifest.json is missing"),
    (lambda p: (p / "redis" / "dump.rdb").write_bytes(b"REDIS0011-xxx"), "redis/dump.rdb: sha256 "),
    (lambda p: (p / "postgresql" / "fleetdemo.dump").write_bytes(b"PGDMP"),
     "postgresql/fleetdemo.dump is 5 bytes, the manifest says 55 (truncated or replaced)"),
])
def test_damaged_sets_are_refused_before_any_command(env, damage, message):
    path = env / "backups" / "fleetdemo" / SET_ID
    damage(path)
    host = FakeHost(env / "dump.rdb")
    with pytest.raises(r.RestoreError) as err:
        restorer(env, host, path=str(path)).execute()
    assert message in str(err.value)
    assert host.calls == []


def test_a_set_dumped_from_a_remote_server_is_refused_before_any_command(tmp_path, monkeypatch):
    """backup_postgresql_host sets come from another server: loading them into this host's would restore the wrong
    server. Refused up front, in check mode too, naming the server."""
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_set(tmp_path / "backups", pg_host="db.example.internal")
    for check_mode in (True, False):
        host = FakeHost(tmp_path / "dump.rdb")
        with pytest.raises(r.RestoreError, match=r"was dumped from the PostgreSQL server db.example.internal "
                                                 r"\(backup_postgresql_host\).*nothing was changed"):
            restorer(tmp_path, host, check_mode=check_mode, components=["postgresql"]).execute()
        assert host.calls == []


def test_a_set_of_another_app_is_refused(tmp_path):
    path = make_set(tmp_path / "backups", app="otherapp")
    host = FakeHost(tmp_path / "dump.rdb")
    with pytest.raises(r.RestoreError, match="set belongs to app 'otherapp', not 'fleetdemo'"):
        restorer(tmp_path, host, path=str(path)).execute()
    assert host.calls == []


def test_components_the_set_lacks_are_named(env):
    with pytest.raises(r.RestoreError, match="no complete, verified backup set holding mongodb found"):
        restorer(env, FakeHost(env / "dump.rdb"), components=["mongodb"]).execute()
    with pytest.raises(r.RestoreError, match="holds no mongodb backup"):
        restorer(env, FakeHost(env / "dump.rdb"), components=["mongodb"], set=SET_ID).execute()


def test_mongodb_dry_run_first_and_uri_never_in_argv(tmp_path, monkeypatch):
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_set(tmp_path / "backups", mongodb=True)
    host = FakeHost(tmp_path / "dump.rdb")
    uri = "mongodb://admin:s3cret@127.0.0.1/playpark"
    result = restorer(tmp_path, host, components=["mongodb"], mongodb_uri=uri).execute()
    assert result["restored"] == ["mongodb"]
    runs = [c for c in host.calls if c[0] == "mongorestore"]
    assert "--dryRun" in runs[0] and "--dryRun" not in runs[1]
    assert "--nsInclude=playpark.*" in runs[1] and "--drop" in runs[1]
    assert not any("s3cret" in a for c in host.calls for a in c)
    assert not (tmp_path / "backups" / "fleetdemo" / f".restore-{SET_ID}").exists()


# ---- the per-component classes: state() / check() / apply() --------------------------------------------------

MUTATING_SQL = ("ALTER", "CREATE", "DROP", "COMMENT")


def mutating_calls(host: FakeHost) -> list[list[str]]:
    return [c for c in host.calls
            if c[0] in ("systemctl", "mongorestore") or ("psql" in c and c[-1].startswith(MUTATING_SQL))
            or ("pg_restore" in c and "-l" not in c)]


def test_every_component_class_follows_the_one_component_list():
    assert set(r.COMPONENT_CLASSES) == set(b.RESTORABLE) == set(r.RESTORE_ORDER)
    assert tuple(r.COMPONENT_CLASSES) == r.RESTORE_ORDER == ("postgresql", "mongodb", "files", "redis")
    # Every component is restorable; of files only the data paths (test_restore_files.py).
    assert set(b.RESTORABLE) == set(b.COMPONENTS)
    assert all(cls.name == name for name, cls in r.COMPONENT_CLASSES.items())


def test_options_are_typed_and_keep_secrets_out_of_their_repr(tmp_path):
    opts = r.RestoreOptions.from_params(params(tmp_path, components=["redis"], mongodb_uri="mongodb://u:s3cret@h/x",
                                               age_identity="AGE-SECRET-KEY-1"))
    assert opts.components == ("redis",) and opts.databases == () and opts.redis_port == 6379
    assert opts.app_dir == str(tmp_path / "backups" / "fleetdemo")
    assert "s3cret" not in repr(opts) and "AGE-SECRET" not in repr(opts) and "'pw'" not in repr(opts)
    # Options the module left unset (None) fall back to the documented defaults.
    assert r.RestoreOptions.from_params({"app": "x", "set": None, "timeout": None}).set == "latest"


@pytest.mark.parametrize("name, keys", [
    ("postgresql", ["postgresql/fleetdemo"]),
    ("redis", ["redis"]),
    ("mongodb", ["mongodb"]),
])
def test_check_predicts_exactly_what_apply_restores(tmp_path, monkeypatch, name, keys):
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_set(tmp_path / "backups", mongodb=True)
    (tmp_path / "dump.rdb").write_bytes(b"REDIS0011-live")
    host = FakeHost(tmp_path / "dump.rdb")
    extra = {"components": [name], "mongodb_uri": "mongodb://admin:s3cret@127.0.0.1/playpark"}

    first = restorer(tmp_path, host, **extra)
    plan = first.plan()
    (component,) = plan.components
    assert component.name == name and isinstance(component, r.COMPONENT_CLASSES[name])
    assert [item.key for item in plan.items[name]] == keys
    todo = [item for item in plan.items[name] if item.needed]
    assert [item.key for item in todo] == keys
    assert mutating_calls(host) == []  # check() only reads
    assert all(item.after["restored_set"] == SET_ID for item in todo)

    assert list(component.apply(todo)) == keys  # apply() restores what check() predicted, nothing else
    first.files.cleanup()
    assert mutating_calls(host)

    # After apply(), check() finds nothing to do: prediction and action agree both ways. MongoDB is the exception:
    # nothing can tell whether it was written since, so it is restored again (when unsure, restore).
    host.calls.clear()
    again = restorer(tmp_path, host, **extra).plan()
    assert [item.key for item in again.todo] == (keys if name == "mongodb" else [])
    assert mutating_calls(host) == []
    assert [item.before["restored_set"] for item in again.items[name]] == [SET_ID] * len(keys)
    # force: check() predicts a restore again.
    assert [item.key for item in restorer(tmp_path, host, force=True, **extra).plan().todo] == keys


def test_apply_of_nothing_changes_nothing(env):
    host = FakeHost(env / "dump.rdb")
    plan = restorer(env, host).plan()
    host.calls.clear()
    for component in plan.components:
        assert component.apply([]) == {}
    assert host.calls == [] and not (env / "state").exists()


def test_state_reports_what_is_live(env):
    host = FakeHost(env / "dump.rdb")
    plan = restorer(env, host).plan()
    pg, redis = plan.components
    live = pg.state()["fleetdemo"]
    assert live["exists"] is True and live["comment"] == ""
    assert live["tables"] == {"public.alembic_version": 1, "public.items": 7}
    assert len(live["fingerprint"]["content_sha256"]) == 64
    assert redis.state() == {"running": True, "keyspace": {"db0": {"keys": 5, "expires": 0}}, "fingerprint": {
        "run_id": "run" + "0" * 37 + "1", "rdb_last_save_time": "1700000001", "rdb_changes_since_last_save": "0"}}
    host.redis_up = False
    assert redis.state()["running"] is False and "Connection refused" in redis.state()["error"]
    host.dbs.pop("fleetdemo")
    assert pg.state() == {"fleetdemo": {"exists": False}}


def test_check_mode_is_the_real_run_without_apply(env):
    host = FakeHost(env / "dump.rdb")
    predicted = restorer(env, host, check_mode=True).execute()
    check_calls = list(host.calls)
    host.calls.clear()
    real = restorer(env, host).execute()
    for key in ("changed", "restored", "unchanged", "diff", "set"):
        assert predicted[key] == real[key], key
    assert predicted["msg"] == f"would restore postgresql/fleetdemo, redis from {SET_ID}"
    assert real["msg"] == f"restored postgresql/fleetdemo, redis from {SET_ID}"
    # The real run starts with exactly the commands of check mode (same reads, same proofs), then acts.
    assert host.calls[:len(check_calls)] == check_calls
    assert mutating_calls(host) and not [c for c in check_calls if c in mutating_calls(host)]
    # Each dump's table of contents is read once per run, in check mode and for real.
    assert [c[:2] for c in check_calls].count(["pg_restore", "-l"]) == 1
    assert [c[:2] for c in host.calls].count(["pg_restore", "-l"]) == 1
    assert restorer(env, host, check_mode=True).execute()["changed"] is False


class BadRdbHost(FakeHost):
    def __call__(self, argv, env=None):
        if argv[0].endswith("redis-check-rdb"):
            self.calls.append(argv)
            self.envs.append(env)
            return 2, "", "--- RDB ERROR DETECTED ---"
        return super().__call__(argv, env)


def test_read_only_proofs_of_every_component_run_before_the_first_change(env, monkeypatch):
    monkeypatch.setattr(r.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "redis-check-rdb" else None)
    host = BadRdbHost(env / "dump.rdb")
    with pytest.raises(r.RestoreError, match=r"redis-check-rdb rejects redis/dump.rdb \(rc=2\).*nothing was changed"):
        restorer(env, host).execute()
    assert mutating_calls(host) == []
    assert set(host.dbs) == {"postgres", "fleetdemo"} and host.dbs["fleetdemo"] == ""


def test_a_component_records_its_restore_as_soon_as_it_is_done(env):
    # PostgreSQL is restored, then Redis fails its key count and is put back: the marker says what is true.
    host = FakeHost(env / "dump.rdb", redis_keys_after=1)
    with pytest.raises(r.RestoreError, match="Redis did not come back"):
        restorer(env, host).execute()
    marker = r.Marker(r.RestoreOptions.from_params(params(env)), r.Host(host))
    assert marker.restored_set("postgresql/fleetdemo") == SET_ID and marker.restored_set("redis") is None
    again = restorer(env, host, check_mode=True).execute()
    assert again["restored"] == ["redis"] and again["unchanged"] == ["postgresql/fleetdemo"]


# ---- issue 9: restores that can never make things worse ------------------------------------------------------


class RecordingHost(FakeHost):
    """FakeHost that also records, at every systemctl call, whether the live RDB existed."""

    def __call__(self, argv, env=None):
        if argv[0] == "systemctl":
            self.rdb_seen = getattr(self, "rdb_seen", []) + [(argv[1], self.rdb.exists())]
        return super().__call__(argv, env)


def test_redis_os_error_between_stop_and_start_puts_the_previous_rdb_back_and_starts_redis(env, monkeypatch):
    # issue 9 #1: an OSError while the set's RDB is put in place (stop → replace → start).
    host = RecordingHost(env / "dump.rdb")
    rdb = str(env / "dump.rdb")
    real_replace = r.os.replace

    def failing_replace(src, dst, *args, **kwargs):
        if str(dst) == rdb and str(src).endswith(".pyfleet-restore"):
            raise OSError(28, "No space left on device", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(r.os, "replace", failing_replace)
    with pytest.raises(r.RestoreError, match=r"could not put the RDB of 20250124T110000Z in place \(No space left on "
                                             r"device: .*\); the previous RDB is live and Redis was started on it"):
        restorer(env, host, components=["redis"]).execute()
    assert host.redis_up, "Redis must never be left stopped"
    assert (env / "dump.rdb").read_bytes() == b"REDIS0011-live"
    assert all(exists for _verb, exists in host.rdb_seen), "dump.rdb must never be missing"
    assert not list(env.glob("dump.rdb.pyfleet-restore"))


def test_redis_disk_full_while_staging_changes_nothing_and_never_stops_redis(env, monkeypatch):
    # issue 9 #1: the new RDB is staged (and synced) next to the live one BEFORE Redis is stopped.
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(r.shutil, "copyfileobj", full)
    monkeypatch.setattr(r.shutil, "copyfile", full)
    host = FakeHost(env / "dump.rdb")
    with pytest.raises(r.RestoreError, match=r"could not stage the RDB of 20250124T110000Z .*No space left on device"
                                             r"\); Redis was not stopped and the live data was not touched"):
        restorer(env, host, components=["redis"]).execute()
    assert not [c for c in host.calls if c[0] == "systemctl"]
    assert host.redis_up and (env / "dump.rdb").read_bytes() == b"REDIS0011-live"
    assert sorted(p.name for p in env.iterdir() if p.name.startswith("dump.rdb")) == ["dump.rdb"]


def test_a_failed_start_after_the_swap_brings_the_previous_rdb_back(env):
    class NoStart(FakeHost):
        starts = 0

        def __call__(self, argv, env=None):
            if argv[:2] == ["systemctl", "start"]:
                self.starts += 1
                if self.starts == 1:
                    self.calls.append(argv)
                    return 1, "", "Job for redis-server.service failed"
            return super().__call__(argv, env)

    host = NoStart(env / "dump.rdb")
    with pytest.raises(r.RestoreError, match="systemctl start redis-server failed: Job for redis-server.service "
                                             "failed\\); the previous RDB was put back and Redis started on it"):
        restorer(env, host, components=["redis"]).execute()
    assert host.redis_up and (env / "dump.rdb").read_bytes() == b"REDIS0011-live"


def test_a_symlink_planted_as_the_staged_rdb_is_not_followed(env):
    # issue 9 #11: the redis user can write the RDB directory; root must not write through its symlinks.
    victim = env / "victim"
    victim.write_bytes(b"precious")
    (env / "dump.rdb.pyfleet-restore").symlink_to(victim)
    host = FakeHost(env / "dump.rdb")
    restorer(env, host, components=["redis"]).execute()
    assert victim.read_bytes() == b"precious"
    assert (env / "dump.rdb").read_bytes() == b"REDIS0011-new" and not (env / "dump.rdb").is_symlink()


def test_a_live_rdb_that_is_a_symlink_is_refused_before_redis_is_stopped(env):
    (env / "dump.rdb").unlink()
    (env / "elsewhere.rdb").write_bytes(b"REDIS0011-live")
    (env / "dump.rdb").symlink_to(env / "elsewhere.rdb")
    host = FakeHost(env / "dump.rdb")
    with pytest.raises(r.RestoreError, match="refused before anything changed: redis: .* is a symbolic link, not "
                                             "the RDB file Redis writes; nothing was changed"):
        restorer(env, host, components=["redis"]).execute()
    assert not [c for c in host.calls if c[0] == "systemctl"]


class Killed(BaseException):
    """The module's process dies (kill -9, OOM, lost SSH): no except clause of the module runs."""


class KillingHost(FakeHost):
    """Dies right after its ``die_after``-th command that changes PostgreSQL (None: never)."""

    def __init__(self, rdb: Path, die_after: int | None = None):
        super().__init__(rdb)
        self.die_after = die_after
        self.changes = 0
        self.states: list[tuple[bool, bool]] = []  # after each change: (live exists, live open)

    def __call__(self, argv, env=None):
        result = super().__call__(argv, env)
        mutating = ("psql" in argv and argv[-1].startswith(("ALTER", "CREATE", "DROP", "COMMENT", "BEGIN"))) or (
            "pg_restore" in argv and "-l" not in argv)
        if mutating and result[0] == 0:
            self.changes += 1
            self.states.append(("fleetdemo" in self.dbs, "fleetdemo" not in self.noconn))
            if self.die_after is not None and self.changes == self.die_after:
                raise Killed
        return result


def pg_changes_of_one_restore(tmp_path) -> int:
    env = tmp_path / "count"
    make_set(env / "backups")
    host = KillingHost(env / "dump.rdb")
    restorer(env, host, components=["postgresql"]).execute()
    return host.changes


def test_postgresql_killed_after_any_step_never_leaves_the_live_database_closed_and_a_re_run_recovers(
        tmp_path, monkeypatch):
    # issue 9 #3: the swap is one transaction; every state a kill can leave is recovered by running it again.
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    steps = pg_changes_of_one_restore(tmp_path)
    for step in range(1, steps + 1):
        env = tmp_path / f"kill-{step}"
        make_set(env / "backups")
        host = KillingHost(env / "dump.rdb", die_after=step)
        with pytest.raises(Killed):
            restorer(env, host, components=["postgresql"]).execute()
        assert all(exists and open_ for exists, open_ in host.states), f"killed after step {step}: {host.states}"
        assert host.content["fleetdemo"] in ("live data", "set data")
        host.die_after = None
        result = restorer(env, host, components=["postgresql"]).execute()
        assert host.content["fleetdemo"] == "set data", step
        assert "fleetdemo" not in host.noconn and not [d for d in host.dbs if "__restore_" in d], step
        assert host.dbs["fleetdemo"].startswith(f"pyfleet restore {SET_ID} "), step
        assert result["restored"] in (["postgresql/fleetdemo"], []), step
    assert steps == 4  # drop leftover scratch, create scratch, pg_restore, the swap transaction


def make_two_database_set(root: Path) -> Path:
    path = root / "fleetdemo" / SET_ID
    (path / "postgresql").mkdir(parents=True)
    dbs = {}
    files = {}
    for name in ("fleetdemo", "reports"):
        (path / "postgresql" / f"{name}.dump").write_bytes(b"PGDMP" + name.encode())
        dbs[name] = {"file": f"postgresql/{name}.dump", "owner": "fleetdemo", "tables": {"public.items": 3}}
        files.update(b.file_records(str(path), f"postgresql/{name}.dump"))
    b.write_manifest(str(path), {"format": 1, "id": SET_ID, "app": "fleetdemo", "components": {
        "postgresql": {"databases": dbs}}, "files": files})
    return path


class SecondDatabaseFailsOnce(FakeHost):
    failed = False

    def __call__(self, argv, env=None):
        if "pg_restore" in argv and "-l" not in argv and "reports__restore_" in argv[argv.index("-d") + 1] \
                and not self.failed:
            self.failed = True
            self.calls.append(argv)
            return 1, "", "pg_restore: error: out of shared memory"
        return super().__call__(argv, env)


def test_a_re_run_after_a_partial_multi_database_restore_keeps_the_real_pre_restore_copy(tmp_path, monkeypatch):
    # issue 9 #4: never drop a kept copy that this same run did not create.
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_two_database_set(tmp_path / "backups")
    host = SecondDatabaseFailsOnce(tmp_path / "dump.rdb")
    host.dbs["reports"] = ""
    host.content["reports"] = "live reports"
    opts = r.RestoreOptions.from_params(params(tmp_path, components=["postgresql"]))
    with pytest.raises(r.RestoreError, match="reports"):
        r.Restorer(opts, host, clock=lambda: NOW, sleep=lambda s: None).execute()
    real_copy = "fleetdemo__pre_20250124t120000z"
    assert host.content[real_copy] == "live data"  # the only copy of what was live before the restore
    later = NOW + dt.timedelta(minutes=5)
    r.Restorer(opts, host, clock=lambda: later, sleep=lambda s: None).execute()
    assert host.content.get(real_copy) == "live data"
    assert host.content["fleetdemo"] == "set data" and host.content["reports"] == "set data"
    # keep_previous: 0 drops only the copy its own run made.
    forced = r.RestoreOptions.from_params(params(tmp_path, components=["postgresql"], keep_previous=0, force=True))
    warnings: list[str] = []
    result = r.Restorer(forced, host, clock=lambda: later + dt.timedelta(minutes=5), sleep=lambda s: None,
                        warn=warnings.append).execute()
    assert result["details"]["postgresql/fleetdemo"]["dropped"] == ["fleetdemo__pre_20250124t121000z"]
    assert real_copy in result["details"]["postgresql/fleetdemo"]["kept_earlier"]
    assert host.content.get(real_copy) == "live data"
    assert any(real_copy in w and "left alone" in w for w in warnings)


def test_redis_keep_previous_zero_drops_only_this_runs_copy(env):
    (env / "dump.rdb.pre-20240101t000000z").write_bytes(b"REDIS0011-older")
    host = FakeHost(env / "dump.rdb")
    result = restorer(env, host, components=["redis"], keep_previous=0).execute()
    assert result["details"]["redis"]["dropped"] == ["dump.rdb.pre-20250124t120000z"]
    assert (env / "dump.rdb.pre-20240101t000000z").read_bytes() == b"REDIS0011-older"
    assert not (env / "dump.rdb.pre-20250124t120000z").exists()


def make_encrypted_directory_set(root: Path) -> Path:
    """A set as the backup program writes it with age_recipients and postgresql format: directory."""
    path = root / "fleetdemo" / SET_ID
    dump = path / "postgresql" / "fleetdemo.dir"
    dump.mkdir(parents=True)
    files = {}
    for name, plain in (("toc.dat", b"PGDMP-toc"), ("3001.dat.gz", b"rows of items"), ("3002.dat", b"")):
        (dump / f"{name}.age").write_bytes(AGE_HEADER + plain)
        rel = f"postgresql/fleetdemo.dir/{name}.age"
        files.update(b.file_records(str(path), rel))
        files[rel].update(plain_sha256=hashlib.sha256(plain).hexdigest(), plain_size=len(plain))
    comps = {"postgresql": {"databases": {"fleetdemo": {"file": "postgresql/fleetdemo.dir", "format": "directory",
                                                        "owner": "fleetdemo", "tables": {"public.items": 3}}}}}
    b.write_manifest(str(path), {"format": 1, "id": SET_ID, "app": "fleetdemo", "components": comps, "files": files,
                                 "encryption": {"tool": "age", "recipients": ["age1xyz"]}})
    return path


def test_an_encrypted_directory_format_set_is_decrypted_file_by_file_and_restored(tmp_path, monkeypatch):
    # issue 9 #2: the .age files inside the dump directory are decrypted into a private staging folder first.
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_encrypted_directory_set(tmp_path / "backups")
    seen = {}

    class Host(FakeHost):
        def __call__(self, argv, env=None):
            if "pg_restore" in argv and "-l" not in argv:
                source = Path(argv[-1])
                seen["files"] = sorted((p.name, p.read_bytes()) for p in source.iterdir())
                seen["mode"] = source.parent.stat().st_mode & 0o777
            return super().__call__(argv, env)

    host = Host(tmp_path / "dump.rdb")
    result = restorer(tmp_path, host, components=["postgresql"], age_identity="AGE-SECRET-KEY-1XYZ").execute()
    assert result["restored"] == ["postgresql/fleetdemo"] and host.content["fleetdemo"] == "set data"
    # an empty file (for which age writes no output) is restored empty, not missing
    assert seen["files"] == [("3001.dat.gz", b"rows of items"), ("3002.dat", b""), ("toc.dat", b"PGDMP-toc")]
    assert seen["mode"] & 0o007 == 0  # the staging folder is private: nobody but root (and postgres' group)
    restore_call = next(c for c in host.calls if "pg_restore" in c and "-l" not in c)
    assert "-j" in restore_call  # directory format: parallel jobs
    assert not (tmp_path / "backups" / "fleetdemo" / f".restore-{SET_ID}").exists()  # decrypted copies are gone
    assert not any("AGE-SECRET" in a for c in host.calls for a in c)


def test_an_encrypted_directory_file_that_decrypts_to_other_bytes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    path = make_encrypted_directory_set(tmp_path / "backups")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["postgresql/fleetdemo.dir/toc.dat.age"]["plain_sha256"] = "0" * 64
    (path / "manifest.json").unlink()
    b.write_manifest(str(path), manifest)
    host = FakeHost(tmp_path / "dump.rdb")
    with pytest.raises(r.RestoreError, match="postgresql/fleetdemo.dir/toc.dat: the decrypted file does not match "
                                             "the manifest; nothing was changed"):
        restorer(tmp_path, host, components=["postgresql"], age_identity="AGE-SECRET-KEY-1XYZ").execute()
    assert host.content == {"fleetdemo": "live data"}


# issue 9 #13: every component's inputs before the first change; a deliberate order; partial failures said plainly.


def mongo_env(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_set(tmp_path / "backups", mongodb=True)
    (tmp_path / "dump.rdb").write_bytes(b"REDIS0011-live")
    return tmp_path


def test_a_mongodb_set_without_mongodb_uri_is_refused_up_front_and_check_mode_predicts_it(tmp_path, monkeypatch):
    env = mongo_env(tmp_path, monkeypatch)
    message = (f"restore of {SET_ID} refused before anything changed: mongodb: mongodb_uri is required to restore "
               "MongoDB; nothing was changed")
    for check_mode in (True, False):
        host = FakeHost(env / "dump.rdb")
        with pytest.raises(r.RestoreError) as err:
            restorer(env, host, check_mode=check_mode).execute()
        assert str(err.value) == message
        assert mutating_calls(host) == [], check_mode
        assert host.content == {"fleetdemo": "live data"} and (env / "dump.rdb").read_bytes() == b"REDIS0011-live"


def test_an_encrypted_set_without_age_identity_is_refused_in_check_mode_too(tmp_path, monkeypatch):
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_encrypted_directory_set(tmp_path / "backups")
    with pytest.raises(r.RestoreError, match="refused before anything changed: postgresql: backup set .* is "
                                             "encrypted with age: age_identity .* is required; nothing was changed"):
        restorer(tmp_path, FakeHost(tmp_path / "dump.rdb"), check_mode=True).execute()


def test_components_are_restored_postgresql_then_mongodb_then_redis(tmp_path, monkeypatch):
    env = mongo_env(tmp_path, monkeypatch)
    host = FakeHost(env / "dump.rdb")
    result = restorer(env, host, mongodb_uri="mongodb://u:p@h/playpark").execute()
    assert result["restored"] == ["postgresql/fleetdemo", "mongodb", "redis"]
    kinds = []
    for call in mutating_calls(host):
        kind = "redis" if call[0] == "systemctl" else "mongodb" if call[0] == "mongorestore" else "postgresql"
        if not kinds or kinds[-1] != kind:
            kinds.append(kind)
    assert kinds == ["postgresql", "mongodb", "redis"]


def test_a_later_failure_leaves_earlier_components_restored_and_says_what_is_live(tmp_path, monkeypatch):
    env = mongo_env(tmp_path, monkeypatch)

    class MongoFails(FakeHost):
        def __call__(self, argv, env=None):
            if argv[0] == "mongorestore" and "--dryRun" not in argv:
                self.calls.append(argv)
                return 1, "", "Failed: playpark.items: error: E11000 duplicate key"
            return super().__call__(argv, env)

    host = MongoFails(env / "dump.rdb")
    with pytest.raises(r.RestoreError) as err:
        restorer(env, host, mongodb_uri="mongodb://u:p@h/playpark").execute()
    message = str(err.value)
    assert message.startswith("mongodb failed: mongorestore failed (rc=1): Failed: playpark.items")
    assert (f"Live now: postgresql/fleetdemo holds {SET_ID} (restored by this run; its previous data is kept as "
            "fleetdemo__pre_20250124t120000z); not restored, still their previous data: redis.") in message
    assert err.value.restored == ["postgresql/fleetdemo"]
    assert host.content["fleetdemo"] == "set data"
    assert (env / "dump.rdb").read_bytes() == b"REDIS0011-live" and not [c for c in host.calls if c[0] == "systemctl"]


# issue 9 #5: "same set twice" is decided by the live data, not by the marker alone.


def test_restore_then_a_write_then_the_same_set_again_restores_again(env):
    host = FakeHost(env / "dump.rdb")
    restorer(env, host).execute()
    assert restorer(env, host, check_mode=True).execute()["changed"] is False  # nothing written: a no-op
    host.content["fleetdemo"] = "set data + a row the app wrote"  # same row count, other content
    host.redis_dirty += 1  # SET colour red
    predicted = restorer(env, host, check_mode=True).execute()
    assert predicted["restored"] == ["postgresql/fleetdemo", "redis"]
    assert '"written_since_restore": true' in predicted["diff"]["before"]
    result = restorer(env, host).execute()
    assert result["restored"] == ["postgresql/fleetdemo", "redis"]
    assert host.content["fleetdemo"] == "set data"  # the write is gone
    assert restorer(env, host).execute()["changed"] is False


def test_once_keeps_what_was_written_since_a_restore_from_the_same_set(env):
    # A re-run of a recovery: the rebuilt host has served traffic since; restoring again would throw that away.
    host = FakeHost(env / "dump.rdb")
    restorer(env, host, once=True).execute()
    host.content["fleetdemo"] = "set data + a row the app wrote"
    host.redis_dirty += 1
    host.redis_run += 1
    assert restorer(env, host, once=True, check_mode=True).execute()["changed"] is False
    result = restorer(env, host, once=True).execute()
    assert result["changed"] is False and host.content["fleetdemo"] == "set data + a row the app wrote"
    assert restorer(env, host, once=True, force=True).execute()["restored"] == ["postgresql/fleetdemo", "redis"]


def test_once_still_restores_what_was_never_restored_from_this_set(env):
    host = FakeHost(env / "dump.rdb")
    assert restorer(env, host, once=True).execute()["restored"] == ["postgresql/fleetdemo", "redis"]
    assert host.content["fleetdemo"] == "set data"


def test_redis_restarted_or_saved_since_the_restore_counts_as_unsure_and_is_restored(env):
    host = FakeHost(env / "dump.rdb")
    restorer(env, host, components=["redis"]).execute()
    host.redis_run += 1  # restarted: it loaded whatever RDB was on disk then
    assert restorer(env, host, components=["redis"], check_mode=True).execute()["restored"] == ["redis"]


def test_an_older_marker_without_fingerprint_means_restore_again(env):
    host = FakeHost(env / "dump.rdb")
    restorer(env, host, components=["postgresql"]).execute()
    state = env / "state" / "fleetdemo.json"
    data = json.loads(state.read_text())
    data["postgresql/fleetdemo"].pop("fingerprint")
    state.write_text(json.dumps(data))
    assert restorer(env, host, components=["postgresql"], check_mode=True).execute()["changed"] is True


# issue 9 #8: free space is checked before anything changes, with the numbers.


class FakeStatvfs:
    def __init__(self, free: int, block: int = 4096):
        self.f_bavail = free // block
        self.f_frsize = block


def test_not_enough_free_space_for_the_scratch_database_is_refused_with_the_numbers(env, monkeypatch):
    monkeypatch.setattr(r.os, "statvfs", lambda path: FakeStatvfs(5 * 1024 * 1024))
    for check_mode in (True, False):
        host = FakeHost(env / "dump.rdb")
        with pytest.raises(r.RestoreError) as err:
            restorer(env, host, check_mode=check_mode).execute()
        # the live database takes 8 MiB (more than 4 x the 55-byte dump); the staged RDB is 13 bytes.
        assert str(err.value) == (f"not enough free space: needs ~8.0 MiB on {env} (the scratch database of "
                                  "fleetdemo, the staged RDB), 5.0 MiB free; the live data was not touched")
        assert mutating_calls(host) == []
        assert host.content == {"fleetdemo": "live data"} and (env / "dump.rdb").read_bytes() == b"REDIS0011-live"


def test_the_scratch_estimate_is_a_multiple_of_the_dump_when_that_is_larger(env, monkeypatch):
    monkeypatch.setattr(r.os, "statvfs", lambda path: FakeStatvfs(150, block=1))
    host = FakeHost(env / "dump.rdb")
    host.db_size = 10
    # 4 x 55 bytes (the dump) + 13 bytes (the RDB) = 233 bytes > 150 free
    with pytest.raises(r.RestoreError, match=r"needs ~233 B on .*, 150 B free; the live data was not touched"):
        restorer(env, host, check_mode=True).execute()
    monkeypatch.setattr(r.os, "statvfs", lambda path: FakeStatvfs(1024 * 1024))
    assert restorer(env, host, check_mode=True).execute()["changed"] is True


# issue 9 #6: one lock shared by backup, retention and restore; the set is resolved once.


def test_the_restore_waits_for_the_apps_lock_and_names_its_holder(env):
    with b.AppLock(str(env / "backups"), "fleetdemo", 0, purpose="backup postgresql,redis"):
        for check_mode in (True, False):
            host = FakeHost(env / "dump.rdb")
            with pytest.raises(r.RestoreError, match=r"held by pid \d+: backup postgresql,redis since .*; nothing "
                                                     r"was changed"):
                restorer(env, host, check_mode=check_mode, lock_timeout=0).execute()
            assert host.calls == []


def test_the_lock_is_held_from_choosing_the_set_to_the_end_of_the_restore(env):
    import fcntl

    held = []
    lock = env / "backups" / "fleetdemo" / ".lock"

    class Probe(FakeHost):
        def __call__(self, argv, env=None):
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held.append(False)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                held.append(True)
            finally:
                os.close(fd)
            return super().__call__(argv, env)

    result = restorer(env, Probe(env / "dump.rdb")).execute()
    assert result["changed"] and held and all(held)
    assert (result["id"], result["path"]) == (SET_ID, str(env / "backups" / "fleetdemo" / SET_ID))
    # released afterwards: a backup can take it at once
    with b.AppLock(str(env / "backups"), "fleetdemo", 0, purpose="backup"):
        pass


# issue 9 #11: modes and owners are fixed without following symlinks.


def test_a_dump_that_is_a_symlink_is_refused_and_its_target_keeps_its_mode(env):
    dump = env / "backups" / "fleetdemo" / SET_ID / "postgresql" / "fleetdemo.dump"
    victim = env / "shadow"
    victim.write_bytes(dump.read_bytes())  # same bytes: the set still verifies
    victim.chmod(0o600)
    dump.unlink()
    dump.symlink_to(victim)
    host = FakeHost(env / "dump.rdb")
    with pytest.raises(r.RestoreError, match=r"fleetdemo.dump is a symbolic link where a dump file is expected; "
                                             "refused, nothing was changed"):
        restorer(env, host).execute()
    assert victim.stat().st_mode & 0o777 == 0o600 and victim.stat().st_gid == 0
    assert mutating_calls(host) == [] and host.content == {"fleetdemo": "live data"}


def test_a_symlink_inside_a_directory_dump_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    path = tmp_path / "backups" / "fleetdemo" / SET_ID
    dump = path / "postgresql" / "fleetdemo.dir"
    dump.mkdir(parents=True)
    (dump / "toc.dat").write_bytes(b"PGDMP-toc")
    victim = tmp_path / "shadow"
    victim.write_bytes(b"rows")
    victim.chmod(0o600)
    (dump / "3001.dat.gz").symlink_to(victim)
    comps = {"postgresql": {"databases": {"fleetdemo": {"file": "postgresql/fleetdemo.dir", "format": "directory",
                                                        "owner": "fleetdemo", "tables": {"public.items": 3}}}}}
    b.write_manifest(str(path), {"format": 1, "id": SET_ID, "app": "fleetdemo", "components": comps,
                                 "files": b.file_records(str(path), "postgresql/fleetdemo.dir")})
    host = FakeHost(tmp_path / "dump.rdb")
    with pytest.raises(r.RestoreError, match="3001.dat.gz is a symbolic link where a dump file is expected"):
        restorer(tmp_path, host, components=["postgresql"]).execute()
    assert victim.stat().st_mode & 0o777 == 0o600


def test_a_live_database_left_closed_by_an_older_interrupted_swap_is_restored_and_reopened(env):
    # issue 9 #3: the states the previous multi-step swap could leave are recognised and recovered by a re-run.
    host = FakeHost(env / "dump.rdb")
    host.noconn.add("fleetdemo")  # killed after "ALTER DATABASE fleetdemo WITH ALLOW_CONNECTIONS false"
    result = restorer(env, host, components=["postgresql"]).execute()
    assert result["restored"] == ["postgresql/fleetdemo"]
    assert host.noconn == set() and host.content["fleetdemo"] == "set data"
    assert host.content["fleetdemo__pre_20250124t120000z"] == "live data"


def test_a_live_database_left_renamed_away_by_an_older_interrupted_swap_is_restored(env):
    host = FakeHost(env / "dump.rdb")
    host.dbs["fleetdemo__pre_20250124t113000z"] = host.dbs.pop("fleetdemo")  # killed after the first rename
    host.content["fleetdemo__pre_20250124t113000z"] = host.content.pop("fleetdemo")
    host.dbs["fleetdemo__restore_20250124t110000z"] = ""
    host.content["fleetdemo__restore_20250124t110000z"] = "set data"
    restorer(env, host, components=["postgresql"]).execute()
    assert host.content["fleetdemo"] == "set data"
    assert host.content["fleetdemo__pre_20250124t113000z"] == "live data"
    assert not [d for d in host.dbs if "__restore_" in d]
