# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pyfleet-backup: write one backup set of an app (installed by the pyfleet.server.backup role).

    pyfleet-backup --config /etc/pyfleet/backup/<app>.json [--components postgresql,redis] [--json]
                   [--wait-timeout SECONDS] [--quiet]

The logic lives in /usr/local/lib/pyfleet/pyfleet_backup.py (the collection's module_utils/backup.py, shared with
the backup_info and restore modules). This file (run by the /usr/local/sbin/pyfleet-backup wrapper with
/usr/bin/python3) only adds the process runner and the log; the job takes the app's lock (<root>/<app>/.lock),
the one lock shared with retention and pyfleet.server.restore.
A run that finds the lock taken waits for it (--wait-timeout, default an hour: a database job or a restore may
take that long) and then starts; if the lock is still taken after that it fails with exit 75, naming the holder
in the log, on stderr and in syslog (the journal). It never skips silently.
Exit codes: 0 set written, 1 failed (nothing left behind), 75 the lock stayed taken for the whole wait.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import syslog
import tempfile
import traceback

sys.path.insert(0, os.environ.get("PYFLEET_LIB", "/usr/local/lib/pyfleet"))
import pyfleet_backup as lib  # noqa: E402


# cron runs /etc/cron.d jobs with PATH=/usr/bin:/bin, where runuser (/usr/sbin) is missing: every scheduled
# PostgreSQL backup failed with "runuser: command not found". The program sets its own PATH (root: nothing inherited).
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


def journal(priority: int, message: str) -> None:
    """Also tell syslog (the journal on systemd hosts), where a failure of a scheduled run is seen and alerted on."""
    try:
        syslog.openlog("pyfleet-backup", syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(priority, message)
        syslog.closelog()
    except OSError:  # pragma: no cover - no syslog socket: the log file and stderr still have it
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON written by the backup role")
    parser.add_argument("--components", default="", help="comma-separated subset (default: all configured)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line on stdout")
    parser.add_argument("--wait-timeout", type=float, default=None, metavar="SECONDS",
                        help="how long to wait for the app's lock held by another backup, a retention or a restore "
                        "before failing with exit 75 (default: lock_wait_timeout of the config, else "
                        f"{DEFAULT_WAIT_TIMEOUT:.0f}; 0 = do not wait)")
    parser.add_argument("--wait", action="store_true", help="accepted for compatibility: waiting is the default")
    parser.add_argument("--quiet", action="store_true", help="log to the log file only (failures also to stderr)")
    args = parser.parse_args(argv)
    os.environ["PATH"] = SAFE_PATH  # for the commands run and shutil.which (redis-check-rdb)

    with open(args.config, encoding="utf-8") as handle:
        config = json.load(handle)
    app = config["app"]
    wait_timeout = args.wait_timeout
    if wait_timeout is None:
        wait_timeout = float(config.get("lock_wait_timeout", DEFAULT_WAIT_TIMEOUT))
    log_dir = config.get("log_dir", "/var/log/pyfleet-backup")
    os.makedirs(log_dir, mode=0o750, exist_ok=True)
    log_file = open(os.path.join(log_dir, f"{app}.log"), "a", encoding="utf-8")  # noqa: SIM115

    def log(message: str) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{stamp} {app} [{os.getpid()}] {message}"
        log_file.write(line + "\n")
        log_file.flush()
        if not args.quiet and not args.json:
            print(line, file=sys.stderr)

    def failed(message: str, detail: str | None = None) -> None:
        log(f"FAILED: {detail or message}")
        journal(syslog.LOG_ERR, f"{app}: FAILED: {message}")
        if args.json:
            print(json.dumps({"failed": True, "msg": message}))
        elif args.quiet:
            print(f"pyfleet-backup {app}: FAILED: {message}", file=sys.stderr)

    components = [c for c in args.components.split(",") if c] or None
    try:
        # The app's lock (<root>/<app>/.lock, shared with retention and restores) is taken by the job.
        result = lib.BackupJob(config, SubprocessRunner(), log=log, lock_timeout=wait_timeout).run(components)
    except lib.LockBusy as exc:
        failed(str(exc))
        return 75
    except lib.BackupError as exc:
        failed(str(exc))
        return 1
    except Exception as exc:  # noqa: BLE001 - the log must say why a scheduled run died
        failed(f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)).strip())
        return 1
    finally:
        log_file.close()
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
