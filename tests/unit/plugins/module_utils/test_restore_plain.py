"""Restoring a plain-SQL set (issue 12 B): the dump is proven whole, decompressed onto psql (ON_ERROR_STOP, one
transaction) into the scratch database, and swapped in like every other format; feed_gzip against real processes."""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from ansible_collections.pyfleet.server.plugins.module_utils import restore as r
from test_backup_plain import PLAIN_DUMP
from test_restore import AGE_HEADER, NOW, SET_ID, FakeHost, params

PLAIN_SET_TABLES = {"public.items": 3}


def make_plain_set(root: Path, data: bytes | None = None, encrypted: bool = False) -> Path:
    """A set as the program writes it with backup_postgresql_format: plain (and age_recipients)."""
    path = root / "fleetdemo" / SET_ID
    (path / "postgresql").mkdir(parents=True)
    packed = gzip.compress(PLAIN_DUMP) if data is None else data
    rel = "postgresql/fleetdemo.sql.gz"
    if encrypted:
        (path / "postgresql" / "fleetdemo.sql.gz.age").write_bytes(AGE_HEADER + packed)
        files = b.file_records(str(path), rel + ".age")
        files[rel + ".age"].update(plain_sha256=hashlib.sha256(packed).hexdigest(), plain_size=len(packed))
    else:
        (path / "postgresql" / "fleetdemo.sql.gz").write_bytes(packed)
        files = b.file_records(str(path), rel)
    comps = {"postgresql": {"databases": {"fleetdemo": {"file": rel, "format": "plain", "compression": "gzip",
                                                        "owner": "fleetdemo", "tables": PLAIN_SET_TABLES}}}}
    manifest = {"format": 1, "id": SET_ID, "app": "fleetdemo", "components": comps, "files": files}
    if encrypted:
        manifest["encryption"] = {"tool": "age", "recipients": ["age1xyz"]}
    b.write_manifest(str(path), manifest)
    return path


class PlainHost(FakeHost):
    """Plays psql reading a plain dump on stdin: what it was fed becomes the scratch database's content."""

    def __init__(self, rdb: Path, load_rc: int = 0):
        super().__init__(rdb)
        self.load_rc = load_rc
        self.fed: list[tuple[list[str], bytes]] = []

    def feed(self, argv, source):
        self.calls.append(argv)
        self.fed.append((argv, gzip.decompress(Path(source).read_bytes())))
        if self.load_rc:
            return self.load_rc, "", 'psql:<stdin>:42: ERROR:  relation "items" already exists'
        self.content[argv[argv.index("-d") + 1]] = "set data"
        return 0, "", ""


def plain_restorer(tmp_path, host, check_mode=False, **extra):
    return r.Restorer(r.RestoreOptions.from_params(params(tmp_path, components=["postgresql"], **extra)), host,
                      check_mode=check_mode, clock=lambda: NOW, sleep=lambda s: None, feed=host.feed)


@pytest.fixture
def plain_env(tmp_path, monkeypatch):
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_plain_set(tmp_path / "backups")
    return tmp_path


def test_a_plain_dump_is_fed_to_psql_into_the_scratch_database_then_swapped_in(plain_env):
    host = PlainHost(plain_env / "dump.rdb")
    result = plain_restorer(plain_env, host).execute()
    assert result["changed"] and result["restored"] == ["postgresql/fleetdemo"]
    ((argv, sql),) = host.fed
    assert argv == ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1",
                    "--single-transaction", "-p", "5432", "-d", "fleetdemo__restore_20250124t110000z", "-f", "-"]
    assert sql == PLAIN_DUMP
    assert not [c for c in host.calls if "pg_restore" in c]  # neither to list nor to load
    sql_calls = host.sql_calls()
    create = 'CREATE DATABASE "fleetdemo__restore_20250124t110000z" OWNER "fleetdemo" TEMPLATE template0'
    (swap,) = [s for s in sql_calls if s.startswith("BEGIN;")]
    assert sql_calls.index(create) < sql_calls.index(swap)
    assert host.content["fleetdemo"] == "set data" and host.content["fleetdemo__pre_20250124t120000z"] == "live data"
    again = plain_restorer(plain_env, host).execute()
    assert again["changed"] is False


def test_check_mode_reads_the_plain_dump_to_its_end_and_loads_nothing(plain_env):
    host = PlainHost(plain_env / "dump.rdb")
    result = plain_restorer(plain_env, host, check_mode=True).execute()
    assert result["changed"] is True and result["actions"] == [f"would restore postgresql/fleetdemo from {SET_ID}"]
    assert host.fed == [] and not [s for s in host.sql_calls() if s.startswith(("ALTER", "CREATE", "DROP"))]


