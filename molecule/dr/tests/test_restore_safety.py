"""Restores that can never make things worse (issue 9), proven on the real host with playbooks/restore.yml.

Runs after test_backup_restore.py and takes its own set, so it depends on nothing but the converged host:
(c) restore.yml without a target refuses before anything changes; (a) restore -> the app writes -> restore the same
set again brings the set's data back (the write is gone); (d) the same set once more leaves PostgreSQL alone (Redis
may legitimately be restored again: the Celery worker writes to it); (b) a Redis restore that fails between stopping
and starting Redis leaves Redis running on its previous data.
"""

from __future__ import annotations

import re
import subprocess

from helpers import http_json, journal, molecule_hosts, run_playbook, wait_for

ROOT = "/var/backups/pyfleet/fleetdemo"
DROPIN_DIR = "/etc/systemd/system/redis-server.service.d"
DROPIN = f"{DROPIN_DIR}/zz-pyfleet-test-fail-once.conf"
FLAG = "/run/pyfleet-test-redis-fail-once"
STATE: dict = {}

testinfra_hosts = molecule_hosts("pyfleet")


def restore(*args: str) -> tuple[subprocess.CompletedProcess, str]:
    result = run_playbook("playbooks/restore.yml", *args)
    # Ansible folds long messages over lines: compare with the whitespace collapsed.
    return result, " ".join((result.stdout + result.stderr).split())


def data(host) -> dict:
    """What the app returns (items and keys) and what PostgreSQL holds besides (the live database's oid, copies)."""
    code, items = http_json(host, "GET", "/api/items")
    assert code == 200, items
    code, kv = http_json(host, "GET", "/api/kv")
    assert code == 200, kv
    databases = host.check_output(
        "runuser -u postgres -- psql -XAtc \"SELECT datname || ':' || oid FROM pg_database ORDER BY 1\""
    ).split()
    return {"items": items, "kv": kv, "databases": databases}


def app_started_at(host) -> str:
    return host.check_output("systemctl show -p ActiveEnterTimestampMonotonic --value fleetdemo-api")


def test_take_a_set(host):
    code, body = http_json(host, "POST", "/api/items", {"name": "safety", "value": "in the set"})
    assert code == 201, body
    code, body = http_json(host, "PUT", "/api/kv/safety", {"value": "in the set"})
    assert code == 200, body
    result = run_playbook("playbooks/backup.yml")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    match = re.search(r"fleetdemo set (\d{8}T\d{6}Z): postgresql, redis", out)
    assert match, out[-3000:]
    STATE["set"] = match.group(1)
    STATE["set_data"] = data(host)


def test_restore_without_a_target_refuses_and_changes_nothing(host):
    before, started = data(host), app_started_at(host)
    result, out = restore()
    assert result.returncode != 0, out[-3000:]
    assert "Refused, nothing was changed" in out and "restore_set" in out and "restore_path" in out, out[-3000:]
    assert re.search(r"changed=0\s", out), out[-3000:]
    # latest on every host of the inventory needs the hosts named or a confirmation.
    result, out = restore("-e", "restore_set=latest")
    assert result.returncode != 0, out[-3000:]
    assert "--limit" in out and "restore_confirm=true" in out, out[-3000:]
    assert re.search(r"changed=0\s", out), out[-3000:]
    assert data(host) == before
    assert app_started_at(host) == started, "the app was restarted by a refused restore"


def test_restore_write_restore_brings_the_set_back(host):
    result, out = restore("-e", f"restore_set={STATE['set']}")
    assert result.returncode == 0, out[-4000:]
    assert data(host)["items"] == STATE["set_data"]["items"]
    # The app writes after the restore: the same set restores again and the write is gone.
    code, body = http_json(host, "POST", "/api/items", {"name": "written-after-restore", "value": "must go"})
    assert code == 201, body
    code, body = http_json(host, "PUT", "/api/kv/safety", {"value": "written after the restore"})
    assert code == 200, body
    result, out = restore("-e", f"restore_set={STATE['set']}")
    assert result.returncode == 0, out[-4000:]
    assert re.search(rf"restored [^;]*postgresql/fleetdemo[^;]* from {STATE['set']}", out), out[-3000:]
    after = wait_for(lambda: data(host), timeout=30)
    assert "written-after-restore" not in {i["name"] for i in after["items"]}
    assert after["items"] == STATE["set_data"]["items"]
    assert after["kv"] == STATE["set_data"]["kv"]


def test_the_same_set_again_leaves_postgresql_alone(host):
    before = data(host)
    result, out = restore("-e", f"restore_set={STATE['set']}")
    assert result.returncode == 0, out[-3000:]
    # Redis may be restored again (the worker wrote to it since); PostgreSQL holds the set and is not touched.
    assert not re.search(r"restored [^;]*postgresql/fleetdemo", out), out[-3000:]
    assert (
        f"already restored from {STATE['set']}; nothing to do" in out or f"restored redis from {STATE['set']}" in out
    ), out[-3000:]
    after = data(host)
    # Same live database (oid) and no new kept copy: nothing was swapped.
    assert after["databases"] == before["databases"]
    assert after["items"] == STATE["set_data"]["items"]


def test_redis_restore_failing_midway_keeps_the_previous_data(host):
    code, body = http_json(host, "PUT", "/api/kv/safety", {"value": "previous data, not in the set"})
    assert code == 200, body
    before = data(host)
    redis_files = host.check_output("ls /var/lib/redis")
    # Redis refuses to start once (the first start after the swap): the restore must put the previous RDB back and
    # start Redis on it. '+' runs the check outside the unit's sandbox.
    host.check_output(
        f"mkdir -p {DROPIN_DIR} && printf '%s\\n' '[Service]' "
        f"\"ExecStartPre=+/bin/sh -c 'if [ -e {FLAG} ]; then rm -f {FLAG}; exit 1; fi'\" > {DROPIN} "
        f"&& systemctl daemon-reload && touch {FLAG}"
    )
    try:
        result, out = restore(
            "-e", f"restore_set={STATE['set']}", "-e", "restore_force=true", "-e", '{"restore_components": ["redis"]}'
        )
    finally:
        host.run(f"rm -f {DROPIN} {FLAG} && systemctl daemon-reload")
    assert result.returncode != 0, out[-4000:]
    assert re.search(
        rf"Redis did not come back with the data of {STATE['set']} \(systemctl start redis-server "
        r"failed.*the previous RDB was put back and Redis started on it",
        out,
    ), out[-4000:]
    assert "restored before it stopped: nothing" in out, out[-4000:]
    redis = host.service("redis-server")
    assert redis.is_running, f"Redis is not running; journal:\n{journal(host, 'redis-server')}"
    # The play failed before its health gate: wait for the app that the play started again.
    assert wait_for(lambda: http_json(host, "GET", "/api/kv")[0] == 200, timeout=60), journal(host, "fleetdemo-api")
    after = data(host)
    assert after["kv"] == before["kv"], "Redis lost its previous data"
    assert "previous data, not in the set" in str(after["kv"])
    assert after["items"] == before["items"]
    assert not host.file("/var/lib/redis/dump.rdb.pyfleet-restore").exists
    assert host.check_output("ls /var/lib/redis") == redis_files, "Redis files changed"
