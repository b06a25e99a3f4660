# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Logic of ``pyfleet.server.restore``: plan (check mode) and apply a restore of one backup set.

Commands run through an injected ``run(argv, env=None) -> (rc, stdout, stderr)`` (the module passes
``AnsibleModule.run_command``), so the decisions are unit-tested without a database.

The order of a restore is what makes it safe:

1. the set is verified (manifest, every size and sha256) before anything is touched;
2. PostgreSQL: the dump is loaded into a scratch database ``<db>__restore_<id>`` with ``--exit-on-error``,
   its row counts are compared with the manifest, and only then is the live database renamed to
   ``<db>__pre_<timestamp>`` and the scratch database renamed to the live name;
3. Redis: the RDB is checked (``redis-check-rdb``), the service stopped, the live RDB renamed to
   ``<rdb>.pre-<timestamp>``, the set's RDB put in place, the service started, and the key counts compared; if they
   do not match, the previous RDB goes back and Redis is started on it again;
4. a marker ``<state_dir>/<app>.json`` (and, for PostgreSQL, ``COMMENT ON DATABASE``) records the set restored, so
   restoring it again is a no-op unless ``force``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
import typing as t

from ansible_collections.pyfleet.server.plugins.module_utils.backup import (
    ROW_COUNT_SQL,
    BackupError,
    SetInfo,
    age_decrypt_argv,
    check_set,
    compare_counts,
    compare_keyspace,
    list_sets,
    mongo_config_text,
    mongorestore_argv,
    new_set_id,
    parse_info,
    parse_keyspace,
    parse_row_counts,
    pg_restore_argv,
    previous_name,
    psql_argv,
    quote_ident,
    quote_literal,
    redis_cli_argv,
    scratch_name,
    select_set,
    utcnow,
)

RESTORABLE = ("postgresql", "redis", "mongodb")
Run = t.Callable[..., tuple[int, str, str]]


class RestoreError(Exception):
    """Stops the restore; the message says what was refused or failed and what state the live data is in."""


def marker_comment(set_id: str, manifest_sha256: str) -> str:
    return f"pyfleet restore {set_id} {manifest_sha256}"


def restored_set(comment: str) -> str | None:
    parts = comment.split()
    return parts[2] if len(parts) >= 3 and comment.startswith("pyfleet restore ") else None


