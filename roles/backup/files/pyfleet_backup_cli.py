# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pyfleet-backup: write one backup set of an app (installed by the pyfleet.server.backup role).

    pyfleet-backup --config /etc/pyfleet/backup/<app>.json [--components postgresql,redis] [--json] [--wait]

The logic lives in /usr/local/lib/pyfleet/pyfleet_backup.py (the collection's module_utils/backup.py, shared with
the backup_info and restore modules). This file (run by the /usr/local/sbin/pyfleet-backup wrapper with
/usr/bin/python3) only adds the process runner and the log; the job takes the app's lock (<root>/<app>/.lock),
the one lock shared with retention and pyfleet.server.restore.
Exit codes: 0 set written, 1 failed (nothing left behind), 75 another run of this app holds the lock.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.environ.get("PYFLEET_LIB", "/usr/local/lib/pyfleet"))
import pyfleet_backup as lib  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON written by the backup role")
    parser.add_argument("--components", default="", help="comma-separated subset (default: all configured)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line on stdout")
    parser.add_argument("--wait", action="store_true", help="wait (up to an hour) for a running backup, retention or "
                        "restore of this app instead of exiting 75")
    parser.add_argument("--quiet", action="store_true", help="log to the log file only")
    args = parser.parse_args()

    with open(args.config, encoding="utf-8") as handle:
        config = json.load(handle)
    app = config["app"]
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

    components = [c for c in args.components.split(",") if c] or None
    try:
        # The app's lock (<root>/<app>/.lock, shared with retention and restores) is taken by the job.
        result = lib.BackupJob(config, SubprocessRunner(), log=log,
                               lock_timeout=3600 if args.wait else 0).run(components)
    except lib.LockBusy as exc:
        log(f"not started: {exc}")
        return 75
    except lib.BackupError as exc:
        log(f"FAILED: {exc}")
        if args.json:
            print(json.dumps({"failed": True, "msg": str(exc)}))
        elif args.quiet:
            print(f"pyfleet-backup {app}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the log must say why a scheduled run died
        log("FAILED: " + "".join(traceback.format_exception(exc)).strip())
        if args.json:
            print(json.dumps({"failed": True, "msg": f"{type(exc).__name__}: {exc}"}))
        return 1
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
