"""What the dr scenario's tests share: its two hosts, SQL on the app host, the repository read on the backup host."""

from __future__ import annotations

import json
import os

import testinfra
from helpers import molecule_hosts, wait_for

APP_HOST = "pyfleet-dr-app"
BACKUP_HOST = "pyfleet-dr-backup"
STANZA = APP_HOST
DATA_DIR = "/var/lib/postgresql/15/main"
# The scenario's archive_timeout (host_vars/pyfleet-dr-app/main.yml): the RPO bound when writes are steady.
ARCHIVE_TIMEOUT = 10


def backup_host_of_the_scenario():
    assert BACKUP_HOST in molecule_hosts("pyfleet_backup")
    return testinfra.get_host(
        f"ansible://{BACKUP_HOST}?ansible_inventory=" + os.environ["MOLECULE_INVENTORY_FILE"], sudo=True)


def psql(host, sql: str, db: str = "fleetdemo") -> str:
    return host.check_output(f"runuser -u postgres -- psql -XAtq -d {db} -c {json.dumps(sql)}")


def repo_info(backup_host) -> dict:
    out = backup_host.check_output(f"runuser -u pgbackrest -- pgbackrest --stanza={STANZA} --output=json info")
    return json.loads(out)[0]


def archived(host, backup_host, timeout: float = 90) -> bool:
    """Switches the WAL on the app host and waits until the repository holds that segment (timeline aside)."""
    segment = psql(host, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    psql(host, "SELECT pg_switch_wal()")

    def done():
        return any(a["max"] and a["max"][8:] >= segment[8:] for a in repo_info(backup_host).get("archive", []))

    return wait_for(done, timeout=timeout, interval=2)
