"""Continuous archiving with pgBackRest to the backup repository host (issue 11 item 2, PostgreSQL part).

pyfleet-dr-app is a single server (app, PostgreSQL, Redis) whose WAL goes asynchronously to pyfleet-dr-backup over
SSH; the backups run on pyfleet-dr-backup. Each test runs where its facts live and reads the other host through
pgBackRest itself, so a broken link between the two hosts fails them.
"""

from __future__ import annotations

import json
import time

import pytest
from drlib import APP_HOST, ARCHIVE_TIMEOUT, STANZA, backup_host_of_the_scenario, psql, repo_info
from helpers import wait_for

REPO_ADDRESS = "172.30.78.20"
APP_ADDRESS = "172.30.78.10"

testinfra_hosts = [APP_HOST]


@pytest.fixture(scope="module")
def backup_host():
    return backup_host_of_the_scenario()


def test_postgresql_archives_with_pgbackrest(host):
    assert psql(host, "SHOW archive_mode") == "on"
    assert psql(host, "SHOW archive_command") == f"pgbackrest --stanza={STANZA} archive-push %p"
    assert psql(host, "SELECT setting FROM pg_settings WHERE name = 'archive_timeout'") == str(ARCHIVE_TIMEOUT)
    conf = host.file("/etc/pgbackrest/pgbackrest.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "postgres", 0o640)
    assert f"repo1-host={REPO_ADDRESS}" in conf.content_string
    assert "archive-async=y" in conf.content_string


def test_pgbackrest_check_passes_from_the_database_host(host):
    result = host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} --log-level-console=warn check")
    assert result.rc == 0, result.stdout + result.stderr


def test_a_full_backup_is_in_the_repository(backup_host):
    info = repo_info(backup_host)
    assert info["status"]["code"] == 0, info["status"]
    fulls = [b for b in info["backup"] if b["type"] == "full" and not b.get("error")]
    assert fulls, info["backup"]
    repo = backup_host.file("/var/lib/pgbackrest")
    assert (repo.user, repo.mode) == ("pgbackrest", 0o750)


def test_a_write_is_archived_in_the_repository_within_archive_timeout(host, backup_host):
    """No forced switch: PostgreSQL's archive_timeout closes the segment holding the write, pgBackRest pushes it."""
    psql(host, "CREATE TABLE IF NOT EXISTS pyfleet_dr_probe (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
    psql(host, "INSERT INTO pyfleet_dr_probe DEFAULT VALUES")
    segment = psql(host, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    started = time.monotonic()

    def archived():
        return any(a["max"] and a["max"] >= segment for a in repo_info(backup_host).get("archive", []))

    # archive_timeout, then the push over SSH and the next poll
    assert wait_for(archived, timeout=ARCHIVE_TIMEOUT + 20, interval=1), f"{segment} not archived"
    print(f"\nWAL segment {segment} (an unforced write) archived on the backup host "
          f"{time.monotonic() - started:.1f} s after the write (archive_timeout {ARCHIVE_TIMEOUT} s)")


@pytest.mark.parametrize("command", ["id", "pgbackrest version", "sh -c id"])
def test_the_repository_key_runs_nothing_but_pgbackrest(host, command):
    """postgres's key reaches the repository user only through the forced command: no shell, no other program."""
    result = host.run(
        f"runuser -u postgres -- ssh -o BatchMode=yes pgbackrest@{REPO_ADDRESS} {json.dumps(command)}")
    assert result.rc != 0 and "may only run pgBackRest" in result.stderr, result


def test_the_database_host_key_runs_nothing_but_pgbackrest(backup_host):
    result = backup_host.run(
        f"runuser -u pgbackrest -- ssh -o BatchMode=yes postgres@{APP_ADDRESS} id")
    assert result.rc != 0 and "may only run pgBackRest" in result.stderr, result


def test_backups_run_on_timers_on_the_backup_host(backup_host):
    for kind in ("full", "diff"):
        timer = backup_host.service(f"pyfleet-pgbackrest-{STANZA}-{kind}.timer")
        assert timer.is_enabled and timer.is_running, kind
    show = backup_host.check_output(
        f"systemctl show -p User -p NoNewPrivileges -p ProtectSystem pyfleet-pgbackrest-{STANZA}-full.service")
    assert "User=pgbackrest" in show and "NoNewPrivileges=yes" in show and "ProtectSystem=strict" in show
