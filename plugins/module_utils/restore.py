# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Logic of ``pyfleet.server.restore``: predict (check) and apply a restore of one backup set.

Shape (as in community.crypto): the module's parameters become one typed ``RestoreOptions``; ``Restorer`` verifies
the set and asks one small class per component (``PostgreSQLRestore``, ``RedisRestore``, ``MongoDBRestore``,
``FilesRestore``) for ``state()`` (what is live now), ``check()`` (would a restore change anything, and what;
read-only proofs that the load would start) and ``apply()`` (act). Check mode runs exactly the same code and
simply does not call ``apply()``.

Commands run through an injected ``run(argv, env=None) -> (rc, stdout, stderr)`` (the module passes
``AnsibleModule.run_command``), so the decisions are unit-tested without a database.

The order of a restore is what makes it safe:

1. the app's lock (``AppLock``, shared with backup runs and retention) is taken; the set is resolved once and
   verified (manifest, every size and sha256) before anything is touched;
2. every component checks its inputs (options, keys, paths) and the free space the restore needs, in check mode too;
   a real run then decrypts and proves every file it will load; only then does the first component change;
3. components go in ``RESTORE_ORDER`` (PostgreSQL, MongoDB, files, Redis: the cheapest to undo last); a failure
   says what each item holds now;
4. PostgreSQL: the dump is loaded into a scratch database ``<db>__restore_<id>`` with ``--exit-on-error`` (a
   plain-SQL dump: decompressed here onto ``psql -v ON_ERROR_STOP=1 --single-transaction``),
   its row counts are compared with the manifest, and only then, in ONE transaction, are the live database's
   sessions ended, the live database renamed to ``<db>__pre_<timestamp>``, the scratch database renamed to the live
   name and marked with ``COMMENT ON DATABASE`` (killed before the commit, nothing changed; after it, all did);
5. file data: each data path of the set is extracted into ``.<name>.pyfleet-restore`` beside it (same filesystem),
   its tree checksum compared with the manifest's, then swapped in by a rename; the previous directory is kept as
   ``.<name>.pre-<timestamp>``. The config/code archive of the files component is never restored;
6. Redis: the RDB is checked (``redis-check-rdb``) and staged, synced, next to the live one while Redis runs; then
   the service is stopped, the live RDB hard-linked to ``<rdb>.pre-<timestamp>``, the staged RDB renamed over it,
   the service started, and the key counts compared; any error in between or a mismatch puts the previous RDB back
   and starts Redis on it again;
7. a marker ``<state_dir>/<app>.json`` records, per item, the set restored and a fingerprint of the live data right
   after it; restoring the same set again is a no-op only while that fingerprint is unchanged (unless ``force``);
8. only the copy of the replaced data this run made may be dropped (``keep_previous: 0``), never an earlier one.
"""

from __future__ import annotations

import datetime as _dt
import errno
import grp
import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import typing as t
import zlib
from dataclasses import dataclass, field, fields

from ansible_collections.pyfleet.server.plugins.module_utils import backup as backup_lib
from ansible_collections.pyfleet.server.plugins.module_utils.backup import (
    RESTORABLE,
    AppLock,
    BackupError,
    SetInfo,
    age_decrypt_argv,
    check_mongo_archive,
    check_set,
    compare_counts,
    compare_keyspace,
    human_size,
    list_sets,
    mongo_config_text,
    mongorestore_argv,
    new_set_id,
    parse_info,
    parse_keyspace,
    pg_restore_argv,
    previous_name,
    psql_argv,
    psql_load_argv,
    quote_ident,
    quote_literal,
    read_plain_dump,
    redis_cli_argv,
    scratch_name,
    select_set,
    sha256_file,
    utcnow,
)

__all__ = ["RESTORABLE", "RestoreError", "RestoreOptions", "Restorer"]

Run = t.Callable[..., tuple[int, str, str]]
# feed(argv, gzip_path) -> (rc, stdout, stderr): runs argv with the decompressed file on its stdin.
Feed = t.Callable[[list[str], str], tuple[int, str, str]]


class RestoreError(Exception):
    """Stops the restore; the message says what was refused or failed and what state the live data is in.
    ``restored``/``details``: what this run had restored before it stopped (the module returns them)."""

    restored: list[str] = []
    details: dict[str, t.Any] = {}


# One row per ordinary table: "schema.table<TAB>rows<TAB>checksum", names quoted as pg_dump quotes them. The checksum
# is an order-independent sum of the 60-bit prefixes of md5(row as text): any insert, update or delete changes it
# (in practice), without sorting the table. Read once from the scratch database (it becomes the live one) and from
# the live database by every check.
CONTENT_SQL = (
    "SELECT format('%I.%I', n.nspname, c.relname), x.c, x.s "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "CROSS JOIN LATERAL (SELECT query_to_xml(format('SELECT count(*) AS c, coalesce(sum((''x'' || "
    "left(md5(t::text), 15))::bit(60)::bigint), 0) AS s FROM ONLY %I.%I t', n.nspname, c.relname), "
    "false, true, '') AS doc) q "
    "CROSS JOIN LATERAL (SELECT (xpath('/row/c/text()', q.doc))[1]::text AS c, "
    "(xpath('/row/s/text()', q.doc))[1]::text AS s) x "
    "WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' "
    "ORDER BY 1"
)


def marker_comment(set_id: str, manifest_sha256: str) -> str:
    return f"pyfleet restore {set_id} {manifest_sha256}"


def restored_set(comment: str) -> str | None:
    parts = comment.split()
    return parts[2] if len(parts) >= 3 and comment.startswith("pyfleet restore ") else None


# ---- options ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreOptions:
    """The module's options, typed; one field per option of ``plugins/modules/restore.py`` (a test keeps them equal)."""

    app: str
    root: str = "/var/backups/pyfleet"
    set: str = "latest"
    path: str | None = None
    components: tuple[str, ...] = ()
    databases: tuple[str, ...] = ()
    force: bool = False
    once: bool = False
    keep_previous: int = 1
    state_dir: str = "/var/lib/pyfleet/restore"
    timeout: int = 120
    lock_timeout: int = 600
    postgresql_port: int = 5432
    postgresql_os_user: str = "postgres"
    postgresql_jobs: int = 2
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_password: str | None = field(default=None, repr=False)
    redis_service: str = "redis-server"
    redis_rdb_path: str | None = None
    mongodb_uri: str | None = field(default=None, repr=False)
    age_identity: str | None = field(default=None, repr=False)
    # source=pgbackrest: point-in-time restore of the whole cluster (module_utils/pitr.py).
    source: str = "backup_set"
    stanza: str | None = None
    target_time: str = "latest"
    verify_query: str | None = None
    verify_database: str | None = None
    recovery_timeout: int = 1800
    postgresql_version: str = "15"
    postgresql_data_dir: str = "/var/lib/postgresql/15/main"
    postgresql_service: str = "postgresql@15-main"

    @classmethod
    def from_params(cls, params: t.Mapping[str, t.Any]) -> RestoreOptions:
        """Built once from ``module.params``; options left out (``None``) take the defaults above."""
        values = {f.name: params[f.name] for f in fields(cls) if params.get(f.name) is not None}
        for name in ("components", "databases"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)

    @property
    def app_dir(self) -> str:
        return os.path.join(self.root, self.app)


_CHUNK = 1024 * 1024
# A database restored from a compressed dump (pg_dump -Fc / -Fd compress 3-5x on typical data) takes about this many
# times the dump's size, tables and indexes together; the free-space check uses the larger of this and the live size.
SCRATCH_FACTOR = 4


