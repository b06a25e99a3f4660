# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pyfleet-backup: write one backup set of an app (installed by the pyfleet.server.backup role).

    pyfleet-backup --config /etc/pyfleet/backup/<app>.json [--components postgresql,redis] [--json]
                   [--wait-timeout SECONDS] [--quiet]
    pyfleet-backup --on-failure pyfleet-backup-<app>-<schedule>.service     (the OnFailure= hook)
    pyfleet-backup --config /etc/pyfleet/backup/<app>.json --publish-metrics
    pyfleet-backup --config /etc/pyfleet/backup/<app>.json --offsite-only [--json]      (copy what is missing)
    pyfleet-backup --config /etc/pyfleet/backup/<app>.json --offsite-init [--dry-run] --json
    pyfleet-backup --config /etc/pyfleet/backup/<app>.json --offsite-restore ID|latest [--dry-run] --json
    pyfleet-backup --config /etc/pyfleet/backup/<app>.json --offsite-probe-password --json  < password

Installed as /usr/local/sbin/pyfleet-backup and run by the timers' oneshot services
(pyfleet-backup-<app>-<schedule>.service) and by playbooks/backup.yml. The logic lives in
/usr/local/lib/pyfleet/pyfleet_backup.py (the collection's module_utils/backup.py, shared with the backup_info and
restore modules); this file adds the process runner, the log and the metrics. It logs to stderr: under systemd that
is the journal (each line with its syslog priority), by hand the terminal. The job takes the app's lock
(<root>/<app>/.lock), the one lock shared with retention and pyfleet.server.restore. A run that finds the lock taken
waits for it (--wait-timeout, default an hour: a database job or a restore may take that long) and then starts; if
the lock is still taken after that it fails with exit 75, naming the holder. It never skips silently.
After every run, good or failed, it rewrites node_exporter's textfile <metrics_dir>/pyfleet-backup-<app>.prom
(when that directory exists) from the sets on disk; the hook adds the failure time and runs the operator's command.
With an ``offsite`` block in the configuration (backup_offsite_enabled), every run that wrote a set then copies
each good set the restic repository on the backup host lacks, applies the off-site retention and runs
``restic check`` (pyfleet_offsite.py); a failure there fails the run (exit 1), the local sets stay as they were.
Exit codes: 0 set written (and copied), 1 failed (nothing left behind but the sets already written), 75 the lock
stayed taken for the whole wait.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import subprocess
import sys
import syslog
import tempfile
import time
import traceback

sys.path.insert(0, os.environ.get("PYFLEET_LIB", "/usr/local/lib/pyfleet"))
import pyfleet_backup as lib  # noqa: E402
import pyfleet_offsite as offsite_lib  # noqa: E402

# cron ran /etc/cron.d jobs with PATH=/usr/bin:/bin, where runuser (/usr/sbin) is missing: every scheduled
# PostgreSQL backup failed with "runuser: command not found". systemd's PATH has /usr/sbin; the program still sets
# its own PATH, whoever starts it (root: nothing inherited).
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SubprocessRunner:
    """Runs argv lists (never a shell) from / with extra environment (passwords travel here, not in argv)."""

    @staticmethod
    def _env(env):
        return dict(os.environ, **(env or {}))

    def run(self, argv, env=None, stdout=None):
        try:
            if stdout:
                with open(stdout, "wb") as out:
                    proc = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, env=self._env(env), cwd="/",
                                          check=False)
                return proc.returncode, "", proc.stderr.decode("utf-8", "replace")
            proc = subprocess.run(argv, capture_output=True, env=self._env(env), cwd="/", check=False)
        except FileNotFoundError:
            return 127, "", f"{argv[0]}: command not found"
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")

    def consume(self, argv, consumer, env=None):
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=self._env(env), cwd="/")
            try:
                value = consumer(proc.stdout)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                proc.stdout.close()
            rc = proc.wait()
            err.seek(0)
            return rc, value, err.read().decode("utf-8", "replace")


DEFAULT_WAIT_TIMEOUT = 3600.0
DEFAULT_CONFIG_DIR = "/etc/pyfleet/backup"
# Elapses `systemd-analyze calendar` lists to find a schedule's longest gap (a year of a weekly schedule).
CALENDAR_ITERATIONS = 60


