"""backup_postgresql_format: plain on a real host (issue 12 B): a set holds <db>.sql.gz, gzip-whole, ending with
pg_dump's closing comment; a deleted row comes back through playbooks/restore.yml (psql into the scratch database,
swapped in), a row written after the set is gone.

Runs against every host of the scenario whose backup configuration (/etc/pyfleet/backup/<app>.json, written by the
backup role) dumps PostgreSQL in plain format; a host without one is skipped, and the last test fails when no host
of the scenario had one (so this file cannot pass without testing anything). Adds a table of its own
(pyfleet_plain_probe) to the app's first database; the app never reads it. Import it from a scenario's tests/:
``from test_plain_sql import *  # noqa: F403`` with molecule/shared/tests on sys.path (see its conftest.py).
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from helpers import molecule_hosts, run_playbook

testinfra_hosts = molecule_hosts("all")
PLAIN_HOSTS: list[str] = []
TABLE = "pyfleet_plain_probe"
# COPY escapes these: a plain dump must carry them back exactly.
ROWS = {1: "kept", 2: "tab\there, newline\nthere", 3: "back\\slash and 'quotes' \u00e9\u2603", 4: "deleted then back"}
TRAILER = "-- PostgreSQL database dump complete"


def plain_config(host) -> dict | None:
    """The backup program's configuration of the host's app when it dumps PostgreSQL as plain SQL, else None."""
    listing = host.run("ls /etc/pyfleet/backup/*.json 2>/dev/null")
    for path in listing.stdout.split():
        config = json.loads(host.check_output(f"cat {shlex.quote(path)}"))
        pg = config.get("postgresql") or {}
        if pg.get("format") == "plain" and pg.get("databases"):
            return {**config, "config_path": path}
    return None


def psql(host, database: str, sql: str, port: int) -> str:
    return host.check_output(f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -p {port} "
                             f"-d {shlex.quote(database)} -c {shlex.quote(sql)}")


def rows(host, database: str, port: int) -> dict[int, str]:
    out = psql(host, database, f"SELECT json_object_agg(id, value ORDER BY id) FROM {TABLE}", port)
    return {int(k): v for k, v in json.loads(out or "{}").items()}


def literal(text: str) -> str:
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\t", "\\t") + "'"


def test_a_plain_set_restores_a_deleted_row(host):
    config = plain_config(host)
    name = host.backend.get_hostname()
    if config is None:
        pytest.skip(f"{name}: no backup configuration with postgresql format plain")
    PLAIN_HOSTS.append(name)
    app, root, pg = config["app"], config.get("root", "/var/backups/pyfleet"), config["postgresql"]
    database, port = pg["databases"][0], int(pg.get("port", 5432))
    owner = psql(host, "postgres", f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'",
                 port)
    values = ", ".join(f"({key}, {literal(value)})" for key, value in ROWS.items())
    psql(host, database, f"DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} (id int PRIMARY KEY, value text); "
                         f"ALTER TABLE {TABLE} OWNER TO \"{owner}\"; INSERT INTO {TABLE} VALUES {values}", port)
    assert rows(host, database, port) == ROWS

    taken = run_playbook("playbooks/backup.yml", "-e", f"pyfleet_hosts={name}", "-e", "backup_components=postgresql")
    out = taken.stdout + taken.stderr
    assert taken.returncode == 0, out[-3000:]
    match = re.search(rf"{re.escape(app)} set (\d{{8}}T\d{{6}}Z): postgresql", out)
    assert match, out[-3000:]
    set_id = match.group(1)
    set_dir = f"{root}/{app}/{set_id}"
    manifest = json.loads(host.check_output(f"cat {set_dir}/manifest.json"))
    detail = manifest["components"]["postgresql"]["databases"][database]
    assert detail["format"] == "plain" and detail["file"] == f"postgresql/{database}.sql.gz", detail
    assert detail["tables"][f"public.{TABLE}"] == len(ROWS)
    if not manifest.get("encryption"):  # encrypted: only .age files on the host, proven by the restore
        dump = host.file(f"{set_dir}/postgresql/{database}.sql.gz")
        assert (dump.user, dump.group, dump.mode) == ("root", "postgres", 0o640)
        assert host.run(f"gzip -t {dump.path}").rc == 0
        assert TRAILER in host.check_output(f"zcat {dump.path} | tail -n 8")
        assert manifest["files"][f"postgresql/{database}.sql.gz"]["size"] == dump.size

    psql(host, database, f"DELETE FROM {TABLE} WHERE id = 4; INSERT INTO {TABLE} VALUES (99, 'written after')", port)
    assert 4 not in rows(host, database, port)

    restored = run_playbook("playbooks/restore.yml", "-e", f"pyfleet_hosts={name}", "-e", f"restore_set={set_id}",
                            "-e", '{"restore_components": ["postgresql"]}')
    out = restored.stdout + restored.stderr
    assert restored.returncode == 0, out[-4000:]
    assert f"restored postgresql/{database} from {set_id}" in out, out[-3000:]
    assert rows(host, database, port) == ROWS  # the row is back, byte for byte; the later one is gone
    databases = psql(host, "postgres", "SELECT datname FROM pg_database", port).split()
    assert not [d for d in databases if "__restore_" in d]  # no scratch database left
    assert [d for d in databases if d.startswith(f"{database}__pre_")]  # the replaced data is kept


def test_some_host_of_the_scenario_dumps_plain_sql():
    assert PLAIN_HOSTS, "no host of this scenario has backup_postgresql_format: plain; test_plain_sql tested nothing"
