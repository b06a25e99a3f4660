"""Plain-SQL sets against a real PostgreSQL (issue 12 B): a throw-away cluster of the controller's PostgreSQL 15
server binaries, run as ``nobody`` (runuser, as the program and the module run pg_dump and psql as ``postgres``).
A set is written by the real backup program (its subprocess runner), a row is deleted, the restore logic brings it
back through real psql; and a load that fails half-way leaves nothing (psql's single transaction).
Skipped where the server binaries, root (runuser) or the user nobody are missing."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from ansible_collections.pyfleet.server.plugins.module_utils import restore as r

BIN = Path("/usr/lib/postgresql/15/bin")
FILES = Path(__file__).resolve().parents[4] / "roles" / "backup" / "files"
USER = "nobody"
ROWS = {1: "kept", 2: "tab\there, newline\nthere", 3: "back\\slash 'quotes' \u00e9\u2603", 4: "deleted then back"}


def _usable() -> bool:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return False
    return os.geteuid() == 0 and (BIN / "initdb").exists() and bool(shutil.which("runuser"))


pytestmark = pytest.mark.skipif(not _usable(), reason="needs root, runuser, the user nobody and PostgreSQL 15 binaries")


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", USER, "--", *argv], capture_output=True, text=True, check=True, cwd="/")


@pytest.fixture(scope="module")
def cluster():
    base = Path(tempfile.mkdtemp(prefix="pyfleet-pg-", dir="/tmp"))
    base.chmod(0o755)
    os.chown(base, pwd.getpwnam(USER).pw_uid, -1)
    data = base / "data"
    as_nobody(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8")
    as_nobody(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
              f"-k {base} -c listen_addresses='' -c fsync=off", "start")
    old = os.environ.get("PGHOST")
    os.environ["PGHOST"] = str(base)  # runuser keeps the environment: every psql/pg_dump finds this socket
    try:
        yield base
    finally:
        subprocess.run(["runuser", "-u", USER, "--", str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, check=False)
        if old is None:
            os.environ.pop("PGHOST", None)
        else:
            os.environ["PGHOST"] = old
        shutil.rmtree(base, ignore_errors=True)


def sql(database: str, statement: str) -> str:
    return as_nobody("psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", statement).stdout


def rows(database: str) -> dict[int, str]:
    import json

    out = sql(database, "SELECT json_object_agg(id, value ORDER BY id) FROM probe").strip()
    return {int(k): v for k, v in json.loads(out or "{}").items()}


def literal(text: str) -> str:
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\t", "\\t") + "'"


def run(argv, env=None):
    proc = subprocess.run(argv, capture_output=True, env=dict(os.environ, **(env or {})), cwd="/", check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def test_a_real_plain_set_brings_a_deleted_row_back(cluster, monkeypatch):
    monkeypatch.setenv("PYFLEET_LIB", str(FILES))
    spec = importlib.util.spec_from_file_location("pyfleet_backup_cli_plain", FILES / "pyfleet_backup_cli.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    sql("postgres", "CREATE DATABASE shop")
    values = ", ".join(f"({k}, {literal(v)})" for k, v in ROWS.items())
    sql("shop", f"CREATE TABLE probe (id int PRIMARY KEY, value text); INSERT INTO probe VALUES {values}")
    root = cluster / "backups"
    config = {"app": "shop", "root": str(root), "host": "h1",
              "postgresql": {"databases": ["shop"], "format": "plain", "os_user": USER}}
    result = b.BackupJob(config, cli.SubprocessRunner(), log=lambda m: None).run()
    info = b.check_set(result["path"], app="shop")
    assert info.good, info.problems
    detail = info.manifest["components"]["postgresql"]["databases"]["shop"]
    assert detail["tables"] == {"public.probe": 4} and detail["format"] == "plain"
    dump = Path(result["path"]) / "postgresql" / "shop.sql.gz"
    text = gzip.decompress(dump.read_bytes()).decode()
    assert "-- PostgreSQL database dump complete" in text and "COPY public.probe (id, value) FROM stdin;" in text

    sql("shop", "DELETE FROM probe WHERE id = 4; INSERT INTO probe VALUES (99, 'written after')")
    opts = r.RestoreOptions.from_params({"app": "shop", "root": str(root), "state_dir": str(cluster / "state"),
                                         "components": ["postgresql"], "postgresql_os_user": USER})
    plan = r.Restorer(opts, run, check_mode=True).execute()
    assert plan["changed"] and rows("shop")[99] == "written after"  # check mode changed nothing
    done = r.Restorer(opts, run).execute()
    assert done["restored"] == ["postgresql/shop"], done
    assert rows("shop") == ROWS
    names = sql("postgres", "SELECT datname FROM pg_database").split()
    assert [n for n in names if n.startswith("shop__pre_")] and not [n for n in names if "__restore_" in n]
    assert r.Restorer(opts, run).execute()["changed"] is False


def test_a_load_that_fails_half_way_leaves_nothing(cluster, tmp_path):
    sql("postgres", "CREATE DATABASE halfway")
    source = tmp_path / "bad.sql.gz"
    source.write_bytes(gzip.compress(b"CREATE TABLE first (x int);\nINSERT INTO first VALUES (1);\nSELECT 1/0;\n"))
    rc, _out, err = r.feed_gzip(b.psql_load_argv("halfway", user=USER), str(source))
    assert rc == 3 and "division by zero" in err
    # One transaction: the statements before the error are gone too.
    assert sql("halfway", "SELECT to_regclass('public.first') IS NULL").strip() == "t"