def journal(priority: int, message: str) -> None:
    """Tell syslog (the journal) about a failure of a run started by hand, where it is seen and alerted on."""
    try:
        syslog.openlog("pyfleet-backup", syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(priority, message)
        syslog.closelog()
    except OSError:  # pragma: no cover - no syslog socket: stderr still has it
        pass


def stderr_is_journal() -> bool:
    """systemd connected stderr to the journal (JOURNAL_STREAM is its device:inode): lines may carry <N>."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


class Log:
    """One line per event on stderr. Under systemd each line carries its syslog priority (<3> err, <4> warning,
    <6> info) for the journal, which adds the time, the unit and the pid; by hand each line has a UTC time stamp."""

    def __init__(self, app: str, quiet: bool = False) -> None:
        self.app = app
        self.quiet = quiet
        self.to_journal = stderr_is_journal()

    def _line(self, priority: int, message: str) -> None:
        if self.to_journal:
            line = f"<{priority}>{message}"
        else:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            line = f"{stamp} {self.app} [{os.getpid()}] {message}"
        print(line, file=sys.stderr, flush=True)

    def info(self, message: str) -> None:
        if not self.quiet:
            self._line(syslog.LOG_INFO, message)

    def warning(self, message: str) -> None:
        self._line(syslog.LOG_WARNING, message)

    def error(self, message: str) -> None:
        self._line(syslog.LOG_ERR, message)
        if not self.to_journal:
            journal(syslog.LOG_ERR, f"{self.app}: {message}")


def load_config(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def schedule_intervals(config: dict, log: Log) -> dict[str, float]:
    """Per component: the longest gap between two runs of the shortest schedule that backs it up, plus the timer's
    randomized delay (docs/monitoring.md: pyfleet_backup_interval_seconds)."""
    delay = float(config.get("randomized_delay_sec", 0))
    intervals: dict[str, float] = {}
    for schedule in config.get("schedules") or []:
        name = schedule["name"]
        argv = ["systemd-analyze", "calendar", f"--iterations={CALENDAR_ITERATIONS}", schedule["on_calendar"]]
        rc, out, err = SubprocessRunner().run(argv)
        gap = lib.calendar_interval(out) if rc == 0 else 0
        if not gap:
            log.warning(f"metrics: no interval for schedule {name} ({' '.join(argv)}: rc={rc} {err.strip()})")
            continue
        for component in schedule.get("components") or []:
            intervals[component] = min(intervals.get(component, float("inf")), gap + delay)
    return intervals


def publish(config: dict, log: Log, failures: dict[str, float] | None = None) -> None:
    """Rewrite the app's metrics from the sets on disk; a failure here is a warning, never a failed backup."""
    directory = config.get("metrics_dir") or ""
    if not directory or not os.path.isdir(directory):
        return  # no node_exporter textfile directory on this host
    app = config["app"]
    components = [c for c in lib.COMPONENTS if config.get(c)]
    try:
        sets = lib.list_sets(os.path.join(config.get("root", "/var/backups/pyfleet"), app), app=app, checksums=False,
                             include_incomplete=False)
        path = lib.publish_metrics(directory, app, sets, components, schedule_intervals(config, log), failures)
    except (OSError, ValueError) as exc:
        log.warning(f"metrics: could not write {directory}/{lib.metrics_file_name(app)}: {exc}")
        return
    if path:
        log.info(f"metrics: {path} written")


def find_schedule(unit: str, config_dir: str, config_path: str | None) -> tuple[dict, dict] | None:
    """The configuration and the schedule whose service is ``unit`` (pyfleet-backup-<app>-<schedule>.service)."""
    paths = [config_path] if config_path else sorted(glob.glob(os.path.join(config_dir, "*.json")))
    for path in paths:
        config = load_config(path)
        for schedule in config.get("schedules") or []:
            if unit == f"{schedule['unit']}.service":
                return config, schedule
    return None


def on_failure(unit: str, config_dir: str, config_path: str | None) -> int:
    """The OnFailure= hook of the backup services: an err line naming the failed unit, the failure time in the
    metrics, then the operator's command (argv from the config, never a shell) with the unit in its environment."""
    found = find_schedule(unit, config_dir, config_path)
    if found is None:
        Log("pyfleet-backup").error(f"FAILED: {unit} failed, and no backup configuration in {config_dir} names it")
        return 1
    config, schedule = found
    app, name = config["app"], schedule["name"]
    log = Log(app)
    components = schedule.get("components") or []
    log.error(f"FAILED: {unit} (backup of {app}, schedule {name}: {', '.join(components)}) failed; "
              f"its output: journalctl -u {unit}")
    publish(config, log, failures=dict.fromkeys(components, time.time()))
    command = config.get("on_failure_command") or []
    if not command:
        return 0
    env = dict(os.environ, PYFLEET_BACKUP_APP=app, PYFLEET_BACKUP_SCHEDULE=name, PYFLEET_BACKUP_UNIT=unit,
               PYFLEET_BACKUP_COMPONENTS=",".join(components))
    try:
        proc = subprocess.run(command, env=env, cwd="/", stdin=subprocess.DEVNULL, capture_output=True, check=False,
                              timeout=float(config.get("on_failure_timeout", 300)))
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error(f"backup_on_failure_command {command[0]} could not run: {exc}")
        return 1
    output = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        log.error(f"backup_on_failure_command {command[0]} failed (rc={proc.returncode}): {output[-2000:]}")
        return 1
    log.info(f"backup_on_failure_command {command[0]} ran" + (f": {output[-500:]}" if output else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="JSON written by the backup role (required but with --on-failure)")
    parser.add_argument("--components", default="", help="comma-separated subset (default: all configured)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line on stdout")
    parser.add_argument("--wait-timeout", type=float, default=None, metavar="SECONDS",
                        help="how long to wait for the app's lock held by another backup, a retention or a restore "
                        "before failing with exit 75 (default: lock_wait_timeout of the config, else "
                        f"{DEFAULT_WAIT_TIMEOUT:.0f}; 0 = do not wait)")
    parser.add_argument("--wait", action="store_true", help="accepted for compatibility: waiting is the default")
    parser.add_argument("--quiet", action="store_true", help="log failures and warnings only")
    parser.add_argument("--on-failure", metavar="UNIT", help="run as the OnFailure= hook of the failed UNIT")
    parser.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR, help="where --on-failure looks for UNIT's app")
    parser.add_argument("--publish-metrics", action="store_true", help="only rewrite the metrics from the sets")
    parser.add_argument("--offsite-only", action="store_true",
                        help="write no set: copy the good sets the off-site repository lacks, retention, check")
    parser.add_argument("--offsite-init", action="store_true", help="create the off-site repository if missing")
    parser.add_argument("--offsite-restore", metavar="SET", help="fetch set SET (or latest) back from the off-site "
                        "repository into the backup root, verified")
    parser.add_argument("--offsite-probe-password", action="store_true",
                        help="read a password on stdin and say (JSON) whether it opens the off-site repository")
    parser.add_argument("--dry-run", action="store_true", help="with --offsite-init/--offsite-restore: say only")
    args = parser.parse_args(argv)
    os.environ["PATH"] = SAFE_PATH  # for the commands run and shutil.which (redis-check-rdb)

    if args.on_failure:
        return on_failure(args.on_failure, args.config_dir, args.config)
    if not args.config:
        parser.error("--config is required")
    config = load_config(args.config)
    app = config["app"]
    log = Log(app, quiet=args.quiet)
    if args.publish_metrics:
        publish(config, log)
        return 0
    wait_timeout = args.wait_timeout
    if wait_timeout is None:
        wait_timeout = float(config.get("lock_wait_timeout", DEFAULT_WAIT_TIMEOUT))
    if args.offsite_init or args.offsite_restore or args.offsite_only or args.offsite_probe_password:
        return offsite_main(args, config, log, wait_timeout)

    def failed(message: str, detail: str | None = None) -> None:
        log.error(f"FAILED: {detail or message}")
        if args.json:
            print(json.dumps({"failed": True, "msg": message}))

    components = [c for c in args.components.split(",") if c] or None
    rc = 0
    try:
        # The app's lock (<root>/<app>/.lock, shared with retention and restores) is taken by the job.
        result = lib.BackupJob(config, SubprocessRunner(), log=log.info, lock_timeout=wait_timeout).run(components)
    except lib.LockBusy as exc:
        failed(str(exc))
        rc = 75
    except lib.BackupError as exc:
        failed(str(exc))
        rc = 1
    except Exception as exc:  # noqa: BLE001 - the journal must say why a scheduled run died
        failed(f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)).strip())
        rc = 1
    if rc == 0 and config.get("offsite"):
        try:
            result["offsite"] = offsite_lib.Offsite(config, SubprocessRunner(), lib, log=log.info).sync(wait_timeout)
        except (offsite_lib.OffsiteError, lib.BackupError) as exc:
            failed(f"off-site copy: {exc}; set {result['id']} is kept on this host as written")
            rc = 75 if isinstance(exc, lib.LockBusy) else 1
    publish(config, log)
    if rc == 0 and args.json:
        print(json.dumps(result))
    return rc


def offsite_main(args: argparse.Namespace, config: dict, log: Log, wait_timeout: float) -> int:
    """--offsite-init, --offsite-restore and --offsite-only: the off-site steps without writing a set."""
    try:
        if not config.get("offsite"):
            raise offsite_lib.OffsiteError(f"off-site copies are not configured for {config['app']} "
                                           "(backup_offsite_enabled)")
        offsite = offsite_lib.Offsite(config, SubprocessRunner(), lib, log=log.info)
        if args.offsite_probe_password:
            result = offsite.probe_password(sys.stdin.readline())
        elif args.offsite_init:
            result = offsite.init(dry_run=args.dry_run)
        elif args.offsite_restore:
            result = offsite.restore(args.offsite_restore, lock_timeout=wait_timeout, dry_run=args.dry_run)
        else:
            result = offsite.sync(wait_timeout)
    except (offsite_lib.OffsiteError, lib.BackupError) as exc:
        log.error(f"FAILED: off-site: {exc}")
        if args.json:
            print(json.dumps({"failed": True, "msg": f"off-site: {exc}"}))
        return 75 if isinstance(exc, lib.LockBusy) else 1
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
