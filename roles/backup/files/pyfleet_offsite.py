# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Off-site copies of the backup sets: restic over SFTP to the backup host (installed by the pyfleet.server.backup
role as /usr/local/lib/pyfleet/pyfleet_offsite.py; the backup program runs it after every set it writes).

One restic repository per app on the backup host, reached as an SFTP-only user chrooted to its own directory. Each
good set of ``<root>/<app>`` that the repository does not hold yet becomes one snapshot tagged
``pyfleet-app:<app>`` and ``pyfleet-set:<id>``; its file list and sizes are compared with the set's manifest; then
``restic forget --prune`` applies the off-site retention and ``restic check --read-data-subset`` reads part of the
stored data back from the backup host. The repository password is read by restic from a root-only file
(RESTIC_PASSWORD_FILE): never in argv, never logged. The local sets are only read.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import tempfile
import typing as t

APP_TAG = "pyfleet-app:"
SET_TAG = "pyfleet-set:"
# restic's messages when the repository is not there yet (`restic cat config`).
MISSING_REPO_RE = re.compile(r"Is there a repository at the following location|config file does not exist|"
                             r"does not exist", re.IGNORECASE)
WRONG_PASSWORD_RE = re.compile(r"wrong password|no key found", re.IGNORECASE)
SUBSET_RE = re.compile(r"^([1-9][0-9]*/[1-9][0-9]*|(100|[1-9][0-9]?)(\.[0-9]+)?%)$")
KEEP_KEYS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


class OffsiteError(Exception):
    """A failed copy, retention or check; the message says what happened and that the local sets are intact."""


class Runner(t.Protocol):
    def run(self, argv: list[str], env: dict[str, str] | None = None,
            stdout: str | None = None) -> tuple[int, str, str]: ...


def settings(config: dict[str, t.Any]) -> dict[str, t.Any]:
    """The ``offsite`` block of the program's configuration, with its rules checked again (the role's preflight
    checks them first, naming the variables)."""
    offsite = config.get("offsite") or {}
    problems = []
    for key in ("repository", "password_file", "ssh_config", "ssh_host", "cache_dir"):
        if not str(offsite.get(key) or ""):
            problems.append(f"offsite.{key} is missing")
    keep = offsite.get("keep") or {}
    for key, value in keep.items():
        try:
            count = int(value)
        except (TypeError, ValueError):
            count = -1
        if key not in KEEP_KEYS or count < 0 or isinstance(value, bool):
            problems.append(f"offsite.keep.{key} must be a count of 0 or more (got {value!r})")
    if str(keep.get("last", "0")).isdigit() is False or int(keep.get("last", 0) or 0) < 1:
        problems.append("offsite.keep.last must be at least 1 (the newest copy always stays)")
    subset = str(offsite.get("check_read_data_subset") or "")
    if subset and not SUBSET_RE.match(subset):
        problems.append(f"offsite.check_read_data_subset must be n/t or a percentage (got {subset!r})")
    if problems:
        raise OffsiteError("off-site configuration: " + "; ".join(problems))
    return offsite


def environment(offsite: dict[str, t.Any]) -> dict[str, str]:
    """restic's environment: the repository, the password file (not the password) and the cache."""
    return {
        "RESTIC_REPOSITORY": offsite["repository"],
        "RESTIC_PASSWORD_FILE": offsite["password_file"],
        "RESTIC_CACHE_DIR": offsite["cache_dir"],
        "HOME": offsite["cache_dir"],
        # restic reads --time in the local zone: the set's UTC time stays UTC.
        "TZ": "UTC",
    }


def restic_argv(offsite: dict[str, t.Any], *args: str) -> list[str]:
    """restic with its SFTP transport: ssh with the role's own config file (key, known host, user, port)."""
    command = f"ssh -F {offsite['ssh_config']} {offsite['ssh_host']} -s sftp"
    return ["restic", "-o", f"sftp.command={command}", *args]


def app_tag(app: str) -> str:
    return APP_TAG + app


def set_tag(set_id: str) -> str:
    return SET_TAG + set_id


def snapshot_set_id(snapshot: dict[str, t.Any]) -> str | None:
    for tag in snapshot.get("tags") or []:
        if tag.startswith(SET_TAG):
            return tag[len(SET_TAG):]
    return None