# Named cases (gzip stamps the time into its header: bytes as ids would differ between pytest-xdist's workers).
@pytest.mark.parametrize(("data", "message"), [
    (gzip.compress(PLAIN_DUMP)[:-12], "is not a complete gzip stream"),
    (gzip.compress(PLAIN_DUMP.replace(b"dump complete", b"dump")), "does not end with pg_dump's"),
], ids=["truncated-stream", "no-trailer"])
def test_a_plain_dump_written_incomplete_is_refused_in_check_mode_and_for_real(tmp_path, monkeypatch, data, message):
    # The checksums match (the file was written so): only reading it to the end shows it is not whole.
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_plain_set(tmp_path / "backups", data=data)
    for check_mode in (True, False):
        host = PlainHost(tmp_path / "dump.rdb")
        with pytest.raises(r.RestoreError, match="postgresql/fleetdemo.sql.gz of 20250124T110000Z is not a complete "
                                                 f"plain-SQL dump, nothing was changed: fleetdemo.sql.gz .*{message}"):
            plain_restorer(tmp_path, host, check_mode=check_mode).execute()
        assert host.fed == [] and host.content == {"fleetdemo": "live data"}


def test_a_failed_psql_load_drops_the_scratch_database_and_leaves_the_live_one(plain_env):
    host = PlainHost(plain_env / "dump.rdb", load_rc=3)
    with pytest.raises(r.RestoreError) as err:
        plain_restorer(plain_env, host).execute()
    assert ("psql into the scratch database fleetdemo__restore_20250124t110000z failed (rc=3); the live database "
            'fleetdemo was not touched: psql:<stdin>:42: ERROR:  relation "items" already exists') in str(err.value)
    assert set(host.dbs) == {"postgres", "fleetdemo"} and host.content["fleetdemo"] == "live data"


def test_an_encrypted_plain_set_is_decrypted_then_fed(tmp_path, monkeypatch):
    monkeypatch.setattr(r.shutil, "which", lambda name: None)
    make_plain_set(tmp_path / "backups", encrypted=True)
    host = PlainHost(tmp_path / "dump.rdb")
    result = plain_restorer(tmp_path, host, age_identity="AGE-SECRET-KEY-1XYZ").execute()
    assert result["restored"] == ["postgresql/fleetdemo"] and host.fed[0][1] == PLAIN_DUMP
    assert not (tmp_path / "backups" / "fleetdemo" / f".restore-{SET_ID}").exists()


# feed_gzip with real processes: what the module runs.

PY = sys.executable


def test_feed_gzip_streams_the_whole_decompressed_file(tmp_path):
    source = tmp_path / "d.sql.gz"
    data = PLAIN_DUMP * 5000  # several blocks
    source.write_bytes(gzip.compress(data))
    script = "import sys,hashlib; d=sys.stdin.buffer.read(); print(len(d), hashlib.sha256(d).hexdigest())"
    rc, out, err = r.feed_gzip([PY, "-c", script], str(source))
    assert (rc, err) == (0, "")
    assert out.split() == [str(len(data)), hashlib.sha256(data).hexdigest()]


def test_feed_gzip_stops_when_the_command_stops_reading(tmp_path):
    source = tmp_path / "d.sql.gz"
    source.write_bytes(gzip.compress(b"x" * (8 * 1024 * 1024)))
    script = "import sys; sys.stdin.buffer.read(10); sys.stderr.write('ERROR: stop\\n'); sys.exit(3)"
    rc, _out, err = r.feed_gzip([PY, "-c", script], str(source))
    assert rc == 3 and err == "ERROR: stop\n"


def test_feed_gzip_kills_the_command_when_the_gzip_breaks_off(tmp_path):
    source = tmp_path / "d.sql.gz"
    source.write_bytes(gzip.compress(PLAIN_DUMP * 5000)[:-100])
    marker = tmp_path / "committed"
    # A loader that would "commit" only after reading its input to the end never gets there.
    script = f"import sys; sys.stdin.buffer.read(); open({str(marker)!r}, 'w').write('x')"
    rc, _out, err = r.feed_gzip([PY, "-c", script], str(source))
    assert rc == -1 and "d.sql.gz could not be read to its end" in err and "the load was stopped" in err
    assert not marker.exists()
