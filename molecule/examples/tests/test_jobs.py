"""Scheduled jobs (pyfleet.server.jobs) and host hygiene (pyfleet.server.system) on the seed examples (issue 13,
items 4 and 5): Diet Planner's VACUUM ANALYZE and REINDEX as postgres, FairEdge's cache warming as the app user with
the app's environment (the reference app's `fleetdemo-admin check-config` stands in for the guide's script), a job
that fails on purpose (converge.yml) ends `failed`; unattended security upgrades and journald's 30-day retention.

VACUUM ANALYZE runs from its timer: a runtime drop-in (/run/systemd/system/<timer>.d/) adds `OnActiveSec=` so the
timer elapses seconds after it is restarted, and is removed after. The other jobs are started with `systemctl start`
of the service their timer triggers (read from the timer): the run is the same, and the test takes seconds, not a
month."""

from __future__ import annotations

import json

import pytest
from helpers import wait_for
from seed_examples import example_vars, host

DIET_DB = "diet_planner"


def _jobs(example: str) -> dict[str, dict]:
    return {job["name"]: job for job in example_vars(example)["pyfleet_jobs"]}


def _show(h, unit: str, *props: str) -> dict[str, str]:
    out = h.check_output(f"systemctl show {' '.join('-p ' + p for p in props)} {unit}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _start(h, timer: str):
    """Runs the service the timer triggers, as the timer would (a oneshot: returns when it has finished)."""
    service = _show(h, timer, "Triggers")["Triggers"]
    return service, h.run(f"systemctl start {service}")


@pytest.mark.parametrize("example", ["dietplanner", "fairedge"])
def test_every_job_of_the_example_has_an_active_timer(example):
    h = host(example)
    for name, job in _jobs(example).items():
        timer = f"pyfleet-job-{name}.timer"
        props = _show(h, timer, "ActiveState", "UnitFileState", "Triggers", "NextElapseUSecRealtime")
        assert props["ActiveState"] == "active" and props["UnitFileState"] == "enabled", (timer, props)
        assert props["Triggers"] == f"pyfleet-job-{name}.service", props
        assert props["NextElapseUSecRealtime"], props
        unit = h.check_output(f"systemctl cat {timer}")
        assert f"OnCalendar={job['on_calendar']}" in unit and "Persistent=true" in unit, unit


def test_a_job_whose_timer_is_off_is_installed_but_not_scheduled():
    props = _show(host("dietplanner"), "pyfleet-job-fails-on-purpose.timer", "ActiveState", "UnitFileState")
    assert props == {"ActiveState": "inactive", "UnitFileState": "disabled"}, props


def test_timer_driven_vacuum_analyze_runs_as_postgres_and_vacuums_the_database():
    h = host("dietplanner")
    timer = "pyfleet-job-vacuum-analyze.timer"
    service = _show(h, timer, "Triggers")["Triggers"]
    dropin = f"/run/systemd/system/{timer}.d"
    psql = f"runuser -u postgres -- psql -X -At -d {DIET_DB} -c"
    before = h.check_output(f"{psql} 'SELECT now()'")
    invocation = _show(h, service, "InvocationID")["InvocationID"]
    triggered = _show(h, timer, "LastTriggerUSec")["LastTriggerUSec"]
    # The timer elapses 2 s after it starts (no random delay, 1 s accuracy), on top of its calendar.
    h.check_output(f"mkdir -p {dropin} && printf '[Timer]\\nOnActiveSec=2s\\nAccuracySec=1s\\n"
                   f"RandomizedDelaySec=0\\n' > {dropin}/zz-test.conf && systemctl daemon-reload"
                   f" && systemctl restart {timer}")
    try:
        def ran():
            props = _show(h, service, "InvocationID", "ActiveState", "Result")
            return props if props["InvocationID"] not in ("", invocation) and props["ActiveState"] in (
                "inactive", "failed") else None

        props = wait_for(ran, timeout=60, interval=1)
        assert props, _show(h, timer, "ActiveState", "NextElapseUSecMonotonic", "LastTriggerUSec")
        # The timer started it (its last trigger moved), not the test.
        assert _show(h, timer, "LastTriggerUSec")["LastTriggerUSec"] not in ("", "n/a", triggered), "no trigger"
    finally:
        h.run(f"rm -rf {dropin} && systemctl daemon-reload && systemctl restart {timer}")
    unit = h.check_output(f"systemctl cat {timer}")
    assert "OnActiveSec" not in unit, unit
    assert _show(h, timer, "ActiveState")["ActiveState"] == "active"
    # The run's journal (systemd's lines about this invocation; psql runs quiet).
    journal = h.check_output(f"journalctl -q -o cat -u {service} INVOCATION_ID={props['InvocationID']}")
    assert f"Finished {service}" in journal, journal
    props = _show(h, service, "Result", "User", "ExecMainStatus", "ExecStart", "StandardInput")
    assert props["Result"] == "success" and props["ExecMainStatus"] == "0", props
    assert props["User"] == "postgres", props
    # The SQL is a file only root reads, handed to psql's stdin by systemd: not in argv.
    assert props["StandardInput"] == "file" and "VACUUM" not in props["ExecStart"], props
    assert "/etc/pyfleet/jobs/vacuum-analyze.sql" in h.check_output(f"systemctl cat {service}")
    sql = h.file("/etc/pyfleet/jobs/vacuum-analyze.sql")
    assert (sql.user, sql.group, sql.mode) == ("root", "root", 0o600)
    # Every table of the app (fleetdemo's `items` here) was vacuumed and analyzed by this run.
    rows = h.check_output(
        f"{psql} \"SELECT relname, last_vacuum >= '{before}', last_analyze >= '{before}' FROM pg_stat_user_tables\"")
    assert rows and all(row.endswith("|t|t") for row in rows.splitlines()), rows
    assert "items|t|t" in rows.splitlines(), rows


def test_reindex_job_runs():
    service, run = _start(host("dietplanner"), "pyfleet-job-reindex.timer")
    assert run.rc == 0, run.stderr
    assert _show(host("dietplanner"), service, "Result")["Result"] == "success"


def test_a_failing_job_ends_failed():
    """The unit ends `failed`: node_exporter's systemd collector reports it (SystemdUnitFailed)."""
    h = host("dietplanner")
    unit = "pyfleet-job-fails-on-purpose.service"
    try:
        run = h.run(f"systemctl start {unit}")
        assert run.rc != 0
        assert h.run(f"systemctl is-failed {unit}").stdout.strip() == "failed"
        assert h.check_output(f"systemctl list-units --state=failed --plain --no-legend {unit}").startswith(unit)
        # psql's error is in the journal under the job's identifier.
        assert "pyfleet_no_such_function" in h.check_output("journalctl -q -t pyfleet-job-fails-on-purpose -n 20")
    finally:
        h.run(f"systemctl reset-failed {unit}")
    assert h.run(f"systemctl is-failed {unit}").stdout.strip() != "failed"


def test_cache_warming_runs_as_the_app_user_with_the_app_environment():
    h = host("fairedge")
    settings = example_vars("fairedge")
    app = settings["app_name"]
    service, run = _start(h, "pyfleet-job-warm-cache.timer")
    assert run.rc == 0, run.stderr
    props = _show(h, service, "Result", "User", "ExecStart", "WorkingDirectory", "EnvironmentFiles", "InvocationID")
    assert props["Result"] == "success", props
    assert props["User"] == app and props["WorkingDirectory"] == f"/opt/{app}/current", props
    assert f"path=/opt/{app}/current/venv/bin/fleetdemo-admin" in props["ExecStart"], props
    assert props["EnvironmentFiles"].startswith(f"/etc/{app}/{app}.env"), props
    # The command read the app's settings (it exits 1 without SECRET_KEY and the database URL) as the app's uid.
    uid = h.check_output(f"id -u {app}")
    lines = [json.loads(line) for line in h.check_output(
        f"journalctl -q -o json _SYSTEMD_INVOCATION_ID={props['InvocationID']}").splitlines()]
    ours = [line for line in lines if line.get("SYSLOG_IDENTIFIER") == "pyfleet-job-warm-cache"]
    assert any("configuration OK" in line.get("MESSAGE", "") for line in ours), ours
    assert {line["_UID"] for line in ours} == {uid}, ours


def test_unattended_upgrades_take_security_updates_daily():
    h = host("dietplanner")
    assert h.package("unattended-upgrades").is_installed
    dump = h.check_output("apt-config dump APT::Periodic Unattended-Upgrade::Origins-Pattern")
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump, dump
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump, dump
    origins = [line.split('"')[1] for line in dump.splitlines()
               if line.startswith("Unattended-Upgrade::Origins-Pattern::")]
    # Debian's own list (updates of the whole release) is replaced: only the security archive.
    assert origins and all("label=Debian-Security" in origin for origin in origins), origins
    # unattended-upgrade itself reads the same configuration (its own parser, a dry run is too slow for the suite).
    allowed = h.check_output(
        "python3 -c 'import apt_pkg; apt_pkg.init_config(); "
        "print(apt_pkg.config.value_list(\"Unattended-Upgrade::Origins-Pattern\"))'")
    assert "Debian-Security" in allowed and "label=Debian," not in allowed, allowed


def test_journald_keeps_30_days_on_disk():
    h = host("dietplanner")
    config = h.check_output("systemd-analyze cat-config systemd/journald.conf")
    dropin = config.split("# /etc/systemd/journald.conf.d/pyfleet.conf", 1)
    assert len(dropin) == 2, config
    assert "MaxRetentionSec=30day" in dropin[1] and "Storage=persistent" in dropin[1], dropin[1]
    # journald restarted after its drop-in changed (it reads its configuration at start only) and writes to disk.
    started = int(h.check_output(
        "date -d \"$(systemctl show -p ActiveEnterTimestamp --value systemd-journald)\" +%s"))
    assert started >= h.file("/etc/systemd/journald.conf.d/pyfleet.conf").mtime.timestamp() - 1
    assert h.run("ls /var/log/journal/*/system.journal").rc == 0
