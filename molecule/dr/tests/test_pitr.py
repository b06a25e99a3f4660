"""Point-in-time restore from the pgBackRest repository (issue 11 item 2): `restore.yml -e restore_source=pgbackrest`.

Rows with timestamps are written, a time T noted, then a destructive DELETE and a later row; the WAL is switched
and archived on the backup host; the restore to T must bring the deleted rows back and nothing written after T,
keep the old data directory aside, leave archiving working on the new timeline (pgbackrest check, a new full
backup) and the app healthy. Bad targets are refused with nothing changed. Runs after test_pgbackrest.py.
"""

from __future__ import annotations

import json
import time

import pytest
from drlib import APP_HOST, BACKUP_HOST, DATA_DIR, STANZA, archived, backup_host_of_the_scenario, psql
from helpers import http_json, run_playbook

testinfra_hosts = [APP_HOST]
STATE: dict = {}


@pytest.fixture(scope="module")
def backup_host():
    return backup_host_of_the_scenario()


def restore(*extra: str):
    return run_playbook("playbooks/restore.yml", "--limit", APP_HOST, "-e", "restore_source=pgbackrest", *extra,
                        timeout=900)


def live_state(host) -> dict:
    """What must not change when a restore is refused: the cluster's start time, its data, the app's start."""
    return {"postmaster": psql(host, "SELECT pg_postmaster_start_time()"),
            "rows": psql(host, "SELECT count(*), coalesce(max(id), 0) FROM pyfleet_pitr"),
            "kept": kept_copies(host),
            "api": host.check_output("systemctl show -p ActiveEnterTimestamp fleetdemo-api.service")}


def kept_copies(host) -> list[str]:
    return host.check_output(f"ls -d {DATA_DIR}.pre-* 2>/dev/null || true").split()


def test_a_destructive_delete_is_written_and_archived(host, backup_host):
    STATE["kept"] = kept_copies(host)
    psql(host, "DROP TABLE IF EXISTS pyfleet_pitr")
    psql(host, "CREATE TABLE pyfleet_pitr (id int PRIMARY KEY, note text, at timestamptz NOT NULL)")
    psql(host, "INSERT INTO pyfleet_pitr SELECT g, 'before', clock_timestamp() FROM generate_series(1, 20) g")
    time.sleep(1.5)
    STATE["target"] = psql(host, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                                 "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')")
    time.sleep(1.5)
    psql(host, "DELETE FROM pyfleet_pitr WHERE id <= 15")
    psql(host, "INSERT INTO pyfleet_pitr VALUES (100, 'after', clock_timestamp())")
    assert psql(host, "SELECT count(*) FROM pyfleet_pitr") == "6"
    started = time.monotonic()
    assert archived(host, backup_host), "the WAL with the DELETE did not reach the repository"
    print(f"\ntarget {STATE['target']}; the DELETE archived {time.monotonic() - started:.1f} s after the switch")


def test_point_in_time_restore_brings_the_deleted_rows_back_and_nothing_later(host):
    assert STATE.get("target"), "the write test did not run"
    started = time.monotonic()
    result = restore("-e", f"restore_target_time={STATE['target']}",
                     "-e", "restore_verify_query=SELECT max(at) FROM pyfleet_pitr")
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print(f"\npoint-in-time restore through restore.yml: {seconds:.0f} s")
    assert psql(host, "SELECT count(*), min(id), max(id) FROM pyfleet_pitr") == "20|1|20"
    assert psql(host, "SELECT count(*) FROM pyfleet_pitr WHERE note = 'after' OR at > "
                      f"'{STATE['target']}'::timestamptz") == "0"
    assert psql(host, "SELECT pg_is_in_recovery()") == "f"
    assert psql(host, "SELECT timeline_id > 1 FROM pg_control_checkpoint()") == "t"


def test_the_old_cluster_is_kept_aside_and_no_scratch_is_left(host):
    kept = [path for path in kept_copies(host) if path not in STATE["kept"]]
    assert len(kept) == 1, kept
    assert host.file(f"{kept[0]}/PG_VERSION").exists
    assert host.check_output("ls -d /var/lib/postgresql/15/pyfleet-pitr-* 2>/dev/null || true") == ""
    # The restored cluster runs with the live configuration: it archives to the stanza again.
    assert psql(host, "SHOW archive_command") == f"pgbackrest --stanza={STANZA} archive-push %p"
    assert "recovery_target" not in host.file(f"{DATA_DIR}/postgresql.auto.conf").content_string


def test_archiving_continues_on_the_new_timeline(host, backup_host):
    result = host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} --log-level-console=warn check")
    assert result.rc == 0, result.stdout + result.stderr
    info = json.loads(backup_host.check_output(
        f"runuser -u pgbackrest -- pgbackrest --stanza={STANZA} --output=json info"))[0]
    newest = info["backup"][-1]
    assert newest["type"] == "full" and newest["archive"]["start"][:8] != "00000001", newest
    psql(host, "INSERT INTO pyfleet_pitr VALUES (200, 'after restore', clock_timestamp())")
    assert archived(host, backup_host)


def test_the_app_serves_the_restored_database(host):
    assert host.service("fleetdemo-api.service").is_running
    code, items = http_json(host, "GET", "/api/items")
    assert code == 200, items


def test_a_second_restore_with_a_target_time_without_a_zone_is_refused_naming_the_variable(host):
    before = live_state(host)
    result = restore("-e", "restore_target_time=2026-11-27T10:45:00")
    assert result.returncode != 0
    assert "Refused, nothing was changed: restore_target_time must be latest or an ISO 8601 time" in result.stdout
    assert live_state(host) == before


def test_a_target_before_the_oldest_backup_is_refused_before_the_app_stops(host):
    before = live_state(host)
    result = restore("-e", "restore_target_time=2001-01-01T00:00:00Z")
    assert result.returncode != 0
    assert "is before the end of the oldest backup of stanza" in result.stdout, result.stdout[-3000:]
    assert "pyfleet.server.app : Stop" not in result.stdout  # refused by the prediction, the app never stopped
    assert live_state(host) == before


def test_a_host_without_a_backup_host_is_refused(host):
    """The backup host itself runs no PostgreSQL archiving to a repository: nothing to restore from."""
    result = run_playbook("playbooks/restore.yml", "-e", f"pyfleet_hosts={BACKUP_HOST}",
                          "-e", "restore_source=pgbackrest")
    assert result.returncode != 0
    assert f"Refused, nothing was changed: {BACKUP_HOST} does not archive to a backup host" in result.stdout


def test_once_keeps_what_was_written_since_the_restore_to_the_same_target(host):
    before = live_state(host)
    result = restore("-e", f"restore_target_time={STATE['target']}", "-e", "restore_once=true")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "changed=0" in result.stdout and "once: nothing to do" in result.stdout
    assert live_state(host) == before
    assert psql(host, "SELECT count(*) FROM pyfleet_pitr WHERE id = 200") == "1"