class Restorer:
    def __init__(self, params: dict[str, t.Any], run: Run, check_mode: bool = False,
                 warn: t.Callable[[str], None] = lambda msg: None, clock: t.Callable[[], _dt.datetime] = utcnow,
                 sleep: t.Callable[[float], None] = time.sleep, monotonic: t.Callable[[], float] = time.monotonic):
        self.p = params
        self.run_cmd = run
        self.check_mode = check_mode
        self.warn = warn
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.app = params["app"]
        self.app_dir = os.path.join(params["root"], self.app)
        self.info: SetInfo | None = None
        self.cleanup: list[str] = []
        self.actions: list[str] = []

    # ---- helpers ---------------------------------------------------------------------------------------------
    def run(self, argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
        rc, out, err = self.run_cmd(argv, env=env)
        if rc != 0:
            raise RestoreError(f"{what} failed (rc={rc}): {(err or out).strip()[-1500:]}")
        return out

    def sql(self, database: str, statement: str, what: str) -> str:
        p = self.p
        return self.run(psql_argv(database, statement, p["postgresql_port"], p["postgresql_os_user"]), what)

    def redis(self, *command: str) -> str:
        p = self.p
        env = {"REDISCLI_AUTH": p["redis_password"]} if p.get("redis_password") else None
        out = self.run(redis_cli_argv(*command, host=p["redis_host"], port=p["redis_port"]),
                       f"redis-cli {command[0]}", env=env)
        if out.startswith(("ERR", "NOAUTH", "WRONGPASS", "Could not connect")):
            raise RestoreError(f"redis-cli {command[0]} failed: {out.strip()}")
        return out

    # ---- choosing and verifying the set ----------------------------------------------------------------------
    def resolve(self) -> SetInfo:
        p = self.p
        if p.get("path"):
            path = p["path"].rstrip("/")
            if not os.path.isdir(path):
                raise RestoreError(f"backup set {path} does not exist; nothing was changed")
        else:
            sets = list_sets(self.app_dir, app=self.app, checksums=False, include_incomplete=False)
            try:
                path = select_set(sets, p["set"], p.get("components") or ()).path
            except BackupError as exc:
                raise RestoreError(f"{exc} in {self.app_dir}; nothing was changed") from exc
        info = check_set(path, app=self.app, checksums=True)
        if info.problems or not info.complete:
            raise RestoreError(
                f"backup set {info.path} refused, nothing was changed: " + "; ".join(info.problems or ["incomplete"])
            )
        self.info = info
        return info

    def components(self) -> list[str]:
        held = [c for c in RESTORABLE if c in self.info.components]
        wanted = self.p.get("components") or held
        missing = [c for c in wanted if c not in self.info.components]
        if missing:
            raise RestoreError(
                f"backup set {self.info.id} holds no {', '.join(missing)} backup (it holds "
                f"{', '.join(self.info.components)}); nothing was changed"
            )
        if not wanted:
            raise RestoreError(f"backup set {self.info.id} holds nothing this module restores; nothing was changed")
        return [c for c in RESTORABLE if c in wanted]

    # ---- markers ---------------------------------------------------------------------------------------------
    @property
    def marker_path(self) -> str:
        return os.path.join(self.p["state_dir"], f"{self.app}.json")

    def read_marker(self) -> dict[str, t.Any]:
        try:
            with open(self.marker_path, encoding="utf-8") as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def write_marker(self, component: str) -> None:
        data = self.read_marker()
        data[component] = {"set": self.info.id, "manifest_sha256": self.info.manifest_sha256,
                           "path": self.info.path, "restored_at": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")}
        os.makedirs(self.p["state_dir"], mode=0o700, exist_ok=True)
        tmp = self.marker_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.marker_path)

    def marker_matches(self, component: str) -> bool:
        entry = self.read_marker().get(component) or {}
        return entry.get("set") == self.info.id and entry.get("manifest_sha256") == self.info.manifest_sha256

    # ---- PostgreSQL ------------------------------------------------------------------------------------------
    def pg_databases(self) -> dict[str, dict[str, t.Any]]:
        dbs = self.info.manifest["components"]["postgresql"]["databases"]
        wanted = self.p.get("databases") or list(dbs)
        unknown = [d for d in wanted if d not in dbs]
        if unknown:
            raise RestoreError(f"backup set {self.info.id} has no dump of database(s) {', '.join(unknown)}; "
                               f"it has {', '.join(dbs)}; nothing was changed")
        return {d: dbs[d] for d in wanted}

    def pg_exists(self, database: str) -> bool:
        out = self.sql("postgres", f"SELECT 1 FROM pg_database WHERE datname = {quote_literal(database)}",
                       f"psql lookup of {database}")
        return out.strip() == "1"

    def pg_comment(self, database: str) -> str:
        return self.sql("postgres", "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                        f"WHERE datname = {quote_literal(database)}", f"psql comment of {database}").strip()

    def pg_counts(self, database: str) -> dict[str, int]:
        return parse_row_counts(self.sql(database, ROW_COUNT_SQL, f"row counts of {database}"))

    def pg_state(self, database: str) -> dict[str, t.Any]:
        if not self.pg_exists(database):
            return {"exists": False}
        return {"exists": True, "tables": self.pg_counts(database), "comment": self.pg_comment(database)}

    def pg_needed(self, database: str, state: dict[str, t.Any]) -> bool:
        if self.p["force"]:
            return True
        wanted = marker_comment(self.info.id, self.info.manifest_sha256 or "")
        return not (self.marker_matches("postgresql") and state.get("comment") == wanted)

    def source(self, rel: str) -> str:
        """Path of a set file, decrypted first (into a private temporary folder) when the set is encrypted."""
        files = self.info.manifest["files"]
        if rel in files or any(k.startswith(rel + "/") for k in files):
            return os.path.join(self.info.path, rel)
        if rel + ".age" not in files:
            raise RestoreError(f"{rel} is not listed in the manifest of {self.info.id}")
        identity = self.p.get("age_identity")
        if not identity:
            raise RestoreError(f"backup set {self.info.id} is encrypted with age: age_identity (the private key) "
                               "is required; nothing was changed")
        work = os.path.join(self.app_dir, f".restore-{self.info.id}")
        os.makedirs(work, mode=0o750, exist_ok=True)
        self.cleanup.append(work)
        key = os.path.join(work, ".identity")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(identity.strip() + "\n")
        target = os.path.join(work, os.path.basename(rel))
        try:
            self.run(age_decrypt_argv(key, os.path.join(self.info.path, rel + ".age"), target), f"age -d of {rel}")
        finally:
            os.unlink(key)
        from ansible_collections.pyfleet.server.plugins.module_utils.backup import sha256_file

        if sha256_file(target) != files[rel + ".age"].get("plain_sha256"):
            raise RestoreError(f"{rel}: the decrypted file does not match the manifest; nothing was changed")
        return target

    def restore_postgresql(self, database: str, detail: dict[str, t.Any]) -> dict[str, t.Any]:
        p = self.p
        port, user = p["postgresql_port"], p["postgresql_os_user"]
        source = self.source(detail["file"])
        self.list_dump(source, detail["file"])
        # pg_restore runs as PostgreSQL's OS user: the dump may have been decrypted into a folder root owns, or
        # shipped to this host by another route (playbooks/disaster-recovery.yml) with root-only modes.
        self._grant_postgres(source)
        scratch = scratch_name(database, self.info.id)
        self.sql("postgres", f"DROP DATABASE IF EXISTS {quote_ident(scratch)} WITH (FORCE)",
                 f"dropping the leftover scratch database {scratch}")
        owner = detail.get("owner") or "postgres"
        self.sql("postgres", f"CREATE DATABASE {quote_ident(scratch)} OWNER {quote_ident(owner)} TEMPLATE template0",
                 f"creating the scratch database {scratch}")
        jobs = p["postgresql_jobs"] if detail.get("format") == "directory" else 1
        rc, out, err = self.run_cmd(pg_restore_argv(scratch, source, jobs, port, user), env=None)
        if rc != 0:
            self._drop(scratch)
            raise RestoreError(
                f"pg_restore into the scratch database {scratch} failed (rc={rc}); the live database {database} "
                f"was not touched: {(err or out).strip()[-1500:]}"
            )
        differences = compare_counts(detail.get("tables") or {}, self.pg_counts(scratch))
        if differences:
            self._drop(scratch)
            raise RestoreError(
                f"the restored copy of {database} does not match the manifest of {self.info.id} "
                f"({'; '.join(differences[:10])}); the live database {database} was not touched"
            )
        previous = self._swap(database, scratch)
        comment = marker_comment(self.info.id, self.info.manifest_sha256 or "")
        self.sql("postgres", f"COMMENT ON DATABASE {quote_ident(database)} IS {quote_literal(comment)}",
                 f"marking {database} as restored")
        dropped = self._prune_previous(database)
        self.actions.append(f"postgresql {database}: restored from {self.info.id}"
                            + (f", previous kept as {previous}" if previous else ""))
        return {"database": database, "previous": previous, "dropped": dropped,
                "tables": detail.get("tables") or {}}

    def list_dump(self, source: str, rel: str) -> None:
        """pg_restore -l reads the dump's table of contents: a dump cut short there is refused before anything."""
        # Reading the table of contents needs no server: as root, so check mode changes no file modes.
        rc, out, err = self.run_cmd(["pg_restore", "-l", source], env=None)
        if rc != 0:
            raise RestoreError(f"{rel} of {self.info.id} is not a readable dump, nothing was changed: "  # type: ignore[union-attr]
                               f"pg_restore -l failed (rc={rc}): {(err or out).strip()[-500:]}")

    def _grant_postgres(self, path: str) -> None:
        import grp

        try:
            gid = grp.getgrnam(self.p["postgresql_os_user"]).gr_gid
        except KeyError:
            return
        targets = [os.path.dirname(path), path]
        if os.path.isdir(path):  # a directory-format dump
            targets += [os.path.join(path, name) for name in sorted(os.listdir(path))]
        for target in targets:
            os.chown(target, 0, gid)
            os.chmod(target, 0o750 if os.path.isdir(target) else 0o640)

    def _drop(self, database: str) -> None:
        statement = f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)"
        argv = psql_argv("postgres", statement, self.p["postgresql_port"], self.p["postgresql_os_user"])
        rc, _unused, err = self.run_cmd(argv, env=None)
        if rc != 0:
            self.warn(f"could not drop the scratch database {database}: {err.strip()}")

    def _swap(self, database: str, scratch: str) -> str | None:
        """Rename live → <db>__pre_<ts> and scratch → live. Returns the previous database's new name."""
        if not self.pg_exists(database):
            self.sql("postgres", f"ALTER DATABASE {quote_ident(scratch)} RENAME TO {quote_ident(database)}",
                     f"renaming {scratch} to {database}")
            return None
        previous = previous_name(database, self.clock())
        live = quote_ident(database)
        self.sql("postgres", f"ALTER DATABASE {live} WITH ALLOW_CONNECTIONS false",
                 f"closing {database} to new connections")
        try:
            deadline = self.monotonic() + self.p["timeout"]
            while True:
                left = self.sql("postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                f"WHERE datname = {quote_literal(database)} AND pid <> pg_backend_pid()",
                                f"ending the sessions of {database}").strip()
                if left in ("", "0"):
                    break
                if self.monotonic() > deadline:
                    raise RestoreError(f"sessions of {database} did not end within {self.p['timeout']} s; "
                                       "the live database was not replaced")
                self.sleep(0.5)
            self.sql("postgres", f"ALTER DATABASE {live} RENAME TO {quote_ident(previous)}",
                     f"renaming {database} to {previous}")
        except RestoreError:
            self.sql("postgres", f"ALTER DATABASE {live} WITH ALLOW_CONNECTIONS true", f"reopening {database}")
            self._drop(scratch)
            raise
        try:
            self.sql("postgres", f"ALTER DATABASE {quote_ident(scratch)} RENAME TO {live}",
                     f"renaming {scratch} to {database}")
        except RestoreError as exc:
            self.sql("postgres", f"ALTER DATABASE {quote_ident(previous)} RENAME TO {live}",
                     f"putting {database} back")
            self.sql("postgres", f"ALTER DATABASE {live} WITH ALLOW_CONNECTIONS true", f"reopening {database}")
            raise RestoreError(f"{exc}; the previous {database} was put back") from exc
        self.sql("postgres", f"ALTER DATABASE {quote_ident(previous)} WITH ALLOW_CONNECTIONS true",
                 f"reopening {previous}")
        return previous

    def _prune_previous(self, database: str) -> list[str]:
        prefix = f"{database}__pre_"
        out = self.sql("postgres", "SELECT datname FROM pg_database WHERE left(datname, "
                       f"{len(prefix)}) = {quote_literal(prefix)} ORDER BY datname DESC", "listing previous databases")
        names = [n for n in out.split() if n]
        dropped = names[max(self.p["keep_previous"], 0):]
        for name in dropped:
            self.sql("postgres", f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)", f"dropping {name}")
        return dropped

    # ---- Redis -----------------------------------------------------------------------------------------------
    def redis_detail(self) -> dict[str, t.Any]:
        return self.info.manifest["components"]["redis"]

    def redis_state(self) -> dict[str, t.Any]:
        try:
            return {"running": True, "keyspace": parse_keyspace(parse_info(self.redis("INFO", "keyspace")))}
        except RestoreError as exc:
            return {"running": False, "error": str(exc)}

    def rdb_path(self) -> str:
        return self.p.get("redis_rdb_path") or self.redis_detail().get("rdb_path") or "/var/lib/redis/dump.rdb"

    def redis_preflight(self, source: str) -> None:
        """Read-only checks that run in check mode too: the RDB is readable and Redis would load it."""
        checker = shutil.which("redis-check-rdb") or ("/usr/bin/redis-check-rdb"
                                                      if os.path.exists("/usr/bin/redis-check-rdb") else None)
        if checker:
            rc, out, err = self.run_cmd([checker, source], env=None)
            if rc != 0:
                raise RestoreError(f"redis-check-rdb rejects {os.path.relpath(source, self.info.path)} "  # type: ignore[union-attr]
                                   f"(rc={rc}): {(out + err).strip()[-500:]}; nothing was changed")
        try:
            appendonly = self.redis("CONFIG", "GET", "appendonly").split()
        except RestoreError:
            appendonly = []
        if appendonly[-1:] == ["yes"]:
            raise RestoreError("Redis runs with appendonly yes, so it would load its AOF instead of the restored RDB; "
                               "turn appendonly off for the restore (redis_appendonly: false); nothing was changed")

    def restore_redis(self) -> dict[str, t.Any]:
        p = self.p
        detail = self.redis_detail()
        source = self.source(detail["file"])
        self.redis_preflight(source)
        rdb = self.rdb_path()
        service = p["redis_service"]
        previous = f"{rdb}.pre-{new_set_id(self.clock()).lower()}"
        self.run(["systemctl", "stop", service], f"systemctl stop {service}")
        had_previous = os.path.exists(rdb)
        if had_previous:
            os.replace(rdb, previous)  # Redis wrote its data on shutdown; this is the live data, kept
        staged = f"{rdb}.pyfleet-restore"
        shutil.copyfile(source, staged)
        self._chown_like_dir(staged, os.path.dirname(rdb))
        os.chmod(staged, 0o660)
        os.replace(staged, rdb)
        problem = self._start_and_prove(service, detail)
        if problem:
            self.run_cmd(["systemctl", "stop", service], env=None)
            if had_previous:
                os.replace(previous, rdb)
            self.run_cmd(["systemctl", "start", service], env=None)
            raise RestoreError(f"Redis did not come back with the data of {self.info.id} ({problem}); the previous "
                               "RDB was put back and Redis started on it")
        dropped = self._prune_rdbs(rdb)
        self.actions.append(f"redis: restored from {self.info.id}"
                            + (f", previous RDB kept as {previous}" if had_previous else ""))
        return {"rdb": rdb, "previous": previous if had_previous else None, "dropped": dropped,
                "keyspace": detail.get("keyspace") or {}}

    @staticmethod
    def _chown_like_dir(path: str, directory: str) -> None:
        st = os.stat(directory)
        if os.geteuid() == 0:
            os.chown(path, st.st_uid, st.st_gid)

    def _start_and_prove(self, service: str, detail: dict[str, t.Any]) -> str | None:
        rc, _unused, err = self.run_cmd(["systemctl", "start", service], env=None)
        if rc != 0:
            return f"systemctl start {service} failed: {err.strip()}"
        deadline = self.monotonic() + self.p["timeout"]
        while True:
            try:
                info = parse_info(self.redis("INFO", "persistence") + self.redis("INFO", "keyspace"))
                if info.get("loading") == "0":
                    break
            except RestoreError as exc:
                last = str(exc)
            else:
                last = "still loading"
            if self.monotonic() > deadline:
                return f"not ready after {self.p['timeout']} s: {last}"
            self.sleep(0.5)
        differences = compare_keyspace(detail.get("keyspace") or {}, parse_keyspace(info)) \
            if detail.get("keys_exact", True) else []
        return "; ".join(differences) or None

    def _prune_rdbs(self, rdb: str) -> list[str]:
        directory, base = os.path.split(rdb)
        olds = sorted((n for n in os.listdir(directory) if n.startswith(base + ".pre-")), reverse=True)
        dropped = olds[max(self.p["keep_previous"], 0):]
        for name in dropped:
            os.unlink(os.path.join(directory, name))
        return dropped

    # ---- MongoDB (unit-tested only: no MongoDB could be installed where this was built) ----------------------
    def restore_mongodb(self) -> dict[str, t.Any]:
        detail = self.info.manifest["components"]["mongodb"]
        if not self.p.get("mongodb_uri"):
            raise RestoreError("mongodb_uri is required to restore MongoDB; nothing was changed")
        from ansible_collections.pyfleet.server.plugins.module_utils.backup import check_mongo_archive

        source = self.source(detail["file"])
        problems = check_mongo_archive(source)
        if problems:
            raise RestoreError("; ".join(problems) + "; nothing was changed")
        work = os.path.join(self.app_dir, f".restore-{self.info.id}")
        os.makedirs(work, mode=0o700, exist_ok=True)
        self.cleanup.append(work)
        conf = os.path.join(work, ".mongo.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(mongo_config_text(self.p["mongodb_uri"]))
        ns = f"{detail['database']}.*" if detail.get("database") else None
        try:
            self.run(mongorestore_argv(conf, source, drop=True, dry_run=True, ns_include=ns), "mongorestore --dryRun")
            self.run(mongorestore_argv(conf, source, drop=True, ns_include=ns), "mongorestore")
        finally:
            os.unlink(conf)
        self.actions.append(f"mongodb: restored from {self.info.id}")
        return {"archive": detail["file"]}

    # ---- the whole thing -------------------------------------------------------------------------------------
    def plan(self) -> dict[str, t.Any]:
        """What a restore would do (read-only): runs in check mode and before every real restore."""
        info = self.resolve()
        components = self.components()
        before: dict[str, t.Any] = {}
        after: dict[str, t.Any] = {}
        todo: dict[str, t.Any] = {}
        for component in components:
            if component == "postgresql":
                for database, detail in self.pg_databases().items():
                    state = self.pg_state(database)
                    key = f"postgresql/{database}"
                    before[key] = {"exists": state["exists"], "tables": state.get("tables"),
                                   "restored_set": restored_set(state.get("comment") or "")}
                    after[key] = {"exists": True, "tables": detail.get("tables"), "restored_set": info.id}
                    if self.pg_needed(database, state):
                        todo[key] = detail
            elif component == "redis":
                state = self.redis_state()
                before["redis"] = {"keyspace": state.get("keyspace"), "error": state.get("error"),
                                   "restored_set": (self.read_marker().get("redis") or {}).get("set")}
                after["redis"] = {"keyspace": self.redis_detail().get("keyspace"), "restored_set": info.id}
                if self.p["force"] or not self.marker_matches("redis"):
                    todo["redis"] = self.redis_detail()
            elif component == "mongodb":
                before["mongodb"] = {"restored_set": (self.read_marker().get("mongodb") or {}).get("set")}
                after["mongodb"] = {"restored_set": info.id}
                if self.p["force"] or not self.marker_matches("mongodb"):
                    todo["mongodb"] = self.info.manifest["components"]["mongodb"]  # type: ignore[index]
        return {"set": info, "components": components, "todo": todo, "before": before, "after": after}

    def execute(self) -> dict[str, t.Any]:
        plan = self.plan()
        info: SetInfo = plan["set"]
        todo = plan["todo"]
        results: dict[str, t.Any] = {}
        if self.check_mode:
            # Read-only proofs that the load would start: the dumps are readable, the RDB is valid.
            for key, detail in todo.items():
                if key.startswith("postgresql/") and not info.manifest.get("encryption"):  # type: ignore[union-attr]
                    self.list_dump(os.path.join(info.path, detail["file"]), detail["file"])
                elif key == "redis" and not info.manifest.get("encryption"):  # type: ignore[union-attr]
                    self.redis_preflight(os.path.join(info.path, detail["file"]))
            self.actions = [f"would restore {key} from {info.id}" for key in todo]
        else:
            try:
                done_pg = False
                for key, detail in todo.items():
                    if key.startswith("postgresql/"):
                        results[key] = self.restore_postgresql(key.split("/", 1)[1], detail)
                        done_pg = True
                    elif key == "redis":
                        results[key] = self.restore_redis()
                        self.write_marker("redis")
                    elif key == "mongodb":
                        results[key] = self.restore_mongodb()
                        self.write_marker("mongodb")
                if done_pg:
                    self.write_marker("postgresql")
            finally:
                for path in self.cleanup:
                    shutil.rmtree(path, ignore_errors=True)
        changed = bool(todo)
        skipped = [k for k in plan["before"] if k not in todo]
        summary = (f"{'would restore' if self.check_mode else 'restored'} {', '.join(todo)} from {info.id}"
                   if changed else f"{', '.join(plan['before'])} already restored from {info.id}; nothing to do")
        return {
            "changed": changed,
            "set": info.to_dict(),
            "restored": list(todo),
            "unchanged": skipped,
            "details": results,
            "actions": self.actions,
            "msg": summary,
            "diff": {"before": json.dumps(plan["before"], indent=2, sort_keys=True) + "\n",
                     "after": json.dumps({k: (plan["after"][k] if k in todo else plan["before"][k])
                                          for k in plan["before"]}, indent=2, sort_keys=True) + "\n",
                     "before_header": f"live data of {self.app}",
                     "after_header": f"after restoring {info.id}"},
        }
