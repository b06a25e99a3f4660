"""backup_postgresql_format: plain on a real host (issue 12 B): a set holds <db>.sql.gz, gzip-whole, ending with
pg_dump's closing comment; a deleted row comes back through playbooks/restore.yml (psql into the scratch database,
swapped in), a row written after the set is gone.

For a host whose backup configuration (/etc/pyfleet/backup/<app>.json, written by the backup role) dumps PostgreSQL
in plain format (plain_config). Adds a table of its own (pyfleet_plain_probe) to the app's first database; the app
never reads it. Used by molecule/examples (Diet Planner's example dumps plain SQL).
"""

from __future__ import annotations

import json
import re
import shlex

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


def check_plain_set_restores(host, config: dict, run) -> None:
    """The whole check on one host; run(playbook, *args) runs a playbook of the collection against that host only
    (a scenario whose hosts come from another inventory passes its own)."""
    app, root, pg = config["app"], config.get("root", "/var/backups/pyfleet"), config["postgresql"]
    database, port = pg["databases"][0], int(pg.get("port", 5432))
    owner = psql(host, "postgres", f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'",
                 port)
    values = ", ".join(f"({key}, {literal(value)})" for key, value in ROWS.items())
    psql(host, database, f"DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} (id int PRIMARY KEY, value text); "
                         f"ALTER TABLE {TABLE} OWNER TO \"{owner}\"; INSERT INTO {TABLE} VALUES {values}", port)
    assert rows(host, database, port) == ROWS

    taken = run("playbooks/backup.yml", "-e", "backup_components=postgresql")
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

    restored = run("playbooks/restore.yml", "-e", f"restore_set={set_id}",
                   "-e", '{"restore_components": ["postgresql"]}')
    out = restored.stdout + restored.stderr
    assert restored.returncode == 0, out[-4000:]
    assert f"restored postgresql/{database} from {set_id}" in out, out[-3000:]
    assert rows(host, database, port) == ROWS  # the row is back, byte for byte; the later one is gone
    databases = psql(host, "postgres", "SELECT datname FROM pg_database", port).split()
    assert not [d for d in databases if "__restore_" in d]  # no scratch database left
    assert [d for d in databases if d.startswith(f"{database}__pre_")]  # the replaced data is kept