def restic_time(created_at: str | None) -> str | None:
    """The set's creation time as restic's --time wants it (UTC, 'YYYY-MM-DD HH:MM:SS')."""
    if not created_at:
        return None
    moment = _dt.datetime.fromisoformat(created_at.replace("Z", "+00:00")).astimezone(_dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def forget_argv(offsite: dict[str, t.Any], app: str) -> list[str]:
    keep = offsite.get("keep") or {}
    args = ["forget", "--prune", "--json", "--tag", app_tag(app), "--group-by", "host"]
    for key in KEEP_KEYS:
        value = int(keep.get(key, 0) or 0)
        if value > 0:
            args += [f"--keep-{key}", str(value)]
    return restic_argv(offsite, *args)


def check_argv(offsite: dict[str, t.Any]) -> list[str]:
    subset = str(offsite.get("check_read_data_subset") or "")
    return restic_argv(offsite, "check", *([f"--read-data-subset={subset}"] if subset else []))


def expected_files(manifest: dict[str, t.Any]) -> dict[str, int]:
    """Every file of a set by its path relative to the set, with its size: the manifest's files plus itself."""
    files = {rel: int(record.get("size", 0)) for rel, record in (manifest.get("files") or {}).items()}
    return files


def compare_listing(set_path: str, nodes: t.Iterable[dict[str, t.Any]], expected: dict[str, int],
                    manifest_size: int) -> list[str]:
    """What differs between a snapshot's file list (``restic ls --json``) and the set on disk."""
    prefix = set_path.rstrip("/") + "/"
    stored: dict[str, int] = {}
    for node in nodes:
        if node.get("type") != "file" or not str(node.get("path", "")).startswith(prefix):
            continue
        stored[node["path"][len(prefix):]] = int(node.get("size", 0))
    wanted = dict(expected, **{"manifest.json": manifest_size})
    problems = []
    for rel, size in sorted(wanted.items()):
        if rel not in stored:
            problems.append(f"{rel} is missing")
        elif stored[rel] != size:
            problems.append(f"{rel} has {stored[rel]} bytes, the set {size}")
    return problems


def parse_json_lines(text: str) -> list[dict[str, t.Any]]:
    """restic --json prints one object per line (backup) or one document (snapshots, ls prints both kinds)."""
    items: list[dict[str, t.Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, list):
            items.extend(v for v in value if isinstance(v, dict))
        elif isinstance(value, dict):
            items.append(value)
    return items


def pending_sets(sets: list[t.Any], in_repo: t.Iterable[str]) -> list[t.Any]:
    """The good sets to copy, oldest first: those newer than the newest set the repository holds (sets written
    while the backup host was away included); into an empty repository the newest good set only. Older sets are
    never copied again, so a copy retention has forgotten does not come back."""
    good = sorted((s for s in sets if s.good), key=lambda s: s.id)
    newest = max(in_repo, default=None)
    if newest is None:
        return good[-1:]
    return [s for s in good if s.id > newest]


def _tail(text: str, size: int = 1500) -> str:
    text = (text or "").strip()
    return text[-size:]


class Offsite:
    """The copy, retention, check, init and restore steps; ``lib`` is the backup library (pyfleet_backup)."""

    def __init__(self, config: dict[str, t.Any], runner: Runner, lib: t.Any,
                 log: t.Callable[[str], None] = lambda message: None) -> None:
        self.config = config
        self.offsite = settings(config)
        self.runner = runner
        self.lib = lib
        self.log = log
        self.app = config["app"]
        self.host = config.get("host") or ""
        self.app_dir = os.path.join(config.get("root", "/var/backups/pyfleet"), self.app)
        self.env = environment(self.offsite)

    def _restic(self, *args: str, what: str) -> str:
        argv = restic_argv(self.offsite, *args)
        rc, out, err = self.runner.run(argv, env=self.env)
        if rc != 0:
            raise OffsiteError(f"{what} failed (restic {args[0]}, rc={rc}): {_tail(err or out)}")
        return out

    # -- repository
    def exists(self) -> bool:
        rc, out, err = self.runner.run(restic_argv(self.offsite, "cat", "config"), env=self.env)
        if rc == 0:
            return True
        if MISSING_REPO_RE.search(err or out):
            return False
        raise OffsiteError(f"cannot read the off-site repository {self.offsite['repository']} (rc={rc}): "
                           f"{_tail(err or out)}")

    def init(self, dry_run: bool = False) -> dict[str, t.Any]:
        if self.exists():
            return {"changed": False, "repository": self.offsite["repository"]}
        if not dry_run:
            self._restic("init", what=f"creating the off-site repository {self.offsite['repository']}")
            self.log(f"off-site: created the restic repository {self.offsite['repository']}")
        return {"changed": True, "repository": self.offsite["repository"]}

    def probe_password(self, password: str) -> dict[str, t.Any]:
        """Does ``password`` open the repository? ``opens`` true/false, or null with ``reason`` when the
        repository is missing or cannot be reached (nothing to compare with). The password goes to restic in a
        private file removed at once, never in argv or the environment."""
        fd, path = tempfile.mkstemp(prefix=".pyfleet-offsite-probe-", dir=os.path.dirname(
            self.offsite["password_file"]) or None)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(password.rstrip("\r\n") + "\n")
            env = dict(self.env, RESTIC_PASSWORD_FILE=path)
            rc, out, err = self.runner.run(restic_argv(self.offsite, "cat", "config"), env=env)
        finally:
            os.unlink(path)
        text = err or out
        if rc == 0:
            return {"opens": True}
        if WRONG_PASSWORD_RE.search(text):
            return {"opens": False, "reason": _tail(text, 300)}
        if MISSING_REPO_RE.search(text):
            return {"opens": None, "reason": "the repository does not exist yet"}
        return {"opens": None, "reason": f"the repository could not be read (rc={rc}): {_tail(text, 300)}"}

    def snapshots(self) -> list[dict[str, t.Any]]:
        out = self._restic("snapshots", "--json", "--tag", app_tag(self.app),
                           what="listing the off-site snapshots")
        return parse_json_lines(out)

    def copied(self) -> dict[str, dict[str, t.Any]]:
        """Set id -> its newest snapshot in the repository."""
        found: dict[str, dict[str, t.Any]] = {}
        for snapshot in sorted(self.snapshots(), key=lambda s: str(s.get("time", ""))):
            set_id = snapshot_set_id(snapshot)
            if set_id:
                found[set_id] = snapshot
        return found

    # -- copy
    def copy_set(self, info: t.Any) -> str:
        manifest = info.manifest or {}
        args = ["backup", "--json", "--tag", app_tag(self.app), "--tag", set_tag(info.id)]
        if self.host:
            args += ["--host", self.host]
        moment = restic_time(info.created_at)
        if moment:
            args += ["--time", moment]
        out = self._restic(*args, info.path, what=f"copying set {info.id} to the backup host")
        summary = [m for m in parse_json_lines(out) if m.get("message_type") == "summary"]
        if not summary or not summary[-1].get("snapshot_id"):
            raise OffsiteError(f"copying set {info.id}: restic reported no snapshot ({_tail(out, 300)})")
        snapshot_id = str(summary[-1]["snapshot_id"])
        listing = parse_json_lines(self._restic("ls", "--json", snapshot_id,
                                                what=f"listing the copy of set {info.id}"))
        manifest_size = os.path.getsize(os.path.join(info.path, "manifest.json"))
        problems = compare_listing(info.path, listing, expected_files(manifest), manifest_size)
        if problems:
            raise OffsiteError(f"the copy of set {info.id} (snapshot {snapshot_id[:8]}) differs from the set: "
                               + "; ".join(problems[:10]))
        self.log(f"off-site: set {info.id} copied as snapshot {snapshot_id[:8]} "
                 f"({summary[-1].get('data_added', 0)} bytes added)")
        return snapshot_id

    def sync(self, lock_timeout: float = 3600.0) -> dict[str, t.Any]:
        """Copy every good set the repository lacks (oldest first), then retention, then the check."""
        copied_now: list[str] = []
        with self.lib.AppLock(self.config.get("root", "/var/backups/pyfleet"), self.app, lock_timeout,
                              purpose="off-site copy", log=self.log):
            # Locks a killed run left behind would stop `forget --prune`; `unlock` removes stale ones only.
            self._restic("unlock", what="removing stale locks of the off-site repository")
            in_repo = self.copied()
            sets = self.lib.list_sets(self.app_dir, app=self.app, checksums=False, include_incomplete=False)
            pending = pending_sets(sets, in_repo)
            for quick in pending:
                info = self.lib.check_set(quick.path, app=self.app, checksums=True)
                if not info.good:
                    self.log(f"off-site: set {info.id} not copied, it does not verify: {'; '.join(info.problems)}")
                    continue
                self.copy_set(info)
                copied_now.append(info.id)
            forgotten = self.forget()
            self.check()
        return {"copied": copied_now, "forgotten": forgotten, "repository": self.offsite["repository"]}

    def forget(self) -> list[str]:
        argv = forget_argv(self.offsite, self.app)
        rc, out, err = self.runner.run(argv, env=self.env)
        if rc != 0:
            raise OffsiteError(f"off-site retention failed (restic forget --prune, rc={rc}): {_tail(err or out)}")
        removed = []
        for group in parse_json_lines(out):
            for snapshot in group.get("remove") or []:
                removed.append(snapshot_set_id(snapshot) or str(snapshot.get("short_id", "?")))
        if removed:
            self.log(f"off-site: retention forgot the copies of {', '.join(sorted(removed))} and pruned")
        return sorted(removed)

    def check(self) -> None:
        rc, out, err = self.runner.run(check_argv(self.offsite), env=self.env)
        if rc != 0:
            raise OffsiteError(f"restic check of the off-site repository failed (rc={rc}): {_tail(err or out)}")
        subset = self.offsite.get("check_read_data_subset") or "none"
        self.log(f"off-site: restic check passed (data read: {subset})")

    # -- restore
    def restore(self, selector: str, lock_timeout: float = 3600.0, dry_run: bool = False) -> dict[str, t.Any]:
        """Fetch set ``selector`` (an id, or ``latest``: the newest set copied) back into ``<root>/<app>/<id>``,
        verified (checksums, manifest) before it gets its name. A set already there and good is left alone."""
        in_repo = self.copied()
        if not in_repo:
            raise OffsiteError(f"the off-site repository holds no set of {self.app}")
        set_id = max(in_repo) if selector == "latest" else selector
        if set_id not in in_repo:
            raise OffsiteError(f"set {set_id} is not in the off-site repository "
                               f"(it holds {', '.join(sorted(in_repo))})")
        snapshot = in_repo[set_id]
        source = next((p for p in snapshot.get("paths") or [] if p.rstrip("/").endswith("/" + set_id)), None)
        if not source:
            raise OffsiteError(f"snapshot {snapshot.get('short_id')} of set {set_id} has no path of that set")
        final = os.path.join(self.app_dir, set_id)
        result = {"id": set_id, "path": final, "snapshot": snapshot.get("id"), "changed": False}
        if os.path.isdir(final):
            existing = self.lib.check_set(final, app=self.app, checksums=True)
            if existing.good:
                return result
            raise OffsiteError(f"{final} exists but does not verify ({'; '.join(existing.problems)}); move it "
                               "aside first, nothing was changed")
        result["changed"] = True
        if dry_run:
            return result
        root = self.config.get("root", "/var/backups/pyfleet")
        os.makedirs(self.app_dir, mode=0o751, exist_ok=True)
        with self.lib.AppLock(root, self.app, lock_timeout, purpose="off-site restore", log=self.log):
            # Staged under a temporary name of the app's directory (same filesystem; a crashed fetch is removed by
            # the next backup run like any .tmp-*): restic writes the set at its full path below it.
            staging = os.path.join(self.app_dir, f"{self.lib.TMP_PREFIX}offsite-{set_id}")
            if os.path.lexists(staging):
                shutil.rmtree(staging)
            os.mkdir(staging, 0o700)
            try:
                self._restic("restore", str(snapshot["id"]), "--target", staging, "--include", source,
                             what=f"fetching set {set_id} back from the backup host")
                inner = os.path.join(staging, source.lstrip("/"))
                info = self.lib.check_set(inner, app=self.app, checksums=True)
                if not info.good:
                    raise OffsiteError(f"set {set_id} fetched back does not verify: {'; '.join(info.problems)}; "
                                       "nothing was kept")
                os.rename(inner, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        self.log(f"off-site: set {set_id} fetched back into {final} and verified")
        return result
