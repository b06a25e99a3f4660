# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Backup sets of pyfleet.server: taking them, reading them, verifying them, choosing and pruning them.

Standard library only. The same file serves twice:

* as module_utils of ``pyfleet.server.backup_info`` and ``pyfleet.server.restore``, and
* as the library of the backup program on the host: the ``backup`` role copies it to
  ``/usr/local/lib/pyfleet/pyfleet_backup.py`` and ``/usr/local/sbin/pyfleet-backup`` imports it,

so a set is written and checked by one piece of code. Nothing here starts a process by itself: commands are
built here and run by a *runner* the caller passes (the program's subprocess runner, a fake in unit tests).

A backup set is a directory ``<root>/<app>/<id>/`` where ``<id>`` is the UTC start time (``20250124T031500Z``).
It holds ``manifest.json`` and one file or folder per component::

    manifest.json
    postgresql/<db>.dump          pg_dump -Fc  (or postgresql/<db>.dir/ with format=directory, or
                                  postgresql/<db>.sql.gz with format=plain: pg_dump plain SQL, gzipped here)
    redis/dump.rdb                the RDB written by BGSAVE, copied once LASTSAVE moved
    mongodb/<name>.archive.gz     mongodump --archive --gzip
    files/files.tar.gz            the app's config and current release: archived for reference, never restored
    files/data-<n>-<slug>.tar.gz  one per data path (the app's shared/ and state dir): restored by the restore module

A set is written under ``.tmp-<id>`` and renamed when complete, so a set directory without the ``.tmp-`` prefix
either is complete or was damaged afterwards (which the checksums reveal). With age encryption every file is
replaced by ``<file>.age`` and its manifest entry keeps the plain file's sha256 and size.

``<root>/<app>/.lock`` is the app's lock (:class:`AppLock`): backup runs, retention and restores take it, so
none of them sees a set another one is writing or deleting. Retention (:class:`Retention`) keeps every set for a
day, then one a day and one a week. Before a run writes anything it checks the free space for the set it expects
(:meth:`BackupJob.check_space`). Files that the ``postgres`` or ``redis`` users could have written are taken
without ever following a symlink (:func:`secure_tree`, :func:`copy_nofollow`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tarfile
import tempfile
import time
import typing as t
import zlib
from dataclasses import dataclass, field

FORMAT = 1
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
SET_ID_RE = re.compile(r"^\d{8}T\d{6}Z$")
SET_ID_FORMAT = "%Y%m%dT%H%M%SZ"
# The one list of what a backup set can hold, in the order components are taken (and restored). The modules'
# argument specs and pyfleet.server.restore's component classes follow it; their docs repeat it, a unit test checks.
COMPONENTS = ("postgresql", "redis", "mongodb", "files")
# What pyfleet.server.restore puts back: every component. Of ``files`` only the data paths (``data`` entries of the
# manifest, one archive each); the config/code archive files/files.tar.gz is for reference only (docs/backup.md).
RESTORABLE = COMPONENTS
MONGO_ARCHIVE_MAGIC = 0x8199E26D
_CHUNK = 1024 * 1024


class BackupError(Exception):
    """A problem that stops a backup or a restore; the message is meant for the operator."""


class LockBusy(BackupError):
    """The app's lock stayed taken for the whole wait; ``holder`` is what its holder wrote into the lock file."""

    def __init__(self, message: str, path: str, holder: str) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder


# ---- identifiers and time -----------------------------------------------------------------------------------


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def new_set_id(now: _dt.datetime) -> str:
    return now.astimezone(_dt.UTC).strftime(SET_ID_FORMAT)


def set_time(set_id: str) -> _dt.datetime | None:
    """Creation time encoded in a set id, or None when the name is not a set id."""
    if not SET_ID_RE.match(set_id or ""):
        return None
    return _dt.datetime.strptime(set_id, SET_ID_FORMAT).replace(tzinfo=_dt.UTC)


def iso(moment: _dt.datetime) -> str:
    return moment.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


# ---- files and checksums ------------------------------------------------------------------------------------


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_records(set_dir: str, rel: str) -> dict[str, dict[str, t.Any]]:
    """Size and sha256 of ``rel`` (a file, or every file below a folder), keyed by path relative to the set."""
    full = os.path.join(set_dir, rel)
    paths: list[str] = []
    if os.path.isdir(full):
        for base, dirs, names in os.walk(full):
            dirs.sort()
            paths.extend(os.path.join(base, name) for name in sorted(names))
    else:
        paths.append(full)
    records = {}
    for path in paths:
        key = os.path.relpath(path, set_dir)
        records[key] = {"size": os.path.getsize(path), "sha256": sha256_file(path)}
    return records


# ---- reading and verifying sets -----------------------------------------------------------------------------


@dataclass
class SetInfo:
    """What is known about one backup set directory."""

    id: str
    path: str
    app: str | None = None
    created_at: str | None = None
    age_seconds: float | None = None
    complete: bool = False
    verified: bool | None = None
    size: int = 0
    components: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    manifest: dict[str, t.Any] | None = None
    manifest_sha256: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def good(self) -> bool:
        """Complete, and verified unless verification was skipped."""
        return self.complete and self.verified is not False and not self.problems

    def to_dict(self) -> dict[str, t.Any]:
        manifest = self.manifest or {}
        return {
            "id": self.id,
            "path": self.path,
            "app": self.app,
            "created_at": self.created_at,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "complete": self.complete,
            "verified": self.verified,
            "good": self.good,
            "size": self.size,
            "size_human": human_size(self.size),
            "components": self.components,
            "problems": self.problems,
            "host": manifest.get("host"),
            "duration_seconds": manifest.get("duration_seconds"),
            "encrypted": bool(manifest.get("encryption")),
            "postgresql_format": postgresql_format(manifest),
            "manifest_sha256": self.manifest_sha256,
            "notes": self.notes,
        }


def postgresql_format(manifest: dict[str, t.Any]) -> str | None:
    """Format of the set's PostgreSQL dumps (custom, directory or plain; sets of older versions: custom), None
    without any; the formats joined by commas if the dumps differ."""
    databases = ((manifest.get("components") or {}).get("postgresql") or {}).get("databases") or {}
    formats = sorted({str(d.get("format") or "custom") for d in databases.values() if isinstance(d, dict)})
    return ",".join(formats) or None


def read_manifest(set_dir: str) -> tuple[dict[str, t.Any] | None, str | None, str | None]:
    """(manifest, sha256 of manifest.json, problem)."""
    path = os.path.join(set_dir, MANIFEST)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None, None, f"{MANIFEST} is missing"
    except OSError as exc:
        return None, None, f"{MANIFEST} cannot be read: {exc.strerror or exc}"
    digest = hashlib.sha256(raw).hexdigest()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, digest, f"{MANIFEST} is not valid JSON ({exc})"
    if not isinstance(manifest, dict):
        return None, digest, f"{MANIFEST} is not a JSON object"
    return manifest, digest, None


def check_set(set_dir: str, app: str | None = None, checksums: bool = True,
              now: _dt.datetime | None = None) -> SetInfo:
    """Read a set and say whether it is complete and (with ``checksums``) intact. Never raises for bad sets."""
    set_dir = os.path.abspath(set_dir)
    name = os.path.basename(set_dir.rstrip("/"))
    now = now or utcnow()
    info = SetInfo(id=name, path=set_dir)
    if name.startswith(TMP_PREFIX):
        info.id = name[len(TMP_PREFIX):]
        info.problems.append("incomplete: still being written, or abandoned by a failed run")
    moment = set_time(info.id)
    if moment is not None:
        info.created_at = iso(moment)
        info.age_seconds = (now - moment).total_seconds()
    manifest, digest, problem = read_manifest(set_dir)
    info.manifest_sha256 = digest
    if problem:
        info.problems.append(problem)
        info.verified = False if checksums else None
        return info
    info.manifest = manifest
    info.app = manifest.get("app")
    info.components = sorted((manifest.get("components") or {}).keys())
    if manifest.get("format") != FORMAT:
        info.problems.append(f"manifest format {manifest.get('format')!r} is not supported (expected {FORMAT})")
    if not name.startswith(TMP_PREFIX) and manifest.get("id") != name:
        info.problems.append(f"manifest id {manifest.get('id')!r} does not match the directory name {name!r}")
    if app is not None and info.app != app:
        info.problems.append(f"set belongs to app {info.app!r}, not {app!r}")
    if manifest.get("created_at"):
        info.created_at = manifest["created_at"]
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        info.problems.append("manifest lists no files")
        files = {}
    size = 0
    damaged = False
    missing = False
    for rel, record in sorted(files.items()):
        path = os.path.normpath(os.path.join(set_dir, rel))
        if not path.startswith(set_dir + os.sep):
            info.problems.append(f"manifest file name {rel!r} points outside the set")
            damaged = missing = True
            continue
        try:
            actual = os.path.getsize(path)
        except OSError:
            info.problems.append(f"{rel} is missing")
            damaged = missing = True
            continue
        size += actual
        if actual != record.get("size"):
            info.problems.append(
                f"{rel} is {actual} bytes, the manifest says {record.get('size')} (truncated or replaced)"
            )
            damaged = True
            continue
        if checksums:
            digest = sha256_file(path)
            if digest != record.get("sha256"):
                info.problems.append(
                    f"{rel}: sha256 {digest[:16]}… does not match the manifest ({str(record.get('sha256'))[:16]}…)"
                )
                damaged = True
    layout = check_layout(set_dir, manifest)
    info.problems.extend(layout)
    damaged = damaged or bool(layout)
    if manifest.get("encryption") and not layout:
        info.notes.append("encrypted with age: every encrypted file is in the manifest with the sha256 and size of "
                          "what it decrypts to (proven readable before encryption); that content itself can only "
                          "be checked with the key, which a restore does before loading anything")
    info.size = size + os.path.getsize(os.path.join(set_dir, MANIFEST))
    info.complete = not name.startswith(TMP_PREFIX) and not missing and bool(files) and manifest.get("format") == FORMAT
    if checksums:
        info.verified = not damaged
    elif damaged:
        info.verified = False
    return info


AGE_MAGIC = b"age-encryption.org/v1\n"


def component_paths(manifest: dict[str, t.Any]) -> list[tuple[str, str]]:
    """(label, path relative to the set) of every file or folder the manifest's components name."""
    paths = []
    for name, detail in sorted((manifest.get("components") or {}).items()):
        if not isinstance(detail, dict):
            continue
        if detail.get("file"):
            paths.append((name, str(detail["file"])))
        for entry in detail.get("data") or []:
            if isinstance(entry, dict) and entry.get("file"):
                paths.append((f"{name} {entry.get('path')}", str(entry["file"])))
        for database, entry in sorted((detail.get("databases") or {}).items()):
            if isinstance(entry, dict) and entry.get("file"):
                paths.append((f"{name} {database}", str(entry["file"])))
    return paths


def check_layout(set_dir: str, manifest: dict[str, t.Any]) -> list[str]:
    """What a restore needs beyond the checksums of the listed files: every component's file (``<file>.age`` when
    encrypted) is listed; every file inside a component's folder (pg_dump -Fd) is listed, ``toc.dat`` among them;
    in an encrypted set every file is a ``.age`` file whose record says what it decrypts to (plain_sha256/plain_size),
    without which its content cannot be proven without the key (the program checks the age header when it
    encrypts; the checksums prove the bytes are still those)."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        return []
    encrypted = bool(manifest.get("encryption"))
    suffix = ".age" if encrypted else ""
    problems = []
    for label, rel in component_paths(manifest):
        full = os.path.normpath(os.path.join(set_dir, rel))
        if not full.startswith(set_dir + os.sep):
            problems.append(f"{label}: {rel!r} points outside the set")
            continue
        inside = [k for k in files if k.startswith(rel.rstrip("/") + "/")]
        if os.path.isdir(full) and not os.path.islink(full):
            for base, dirs, names in os.walk(full):
                dirs.sort()
                for entry in sorted(names):
                    path = os.path.relpath(os.path.join(base, entry), set_dir)
                    if path not in files:
                        problems.append(f"{path} is in the set but not in the manifest (a restore would not check it)")
            if label.startswith("postgresql ") and f"{rel}/toc.dat{suffix}" not in files:
                problems.append(f"{label}: {rel}/toc.dat{suffix} is not in the manifest; a directory-format dump "
                                "cannot be restored without it")
        elif not inside and rel + suffix not in files:
            problems.append(f"{label}: {rel}{suffix} is not in the manifest")
    if encrypted:
        for rel, record in sorted(files.items()):
            if not rel.endswith(".age"):
                problems.append(f"{rel} is not encrypted, in a set whose manifest says it is")
                continue
            if not isinstance(record, dict) or not record.get("plain_sha256") or record.get("plain_size") is None:
                problems.append(f"{rel}: the manifest does not say what it decrypts to (plain_sha256, plain_size), "
                                "so its content cannot be proven without the key")
    return problems


def list_sets(app_dir: str, app: str | None = None, checksums: bool = True,
              now: _dt.datetime | None = None, include_incomplete: bool = True) -> list[SetInfo]:
    """Every set below ``<root>/<app>``, newest first."""
    if not os.path.isdir(app_dir):
        return []
    now = now or utcnow()
    sets = []
    for name in os.listdir(app_dir):
        path = os.path.join(app_dir, name)
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        bare = name[len(TMP_PREFIX):] if name.startswith(TMP_PREFIX) else name
        if not SET_ID_RE.match(bare):
            continue
        if name.startswith(TMP_PREFIX) and not include_incomplete:
            continue
        sets.append(check_set(path, app=app, checksums=checksums, now=now))
    sets.sort(key=lambda s: (s.id, not s.path.endswith(s.id)), reverse=True)
    return sets


def select_set(sets: list[SetInfo], selector: str, components: t.Iterable[str] = ()) -> SetInfo:
    """The set called ``selector`` (an id) or, for ``latest``, the newest good set holding ``components``."""
    wanted = set(components)
    if selector == "latest":
        for info in sets:
            if info.good and wanted <= set(info.components):
                return info
        what = f" holding {', '.join(sorted(wanted))}" if wanted else ""
        raise BackupError(f"no complete, verified backup set{what} found")
    for info in sets:
        if info.id == selector and not info.path.rstrip("/").split("/")[-1].startswith(TMP_PREFIX):
            return info
    raise BackupError(f"backup set {selector!r} not found")


@dataclass(frozen=True)
class Retention:
    """Which sets stay, per component (a set stays when any component it holds keeps it).

    * the newest good set always stays, whatever its age;
    * ``keep_last``: the newest N good sets;
    * ``keep_all_hours``: every good set younger than this;
    * ``keep_daily``: the newest good set of each of the N most recent UTC days that have one;
    * ``keep_weekly``: the newest good set of each of the N most recent ISO weeks (UTC) that have one.

    Only good sets (complete, nothing found damaged) fill these places. A damaged set stays visible (backup_info
    reports it) while it is younger than ``keep_all_hours`` and is removed after that; sets without a readable
    manifest under a final name are left for an operator. The defaults keep every set for 24 h, then one a day for
    a week, then one a week for four weeks.
    """

    keep_all_hours: float = 24.0
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_last: int = 1

    # Keys of the program's configuration before tiers: read as the tier that keeps what the name promised.
    LEGACY: t.ClassVar[dict[str, str]] = {"keep_count": "keep_last", "keep_days": "keep_daily"}

    @classmethod
    def from_config(cls, config: dict[str, t.Any]) -> Retention:
        """The policy of a backup configuration; ``keep_count``/``keep_days`` (older configurations) still work."""
        values: dict[str, t.Any] = {}
        for old, new in cls.LEGACY.items():
            if config.get(old) is not None:
                if config.get(new) is not None:
                    raise BackupError(f"retention: {old} is the old name of {new}; give only {new}")
                values[new] = config[old]
        for name in ("keep_all_hours", "keep_daily", "keep_weekly", "keep_last"):
            if config.get(name) is not None:
                values[name] = config[name]
        parsed: dict[str, t.Any] = {}
        for name, value in values.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = -1.0
            if number < 0:
                raise BackupError(f"retention: {name} must be a number of 0 or more, got {value!r}")
            # keep_days 1.5 meant "a day and a half of history": two days keep it.
            parsed[name] = number if name == "keep_all_hours" else int(-(-number // 1))
        return cls(**parsed)

    def describe(self) -> str:
        return (f"every set for {self.keep_all_hours:g} h, {self.keep_daily} daily, {self.keep_weekly} weekly, "
                f"newest {max(self.keep_last, 1)}")


def _newest_per(sets: list[SetInfo], bucket: t.Callable[[_dt.datetime], t.Any], count: int) -> set[str]:
    """Ids of the newest set of each of the ``count`` most recent buckets (``sets`` newest first)."""
    kept: set[str] = set()
    seen: set[t.Any] = set()
    for info in sets:
        if len(seen) >= count:
            break
        moment = set_time(info.id)
        if moment is None:
            continue
        key = bucket(moment)
        if key not in seen:
            seen.add(key)
            kept.add(info.id)
    return kept


def retention_plan(sets: list[SetInfo], policy: Retention, now: _dt.datetime | None = None) -> list[SetInfo]:
    """Complete sets to delete under ``policy`` (see :class:`Retention`), newest first."""
    now = now or utcnow()
    window = policy.keep_all_hours * 3600
    complete = sorted((s for s in sets if s.complete), key=lambda s: s.id, reverse=True)

    def young(info: SetInfo) -> bool:
        moment = set_time(info.id)
        return moment is None or (now - moment).total_seconds() <= window

    keep: set[str] = set()
    for component in COMPONENTS:
        good = [s for s in complete if component in s.components and s.good]
        if not good:
            continue
        keep.update(s.id for s in good[: max(policy.keep_last, 1)])
        keep.update(s.id for s in good if young(s))
        keep.update(_newest_per(good, lambda m: m.date(), policy.keep_daily))
        keep.update(_newest_per(good, lambda m: m.isocalendar()[:2], policy.keep_weekly))
    return [s for s in complete if s.id not in keep and (s.good or not young(s))]


# ---- the app's lock ----------------------------------------------------------------------------------------

LOCK_NAME = ".lock"


class AppLock:
    """The one lock of an app's backup sets, shared by backup runs, retention and restores.

    ``<root>/<app>/.lock``: a root-owned 0600 file in the root-owned app directory (not world-writable /run/lock),
    opened without following symlinks and locked with ``flock``. Waits up to ``timeout`` seconds (0 = one try),
    polling every ``poll`` seconds; then raises :class:`LockBusy` naming the holder (pid and purpose, which the
    holder writes into the file). Use as a context manager::

        with AppLock("/var/backups/pyfleet", "fleetdemo", 3600, purpose="backup postgresql,redis"):
            ...

    ``create`` makes ``<root>/<app>`` (0751) when it is missing; with ``create=False`` a missing directory is a
    :class:`BackupError` (nothing to lock, nothing created).
    """

    def __init__(self, root: str, app: str, timeout: float, purpose: str = "", poll: float = 0.5,
                 log: t.Callable[[str], None] | None = None, create: bool = True) -> None:
        self.root = root
        self.app = app
        self.timeout = max(float(timeout), 0.0)
        self.purpose = purpose or "pyfleet"
        self.poll = max(poll, 0.01)
        self.log = log or (lambda message: None)
        self.create = create
        self.dir = os.path.join(root, app)
        self.path = os.path.join(self.dir, LOCK_NAME)
        self.fd: int | None = None

    def _open(self) -> int:
        if self.create:
            os.makedirs(self.dir, mode=0o751, exist_ok=True)
        try:
            dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError as exc:
            raise BackupError(f"{self.dir} does not exist; nothing to lock") from exc
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise BackupError(f"{self.dir} is a symlink or not a directory; refusing to lock in it") from exc
            raise
        try:
            dst = os.fstat(dfd)
            if os.geteuid() == 0 and (dst.st_uid != 0 or dst.st_mode & 0o022):
                raise BackupError(f"{self.dir} must be owned by root and writable by root only "
                                  f"(uid {dst.st_uid}, mode {stat.S_IMODE(dst.st_mode):04o}); refusing to lock in it")
            try:
                fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise BackupError(f"{self.path} is a symlink; refusing to use it as the lock") from exc
                raise BackupError(f"cannot open the lock {self.path}: {exc.strerror or exc}") from exc
        finally:
            os.close(dfd)
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif os.geteuid() == 0 and st.st_uid != 0:
            problem = f"is owned by uid {st.st_uid}, not root"
        if problem:
            os.close(fd)
            raise BackupError(f"the lock {self.path} {problem}; refusing to use it")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
        return fd

    @staticmethod
    def holder(fd: int) -> str:
        """What the holder wrote in the open lock file (``pid <n>: <purpose> since <time>``), or a placeholder."""
        try:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        return text or "an unknown process"

    def acquire(self) -> AppLock:
        fd = self._open()
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            holder = self.holder(fd)
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LockBusy(f"the lock {self.path} of {self.app} is held by {holder}; gave up after "
                               f"{self.timeout:g} s of waiting ({self.purpose} not started)", self.path, holder)
            if not told:
                self.log(f"waiting up to {self.timeout:g} s for the lock of {self.app}, held by {holder}")
                told = True
            time.sleep(min(self.poll, max(deadline - time.monotonic(), 0.01)))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {self.purpose} since {iso(utcnow())}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> AppLock:
        return self.acquire()

    def __exit__(self, *exc_info: t.Any) -> None:
        self.release()


# ---- PostgreSQL ---------------------------------------------------------------------------------------------

# One row per ordinary table: "schema.table<TAB>rows", names quoted like pg_dump quotes them in COPY headers.
ROW_COUNT_SQL = (
    "SELECT format('%I.%I', n.nspname, c.relname), "
    "(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM ONLY %I.%I', n.nspname, c.relname), "
    "false, true, '')))[1]::text "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' "
    "ORDER BY 1"
)


def as_user(user: str, argv: list[str]) -> list[str]:
    """Run ``argv`` as ``user`` (the module and the program run as root; PostgreSQL uses peer authentication)."""
    return ["runuser", "-u", user, "--", *argv]


# libpq's settings of a PostgreSQL server on another host (backup_postgresql_host): the connection travels in the
# environment of pg_dump and psql, the password too (PGPASSWORD: /proc/<pid>/environ is readable by root only), never
# in argv. sslmode verify-ca or verify-full (the role's preflight): the server's certificate is checked against
# sslrootcert; sslcert/sslkey are the client certificate a server with clientcert=verify-full asks for.
PG_REMOTE_SETTINGS = {"host": "PGHOST", "user": "PGUSER", "password": "PGPASSWORD", "sslmode": "PGSSLMODE",
                      "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY"}


def pg_remote_env(cfg: dict) -> dict[str, str] | None:
    """The environment that points pg_dump and psql at ``cfg``'s remote server; None for the local one (the socket,
    peer authentication as the postgres OS user)."""
    if not cfg.get("host"):
        return None
    env = {var: str(cfg[key]) for key, var in PG_REMOTE_SETTINGS.items() if cfg.get(key)}
    env.update(PGCONNECT_TIMEOUT=str(int(cfg.get("connect_timeout", 10))), PGAPPNAME="pyfleet-backup")
    return env


def pg_connection(cfg: dict) -> tuple[dict[str, str] | None, str, str]:
    """(environment, OS user, catalog database) for pg_dump and psql. The local server: no environment, the postgres
    OS user over the socket, catalog queries in `postgres`. A remote one: its libpq environment, root (the connection
    is in the environment), and the first database dumped (the role may connect to nothing else, e.g. pg_hba's one
    line for it)."""
    env = pg_remote_env(cfg)
    if env:
        return env, "root", cfg["databases"][0]
    return None, cfg.get("os_user", "postgres"), "postgres"


def psql_argv(database: str, sql: str, port: int = 5432, user: str = "postgres") -> list[str]:
    return as_user(user, ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-p", str(port),
                          "-d", database, "-c", sql])


# What ``backup_postgresql_format`` may be; the argument specs and the preflight repeat it, a unit test checks.
PG_FORMATS = ("custom", "directory", "plain")
# The last comment pg_dump writes into a plain-SQL dump (newer versions add a ``\unrestrict`` line after it): a
# dump without it was cut short.
PLAIN_TRAILER = b"-- PostgreSQL database dump complete"


def pg_dump_file_name(database: str, fmt: str) -> str:
    """Name of a database's dump in ``postgresql/`` of a set, per format."""
    return {"directory": f"{database}.dir", "plain": f"{database}.sql.gz"}.get(fmt, f"{database}.dump")


def pg_dump_argv(database: str, output: str, fmt: str = "custom", jobs: int = 1, port: int = 5432,
                 user: str = "postgres") -> list[str]:
    argv = ["pg_dump", "-p", str(port), "-d", database, "-f", output]
    if fmt == "directory":
        argv += ["-Fd", "-j", str(max(jobs, 1))]
    else:
        argv += ["-Fc"]
    return as_user(user, argv)


def pg_dump_plain_argv(database: str, port: int = 5432, user: str = "postgres") -> list[str]:
    """Plain SQL on stdout (gzipped by the program as root, never by a shell); owners and privileges are kept, as in
    the custom format (the restore runs as a superuser)."""
    return as_user(user, ["pg_dump", "-p", str(port), "-d", database, "--format=plain"])


def psql_load_argv(database: str, port: int = 5432, user: str = "postgres") -> list[str]:
    """Load a plain-SQL dump read from stdin into ``database``: the first error stops it and nothing stays (one
    transaction); no psqlrc, no password prompt. Stdin as ``-f -``: psql documents --single-transaction for -c/-f
    input only."""
    return as_user(user, ["psql", "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                          "-p", str(port), "-d", database, "-f", "-"])


def pg_restore_argv(database: str, source: str, jobs: int = 1, port: int = 5432, user: str = "postgres") -> list[str]:
    """Load a dump into ``database``; the first error stops it (the scratch database is dropped then)."""
    argv = ["pg_restore", "-p", str(port), "-d", database, "--exit-on-error", "--no-password"]
    if jobs > 1:
        argv += ["-j", str(jobs)]  # parallel: no single transaction, but the target is a throw-away scratch db
    else:
        argv += ["--single-transaction"]
    return as_user(user, [*argv, source])


def pg_restore_data_argv(source: str) -> list[str]:
    """Replay a dump's data as SQL text on stdout (reads the whole dump: proves it is readable end to end)."""
    return ["pg_restore", "--data-only", "-f", "-", source]


def parse_row_counts(text: str) -> dict[str, int]:
    counts = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _sep, value = line.partition("\t")
        counts[name.strip()] = int(value.strip() or 0)
    return counts


_COPY_RE = re.compile(rb"^COPY (.+?) (?:\(.*\) )?FROM stdin;$")


def count_copy_rows(lines: t.Iterable[bytes]) -> dict[str, int]:
    """Rows per table in the plain-SQL form of a dump (``pg_restore -f -``): lines between COPY and ``\\.``."""
    counts: dict[str, int] = {}
    table: str | None = None
    rows = 0
    for line in lines:
        if table is None:
            if line.startswith(b"COPY "):
                match = _COPY_RE.match(line.rstrip(b"\r\n"))
                if match:
                    table = match.group(1).decode("utf-8", "replace")
                    rows = 0
            continue
        if line.rstrip(b"\r\n") == b"\\.":
            counts[table] = counts.get(table, 0) + rows
            table = None
        else:
            rows += 1
    if table is not None:
        raise BackupError(f"the dump ends inside the data of table {table} (truncated)")
    return counts


def _chunks(stream: t.Any) -> t.Iterator[bytes]:
    """Blocks of a binary file object (a pipe), or the items of an iterable of bytes (unit tests)."""
    if hasattr(stream, "read"):
        yield from iter(lambda: stream.read(_CHUNK), b"")
    else:
        yield from stream


def gzip_stream(stream: t.Any, target: t.BinaryIO) -> int:
    """Compress what ``stream`` yields into the open file ``target``; returns the bytes read."""
    size = 0
    with gzip.GzipFile(filename="", mode="wb", fileobj=target, compresslevel=6, mtime=0) as packed:
        for chunk in _chunks(stream):
            packed.write(chunk)
            size += len(chunk)
    return size


def read_plain_dump(path: str) -> tuple[dict[str, int], int, list[str]]:
    """(rows per table, bytes of SQL, problems) of a gzipped plain-SQL dump, read to its end: the gzip stream must be
    whole (length and CRC of the trailer), the SQL must end with pg_dump's closing comment and hold no unterminated
    COPY data. What the backup program checks after writing one and the restore before loading one."""
    name = os.path.basename(path)
    tail: list[bytes] = []
    size = 0

    def lines(handle: t.IO[bytes]) -> t.Iterator[bytes]:
        nonlocal size
        for line in handle:
            size += len(line)
            if line.strip():
                tail.append(line.strip())
                del tail[:-8]
            yield line

    try:
        with gzip.open(path, "rb") as handle:
            counts = count_copy_rows(lines(handle))
    except BackupError as exc:
        return {}, size, [f"{name}: {exc}"]
    except (OSError, EOFError, zlib.error) as exc:
        return {}, size, [f"{name} is not a complete gzip stream ({exc})"]
    if PLAIN_TRAILER not in tail:
        return counts, size, [f"{name} does not end with pg_dump's '{PLAIN_TRAILER.decode()}' (cut short, or not a "
                              "plain-SQL dump)"]
    return counts, size, []


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Differences between the row counts a manifest recorded and what a database holds."""
    problems = []
    for name in sorted(set(expected) | set(actual)):
        want = expected.get(name)
        have = actual.get(name, 0)
        if want is None:
            if have:
                problems.append(f"{name}: {have} rows, not in the manifest")
        elif want != have:
            problems.append(f"{name}: {have} rows, the manifest says {want}")
    return problems


def scratch_name(database: str, set_id: str) -> str:
    return f"{database}__restore_{set_id.lower()}"[:63]


def previous_name(database: str, moment: _dt.datetime) -> str:
    return f"{database}__pre_{new_set_id(moment).lower()}"[:63]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---- Redis --------------------------------------------------------------------------------------------------


def redis_cli_argv(*command: str, host: str = "127.0.0.1", port: int = 6379) -> list[str]:
    """redis-cli; the password travels in REDISCLI_AUTH, never on the command line."""
    return ["redis-cli", "--no-auth-warning", "-h", host, "-p", str(port), *command]


def parse_info(text: str) -> dict[str, str]:
    info = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            key, _sep, value = line.partition(":")
            info[key] = value
    return info


def parse_keyspace(info: dict[str, str]) -> dict[str, dict[str, int]]:
    """``db0:keys=5,expires=1,avg_ttl=0`` → {"db0": {"keys": 5, "expires": 1}}."""
    spaces = {}
    for key, value in info.items():
        if re.match(r"^db\d+$", key):
            fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
            spaces[key] = {"keys": int(fields.get("keys", 0)), "expires": int(fields.get("expires", 0))}
    return spaces


def compare_keyspace(expected: dict[str, dict[str, int]], actual: dict[str, dict[str, int]]) -> list[str]:
    """Keys expected back after loading an RDB; keys with a TTL may have expired meanwhile."""
    problems = []
    for db in sorted(set(expected) | set(actual)):
        want = expected.get(db, {"keys": 0, "expires": 0})
        have = actual.get(db, {"keys": 0, "expires": 0})
        low = want["keys"] - want.get("expires", 0)
        if not low <= have["keys"] <= want["keys"]:
            span = f"{want['keys']}" if low == want["keys"] else f"{low}..{want['keys']}"
            problems.append(f"redis {db}: {have['keys']} keys, the manifest says {span}")
    return problems


# ---- MongoDB (unit-tested only: no MongoDB server or tools can be installed on these machines) --------------


def mongo_config_text(uri: str) -> str:
    """Content of the 0600 --config file that carries the URI (and so the password) instead of argv."""
    return "uri: " + json.dumps(uri) + "\n"


def mongodump_argv(config_file: str, archive: str, database: str | None = None) -> list[str]:
    argv = ["mongodump", f"--config={config_file}", f"--archive={archive}", "--gzip"]
    if database:
        argv.append(f"--db={database}")
    return argv


def mongorestore_argv(config_file: str, archive: str, drop: bool = True, dry_run: bool = False,
                      ns_include: str | None = None) -> list[str]:
    argv = ["mongorestore", f"--config={config_file}", f"--archive={archive}", "--gzip", "--stopOnError"]
    if drop:
        argv.append("--drop")
    if ns_include:
        argv.append(f"--nsInclude={ns_include}")
    if dry_run:
        argv.append("--dryRun")
    return argv


def check_mongo_archive(path: str) -> list[str]:
    """A mongodump --archive --gzip file must be a gzip stream readable to its end that starts with the magic."""
    try:
        with gzip.open(path, "rb") as handle:
            head = handle.read(4)
            while handle.read(_CHUNK):
                pass
    except (OSError, EOFError) as exc:
        return [f"{os.path.basename(path)} is not a complete gzip stream ({exc})"]
    if len(head) < 4 or int.from_bytes(head, "little") != MONGO_ARCHIVE_MAGIC:
        return [f"{os.path.basename(path)} is not a mongodump archive (bad magic number)"]
    return []


# ---- file data (data paths of the files component) ---------------------------------------------------------
#
# A *data path* is a directory the app writes its data to (its shared/ and state dir). Each is archived on its own
# (``files/data-<n>-<slug>.tar.gz``, the directory itself as member ``.``) and described by a manifest entry
# ``components.files.data[]`` with the path, its owner, group and mode, the archive's sha256 and a *tree checksum*:
# the sha256 of one line per entry (relative path, type, mode, owner and group by name, content sha256 or link
# target; not times). The restore module computes the same checksum of the live directory (what check mode
# compares) and of its staged copy (proved before it is swapped in). Config and code paths (``paths``) go to
# ``files/files.tar.gz`` and are never restored.


def data_archive_name(index: int, path: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", path.strip("/"))[:60] or "root"
    return f"files/data-{index}-{slug}.tar.gz"


def paths_overlap(a: str, b: str) -> bool:
    """One of the two absolute paths is the other or lies inside it."""
    a, b = os.path.normpath(a), os.path.normpath(b)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def data_path_problems(paths: list[str], root: str | None = None, config_paths: t.Iterable[str] = ()) -> list[str]:
    """Why a list of data paths cannot be backed up and restored (the role's preflight says the same in YAML)."""
    problems = []
    for index, path in enumerate(paths):
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append(f"data path {path!r} is not absolute")
            continue
        if os.path.normpath(path) == "/":
            problems.append("data path '/' would replace the whole system")
            continue
        problems += [f"data path {path} overlaps data path {other}" for other in paths[index + 1:]
                     if isinstance(other, str) and other.startswith("/") and paths_overlap(path, other)]
        if root and paths_overlap(path, root):
            problems.append(f"data path {path} overlaps the backup root {root}")
        problems += [f"data path {path} overlaps the config/code path {other}" for other in config_paths
                     if paths_overlap(path, other)]
        if os.path.islink(path):
            problems.append(f"data path {path} is a symlink (name the directory it points to)")
    return problems


class _Names:
    """uid/gid -> name (the number as text when the name is unknown here), cached."""

    def __init__(self) -> None:
        self.users: dict[int, str] = {}
        self.groups: dict[int, str] = {}

    def user(self, uid: int) -> str:
        if uid not in self.users:
            import pwd

            try:
                self.users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self.users[uid] = str(uid)
        return self.users[uid]

    def group(self, gid: int) -> str:
        if gid not in self.groups:
            import grp

            try:
                self.groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self.groups[gid] = str(gid)
        return self.groups[gid]


def _tree_summary(lines: dict[str, str], size: int) -> dict[str, t.Any]:
    digest = hashlib.sha256("\n".join(lines[k] for k in sorted(lines)).encode("utf-8", "surrogateescape"))
    return {"tree_sha256": digest.hexdigest(), "entries": len(lines), "bytes": size}


def _tree_line(rel: str, kind: str, mode: int, owner: str, group: str, extra: str) -> str:
    return json.dumps([rel, kind, f"{mode & 0o7777:04o}", owner, group, extra], ensure_ascii=True)


def dir_tree(path: str) -> dict[str, t.Any]:
    """Tree checksum of the directory ``path`` (entries, bytes of regular files): nothing is followed; sockets are
    left out (tar leaves them out too)."""
    names = _Names()
    lines: dict[str, str] = {}
    size = 0

    def visit(full: str, rel: str) -> None:
        nonlocal size
        st = os.lstat(full)
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return
        extra = ""
        if stat.S_ISDIR(mode):
            kind = "d"
        elif stat.S_ISREG(mode):
            kind = "f"
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            digest = hashlib.sha256()
            with os.fdopen(fd, "rb") as handle:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(chunk)
            extra = digest.hexdigest()
            size += st.st_size
        elif stat.S_ISLNK(mode):
            kind, extra = "l", os.readlink(full)
        else:
            kind = "o"
        lines[rel] = _tree_line(rel, kind, mode, names.user(st.st_uid), names.group(st.st_gid), extra)
        if kind == "d":
            for entry in sorted(os.listdir(full)):
                visit(os.path.join(full, entry), entry if rel == "." else f"{rel}/{entry}")

    visit(path, ".")
    return _tree_summary(lines, size)


def archive_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The members of a data archive, refused unless every one stays inside the directory it restores: a relative
    name without ``..``, no member below a symlink member, hard links to earlier members only."""
    members = archive.getmembers()
    seen: set[str] = set()
    links: set[str] = set()
    for member in members:
        rel = os.path.normpath(member.name)
        parts = rel.split("/")
        if member.name.startswith("/") or ".." in parts:
            raise BackupError(f"archive member {member.name!r} points outside the directory it restores")
        if any("/".join(parts[:n]) in links for n in range(1, len(parts))):
            raise BackupError(f"archive member {member.name!r} lies below a symlink of the archive")
        if member.islnk() and os.path.normpath(member.linkname) not in seen:
            raise BackupError(f"archive member {member.name!r} is a hard link to {member.linkname!r}, which is not "
                              "an earlier member")
        if member.issym():
            links.add(rel)
        seen.add(rel)
    return members


def archive_tree(path: str) -> dict[str, t.Any]:
    """Tree checksum of what the data archive ``path`` restores (the same lines as :func:`dir_tree`)."""
    lines: dict[str, str] = {}
    contents: dict[str, str] = {}
    size = 0
    with tarfile.open(path, "r:gz") as archive:
        for member in archive_members(archive):
            rel = os.path.normpath(member.name)
            extra = ""
            if member.isdir():
                kind = "d"
            elif member.isreg():
                kind = "f"
                digest = hashlib.sha256()
                handle = archive.extractfile(member)
                if handle is not None:
                    for chunk in iter(lambda: handle.read(_CHUNK), b""):  # noqa: B023 - consumed right here
                        digest.update(chunk)
                extra = contents[rel] = digest.hexdigest()
                size += member.size
            elif member.islnk():
                kind = "f"
                extra = contents[rel] = contents.get(os.path.normpath(member.linkname), "")
            elif member.issym():
                kind, extra = "l", member.linkname
            else:
                kind = "o"
            lines[rel] = _tree_line(rel, kind, member.mode, member.uname or str(member.uid),
                                    member.gname or str(member.gid), extra)
    return _tree_summary(lines, size)


# ---- age encryption -----------------------------------------------------------------------------------------


def age_encrypt_argv(recipients: list[str], source: str, target: str) -> list[str]:
    argv = ["age"]
    for recipient in recipients:
        argv += ["-r", recipient]
    return [*argv, "-o", target, source]


def age_decrypt_argv(identity_file: str, source: str, target: str) -> list[str]:
    return ["age", "-d", "-i", identity_file, "-o", target, source]


# ---- taking a backup (the program on the host) --------------------------------------------------------------


class Runner(t.Protocol):
    def run(self, argv: list[str], env: dict[str, str] | None = None,
            stdout: str | None = None) -> tuple[int, str, str]: ...

    def consume(self, argv: list[str], consumer: t.Callable[[t.IO[bytes]], t.Any],
                env: dict[str, str] | None = None) -> tuple[int, t.Any, str]: ...


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def _ids(user: str | None, group: str | None) -> tuple[int, int] | None:
    """(uid, gid) of the names when both exist here and we run as root (-1 = leave as is), else None."""
    import grp
    import pwd

    try:
        uid = pwd.getpwnam(user).pw_uid if user else -1
        gid = grp.getgrnam(group).gr_gid if group else -1
    except KeyError:
        return None
    return (uid, gid) if os.geteuid() == 0 else None


def _chown(path: str, user: str | None, group: str | None) -> None:
    """chown by name when both names exist here (unit tests run as a normal user without them); never follows a
    symlink (for paths root created itself; what another user wrote goes through :func:`secure_tree`)."""
    ids = _ids(user, group)
    if ids is not None:
        os.chown(path, *ids, follow_symlinks=False)


def secure_tree(dir_fd: int, name: str, ids: tuple[int, int] | None, what: str,
                dir_mode: int = 0o750, file_mode: int = 0o640) -> None:
    """Give ``name`` (in the directory ``dir_fd``) and everything below it to ``ids`` with ``dir_mode``/``file_mode``,
    as root, without ever following a symlink: every entry is opened with O_NOFOLLOW and changed through its file
    descriptor (fchown/fchmod), a directory before anything inside it (so its previous writer loses write access
    before it is read). A symlink, or anything that is neither a regular file nor a directory, is refused."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise BackupError(f"{what} cannot be read: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise BackupError(f"{what} is a symlink where a file was expected; refusing to follow it as root")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise BackupError(f"{what} is neither a regular file nor a directory; refusing it")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags | (os.O_DIRECTORY if stat.S_ISDIR(st.st_mode) else 0), dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise BackupError(f"{what} was replaced by a symlink or another kind of file; refusing it") from exc
        raise BackupError(f"{what} cannot be opened: {exc.strerror or exc}") from exc
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            raise BackupError(f"{what} was replaced while it was being secured; refusing it")
        if ids is not None:
            os.fchown(fd, *ids)
        if stat.S_ISDIR(opened.st_mode):
            os.fchmod(fd, dir_mode)
            for entry in sorted(os.listdir(fd)):
                secure_tree(fd, entry, ids, f"{what}/{entry}", dir_mode, file_mode)
        else:
            os.fchmod(fd, file_mode)
    finally:
        os.close(fd)


def copy_nofollow(source: str, target: str, what: str) -> None:
    """Copy the regular file ``source`` (which another user may control) to a new 0600 ``target``: a symlink or
    anything but a regular file at ``source`` is refused, never followed."""
    try:
        src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BackupError(f"{what} {source} is a symlink; refusing to follow it as root") from exc
        raise BackupError(f"{what} {source} cannot be read: {exc.strerror or exc}") from exc
    with os.fdopen(src, "rb") as reader:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise BackupError(f"{what} {source} is not a regular file; refusing it")
        if os.path.lexists(target):
            os.unlink(target)
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(dst, "wb") as writer:
            shutil.copyfileobj(reader, writer, _CHUNK)


class BackupJob:
    """One run of the backup program: writes ``<root>/<app>/.tmp-<id>``, then renames it to ``<id>``."""

    def __init__(self, config: dict[str, t.Any], runner: Runner, log: t.Callable[[str], None] = lambda message: None,
                 clock: t.Callable[[], _dt.datetime] = utcnow, sleep: t.Callable[[float], None] = time.sleep,
                 monotonic: t.Callable[[], float] = time.monotonic, lock_timeout: float = 0) -> None:
        self.config = config
        self.runner = runner
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.app = config["app"]
        self.root = config.get("root", "/var/backups/pyfleet")
        self.app_dir = os.path.join(self.root, self.app)
        # Seconds to wait for the app's lock (AppLock) held by another run, a retention or a restore.
        self.lock_timeout = lock_timeout
        self.lock: AppLock | None = None
        self.files: dict[str, dict[str, t.Any]] = {}
        self.tools: dict[str, str] = {}

    # -- helpers
    def _run(self, argv: list[str], what: str, env: dict[str, str] | None = None,
             stdout: str | None = None) -> str:
        rc, out, err = self.runner.run(argv, env=env, stdout=stdout)
        if rc != 0:
            raise BackupError(f"{what} failed (rc={rc}): {(err or out).strip()[-2000:]}")
        return out

    def _version(self, name: str, argv: list[str]) -> None:
        rc, out, err = self.runner.run(argv)
        self.tools[name] = _first_line(out or err) if rc == 0 else "unknown"

    # -- components
    def backup_postgresql(self, set_dir: str) -> dict[str, t.Any]:
        cfg = self.config["postgresql"]
        port = int(cfg.get("port", 5432))
        fmt = cfg.get("format", "custom")
        jobs = int(cfg.get("jobs", 1))
        env, user, catalog = pg_connection(cfg)
        if fmt not in PG_FORMATS:
            raise BackupError(f"postgresql: format {fmt!r} is not one of {', '.join(PG_FORMATS)} "
                              "(backup_postgresql_format)")
        folder = os.path.join(set_dir, "postgresql")
        # root:postgres 0750 from the start: postgres never writes here, only in its own staging directory.
        os.mkdir(folder, 0o750)
        os.chmod(folder, 0o750)
        _chown(folder, "root", user)
        self._version("pg_dump", ["pg_dump", "--version"])
        server = self._run(psql_argv(catalog, "SHOW server_version", port, user), "psql SHOW server_version", env=env)
        databases = {}
        for database in cfg["databases"]:
            name = pg_dump_file_name(database, fmt)
            target = os.path.join(folder, name)
            started = self.monotonic()
            owner_sql = f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {quote_literal(database)}"
            if fmt == "plain":
                counts, extra = self._dump_plain(database, target, port, user, env)
                owner = self._run(psql_argv(catalog, owner_sql, port, user), f"psql owner of {database}",
                                  env=env).strip()
                databases[database] = {"file": f"postgresql/{name}", "format": fmt, "owner": owner,
                                       "tables": counts, "rows": sum(counts.values()), **extra,
                                       "seconds": round(self.monotonic() - started, 2)}
                self.log(f"postgresql: {database} dumped as plain SQL ({len(counts)} tables, "
                         f"{sum(counts.values())} rows, {human_size(extra['sql_bytes'])} of SQL)")
                continue
            stage = os.path.join(folder, f".stage-{database}")
            os.mkdir(stage, 0o700)
            _chown(stage, user, user)
            self._run(pg_dump_argv(database, os.path.join(stage, name), fmt, jobs, port, user),
                      f"pg_dump of {database}", env=env)
            owner = self._run(psql_argv(catalog, owner_sql, port, user), f"psql owner of {database}", env=env).strip()
            # Take what pg_dump wrote as postgres without following anything postgres could have planted: the
            # staging directory first (postgres loses write access), then the dump; root owns it, postgres may read
            # it (a restore runs pg_restore as postgres), nobody else. Then it moves to its place in the set.
            folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                secure_tree(folder_fd, f".stage-{database}", _ids("root", user),
                            f"the dump of {database} (postgresql/.stage-{database})")
            finally:
                os.close(folder_fd)
            os.rename(os.path.join(stage, name), target)
            os.rmdir(stage)
            # Reading the dump back proves it is readable end to end and counts the rows it really holds.
            rc, counts, err = self.runner.consume(pg_restore_data_argv(target), count_copy_rows)
            if rc != 0:
                raise BackupError(f"pg_restore could not read back the dump of {database} (rc={rc}): {err.strip()}")
            databases[database] = {
                "file": f"postgresql/{name}",
                "format": fmt,
                "owner": owner,
                "tables": counts,
                "rows": sum(counts.values()),
                "seconds": round(self.monotonic() - started, 2),
            }
            self.log(f"postgresql: {database} dumped ({len(counts)} tables, {sum(counts.values())} rows)")
        result = {"databases": databases, "server_version": server.strip(), "port": port, "os_user": user}
        if env:
            result["host"] = cfg["host"]  # restore.yml refuses such a set: it restores into the local server
        return result

    def _dump_plain(self, database: str, target: str, port: int, user: str,
                    env: dict[str, str] | None = None) -> tuple[dict[str, int], dict[str, t.Any]]:
        """pg_dump --format=plain as ``user``, its stdout gzipped by this process (root) straight into the set:
        postgres never writes a file here, so there is nothing it could have planted. Then the file is read back
        whole (gzip length and CRC, pg_dump's closing comment, the rows of every COPY), as pg_restore reads back a
        custom dump. root:postgres 0640 like the other formats."""
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        with os.fdopen(fd, "wb") as raw:
            rc, _size, err = self.runner.consume(pg_dump_plain_argv(database, port, user),
                                                 lambda out: gzip_stream(out, raw), env=env)
            raw.flush()
            os.fsync(raw.fileno())
        if rc != 0:
            raise BackupError(f"pg_dump of {database} failed (rc={rc}): {err.strip()[-2000:]}")
        _chown(target, "root", user)
        counts, sql_bytes, problems = read_plain_dump(target)
        if problems:
            raise BackupError(f"the plain dump of {database} does not read back: {'; '.join(problems)}")
        return counts, {"compression": "gzip", "sql_bytes": sql_bytes}

    def backup_redis(self, set_dir: str) -> dict[str, t.Any]:
        cfg = self.config["redis"]
        env = {"REDISCLI_AUTH": cfg["password"]} if cfg.get("password") else {}
        host, port = cfg.get("host", "127.0.0.1"), int(cfg.get("port", 6379))
        rdb = cfg.get("rdb_path", "/var/lib/redis/dump.rdb")
        timeout = float(cfg.get("timeout", 600))

        def cli(*command: str) -> str:
            out = self._run(redis_cli_argv(*command, host=host, port=port), f"redis-cli {command[0]}", env=env)
            if out.startswith(("ERR", "NOAUTH", "WRONGPASS")):
                raise BackupError(f"redis-cli {command[0]} failed: {out.strip()}")
            return out

        folder = os.path.join(set_dir, "redis")
        os.mkdir(folder, 0o700)
        target = os.path.join(folder, "dump.rdb")
        exact = False
        keyspace: dict[str, dict[str, int]] = {}
        for _attempt in range(3):
            before = parse_keyspace(parse_info(cli("INFO", "keyspace")))
            last = int(cli("LASTSAVE").strip())
            # LASTSAVE counts whole seconds: a save ending in the second of the last one would not move it (a
            # restarted Redis sets it to its start), so BGSAVE waits for the server's clock to leave that second.
            while int(cli("TIME").split()[0]) <= last:
                self.sleep(0.1)
            reply = cli("BGSAVE").strip()
            if "in progress" in reply.lower() or "scheduled" in reply.lower():
                self.log(f"redis: {reply}")
            deadline = self.monotonic() + timeout
            while True:
                info = parse_info(cli("INFO", "persistence"))
                now_last = int(cli("LASTSAVE").strip())
                if now_last > last and info.get("rdb_bgsave_in_progress") == "0":
                    status = info.get("rdb_last_bgsave_status")
                    if status != "ok":
                        raise BackupError(f"redis BGSAVE failed (rdb_last_bgsave_status={status})")
                    break
                if self.monotonic() > deadline:
                    raise BackupError(f"redis BGSAVE did not finish within {timeout:.0f} s (LASTSAVE did not move)")
                self.sleep(0.2)
            copy_nofollow(rdb, target, "the RDB")  # redis owns its directory: never follow a link there
            after = parse_keyspace(parse_info(cli("INFO", "keyspace")))
            keyspace = after
            if before == after:
                exact = True
                break
            self.log("redis: keys changed while saving, saving again")
        os.chmod(target, 0o600)
        check = shutil.which("redis-check-rdb")
        if check:
            self._run([check, target], "redis-check-rdb of the copied RDB")
        version = parse_info(cli("INFO", "server")).get("redis_version", "unknown")
        self.tools["redis"] = version
        self.log(f"redis: RDB copied ({sum(v['keys'] for v in keyspace.values())} keys)")
        return {"file": "redis/dump.rdb", "keyspace": keyspace, "keys_exact": exact, "redis_version": version,
                "rdb_path": rdb}

    def backup_mongodb(self, set_dir: str) -> dict[str, t.Any]:
        cfg = self.config["mongodb"]
        folder = os.path.join(set_dir, "mongodb")
        os.mkdir(folder, 0o700)
        name = cfg.get("name", "mongodb")
        target = os.path.join(folder, f"{name}.archive.gz")
        conf = os.path.join(folder, ".mongo.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(mongo_config_text(cfg["uri"]))
        try:
            self._version("mongodump", ["mongodump", "--version"])
            self._run(mongodump_argv(conf, target, cfg.get("database")), "mongodump")
        finally:
            os.unlink(conf)
        problems = check_mongo_archive(target)
        if problems:
            raise BackupError("; ".join(problems))
        os.chmod(target, 0o600)
        return {"file": f"mongodb/{name}.archive.gz", "database": cfg.get("database")}

    def backup_files(self, set_dir: str) -> dict[str, t.Any]:
        """``paths`` (config, code) into files/files.tar.gz, for reference only; each of ``data_paths`` into an
        archive of its own with a ``data`` entry in the manifest, which the restore module restores."""
        cfg = self.config["files"]
        folder = os.path.join(set_dir, "files")
        os.mkdir(folder, 0o700)
        detail: dict[str, t.Any] = {}
        if cfg.get("paths"):
            target = os.path.join(folder, "files.tar.gz")
            entries = []
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as archive:
                for path in cfg["paths"]:
                    if not os.path.lexists(path):
                        self.log(f"files: {path} does not exist, skipped")
                        continue
                    real = os.path.realpath(path)
                    # current -> releases/<version>: keep the link and the release it points to.
                    if os.path.islink(path):
                        archive.add(path, arcname=path.lstrip("/"), recursive=False)
                    archive.add(real, arcname=real.lstrip("/"))
                    entries.append({"path": path, "target": real if real != path else None})
            with tarfile.open(target, "r:gz") as archive:
                members = len(archive.getmembers())
            detail.update({"file": "files/files.tar.gz", "paths": entries, "members": members})
        problems = data_path_problems(list(cfg.get("data_paths") or []), self.root, cfg.get("paths") or [])
        if problems:
            raise BackupError("files: " + "; ".join(problems) + " (backup_data_paths)")
        data = []
        for index, path in enumerate(cfg.get("data_paths") or [], start=1):
            entry = self._backup_data_path(set_dir, index, path)
            if entry:
                data.append(entry)
        detail["data"] = data
        return detail

    def _backup_data_path(self, set_dir: str, index: int, path: str) -> dict[str, t.Any] | None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.log(f"files: data path {path} does not exist, skipped")
            return None
        if not stat.S_ISDIR(st.st_mode):
            raise BackupError(f"files: data path {path} is not a directory (backup_data_paths)")
        rel = data_archive_name(index, path)
        target = os.path.join(set_dir, rel)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as archive:
            archive.add(path, arcname=".")  # symlinks are archived as symlinks, never followed
        tree = archive_tree(target)  # what a restore brings back, read from the archive itself
        names = _Names()
        self.log(f"files: data path {path} archived ({tree['entries']} entries, {human_size(tree['bytes'])})")
        return {"path": path, "data": True, "file": rel, "sha256": sha256_file(target),
                "owner": names.user(st.st_uid), "group": names.group(st.st_gid), "uid": st.st_uid, "gid": st.st_gid,
                "mode": f"{stat.S_IMODE(st.st_mode):04o}", **tree}

    # -- the run
    def _encrypt(self, set_dir: str) -> dict[str, t.Any] | None:
        recipients = self.config.get("age_recipients") or []
        if not recipients:
            return None
        self._version("age", ["age", "--version"])
        plain = {}
        for rel in sorted(self.files):
            source = os.path.join(set_dir, rel)
            target = source + ".age"
            self._run(age_encrypt_argv(recipients, source, target), f"age encryption of {rel}")
            st = os.lstat(source)
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                if os.pread(fd, len(AGE_MAGIC), 0) != AGE_MAGIC:
                    raise BackupError(f"age encryption of {rel}: {rel}.age is not an age file "
                                      "(no age-encryption.org/v1 header)")
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                if os.geteuid() == 0:
                    os.fchown(fd, st.st_uid, st.st_gid)
            finally:
                os.close(fd)
            os.unlink(source)
            plain[rel] = self.files[rel]
        self.files = {rel + ".age": file_records(set_dir, rel + ".age")[rel + ".age"] for rel in plain}
        for rel, record in plain.items():
            self.files[rel + ".age"]["plain_sha256"] = record["sha256"]
            self.files[rel + ".age"]["plain_size"] = record["size"]
        return {"tool": "age", "recipients": recipients}

    def run(self, components: list[str] | None = None) -> dict[str, t.Any]:
        wanted = [c for c in COMPONENTS if c in (components or [c for c in COMPONENTS if self.config.get(c)])]
        missing = [c for c in wanted if not self.config.get(c)]
        if missing:
            raise BackupError(f"component(s) {', '.join(missing)} are not configured for {self.app}")
        if not wanted:
            raise BackupError(f"no components configured for {self.app}")
        Retention.from_config(self.config)  # a bad retention setting stops the run before it writes anything
        with AppLock(self.root, self.app, self.lock_timeout, purpose=f"backup {','.join(wanted)}",
                     log=self.log) as lock:
            self.lock = lock
            try:
                return self._run_locked(wanted)
            finally:
                self.lock = None

    def _run_locked(self, wanted: list[str]) -> dict[str, t.Any]:
        started = self.clock()
        set_id = new_set_id(started)
        while os.path.lexists(os.path.join(self.app_dir, set_id)):
            self.sleep(1)
            started = self.clock()
            set_id = new_set_id(started)
        t0 = self.monotonic()
        # The lock is held, so any temporary set left behind belongs to a crashed run.
        for name in os.listdir(self.app_dir):
            if name.startswith(TMP_PREFIX):
                shutil.rmtree(os.path.join(self.app_dir, name), ignore_errors=True)
                self.log(f"removed the incomplete set {name} of an earlier run")
        estimate = self.check_space(wanted)
        tmp = os.path.join(self.app_dir, TMP_PREFIX + set_id)
        os.mkdir(tmp, 0o751)
        os.chmod(tmp, 0o751)
        self.log(f"set {set_id}: {', '.join(wanted)}")
        try:
            details = {}
            for component in wanted:
                details[component] = getattr(self, f"backup_{component}")(tmp)
                self.files.update(self._records(tmp, details[component]))
            encryption = self._encrypt(tmp)
            finished = self.clock()
            manifest = {
                "format": FORMAT,
                "id": set_id,
                "app": self.app,
                "host": self.config.get("host") or socket.getfqdn(),
                "created_at": iso(started),
                "finished_at": iso(finished),
                "duration_seconds": round(self.monotonic() - t0, 2),
                "components": details,
                "files": self.files,
                "tool_versions": self.tools,
                "encryption": encryption,
                "estimated_size": estimate,
            }
            write_manifest(tmp, manifest)
            final = os.path.join(self.app_dir, set_id)
            os.rename(tmp, final)
            _fsync_dir(self.app_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        size = sum(r["size"] for r in self.files.values())
        self.log(f"set {set_id} complete: {human_size(size)} in {manifest['duration_seconds']} s")
        deleted = self.prune()
        return {"id": set_id, "path": final, "size": size, "size_human": human_size(size),
                "duration_seconds": manifest["duration_seconds"], "components": wanted, "deleted": deleted}

    # -- free space
    def estimate_sizes(self, wanted: list[str]) -> dict[str, int]:
        """Bytes each component is expected to need, an upper bound taken before anything is written.

        PostgreSQL: ``pg_database_size`` of each database (a dump holds no indexes, no dead rows and, in the custom
        and directory formats, compressed data, so it is smaller). Redis: the size of the RDB it saves to now.
        MongoDB: the previous good set's archive (there is no cheap server-side bound), 0 without one. Files: the sum
        of the sizes of the files to archive, before compression.
        """
        sizes: dict[str, int] = {}
        if "postgresql" in wanted:
            cfg = self.config["postgresql"]
            env, user, catalog = pg_connection(cfg)
            names = ", ".join(quote_literal(d) for d in cfg["databases"])
            sql = f"SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname IN ({names})"
            out = self._run(psql_argv(catalog, sql, int(cfg.get("port", 5432)), user), "psql pg_database_size",
                            env=env)
            sizes["postgresql"] = sum(parse_row_counts(out).values())
        if "redis" in wanted:
            try:
                sizes["redis"] = os.stat(self.config["redis"].get("rdb_path", "/var/lib/redis/dump.rdb")).st_size
            except OSError:
                sizes["redis"] = 0
        if "mongodb" in wanted:
            sizes["mongodb"] = self._previous_size("mongodb")
        if "files" in wanted:
            cfg = self.config["files"]
            sizes["files"] = sum(_tree_size(os.path.realpath(p)) for p in cfg.get("paths") or []
                                 if os.path.lexists(p))
            sizes["files"] += sum(_tree_size(p) for p in cfg.get("data_paths") or [])
        return sizes

    def _previous_size(self, component: str) -> int:
        for info in list_sets(self.app_dir, app=self.app, checksums=False, include_incomplete=False):
            if info.good and component in info.components:
                prefix = f"{component}/"
                return sum(int(r.get("size", 0)) for rel, r in (info.manifest or {}).get("files", {}).items()
                           if rel.startswith(prefix))
        return 0

    def check_space(self, wanted: list[str]) -> dict[str, t.Any]:
        """Refuse, before anything is written, a set that would not fit in the free space of the backup root."""
        sizes = self.estimate_sizes(wanted)
        total = sum(sizes.values())
        # age writes each encrypted file beside its plain one before removing it: room for the largest twice.
        if self.config.get("age_recipients"):
            total += max(sizes.values(), default=0)
        margin = float(self.config.get("space_margin", 0.1))
        needed = int(total * (1 + margin)) + int(float(self.config.get("space_reserve_mb", 64)) * 1024 * 1024)
        fs = os.statvfs(self.app_dir)
        free = fs.f_bavail * fs.f_frsize
        parts = ", ".join(f"{c} ~{_mib(n)}" for c, n in sizes.items())
        if needed > free:
            raise BackupError(
                f"not enough space for a backup of {self.app}: needs ~{_mib(needed)} in {self.root}, {_mib(free)} "
                f"free ({parts}; +{margin:.0%} margin and the reserve); nothing was written and the earlier sets "
                "are intact"
            )
        self.log(f"space: needs ~{_mib(needed)} ({parts}), {_mib(free)} free in {self.root}")
        return {"bytes": total, "components": sizes, "free": free}

    @staticmethod
    def _records(set_dir: str, detail: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
        records = {}
        rels = [detail["file"]] if "file" in detail else []
        rels += [db["file"] for db in detail.get("databases", {}).values()]
        rels += [entry["file"] for entry in detail.get("data", [])]
        for rel in rels:
            records.update(file_records(set_dir, rel))
        return records

    def prune(self) -> list[str]:
        """Apply retention; under the app's lock (taken here when the caller does not hold it already)."""
        if self.lock is None:
            with AppLock(self.root, self.app, self.lock_timeout, purpose="retention", log=self.log) as lock:
                self.lock = lock
                try:
                    return self.prune()
                finally:
                    self.lock = None
        sets = list_sets(self.app_dir, app=self.app, checksums=False, now=self.clock(), include_incomplete=False)
        policy = Retention.from_config(self.config)
        doomed = retention_plan(sets, policy, now=self.clock())
        for info in doomed:
            shutil.rmtree(info.path)
            self.log(f"retention: removed set {info.id}" + ("" if info.good else " (damaged: "
                                                            + "; ".join(info.problems) + ")"))
        if doomed:
            self.log(f"retention ({policy.describe()}): {len(sets) - len(doomed)} sets kept, {len(doomed)} removed")
        return [info.id for info in doomed]


def _mib(size: int) -> str:
    return f"{size / 1048576:.0f} MiB" if size >= 1048576 else f"{size / 1048576:.1f} MiB"


def _tree_size(path: str) -> int:
    """Bytes of the regular files at or below ``path`` (symlinks are not followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    total = 0
    for base, _dirs, names in os.walk(path):
        for name in names:
            try:
                entry = os.lstat(os.path.join(base, name))
            except OSError:
                continue
            if stat.S_ISREG(entry.st_mode):
                total += entry.st_size
    return total


def write_manifest(set_dir: str, manifest: dict[str, t.Any]) -> None:
    path = os.path.join(set_dir, MANIFEST)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- metrics for node_exporter's textfile collector (docs/monitoring.md) --------------------------------------

METRIC_PREFIX = "pyfleet_backup_"
# Gauges per (app, component); the failure hook sets last_failure, every other writer keeps what the file had.
METRIC_HELP = {
    "last_success_timestamp_seconds": "Unix time the newest good set holding the component finished (0: none).",
    "last_size_bytes": "Bytes of the component in that set.",
    "last_duration_seconds": "Seconds that set took to write.",
    "interval_seconds": "Longest gap between two scheduled runs that back the component up (0: not scheduled).",
    "last_failure_timestamp_seconds": "Unix time a scheduled run of the component last failed (0: never).",
}
_SAMPLE_RE = re.compile(r'^pyfleet_backup_(\w+)\{app="([^"]*)",component="([^"]*)"\} (\S+)$')
# An elapse time in UTC: "Next elapse:"/"Iter. #N:" in a UTC time zone, else the "(in UTC):" line below each.
_CALENDAR_UTC_RE = re.compile(
    r"^\s*(?:Next elapse|Iter\. #\d+|\(in UTC\)): \w+ (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) UTC$")


def metrics_file_name(app: str) -> str:
    return f"pyfleet-backup-{app}.prom"


def calendar_interval(text: str) -> int:
    """Longest gap in seconds between the elapse times `systemd-analyze calendar --iterations=N` printed (0 if
    it printed fewer than two)."""
    moments = [_dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
               for m in map(_CALENDAR_UTC_RE.match, text.splitlines()) if m]
    gaps = [(b - a).total_seconds() for a, b in zip(moments, moments[1:], strict=False)]
    return int(max(gaps, default=0))


def read_metric_samples(text: str, metric: str) -> dict[tuple[str, str], float]:
    """{(app, component): value} of one metric in a textfile written by :func:`metrics_text`."""
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE_RE.match(line.strip())
        if match and match.group(1) == metric:
            try:
                samples[(match.group(2), match.group(3))] = float(match.group(4))
            except ValueError:
                continue
    return samples


def _epoch(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return moment.timestamp()


def component_metrics(sets: list[SetInfo], components: t.Iterable[str]) -> dict[str, dict[str, float]]:
    """Per component: when the newest good set holding it finished, its size in that set and the set's duration."""
    result = {}
    for component in components:
        newest = next((s for s in sets if s.good and component in s.components and s.manifest), None)
        if newest is None:
            result[component] = {"last_success_timestamp_seconds": 0.0, "last_size_bytes": 0.0,
                                 "last_duration_seconds": 0.0}
            continue
        manifest = newest.manifest or {}
        files = manifest.get("files") or {}
        size = sum(int(r.get("size") or 0) for rel, r in files.items() if rel.startswith(component + "/"))
        result[component] = {
            "last_success_timestamp_seconds": _epoch(manifest.get("finished_at") or manifest.get("created_at")),
            "last_size_bytes": float(size),
            "last_duration_seconds": float(manifest.get("duration_seconds") or 0),
        }
    return result


def metrics_text(app: str, per_component: dict[str, dict[str, float]]) -> str:
    """The textfile: every metric of METRIC_HELP for every component (missing values are 0)."""
    lines = []
    for metric, help_text in METRIC_HELP.items():
        lines.append(f"# HELP {METRIC_PREFIX}{metric} {help_text}")
        lines.append(f"# TYPE {METRIC_PREFIX}{metric} gauge")
        for component in sorted(per_component):
            value = float(per_component[component].get(metric, 0.0))
            shown = f"{value:.0f}" if value == int(value) else f"{value:.3f}"
            lines.append(f'{METRIC_PREFIX}{metric}{{app="{app}",component="{component}"}} {shown}')
    return "\n".join(lines) + "\n"


def publish_metrics(directory: str, app: str, sets: list[SetInfo], components: t.Iterable[str],
                    intervals: dict[str, float] | None = None,
                    failures: dict[str, float] | None = None) -> str | None:
    """Write ``<directory>/pyfleet-backup-<app>.prom`` atomically (a temporary name in the same directory, then a
    rename: node_exporter never reads half a file), mode 0644, under a lock next to it. Keeps the failure
    timestamps the file already had, unless ``failures`` sets new ones. Returns the path, or None when the
    directory does not exist (no node_exporter on this host)."""
    if not os.path.isdir(directory):
        return None
    path = os.path.join(directory, metrics_file_name(app))
    lock_fd = os.open(os.path.join(directory, f".{metrics_file_name(app)}.lock"),
                      os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            with open(path, encoding="utf-8") as handle:
                old = read_metric_samples(handle.read(), "last_failure_timestamp_seconds")
        except (FileNotFoundError, UnicodeDecodeError):
            old = {}
        per_component = component_metrics(sets, components)
        for component, values in per_component.items():
            values["interval_seconds"] = float((intervals or {}).get(component, 0))
            values["last_failure_timestamp_seconds"] = float(
                (failures or {}).get(component, old.get((app, component), 0.0)))
        text = metrics_text(app, per_component)
        fd, tmp = tempfile.mkstemp(prefix=f".{metrics_file_name(app)}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o644)
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        os.close(lock_fd)
    return path