def _oserror(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _keep_copy(path: str, copy: str) -> None:
    """``copy`` becomes a second name of ``path`` (a hard link: ``path`` never goes missing); a rename where
    links are refused."""
    try:
        os.link(path, copy, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
            raise
        os.replace(path, copy)


def feed_gzip(argv: list[str], source: str) -> tuple[int, str, str]:
    """Run ``argv`` (never a shell) with the gzip file ``source`` decompressed onto its stdin, block by block (a
    plain-SQL dump is never held in memory or written out uncompressed). A command that stops reading (psql with
    ON_ERROR_STOP at the first error) ends the feeding; a gzip stream that breaks off kills the command before it
    could commit (rc -1, the reason on stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err, cwd="/")
        broken = ""
        try:
            if proc.stdin is None:  # pragma: no cover - stdin=PIPE always gives one
                raise RestoreError("no pipe to the load command")
            with gzip.open(source, "rb") as dump:
                for chunk in iter(lambda: dump.read(_CHUNK), b""):
                    proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # the command stopped reading: its exit code and stderr say why
        except (OSError, EOFError, zlib.error) as exc:
            broken = f"{os.path.basename(source)} could not be read to its end ({exc}); the load was stopped"
            proc.kill()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except BrokenPipeError:
                pass
        rc = proc.wait()
        out.seek(0)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
        if broken:
            return -1, "", f"{stderr}\n{broken}".strip()
        return rc, out.read().decode("utf-8", "replace"), stderr


# ---- what the restore touches, injected ---------------------------------------------------------------------


@dataclass
class Host:
    """The machine: commands, time and warnings. Unit tests pass fakes."""

    run_cmd: Run
    warn: t.Callable[[str], None] = lambda msg: None
    feed: Feed = feed_gzip
    clock: t.Callable[[], _dt.datetime] = utcnow
    sleep: t.Callable[[float], None] = time.sleep
    monotonic: t.Callable[[], float] = time.monotonic

    def run(self, argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
        rc, out, err = self.run_cmd(argv, env=env)
        if rc != 0:
            raise RestoreError(f"{what} failed (rc={rc}): {(err or out).strip()[-1500:]}")
        return out


class SetFiles:
    """Files of the verified set: the plain path, or a copy decrypted into a private work folder."""

    def __init__(self, info: SetInfo, opts: RestoreOptions, host: Host) -> None:
        self.info = info
        self.opts = opts
        self.host = host
        self.manifest: dict[str, t.Any] = info.manifest or {}
        self.work = os.path.join(opts.app_dir, f".restore-{info.id}")
        self._cleanup: list[str] = []
        self._sources: dict[str, str] = {}  # rel -> path, decrypted once per run

    @property
    def encrypted(self) -> bool:
        return bool(self.manifest.get("encryption"))

    def plain(self, rel: str) -> str | None:
        """Path of ``rel`` as it lies in the set, or None when it must be decrypted first (what check mode reads)."""
        return None if self.encrypted else os.path.join(self.info.path, rel)

    def plain_size(self, rel: str) -> int:
        """Bytes of ``rel`` (a file or a dump directory) once decrypted, from the manifest."""
        total = 0
        for key, record in self.manifest.get("files", {}).items():
            bare = key[:-len(".age")] if key.endswith(".age") else key
            if bare == rel or bare.startswith(rel + "/"):
                total += int(record.get("plain_size") or record.get("size") or 0)
        return total

    def workspace(self, mode: int) -> str:
        os.makedirs(self.work, mode=mode, exist_ok=True)
        if self.work not in self._cleanup:
            self._cleanup.append(self.work)
        return self.work

    def source(self, rel: str) -> str:
        """Path of a set file or directory-format dump, decrypted first (into the private work folder) when the set
        is encrypted: a file ``<rel>.age``, or a dump directory whose every file is ``<rel>/<name>.age``."""
        if rel not in self._sources:
            self._sources[rel] = self._source(rel)
        return self._sources[rel]

    def _source(self, rel: str) -> str:
        files = self.manifest["files"]
        below = [k for k in files if k.startswith(rel + "/")]
        if rel in files or (below and not any(k.endswith(".age") for k in below)):
            return os.path.join(self.info.path, rel)
        if rel + ".age" in files:
            pairs = [(rel + ".age", rel)]
        elif below and all(k.endswith(".age") for k in below):
            pairs = [(k, k[:-len(".age")]) for k in sorted(below)]
        else:
            raise RestoreError(f"{rel} is not listed in the manifest of {self.info.id}")
        identity = self.opts.age_identity
        if not identity:
            raise RestoreError(f"backup set {self.info.id} is encrypted with age: age_identity (the private key) "
                               "is required; nothing was changed")
        work = self.workspace(0o700)
        base = os.path.dirname(rel)
        key = os.path.join(work, ".identity")
        _unlink(key)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(identity.strip() + "\n")
        try:
            for encrypted, plain in pairs:
                target = os.path.join(work, os.path.relpath(plain, base))
                os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
                _unlink(target)
                self.host.run(age_decrypt_argv(key, os.path.join(self.info.path, encrypted), target),
                              f"age -d of {encrypted}")
                if not os.path.lexists(target):  # age opens -o lazily: an empty plaintext writes no file
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
                if sha256_file(target) != files[encrypted].get("plain_sha256"):
                    raise RestoreError(f"{plain}: the decrypted file does not match the manifest; nothing was changed")
        finally:
            os.unlink(key)
        return os.path.join(work, os.path.relpath(rel, base))

    def cleanup(self) -> None:
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)


class Marker:
    """``<state_dir>/<app>.json``: per item (``postgresql/<db>``, ``redis``, ``mongodb``), the set last restored and
    the fingerprint of the live data right after that restore (what tells a later run whether it was written since).
    """

    def __init__(self, opts: RestoreOptions, host: Host) -> None:
        self.state_dir = opts.state_dir
        self.path = os.path.join(opts.state_dir, f"{opts.app}.json")
        self.host = host
        self.once = opts.once

    def read(self) -> dict[str, t.Any]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def entry(self, key: str) -> dict[str, t.Any]:
        entry = self.read().get(key)
        return entry if isinstance(entry, dict) else {}

    def restored_set(self, key: str) -> str | None:
        return self.entry(key).get("set")

    def matches(self, key: str, info: SetInfo) -> bool:
        entry = self.entry(key)
        return entry.get("set") == info.id and entry.get("manifest_sha256") == info.manifest_sha256

    def unchanged_since(self, key: str, info: SetInfo, fingerprint: dict[str, t.Any] | None) -> bool:
        """The set is the one restored last AND the live data still has the fingerprint it had right after that
        restore. No fingerprint (live data unreadable, an older marker) means: cannot tell, so not unchanged."""
        if self.once:  # ``once``: restored from this set before = done; what was written since stays
            return self.matches(key, info)
        recorded = self.entry(key).get("fingerprint")
        return self.matches(key, info) and bool(fingerprint) and recorded == fingerprint

    def write(self, key: str, info: SetInfo, fingerprint: dict[str, t.Any] | None = None) -> None:
        self.write_entry(key, {"set": info.id, "manifest_sha256": info.manifest_sha256, "path": info.path,
                               "restored_at": self.host.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "fingerprint": fingerprint})

    def write_entry(self, key: str, entry: dict[str, t.Any]) -> None:
        """Sets ``key`` to ``entry``, keeping the other items; written to a private temporary file, then renamed."""
        data = self.read()
        data[key] = entry
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        tmp = self.path + ".tmp"
        _unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


@dataclass
class Context:
    """Everything a component needs: options, the verified set, the host, the marker, the action log."""

    opts: RestoreOptions
    info: SetInfo
    host: Host
    files: SetFiles
    marker: Marker
    actions: list[str]

    @property
    def manifest(self) -> dict[str, t.Any]:
        return self.info.manifest or {}


@dataclass
class Item:
    """One thing a restore replaces (``postgresql/<db>``, ``redis``, ``mongodb``), as ``check()`` predicts it."""

    key: str
    before: dict[str, t.Any]  # live now, as the diff shows it
    after: dict[str, t.Any]  # what the set brings
    needed: bool  # a restore would change it
    detail: dict[str, t.Any]  # the manifest's record of it


# ---- components -----------------------------------------------------------------------------------------------


class ComponentRestore:
    """One restorable component. ``check()`` predicts, ``apply(todo)`` acts on the items ``check()`` found needed."""

    name: t.ClassVar[str]

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.opts = ctx.opts
        self.info = ctx.info
        self.host = ctx.host
        # Paths already proven loadable by check(), so apply() does not read them twice.
        self._proven: set[str] = set()
        # What the operator should know about this component beyond its items (returned in ``notes``).
        self.notes: list[str] = []

    @property
    def detail(self) -> dict[str, t.Any]:
        return self.ctx.manifest["components"][self.name]

    def prove(self, path: str, rel: str) -> None:
        """Read-only proof that ``path`` would load; runs in check mode too."""

    def _prove_once(self, path: str, rel: str) -> None:
        if path not in self._proven:
            self.prove(path, rel)
            self._proven.add(path)

    def _prove_needed(self, items: list[Item]) -> None:
        # What is encrypted is proven after decryption, in apply(): check mode writes no decrypted copy.
        for item in items:
            if item.needed and (path := self.ctx.files.plain(item.detail["file"])):
                self._prove_once(path, item.detail["file"])

    def inputs(self, todo: list[Item]) -> list[str]:
        """Read-only: what this component's restore would lack (options, keys, paths). Runs in check mode too;
        ``Restorer.plan()`` refuses when any component lacks anything, before the first one changes."""
        if todo and self.ctx.files.encrypted and not self.opts.age_identity:
            return [f"{self.name}: backup set {self.info.id} is encrypted with age: age_identity (the private key) "
                    "is required"]
        return []

    def space(self, todo: list[Item]) -> list[tuple[str, int, str]]:
        """Read-only: (a path on the filesystem that must hold it, bytes, what) for what a restore of ``todo``
        writes; decrypted copies of an encrypted set land in the set's app directory."""
        if not self.ctx.files.encrypted:
            return []
        return [(self.opts.app_dir, sum(self.ctx.files.plain_size(item.detail["file"]) for item in todo),
                 f"decrypted copies of {self.name}")] if todo else []

    def prepare(self, todo: list[Item]) -> None:
        """Real run only, before ANY component changes: decrypt what is encrypted and prove it would load."""
        for item in todo:
            rel = item.detail["file"]
            self._prove_once(self.ctx.files.source(rel), rel)

    def state(self) -> dict[str, t.Any]:
        raise NotImplementedError

    def check(self) -> list[Item]:
        raise NotImplementedError

    def _report(self, action: str, kept: str | None, dropped: list[str], earlier: list[str], *, previous: str,
                dropped_as: str, copies: str, delete: str) -> None:
        """Record what was restored and where the replaced data went; warn about copies earlier runs kept."""
        self.ctx.actions.append(action + (f", {previous} kept as {kept}" if kept else "")
                                + (f", {previous} {dropped_as} (keep_previous: 0)" if dropped else ""))
        if earlier:
            self.host.warn(f"{copies} kept by earlier restores are left alone: {', '.join(earlier)}; {delete} once "
                           "they are no longer needed")

    def apply(self, todo: list[Item]) -> dict[str, t.Any]:
        raise NotImplementedError


class PostgreSQLRestore(ComponentRestore):
    """Each database: load into a scratch database, compare row counts, then swap it in for the live one."""

    name = "postgresql"

    # -- SQL helpers
    def sql(self, database: str, statement: str, what: str) -> str:
        return self.host.run(psql_argv(database, statement, self.opts.postgresql_port, self.opts.postgresql_os_user),
                             what)

    def exists(self, database: str) -> bool:
        out = self.sql("postgres", f"SELECT 1 FROM pg_database WHERE datname = {quote_literal(database)}",
                       f"psql lookup of {database}")
        return out.strip() == "1"

    def comment(self, database: str) -> str:
        return self.sql("postgres", "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                        f"WHERE datname = {quote_literal(database)}", f"psql comment of {database}").strip()

    def content(self, database: str) -> tuple[dict[str, int], dict[str, t.Any]]:
        """(row counts per table, fingerprint): one read of every row; the fingerprint changes with any write."""
        out = self.sql(database, CONTENT_SQL, f"row counts and checksums of {database}")
        counts = {}
        for line in out.splitlines():
            if line.strip():
                name, _sep, rest = line.partition("\t")
                counts[name.strip()] = int(rest.partition("\t")[0].strip() or 0)
        digest = hashlib.sha256("\n".join(sorted(line.strip() for line in out.splitlines() if line.strip()))
                                .encode()).hexdigest()
        return counts, {"content_sha256": digest}

    # -- state / check / apply
    def databases(self) -> dict[str, dict[str, t.Any]]:
        if self.detail.get("host"):
            raise RestoreError(f"backup set {self.info.id} was dumped from the PostgreSQL server {self.detail['host']} "
                               "(backup_postgresql_host), and this restore loads into the local server: load it into "
                               f"{self.detail['host']} with pg_restore (docs/backup.md, remote PostgreSQL); nothing "
                               "was changed")
        dbs = self.detail["databases"]
        wanted = list(self.opts.databases) or list(dbs)
        unknown = [d for d in wanted if d not in dbs]
        if unknown:
            raise RestoreError(f"backup set {self.info.id} has no dump of database(s) {', '.join(unknown)}; "
                               f"it has {', '.join(dbs)}; nothing was changed")
        return {d: dbs[d] for d in wanted}

    def state(self) -> dict[str, dict[str, t.Any]]:
        """Per database of the set: exists, row counts per table, the restore comment."""
        live: dict[str, dict[str, t.Any]] = {}
        for database in self.databases():
            if not self.exists(database):
                live[database] = {"exists": False}
            elif self.sql("postgres", f"SELECT datallowconn FROM pg_database WHERE datname = {quote_literal(database)}",
                          f"psql datallowconn of {database}").strip() == "f":
                # Left closed by an interrupted swap of an older version: unreadable, so restore (the swap reopens).
                live[database] = {"exists": True, "tables": None, "comment": self.comment(database),
                                  "fingerprint": None, "refusing_connections": True}
            else:
                tables, fingerprint = self.content(database)
                live[database] = {"exists": True, "tables": tables, "comment": self.comment(database),
                                  "fingerprint": fingerprint}
        return live

    def check(self) -> list[Item]:
        live = self.state()
        wanted = marker_comment(self.info.id, self.info.manifest_sha256 or "")
        items = []
        for database, detail in self.databases().items():
            state = live[database]
            key = f"postgresql/{database}"
            # The marker alone does not count: a database recreated since has lost the restore comment, and one
            # written since has another content checksum than right after the restore.
            same = self.ctx.marker.unchanged_since(key, self.info, state.get("fingerprint"))
            needed = self.opts.force or not (same and state.get("comment") == wanted)
            items.append(Item(
                key=key,
                before={"exists": state["exists"], "tables": state.get("tables"),
                        "restored_set": restored_set(state.get("comment") or ""),
                        "written_since_restore": None if not state["exists"] or not restored_set(
                            state.get("comment") or "") else not same},
                after={"exists": True, "tables": detail.get("tables"), "restored_set": self.info.id},
                needed=needed,
                detail=detail,
            ))
        self._prove_needed(items)
        return items

    def space(self, todo: list[Item]) -> list[tuple[str, int, str]]:
        """The scratch database of every database restored is written next to the live data (all of them exist at
        once: the replaced ones are kept). Estimate per database: SCRATCH_FACTOR x the dump's size (a custom or
        directory dump is compressed) or, when larger, what the live database takes now (pg_database_size)."""
        needs = super().space(todo)
        if not todo:
            return needs
        data_dir = self.sql("postgres", "SHOW data_directory", "psql SHOW data_directory").strip()
        for item in todo:
            database = item.key.split("/", 1)[1]
            estimate = SCRATCH_FACTOR * self.ctx.files.plain_size(item.detail["file"])
            if self.exists(database):
                live = self.sql("postgres", f"SELECT pg_database_size({quote_literal(database)})",
                                f"psql size of {database}").strip()
                estimate = max(estimate, int(live or 0))
            needs.append((data_dir, estimate, f"the scratch database of {database}"))
        return needs

    def prove(self, path: str, rel: str) -> None:
        """pg_restore -l reads the dump's table of contents: a dump cut short there is refused before anything.
        A plain-SQL dump (``.sql.gz``) is read to its end instead: whole gzip stream, pg_dump's closing comment."""
        if rel.endswith(".sql.gz"):
            _counts, _size, problems = read_plain_dump(path)
            if problems:
                raise RestoreError(f"{rel} of {self.info.id} is not a complete plain-SQL dump, nothing was changed: "
                                   + "; ".join(problems))
            return
        # Reading the table of contents needs no server: as root, so check mode changes no file modes.
        rc, out, err = self.host.run_cmd(["pg_restore", "-l", path], env=None)
        if rc != 0:
            raise RestoreError(f"{rel} of {self.info.id} is not a readable dump, nothing was changed: "
                               f"pg_restore -l failed (rc={rc}): {(err or out).strip()[-500:]}")

    def apply(self, todo: list[Item]) -> dict[str, t.Any]:
        results = {}
        for item in todo:  # each database is recorded as soon as it is live: a re-run leaves it alone
            results[item.key] = self.restore(item.key.split("/", 1)[1], item.detail)
            self.ctx.marker.write(item.key, self.info, results[item.key].pop("fingerprint"))
        return results

    def restore(self, database: str, detail: dict[str, t.Any]) -> dict[str, t.Any]:
        source = self.ctx.files.source(detail["file"])
        self._prove_once(source, detail["file"])
        # pg_restore runs as PostgreSQL's OS user: the dump may have been decrypted into a folder root owns, or
        # shipped to this host by another route (playbooks/disaster-recovery.yml) with root-only modes.
        self._grant_postgres(source)
        scratch = scratch_name(database, self.info.id)
        self.sql("postgres", f"DROP DATABASE IF EXISTS {quote_ident(scratch)} WITH (FORCE)",
                 f"dropping the leftover scratch database {scratch}")
        owner = detail.get("owner") or "postgres"
        self.sql("postgres", f"CREATE DATABASE {quote_ident(scratch)} OWNER {quote_ident(owner)} TEMPLATE template0",
                 f"creating the scratch database {scratch}")
        if detail.get("format") == "plain":
            # Decompressed by this process (root) onto psql's stdin; psql runs as PostgreSQL's OS user.
            tool = "psql"
            argv = psql_load_argv(scratch, self.opts.postgresql_port, self.opts.postgresql_os_user)
            rc, out, err = self.host.feed(argv, source)
        else:
            tool = "pg_restore"
            jobs = self.opts.postgresql_jobs if detail.get("format") == "directory" else 1
            argv = pg_restore_argv(scratch, source, jobs, self.opts.postgresql_port, self.opts.postgresql_os_user)
            rc, out, err = self.host.run_cmd(argv, env=None)
        if rc != 0:
            self._drop(scratch)
            raise RestoreError(
                f"{tool} into the scratch database {scratch} failed (rc={rc}); the live database {database} "
                f"was not touched: {(err or out).strip()[-1500:]}"
            )
        tables, fingerprint = self.content(scratch)  # what becomes live, read once
        differences = compare_counts(detail.get("tables") or {}, tables)
        if differences:
            self._drop(scratch)
            raise RestoreError(
                f"the restored copy of {database} does not match the manifest of {self.info.id} "
                f"({'; '.join(differences[:10])}); the live database {database} was not touched"
            )
        previous = self._swap(database, scratch)
        dropped, earlier = self._prune_previous(database, previous)
        self._report(f"postgresql {database}: restored from {self.info.id}", None if dropped else previous, dropped,
                     earlier, previous="previous", dropped_as="dropped", copies=f"copies of {database}",
                     delete="drop them (DROP DATABASE)")
        return {"database": database, "previous": None if dropped else previous, "dropped": dropped,
                "kept_earlier": earlier, "tables": detail.get("tables") or {}, "fingerprint": fingerprint}

    def prepare(self, todo: list[Item]) -> None:
        super().prepare(todo)
        for item in todo:  # before any component changes: a planted symlink stops the run here
            self._grant_postgres(self.ctx.files.source(item.detail["file"]))

    def _grant_postgres(self, path: str) -> None:
        """root:postgres 0640 (0750 for folders) on the dump, its folder and, for a directory dump, its files,
        without ever following a symlink: each is opened with O_NOFOLLOW and changed through its descriptor
        (fchown/fchmod); a symlink or anything but a file or folder where the dump is expected is refused."""
        try:
            gid = grp.getgrnam(self.opts.postgresql_os_user).gr_gid
        except KeyError:
            return
        targets = [os.path.dirname(path), path]
        if os.path.isdir(path) and not os.path.islink(path):  # a directory-format dump
            targets += [os.path.join(path, name) for name in sorted(os.listdir(path))]
        for target in targets:
            try:
                fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise RestoreError(f"{target} is a symbolic link where a dump file is expected; refused, "
                                       "nothing was changed") from exc
                raise RestoreError(f"cannot open {target}: {_oserror(exc)}; nothing was changed") from exc
            try:
                mode = os.fstat(fd).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise RestoreError(f"{target} is not a regular file or folder; refused, nothing was changed")
                os.fchown(fd, 0, gid)
                os.fchmod(fd, 0o750 if stat.S_ISDIR(mode) else 0o640)
            finally:
                os.close(fd)

    def _drop(self, database: str) -> None:
        statement = f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)"
        argv = psql_argv("postgres", statement, self.opts.postgresql_port, self.opts.postgresql_os_user)
        rc, _unused, err = self.host.run_cmd(argv, env=None)
        if rc != 0:
            self.host.warn(f"could not drop the scratch database {database}: {err.strip()}")

    def swap_sql(self, database: str, scratch: str, previous: str | None) -> str:
        """The whole swap as ONE transaction (``ALTER DATABASE ... RENAME`` may run in a transaction block; only
        ``SET TABLESPACE`` may not): end the live database's sessions, rename live → ``previous`` and scratch → live,
        allow connections to both, record the set in ``COMMENT ON DATABASE``. Killed anywhere before ``COMMIT``, it
        rolls back and the live database is exactly as it was; ``RENAME`` holds the database's exclusive lock, so no
        new session gets in before the commit."""
        live = quote_ident(database)
        comment = marker_comment(self.info.id, self.info.manifest_sha256 or "")
        steps = []
        if previous:
            steps += [
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE datname = {quote_literal(database)} AND pid <> pg_backend_pid()",
                f"ALTER DATABASE {live} RENAME TO {quote_ident(previous)}",
            ]
        steps += [f"ALTER DATABASE {quote_ident(scratch)} RENAME TO {live}",
                  f"ALTER DATABASE {live} WITH ALLOW_CONNECTIONS true"]
        if previous:
            steps.append(f"ALTER DATABASE {quote_ident(previous)} WITH ALLOW_CONNECTIONS true")
        steps.append(f"COMMENT ON DATABASE {live} IS {quote_literal(comment)}")
        return "BEGIN; " + "; ".join(steps) + "; COMMIT;"

    def _swap(self, database: str, scratch: str) -> str | None:
        """Swap the proven scratch database in, atomically. Returns the previous database's new name."""
        previous = None
        if self.exists(database):
            previous = base = previous_name(database, self.host.clock())
            for n in range(2, 100):
                if not self.exists(previous):
                    break
                previous = f"{base[:60]}_{n}"  # a second restore within the same second
        deadline = self.host.monotonic() + self.opts.timeout
        while True:
            argv = psql_argv("postgres", self.swap_sql(database, scratch, previous), self.opts.postgresql_port,
                             self.opts.postgresql_os_user)
            rc, out, err = self.host.run_cmd(argv, env=None)
            if rc == 0:
                return previous
            text = (err or out).strip()
            # A session that reconnected between the terminate and the rename: RENAME waits 5 s, then refuses.
            if "is being accessed by other users" in text and self.host.monotonic() < deadline:
                self.host.sleep(1)
                continue
            self._drop(scratch)
            raise RestoreError(f"swapping {scratch} in for {database} failed (rc={rc}) and was rolled back; the live "
                               f"database {database} is unchanged and open: {text[-1500:]}")

    def _prune_previous(self, database: str, created: str | None) -> tuple[list[str], list[str]]:
        """(dropped, kept by earlier runs). Only the copy THIS run made may be dropped (``keep_previous: 0``): a copy
        an earlier run kept may be the only pre-restore data left (e.g. after a partial multi-database restore)."""
        prefix = f"{database}__pre_"
        out = self.sql("postgres", "SELECT datname FROM pg_database WHERE left(datname, "
                       f"{len(prefix)}) = {quote_literal(prefix)} ORDER BY datname DESC", "listing previous databases")
        earlier = [n for n in out.split() if n and n != created]
        if created is None or self.opts.keep_previous > 0:
            return [], earlier
        self.sql("postgres", f"DROP DATABASE IF EXISTS {quote_ident(created)} WITH (FORCE)", f"dropping {created}")
        return [created], earlier


class RedisRestore(ComponentRestore):
    """The RDB: checked, swapped in with the service stopped, proven by key counts, else the previous one back."""

    name = "redis"

    def cli(self, *command: str) -> str:
        env = {"REDISCLI_AUTH": self.opts.redis_password} if self.opts.redis_password else None
        out = self.host.run(redis_cli_argv(*command, host=self.opts.redis_host, port=self.opts.redis_port),
                            f"redis-cli {command[0]}", env=env)
        if out.startswith(("ERR", "NOAUTH", "WRONGPASS", "Could not connect")):
            raise RestoreError(f"redis-cli {command[0]} failed: {out.strip()}")
        return out

    @property
    def rdb_path(self) -> str:
        return self.opts.redis_rdb_path or self.detail.get("rdb_path") or "/var/lib/redis/dump.rdb"

    def fingerprint(self) -> dict[str, t.Any] | None:
        """What changes with any write: the server's run id (a restart reloads whatever RDB is on disk), the time of
        its last save and the writes since (``rdb_changes_since_last_save``). A save (BGSAVE of a backup, a save
        point) also moves it: then nobody can tell whether there were writes before it, so the restore runs again."""
        info = parse_info(self.cli("INFO", "server") + self.cli("INFO", "persistence"))
        fields_ = ("run_id", "rdb_last_save_time", "rdb_changes_since_last_save")
        if not all(info.get(name) for name in fields_):
            return None
        return {name: info[name] for name in fields_}

    def state(self) -> dict[str, t.Any]:
        try:
            return {"running": True, "keyspace": parse_keyspace(parse_info(self.cli("INFO", "keyspace"))),
                    "fingerprint": self.fingerprint()}
        except RestoreError as exc:
            return {"running": False, "error": str(exc)}

    def check(self) -> list[Item]:
        live = self.state()
        restored = self.ctx.marker.restored_set(self.name)
        same = self.ctx.marker.unchanged_since(self.name, self.info, live.get("fingerprint"))
        items = [Item(
            key="redis",
            before={"keyspace": live.get("keyspace"), "error": live.get("error"), "restored_set": restored,
                    "written_since_restore": None if restored is None else not same},
            after={"keyspace": self.detail.get("keyspace"), "restored_set": self.info.id},
            needed=self.opts.force or not same,
            detail=self.detail,
        )]
        self._prove_needed(items)
        return items

    def inputs(self, todo: list[Item]) -> list[str]:
        problems = super().inputs(todo)
        if todo:
            rdb = self.rdb_path
            if os.path.islink(rdb):
                problems.append(f"redis: {rdb} is a symbolic link, not the RDB file Redis writes")
            elif not os.path.isdir(os.path.dirname(rdb)):
                problems.append(f"redis: the RDB directory {os.path.dirname(rdb)} does not exist (redis_rdb_path)")
        return problems

    def space(self, todo: list[Item]) -> list[tuple[str, int, str]]:
        """The staged RDB lies next to the live one until the swap (the previous one is kept as a second name)."""
        needs = super().space(todo)
        if todo:
            needs.append((os.path.dirname(self.rdb_path), self.ctx.files.plain_size(todo[0].detail["file"]),
                          "the staged RDB"))
        return needs

    def prove(self, path: str, rel: str) -> None:
        """The RDB is readable and Redis would load it (not its AOF)."""
        checker = shutil.which("redis-check-rdb") or ("/usr/bin/redis-check-rdb"
                                                      if os.path.exists("/usr/bin/redis-check-rdb") else None)
        if checker:
            rc, out, err = self.host.run_cmd([checker, path], env=None)
            if rc != 0:
                raise RestoreError(f"redis-check-rdb rejects {os.path.relpath(path, self.info.path)} "
                                   f"(rc={rc}): {(out + err).strip()[-500:]}; nothing was changed")
        try:
            appendonly = self.cli("CONFIG", "GET", "appendonly").split()
        except RestoreError:
            appendonly = []
        if appendonly[-1:] == ["yes"]:
            raise RestoreError("Redis runs with appendonly yes, so it would load its AOF instead of the restored RDB; "
                               "turn appendonly off for the restore (redis_appendonly: false); nothing was changed")

    def apply(self, todo: list[Item]) -> dict[str, t.Any]:
        if not todo:
            return {}
        result = self.restore(todo[0].detail)
        try:
            fingerprint = self.fingerprint()
        except RestoreError:
            fingerprint = None  # recorded as unknown: the next run restores again rather than guess
        self.ctx.marker.write(self.name, self.info, fingerprint)
        return {"redis": result}

    def restore(self, detail: dict[str, t.Any]) -> dict[str, t.Any]:
        """Stage the set's RDB next to the live one (synced) while Redis runs; only then stop, swap, start, prove.

        From ``systemctl stop`` to ``systemctl start`` nothing is done but two links in one directory: the live RDB
        is hard-linked to ``<rdb>.pre-<ts>`` (it never goes missing) and the staged file renamed over it. Any error
        there or in the proof puts the previous RDB back and starts Redis on it.
        """
        source = self.ctx.files.source(detail["file"])
        self._prove_once(source, detail["file"])
        rdb = self.rdb_path
        service = self.opts.redis_service
        previous = base = f"{rdb}.pre-{new_set_id(self.host.clock()).lower()}"
        for n in range(2, 100):
            if not os.path.lexists(previous):
                break
            previous = f"{base}-{n}"  # a second restore within the same second
        if os.path.islink(rdb):
            raise RestoreError(f"{rdb} is a symbolic link, not the RDB file Redis writes; refused, Redis was not "
                               "stopped and the live data was not touched")
        staged = self._stage(source, rdb, self.ctx.manifest["files"])
        try:
            self.host.run(["systemctl", "stop", service], f"systemctl stop {service}")
        except RestoreError as exc:
            _unlink(staged)
            self.host.run_cmd(["systemctl", "start", service], env=None)
            raise RestoreError(f"{exc}; the live RDB was not touched and Redis was started again") from exc
        had_previous = os.path.lexists(rdb)
        try:
            if had_previous:
                _keep_copy(rdb, previous)  # Redis wrote its data on shutdown; this is the live data, kept
            os.replace(staged, rdb)
            _fsync_dir(os.path.dirname(rdb))
        except (OSError, RestoreError) as exc:
            self._put_back(service, rdb, previous, had_previous, staged)
            raise RestoreError(f"could not put the RDB of {self.info.id} in place ({_oserror(exc)}); the previous "
                               "RDB is live and Redis was started on it") from exc
        try:
            problem = self._start_and_prove(service, detail)
        except Exception as exc:  # noqa: BLE001 - whatever broke the proof, the previous data goes back
            problem = _oserror(exc)
        if problem:
            self._put_back(service, rdb, previous, had_previous, None)
            raise RestoreError(f"Redis did not come back with the data of {self.info.id} ({problem}); the previous "
                               "RDB was put back and Redis started on it")
        dropped, earlier = self._prune_rdbs(rdb, previous if had_previous else None)
        kept = previous if had_previous and not dropped else None
        self._report(f"redis: restored from {self.info.id}", kept, dropped, earlier, previous="previous RDB",
                     dropped_as="dropped", copies="RDB copies", delete="delete them")
        return {"rdb": rdb, "previous": kept, "dropped": dropped, "kept_earlier": earlier,
                "keyspace": detail.get("keyspace") or {}}

    def _stage(self, source: str, rdb: str, files: dict[str, t.Any]) -> str:
        """Copy the set's RDB to ``<rdb>.pyfleet-restore`` (never through a symlink), owned like the directory,
        0660, fsynced, and prove the copy against the manifest. Redis is still running; on error nothing changed."""
        directory = os.path.dirname(rdb)
        staged = f"{rdb}.pyfleet-restore"
        rel = self.detail["file"]
        record = files.get(rel) or files.get(rel + ".age") or {}
        want = record.get("plain_sha256") or record.get("sha256")
        try:
            _unlink(staged)  # a leftover of an interrupted run; unlink never follows a symlink
            owner = os.stat(directory)
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
                if os.geteuid() == 0:
                    os.fchown(out.fileno(), owner.st_uid, owner.st_gid)
                os.fchmod(out.fileno(), 0o660)
            _fsync_dir(directory)
            if want and sha256_file(staged) != want:
                raise RestoreError("the staged copy does not match the manifest")
        except (OSError, RestoreError) as exc:
            _unlink(staged)
            raise RestoreError(f"could not stage the RDB of {self.info.id} as {staged} ({_oserror(exc)}); Redis was "
                               "not stopped and the live data was not touched") from exc
        return staged

    def _put_back(self, service: str, rdb: str, previous: str, had_previous: bool, staged: str | None) -> None:
        """Best effort, every step tried: Redis stopped, the previous RDB live again, Redis started."""
        problems = []
        self.host.run_cmd(["systemctl", "stop", service], env=None)
        try:
            if had_previous and os.path.lexists(previous):
                os.replace(previous, rdb)
            elif not had_previous and os.path.lexists(rdb) and staged is None:
                os.unlink(rdb)  # there was no RDB before: Redis starts empty, as it was
            if staged:
                _unlink(staged)
        except OSError as exc:
            problems.append(_oserror(exc))
        rc, _unused, err = self.host.run_cmd(["systemctl", "start", service], env=None)
        if rc != 0:
            problems.append(f"systemctl start {service} failed: {err.strip()}")
        if problems:
            self.host.warn(f"putting the previous Redis data back: {'; '.join(problems)}")

    def _start_and_prove(self, service: str, detail: dict[str, t.Any]) -> str | None:
        rc, _unused, err = self.host.run_cmd(["systemctl", "start", service], env=None)
        if rc != 0:
            return f"systemctl start {service} failed: {err.strip()}"
        deadline = self.host.monotonic() + self.opts.timeout
        while True:
            try:
                info = parse_info(self.cli("INFO", "persistence") + self.cli("INFO", "keyspace"))
                if info.get("loading") == "0":
                    break
            except RestoreError as exc:
                last = str(exc)
            else:
                last = "still loading"
            if self.host.monotonic() > deadline:
                return f"not ready after {self.opts.timeout} s: {last}"
            self.host.sleep(0.5)
        differences = compare_keyspace(detail.get("keyspace") or {}, parse_keyspace(info)) \
            if detail.get("keys_exact", True) else []
        return "; ".join(differences) or None

    def _prune_rdbs(self, rdb: str, created: str | None) -> tuple[list[str], list[str]]:
        """(dropped, kept by earlier runs): as for PostgreSQL, only the copy this run made may go (keep_previous 0)."""
        directory, base = os.path.split(rdb)
        earlier = sorted((n for n in os.listdir(directory)
                          if n.startswith(base + ".pre-") and os.path.join(directory, n) != created), reverse=True)
        if created is None or self.opts.keep_previous > 0:
            return [], earlier
        _unlink(created)
        return [os.path.basename(created)], earlier


class MongoDBRestore(ComponentRestore):
    """mongorestore --drop after a --dryRun. Unit-tested only: no MongoDB could be installed where this was built."""

    name = "mongodb"

    def state(self) -> dict[str, t.Any]:
        # Nothing is read from a live MongoDB (no client tools where this is built): only the marker says which set
        # was restored last, and nothing can tell whether it was written since.
        return {"restored_set": self.ctx.marker.restored_set(self.name), "written_since_restore": None}

    def check(self) -> list[Item]:
        # Idempotent only while the live data is still what the set restored; for MongoDB that cannot be known,
        # so it is restored every time (when unsure, restore).
        # No fingerprint to give: unchanged only with ``once`` (the marker then decides), like the other components.
        done = self.ctx.marker.unchanged_since(self.name, self.info, None)
        return [Item(key="mongodb", before=self.state(), after={"restored_set": self.info.id},
                     needed=self.opts.force or not done, detail=self.detail)]

    def apply(self, todo: list[Item]) -> dict[str, t.Any]:
        if not todo:
            return {}
        result = self.restore(todo[0].detail)
        self.ctx.marker.write(self.name, self.info)
        return {"mongodb": result}

    def inputs(self, todo: list[Item]) -> list[str]:
        problems = super().inputs(todo)
        if todo and not self.opts.mongodb_uri:
            problems.append("mongodb: mongodb_uri is required to restore MongoDB")
        return problems

    def prove(self, path: str, rel: str) -> None:
        problems = check_mongo_archive(path)
        if problems:
            raise RestoreError("; ".join(problems) + "; nothing was changed")

    def restore(self, detail: dict[str, t.Any]) -> dict[str, t.Any]:
        uri = self.opts.mongodb_uri
        if not uri:
            raise RestoreError("mongodb_uri is required to restore MongoDB; nothing was changed")
        source = self.ctx.files.source(detail["file"])
        self._prove_once(source, detail["file"])
        conf = os.path.join(self.ctx.files.workspace(0o700), ".mongo.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(mongo_config_text(uri))
        ns = f"{detail['database']}.*" if detail.get("database") else None
        try:
            self.host.run(mongorestore_argv(conf, source, drop=True, dry_run=True, ns_include=ns),
                          "mongorestore --dryRun")
            self.host.run(mongorestore_argv(conf, source, drop=True, ns_include=ns), "mongorestore")
        finally:
            os.unlink(conf)
        self.ctx.actions.append(f"mongodb: restored from {self.info.id}")
        return {"archive": detail["file"]}


def _remove_any(path: str) -> None:
    """Remove ``path`` whatever it is, never following a symlink (leftovers of an interrupted run)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (``renameat2(RENAME_EXCHANGE)``); False where the kernel or filesystem cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), b)


class FilesRestore(ComponentRestore):
    """Each data path of the set (``components.files.data``): extracted into a sibling staging directory on the same
    filesystem, proven by its tree checksum, swapped in whole by rename; the previous directory is kept. The
    config/code archive (``files/files.tar.gz``) is never restored."""

    name = "files"

    def entries(self) -> list[dict[str, t.Any]]:
        data = self.detail.get("data") or []
        return [e for e in data if isinstance(e, dict) and e.get("path") and e.get("file")]

    @staticmethod
    def names(path: str) -> tuple[str, str, str]:
        """(parent, staging directory, prefix of kept copies): dot-named siblings, on the same filesystem."""
        parent, base = os.path.split(os.path.normpath(path))
        return parent, os.path.join(parent, f".{base}.pyfleet-restore"), os.path.join(parent, f".{base}.pre-")

    def live(self, path: str) -> dict[str, t.Any]:
        if not os.path.lexists(path):
            return {"exists": False}
        if os.path.islink(path) or not os.path.isdir(path):
            return {"exists": True, "error": "not a directory (or a symlink)"}
        try:
            tree = backup_lib.dir_tree(path)
        except OSError as exc:
            return {"exists": True, "error": _oserror(exc)}
        return {"exists": True, **tree}

    def state(self) -> dict[str, t.Any]:
        return {e["path"]: self.live(e["path"]) for e in self.entries()}

    def check(self) -> list[Item]:
        entries = self.entries()
        if not entries:
            where = f" ({self.detail['file']}, configuration and code, kept for reference)" \
                if self.detail.get("file") else ""
            self.notes.append(f"files: backup set {self.info.id} records no data paths (written before data paths "
                              f"existed, or without backup_data_paths); nothing of its files is restored{where}")
            return []
        items = []
        for entry in entries:
            key = f"files:{entry['path']}"
            live = self.live(entry["path"])
            fingerprint = {"tree_sha256": live["tree_sha256"]} if live.get("tree_sha256") else None
            restored = self.ctx.marker.restored_set(key)
            since = self.ctx.marker.unchanged_since(key, self.info, fingerprint)
            # Unchanged when the marker says so (same fingerprint, or ``once``) or the live tree IS the set's.
            same = since or (fingerprint is not None and live["tree_sha256"] == entry.get("tree_sha256"))
            items.append(Item(
                key=key,
                before={"exists": live["exists"], "entries": live.get("entries"), "bytes": live.get("bytes"),
                        "tree_sha256": live.get("tree_sha256"), "error": live.get("error"),
                        "restored_set": restored, "written_since_restore": None if restored is None else not since},
                after={"exists": True, "entries": entry.get("entries"), "bytes": entry.get("bytes"),
                       "tree_sha256": entry.get("tree_sha256"), "owner": entry.get("owner"),
                       "group": entry.get("group"), "mode": entry.get("mode"), "restored_set": self.info.id},
                needed=self.opts.force or not same,
                detail=entry,
            ))
        self._prove_needed(items)
        return items

    def inputs(self, todo: list[Item]) -> list[str]:
        problems = super().inputs(todo)
        for item in todo:
            path = item.detail["path"]
            parent = os.path.dirname(os.path.normpath(path))
            if not path.startswith("/") or os.path.normpath(path) == "/":
                problems.append(f"files: data path {path!r} of the set is not an absolute directory below /")
            elif not item.detail.get("tree_sha256"):
                problems.append(f"files: the set records no tree checksum for {path}; its restore cannot be proven")
            elif os.path.islink(path):
                problems.append(f"files: {path} is a symlink here; a restore replaces directories only")
            elif os.path.lexists(path) and not os.path.isdir(path):
                problems.append(f"files: {path} is not a directory here")
            elif not os.path.isdir(parent) or os.path.islink(parent):
                problems.append(f"files: the parent directory {parent} of {path} does not exist (or is a symlink)")
            elif os.path.isdir(path) and os.lstat(path).st_dev != os.lstat(parent).st_dev:
                problems.append(f"files: {path} is a mount point; it cannot be swapped by a rename in {parent} "
                                "(restore into it by hand, or back up a directory inside it)")
        return problems

    def space(self, todo: list[Item]) -> list[tuple[str, int, str]]:
        """The staged copy lies next to the live directory until the swap (the previous one is kept, renamed)."""
        needs = super().space(todo)
        for item in todo:
            parent = os.path.dirname(os.path.normpath(item.detail["path"]))
            if os.path.isdir(parent):
                needs.append((parent, int(item.detail.get("bytes") or 0), f"the staged copy of {item.detail['path']}"))
        return needs

    def prove(self, path: str, rel: str) -> None:
        """The archive is readable to its end, every member stays inside its directory, and its tree checksum is
        the one the manifest recorded."""
        entry = next((e for e in self.entries() if e["file"] == rel), {})
        try:
            tree = backup_lib.archive_tree(path)
        except (OSError, EOFError, tarfile.TarError, BackupError) as exc:
            raise RestoreError(f"{rel} of {self.info.id} is not a readable data archive ({_oserror(exc)}); nothing "
                               "was changed") from exc
        if tree["tree_sha256"] != entry.get("tree_sha256"):
            raise RestoreError(f"{rel} of {self.info.id} does not hold what the manifest recorded for "
                               f"{entry.get('path')} (tree checksum differs); nothing was changed")

    def apply(self, todo: list[Item]) -> dict[str, t.Any]:
        """Every data path is staged and proven first (a failure leaves all of them live as they were), then each
        is swapped in and recorded at once."""
        staged: dict[str, str] = {}
        results: dict[str, t.Any] = {}
        try:
            for item in todo:
                staged[item.key] = self._stage(item.detail)
            if staged:
                os.sync()  # the staged trees are on disk before any of them goes live
            for item in todo:
                results[item.key] = self._swap(item.detail, staged.pop(item.key))
                self.ctx.marker.write(item.key, self.info, {"tree_sha256": item.detail["tree_sha256"]})
        finally:
            for stage in staged.values():
                _remove_any(stage)
        return results

    def _stage(self, entry: dict[str, t.Any]) -> str:
        path = entry["path"]
        _parent, stage, _prefix = self.names(path)
        try:
            _remove_any(stage)  # a leftover of an interrupted run
            os.mkdir(stage, 0o700)
            source = self.ctx.files.source(entry["file"])
            with tarfile.open(source, "r:gz") as archive:
                members = backup_lib.archive_members(archive)
                # Owners by name as the set recorded them (the number where the name is unknown here), modes as they
                # were: only as root. The members were checked above; the set's checksums were verified.
                trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
                archive.extractall(stage, members=members, numeric_owner=False, **trusted)
            tree = backup_lib.dir_tree(stage)
            if tree["tree_sha256"] != entry["tree_sha256"]:
                raise RestoreError("the staged copy differs from the set (content, owners or modes; are the owners "
                                   f"{entry.get('owner')}/{entry.get('group')} known on this host?)")
        except (OSError, EOFError, tarfile.TarError, BackupError, RestoreError) as exc:
            try:
                _remove_any(stage)
            except OSError:
                pass
            raise RestoreError(f"could not stage {path} from {self.info.id} as {stage} ({_oserror(exc)}); the live "
                               f"{path} was not touched") from exc
        return stage

    def _swap(self, entry: dict[str, t.Any], stage: str) -> dict[str, t.Any]:
        path = os.path.normpath(entry["path"])
        parent, _stage, prefix = self.names(path)
        previous = base = prefix + new_set_id(self.host.clock()).lower()
        for n in range(2, 100):
            if not os.path.lexists(previous):
                break
            previous = f"{base}-{n}"  # a second restore within the same second
        had_previous = os.path.lexists(path)
        try:
            if not had_previous:
                os.rename(stage, path)
            elif _exchange(stage, path):  # one step: the path never goes missing
                try:
                    os.rename(stage, previous)
                except OSError:
                    previous = stage  # the previous tree stays under the staging name
            else:
                os.rename(path, previous)
                try:
                    os.rename(stage, path)
                except OSError:
                    os.rename(previous, path)
                    raise
            _fsync_dir(parent)
        except OSError as exc:
            if os.path.lexists(path) and os.path.lexists(stage) and stage != previous:
                _remove_any(stage)
            raise RestoreError(f"could not swap the staged copy of {path} in ({_oserror(exc)}); the previous "
                               f"{path} is live") from exc
        earlier = sorted((os.path.join(parent, n) for n in os.listdir(parent)
                          if os.path.join(parent, n).startswith(prefix) and os.path.join(parent, n) != previous),
                         reverse=True)
        dropped = []
        if had_previous and self.opts.keep_previous == 0:
            _remove_any(previous)
            dropped = [previous]
        kept = previous if had_previous and not dropped else None
        self._report(f"files {path}: restored from {self.info.id} ({entry.get('entries')} entries)", kept, dropped,
                     earlier, previous="previous", dropped_as="removed", copies=f"copies of {path}",
                     delete="delete them")
        return {"path": path, "previous": kept, "dropped": dropped, "kept_earlier": earlier,
                "entries": entry.get("entries"), "bytes": entry.get("bytes")}


# The order components are restored in, one class per entry of RESTORABLE (backup.py; a unit test keeps them equal).
# PostgreSQL first: it is proven in a scratch database and swapped in atomically, and it is what the app depends on
# most. MongoDB next: mongorestore --drop keeps no copy, so it goes before the components that are cheapest to undo.
# Files then: each data path is staged and proven beside the live one, then swapped in by a rename. Redis last:
# usually a cache or a queue, its previous RDB is one rename away, and its restore is the shortest.
RESTORE_ORDER = ("postgresql", "mongodb", "files", "redis")
COMPONENT_CLASSES: dict[str, type[ComponentRestore]] = {
    cls.name: cls for cls in sorted((PostgreSQLRestore, RedisRestore, MongoDBRestore, FilesRestore),
                                    key=lambda cls: RESTORE_ORDER.index(cls.name))
}


# ---- the whole restore ----------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What ``Restorer.plan()`` found: the verified set, the components, every item with its prediction."""

    info: SetInfo
    components: list[ComponentRestore]
    items: dict[str, list[Item]]  # component name -> its items, in restore order

    @property
    def todo(self) -> list[Item]:
        return [item for items in self.items.values() for item in items if item.needed]

    def needed(self, component: ComponentRestore) -> list[Item]:
        return [item for item in self.items[component.name] if item.needed]

    @property
    def all_items(self) -> list[Item]:
        return [item for items in self.items.values() for item in items]


class Restorer:
    """Verifies the set, lets every component predict (``check``), then, outside check mode, ``apply``."""

    def __init__(self, opts: RestoreOptions, run: Run, check_mode: bool = False,
                 warn: t.Callable[[str], None] = lambda msg: None, clock: t.Callable[[], _dt.datetime] = utcnow,
                 sleep: t.Callable[[float], None] = time.sleep, monotonic: t.Callable[[], float] = time.monotonic,
                 feed: Feed = feed_gzip):
        self.opts = opts
        self.check_mode = check_mode
        self.host = Host(run, warn=warn, feed=feed, clock=clock, sleep=sleep, monotonic=monotonic)
        self.marker = Marker(opts, self.host)
        self.info: SetInfo | None = None
        self.files: SetFiles | None = None
        self.actions: list[str] = []

    # ---- choosing and verifying the set ----------------------------------------------------------------------
    def resolve(self) -> SetInfo:
        opts = self.opts
        if opts.path:
            path = opts.path.rstrip("/")
            if not os.path.isdir(path):
                raise RestoreError(f"backup set {path} does not exist; nothing was changed")
        else:
            sets = list_sets(opts.app_dir, app=opts.app, checksums=False, include_incomplete=False)
            try:
                path = select_set(sets, opts.set, opts.components).path
            except BackupError as exc:
                raise RestoreError(f"{exc} in {opts.app_dir}; nothing was changed") from exc
        info = check_set(path, app=opts.app, checksums=True)
        if info.problems or not info.complete:
            raise RestoreError(
                f"backup set {info.path} refused, nothing was changed: " + "; ".join(info.problems or ["incomplete"])
            )
        self.info = info
        return info

    def component_names(self, info: SetInfo) -> list[str]:
        held = [c for c in RESTORE_ORDER if c in info.components]
        wanted = list(self.opts.components) or held
        missing = [c for c in wanted if c not in info.components]
        if missing:
            raise RestoreError(
                f"backup set {info.id} holds no {', '.join(missing)} backup (it holds "
                f"{', '.join(info.components)}); nothing was changed"
            )
        if not wanted:
            raise RestoreError(f"backup set {info.id} holds nothing this module restores; nothing was changed")
        return [c for c in RESTORE_ORDER if c in wanted]

    # ---- predict, then act -----------------------------------------------------------------------------------
    def plan(self) -> Plan:
        """Read-only: verify the set and let each component predict. The same code runs in check mode and before
        every real restore."""
        info = self.resolve()
        names = self.component_names(info)
        self.files = SetFiles(info, self.opts, self.host)
        ctx = Context(self.opts, info, self.host, self.files, self.marker, self.actions)
        components = [COMPONENT_CLASSES[name](ctx) for name in names]
        plan = Plan(info, components, {component.name: component.check() for component in components})
        # Every component's inputs are checked before the first one changes (and check mode predicts the refusal).
        problems = [p for component in components for p in component.inputs(plan.needed(component))]
        if problems:
            raise RestoreError(f"restore of {info.id} refused before anything changed: " + "; ".join(problems)
                               + "; nothing was changed")
        self.check_space([need for component in components for need in component.space(plan.needed(component))])
        return plan

    def check_space(self, needs: list[tuple[str, int, str]]) -> None:
        """Refuse, with the numbers, when a filesystem cannot hold what the restore writes on it (all of it at once:
        scratch databases, staged RDB, decrypted copies). MongoDB's data directory is not known here: not checked."""
        by_fs: dict[int, list[tuple[str, int, str]]] = {}
        for path, size, what in needs:
            try:
                by_fs.setdefault(os.stat(path).st_dev, []).append((path, size, what))
            except OSError as exc:
                self.host.warn(f"free space for {what} not checked: {path}: {exc.strerror or exc}")
        problems = []
        for group in by_fs.values():
            path = group[0][0]
            st = os.statvfs(path)
            free = st.f_bavail * st.f_frsize
            total = sum(size for _p, size, _w in group)
            if total > free:
                problems.append(f"needs ~{human_size(total)} on {path} ({', '.join(w for _p, _s, w in group)}), "
                                f"{human_size(free)} free")
        if problems:
            raise RestoreError("not enough free space: " + "; ".join(problems) + "; the live data was not touched")

    def execute(self) -> dict[str, t.Any]:
        """The whole verify → restore holds the app's lock (``<root>/<app>/.lock``, shared with backup runs and
        retention): no set can be deleted or written while it is chosen, verified and restored."""
        if not os.path.isdir(self.opts.app_dir):
            return self._execute()  # no set directory, nothing a backup or retention could change under us
        what = f"restore {self.opts.path or self.opts.set} ({'check mode' if self.check_mode else 'real run'})"
        try:
            lock = AppLock(self.opts.root, self.opts.app, self.opts.lock_timeout, purpose=what, create=False)
            lock.acquire()
        except BackupError as exc:  # LockBusy names the holder
            raise RestoreError(f"{exc}; nothing was changed") from exc
        try:
            return self._execute()
        finally:
            lock.release()

    def _execute(self) -> dict[str, t.Any]:
        """Check mode stops after ``plan()``. A real run first prepares every component (decrypts, proves), then
        applies them in RESTORE_ORDER; a failure names what each component holds now."""
        results: dict[str, t.Any] = {}
        done: list[str] = []
        try:
            plan = self.plan()
            if self.check_mode:
                self.actions[:] = [f"would restore {item.key} from {plan.info.id}" for item in plan.todo]
            else:
                for component in plan.components:
                    component.prepare(plan.needed(component))
                for component in plan.components:
                    try:
                        results.update(component.apply(plan.needed(component)))
                    except RestoreError as exc:
                        done += [k for k in results if k not in done]
                        raise self.partial(plan, component, exc, done, results) from exc
                    done += [k for k in results if k not in done]
        finally:
            if self.files is not None:
                self.files.cleanup()  # decrypted copies and the MongoDB config never stay on the host
        return self.result(plan, results)

    def partial(self, plan: Plan, failed: ComponentRestore, exc: RestoreError, done: list[str],
                results: dict[str, t.Any]) -> RestoreError:
        """The error of a component that failed after others were restored: what is live now, item by item."""
        if not done:
            error = RestoreError(str(exc))
        else:
            info = plan.info
            live = [f"{key} holds {info.id} (restored by this run"
                    + (f"; its previous data is kept as {results[key]['previous']})" if
                       isinstance(results.get(key), dict) and results[key].get("previous") else ")")
                    for key in done]
            untouched = [item.key for item in plan.todo if item.key not in done
                         and not item.key.startswith(failed.name)]
            error = RestoreError(
                f"{failed.name} failed: {exc}. Live now: {'; '.join(live)}"
                + (f"; not restored, still their previous data: {', '.join(untouched)}" if untouched else "")
                + ". Run the restore again to finish it (what already holds the set is left alone)")
        error.restored = list(done)
        error.details = dict(results)
        return error

    def result(self, plan: Plan, results: dict[str, t.Any]) -> dict[str, t.Any]:
        info = plan.info
        todo = [item.key for item in plan.todo]
        keys = [item.key for item in plan.all_items]
        changed = bool(todo)
        summary = (f"{'would restore' if self.check_mode else 'restored'} {', '.join(todo)} from {info.id}"
                   if changed else f"{', '.join(keys)} already restored from {info.id}; nothing to do" if keys
                   else f"nothing to restore from {info.id}")
        notes = [note for component in plan.components for note in component.notes]
        if notes:
            summary += "; " + "; ".join(notes)
        before = {item.key: item.before for item in plan.all_items}
        after = {item.key: item.after if item.needed else item.before for item in plan.all_items}
        return {
            "changed": changed,
            "id": info.id,  # the set resolved (once, under the lock): pass it as set/path to the real run
            "path": info.path,
            "set": info.to_dict(),
            "restored": todo,
            "unchanged": [k for k in keys if k not in todo],
            "details": results,
            "actions": self.actions,
            "notes": notes,
            "msg": summary,
            "diff": {"before": json.dumps(before, indent=2, sort_keys=True) + "\n",
                     "after": json.dumps(after, indent=2, sort_keys=True) + "\n",
                     "before_header": f"live data of {self.opts.app}",
                     "after_header": f"after restoring {info.id}"},
        }
