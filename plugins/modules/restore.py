#!/usr/bin/python
# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

# ruff: noqa: E402, EXE001

DOCUMENTATION = r"""
module: restore
short_description: Restore a verified backup set without ever making things worse
version_added: 0.1.0
author:
  - pyfleet.server contributors (@pyfleet)
description:
  - Restores a backup set written by the C(pyfleet.server.backup) role, chosen by O(path), by id (O(set)) or
    V(latest) (the newest complete, verified set holding the requested O(components)).
  - Before anything is touched, the set's C(manifest.json) is read and every file is checked against its size and
    sha256. A missing manifest, a set of another app, a truncated or altered file are refused with the reason, and
    nothing changes.
  - Every component's inputs are checked before the first one changes, in check mode too (O(mongodb_uri) for a set
    holding MongoDB, O(age_identity) for an encrypted set, the RDB path); a real run then decrypts and proves every
    file it will load before any component changes.
  - Free space is checked before anything changes, in check mode too, per filesystem and for everything the
    restore writes at once. PostgreSQL - each scratch database, on the filesystem of C(SHOW data_directory), estimated
    as 4 times the dump's size (dumps are compressed) or, when larger, the live database's C(pg_database_size).
    Redis - the staged RDB next to the live one. File data - each staged copy beside its data path. An encrypted
    set - its decrypted copies in the set's app directory. A shortfall is refused with the numbers
    (C(needs ~X on <path> (what), Y free; the live data was not touched)).
    MongoDB's data directory is not known to the module and is not checked.
  - Components are restored in this order - PostgreSQL (proven in a scratch database, swapped in atomically), MongoDB
    (C(mongorestore --drop) keeps no copy), file data (each data path swapped in by a rename), Redis last (cheapest
    to undo, its previous RDB is one rename away). If a
    later one fails, the earlier ones stay restored; the message says what each holds now, RV(restored) lists them,
    and running the restore again finishes the rest.
  - B(PostgreSQL) (local server, as the O(postgresql_os_user) OS user over the local socket, peer authentication).
    Each dump is loaded with C(pg_restore --exit-on-error --single-transaction) into a scratch database
    C(<db>__restore_<id>); a plain-SQL dump (C(<db>.sql.gz), C(backup_postgresql_format=plain)) is decompressed by
    the module onto C(psql -X -v ON_ERROR_STOP=1 --single-transaction) instead (one stream, single-threaded). Its
    row counts per table must equal those the manifest recorded (they were read back from
    the dump itself when it was taken). Only then, in one transaction (C(BEGIN) ... C(COMMIT) in one C(psql) run with
    C(ON_ERROR_STOP)), are the sessions of the live database ended, the live database renamed to
    C(<db>__pre_<timestamp>), the scratch database renamed to C(<db>) and marked with C(COMMENT ON DATABASE). Killed
    before the commit, nothing changed; a re-run starts again from the load. If loading or comparing fails, the
    scratch database is dropped and the live one was never touched.
  - B(Redis). The RDB is checked with C(redis-check-rdb) and copied, while Redis still runs, next to the live one as
    C(<rdb>.pyfleet-restore) (written without following symlinks, synced, checked against the manifest); a full disk
    fails here with Redis untouched. Only then is the service stopped, the live RDB kept under a second name
    C(<rdb>.pre-<timestamp>) (a hard link, so C(<rdb>) never goes missing), the staged RDB renamed over it and the
    service started. The key counts per database must then match the manifest (keys with a TTL may have expired).
    Any error between stop and start, or a mismatch, puts the previous RDB back and starts Redis on it. Stop the
    app's writers first (C(playbooks/restore.yml) does).
  - B(File data) - the data paths of the set (C(backup_data_paths) of the backup role, e.g. the app's C(shared/) and
    state directory; one archive each, recorded in the manifest with owner, mode and a tree checksum of every entry's
    path, type, mode, owner and group names, and content or link target). Each is extracted into a staging directory
    C(.<name>.pyfleet-restore) beside it (same filesystem; owners by name as recorded, the number where the name is
    unknown, modes as they were), its tree checksum must equal the manifest's, and only then is it swapped in whole
    by a rename (C(renameat2) exchange where the filesystem can), the previous directory kept as
    C(.<name>.pre-<timestamp>). A file added after the backup is gone; a data path that is a symlink or a mount point
    here is refused. The configuration and code archive C(files/files.tar.gz) is never restored (they come from the
    inventory and the wheelhouse); a set written before data paths existed restores no files and says so in RV(msg)
    and RV(notes).
  - B(MongoDB) through C(mongorestore --archive --gzip --drop) after a C(--dryRun). No MongoDB server or tools could
    be installed where this collection is built and tested, so MongoDB restores are covered by unit tests only.
  - Idempotent only while the live data is still what the set restored. Right after a restore, the set and a
    fingerprint of the live data are recorded in O(state_dir)/<app>.json (and the set, for PostgreSQL, in
    C(COMMENT ON DATABASE)). For PostgreSQL it is a checksum of every row of every table (an order-independent sum of
    C(md5) of each row, read with the row counts); for Redis, its C(run_id), C(rdb_last_save_time) and
    C(rdb_changes_since_last_save); for file data, the tree checksum (a data path whose live tree already equals the
    set's is left alone, marker or not). Restoring the same set again reports V(changed=false) only when the fingerprint
    is unchanged; any write since (or a Redis restart or save, after which nobody can tell) restores again. MongoDB
    cannot be read here, so a MongoDB archive is restored every time. O(force=true) always restores.
  - B(Point-in-time restore) (O(source=pgbackrest)) - the whole local cluster from its pgBackRest repository (role
    C(pyfleet.server.pgbackrest)), to O(target_time) or to the end of the archived WAL (V(latest)). The live cluster
    is untouched until the restored one is proven. Under the app's lock, C(pgbackrest info) must show a backup that
    ended before the target, and the free space for a second data directory is checked (check mode stops here).
    C(pgbackrest restore --pg1-path) then writes a NEW data directory C(<parent>/pyfleet-pitr-<timestamp>) beside
    O(postgresql_data_dir) (C(--type=time --target=<target_time> --target-action=promote), or C(--type=default)),
    started by C(pg_ctl) with a configuration of its own - no TCP, its own socket directory, a free port, and
    C(archive_command=/bin/false) so that it archives nothing into the live stanza (C(archive_mode=on) keeps the
    C(.ready) marks of its new timeline, pushed once it is live). Recovery must end (promotion), the restored
    cluster must answer and hold every database of O(databases) (default - every database of the live cluster),
    and O(verify_query), when given, must return a timestamp not newer than O(target_time). Any failure removes the
    scratch cluster and leaves the live one untouched.
  - Only then (stop the app first, C(playbooks/restore.yml) does) is O(postgresql_service) stopped, the live data
    directory renamed to C(<data dir>.pre-<timestamp>) (kept; remove it by hand), the restored one renamed to
    O(postgresql_data_dir) (pgBackRest's C(restore_command)/C(recovery_target*) lines taken out of its
    C(postgresql.auto.conf)), and the service started with the live configuration; a start that fails puts the
    previous data directory back and starts it. The cluster then archives its new timeline to the same stanza; run
    C(pgbackrest check) and take a new full backup (C(playbooks/restore.yml) does both). Each run restores again
    (a point in time has no fingerprint to compare with), unless O(once) and the marker in O(state_dir) says the
    cluster was restored to this O(target_time) before.
extends_documentation_fragment:
  - pyfleet.server.attributes
  - pyfleet.server.backup_sets
attributes:
  check_mode:
    support: full
    details:
      - Runs the same code as a real restore up to the point where it would change something. It verifies the set,
        reads the live state and the markers, lists each dump (C(pg_restore -l); a plain-SQL dump is decompressed to
        its end and must end with pg_dump's closing comment), checks the RDB, reads each data
        archive to its end and compares its tree checksum with the manifest's and with the live directory's, then
        reports what a real run would restore. Nothing is changed.
  diff_mode:
    support: full
    details:
      - Shows, per database, for Redis and per data path, the live row or key counts (entries, bytes and tree checksum)
        and the set restored before, next to what the set will bring.
  idempotent:
    support: partial
    details:
      - PostgreSQL, Redis and file data are left alone when they still hold exactly the data the same set restored
        (file data also when its live tree equals the set's); MongoDB is restored every time (nothing can tell whether
        it was written since).
options:
  set:
    description: Id of the set to restore (C(20250124T031500Z)), or V(latest).
    type: str
    default: latest
  path:
    description: Directory of the set to restore, instead of O(set).
    type: path
  components:
    description: Components to restore; default is every restorable component the set holds.
    type: list
    elements: str
    choices: [postgresql, redis, mongodb, files]
    default: []
  databases:
    description:
      - PostgreSQL databases to restore; default is every database in the set.
      - With O(source=pgbackrest) (the whole cluster is restored), the databases the restored cluster must hold;
        default is every database of the live cluster.
    type: list
    elements: str
    default: []
  force:
    description: Restore even when the marker says this set is already restored.
    type: bool
    default: false
  once:
    description:
      - Restore each item only if it was never restored from this set. An item restored from it before counts as
        done even when it was written since, and those writes stay.
      - Meant for re-runs of a recovery (C(playbooks/disaster-recovery.yml)), so that a rebuilt host that has
        served traffic since keeps what it has. Without it, a restore is idempotent only while the live data is
        still what the set restored. O(force) wins over it.
      - With O(source=pgbackrest) - skip the restore when the marker says the cluster was restored to this
        O(target_time) (or V(latest)) before. Without it, each point-in-time restore restores again.
    type: bool
    default: false
  keep_previous:
    description:
      - Whether the copy of the replaced data this run made (C(<db>__pre_<timestamp>), C(<rdb>.pre-<timestamp>),
        C(<parent>/.<name>.pre-<timestamp>) of a data path) is
        kept. V(0) drops it once the restore has proven itself; V(1) or more keeps it.
      - Copies kept by earlier runs are never dropped by this module, whatever the value (after a partial restore
        such a copy may be the only pre-restore data left). They are listed in RV(details) (C(kept_earlier)) and
        named in a warning; drop them by hand once they are no longer needed.
    type: int
    default: 1
  state_dir:
    description: Directory of the markers recording which set was restored.
    type: path
    default: /var/lib/pyfleet/restore
  timeout:
    description: Seconds to wait for sessions to end and for Redis to load its data.
    type: int
    default: 120
  lock_timeout:
    description:
      - Seconds to wait for the app's lock C(<root>/<app>/.lock), shared with backup runs and retention of the
        C(pyfleet.server.backup) role. It is held from choosing the set to the end of the restore (in check mode
        too), so no set is deleted or written meanwhile. When it stays taken, the module fails naming the holder
        and changes nothing.
    type: int
    default: 600
  postgresql_port:
    description: Port of the local PostgreSQL server.
    type: int
    default: 5432
  postgresql_os_user:
    description: OS user that is a PostgreSQL superuser through peer authentication.
    type: str
    default: postgres
  postgresql_jobs:
    description: Parallel jobs for dumps in directory format (loaded without a single transaction then).
    type: int
    default: 2
  redis_host:
    description: Redis address.
    type: str
    default: 127.0.0.1
  redis_port:
    description: Redis port.
    type: int
    default: 6379
  redis_password:
    description: Redis password; handed to redis-cli in its environment only.
    type: str
  redis_service:
    description: systemd unit of Redis.
    type: str
    default: redis-server
  redis_rdb_path:
    description: RDB file Redis loads at start; default is the path recorded in the manifest.
    type: path
  mongodb_uri:
    description: MongoDB URI for mongorestore, written to a 0600 C(--config) file, never to the command line.
    type: str
  age_identity:
    description:
      - age private key (file content) for an encrypted set. It is written to a 0600 file next to the decrypted
        copies and deleted when the module ends; it never stays on the host.
      - Each encrypted file (C(<file>.age); for a PostgreSQL dump in directory format, every C(<dir>/<file>.age) in
        it) is decrypted into a private folder C(<root>/<app>/.restore-<id>) (0700, then readable by the PostgreSQL
        group only) and checked against the plain sha256 the manifest recorded before anything is loaded; the folder
        is removed when the module ends.
    type: str
  source:
    description:
      - V(backup_set) restores a set of the C(pyfleet.server.backup) role (O(set), O(path)).
      - V(pgbackrest) restores the whole local PostgreSQL cluster from its pgBackRest repository to O(target_time);
        O(set), O(path), O(components) and the Redis, MongoDB and age options are refused with it.
    type: str
    choices: [backup_set, pgbackrest]
    default: backup_set
  stanza:
    description: pgBackRest stanza of this cluster (C(pgbackrest_stanza)); needed by O(source=pgbackrest).
    type: str
  target_time:
    description:
      - With O(source=pgbackrest) - the time to restore to, ISO 8601 with a time zone (C(2026-11-27T10:45:00+00:00),
        C(...Z)), not in the future and after the end of the oldest backup; or V(latest) (replay every archived WAL).
      - Transactions committed at or before it are kept, later ones are not.
    type: str
    default: latest
  verify_query:
    description:
      - With O(source=pgbackrest) - SQL run on the restored cluster (in O(verify_database)) returning one
        C(timestamptz), e.g. C(SELECT max(created_at) FROM orders); it must not be newer than O(target_time)
        (no rows - an empty result - passes). Its value is returned in RV(details).
    type: str
  verify_database:
    description: Database O(verify_query) runs in; default is O(app).
    type: str
  recovery_timeout:
    description: With O(source=pgbackrest) - seconds for the restored cluster to replay WAL and promote, and to start.
    type: int
    default: 1800
  postgresql_version:
    description: With O(source=pgbackrest) - major version of the cluster (C(/usr/lib/postgresql/<version>/bin)).
    type: str
    default: "15"
  postgresql_data_dir:
    description: With O(source=pgbackrest) - data directory of the live cluster (the one on O(postgresql_port)).
    type: path
    default: /var/lib/postgresql/15/main
  postgresql_service:
    description: With O(source=pgbackrest) - systemd unit of the live cluster.
    type: str
    default: postgresql@15-main
notes:
  - Database-level settings (C(ALTER DATABASE ... SET)) and grants on the database itself are not part of a
    C(pg_dump) and are not carried over; the database owner is.
  - Redis data is restored as a whole (every logical database of the instance).
seealso:
  - module: pyfleet.server.backup_info
"""

EXAMPLES = r"""
- name: Restore the newest good set of fleetdemo (PostgreSQL and Redis)
  pyfleet.server.restore:
    app: fleetdemo
    redis_password: "{{ redis_password }}"
  register: restored

- name: Predict in check mode, then restore exactly the set the prediction chose (latest is resolved once)
  pyfleet.server.restore:
    app: fleetdemo
    redis_password: "{{ redis_password }}"
  check_mode: true
  register: plan

- name: Restore that set
  pyfleet.server.restore:
    app: fleetdemo
    path: "{{ plan.path }}"
    redis_password: "{{ redis_password }}"
  when: plan is changed

- name: Restore only the database from a chosen set
  pyfleet.server.restore:
    app: fleetdemo
    set: 20250124T031500Z
    components: [postgresql]

- name: Restore an encrypted set (the key comes from Vault, never stored on the host)
  pyfleet.server.restore:
    app: fleetdemo
    path: /var/backups/pyfleet/fleetdemo/20250124T031500Z
    age_identity: "{{ vault_backup_age_identity }}"
    redis_password: "{{ redis_password }}"

- name: Point-in-time restore of the cluster from pgBackRest, to just before a bad DELETE (stop the app first)
  pyfleet.server.restore:
    app: fleetdemo
    source: pgbackrest
    stanza: "{{ inventory_hostname }}"
    target_time: "2026-11-27T10:44:59+00:00"
    verify_query: SELECT max(created_at) FROM orders

- name: Restore the cluster to the end of the archived WAL
  pyfleet.server.restore:
    app: fleetdemo
    source: pgbackrest
    stanza: "{{ inventory_hostname }}"
"""

RETURN = r"""
id:
  description:
    - Id of the set, resolved once (V(latest) becomes the newest good set at that moment). A playbook passes it (or
      RV(path)) from its check-mode prediction to the real run, so both act on the same set.
    - With O(source=pgbackrest), the target time restored to (UTC) or V(latest).
  returned: always
  type: str
  sample: 20250124T031500Z
path:
  description: Directory of the set resolved, see RV(id); with O(source=pgbackrest), the live data directory.
  returned: always
  type: str
set:
  description:
    - The set restored (id, path, created_at, size, components, manifest_sha256...).
    - V(null) with O(source=pgbackrest); RV(details) has C(pgbackrest/<stanza>) - the backup label, C(target_time),
      the kept C(previous) data directory, C(timeline), C(verify) and C(verify_value), C(last_replayed_commit)
      (commit time of the newest transaction the recovery replayed, UTC, or V(null)) and C(data_until) (that time,
      or the end of the backup when no transaction came after it), how far the restored data reaches.
  returned: always
  type: dict
restored:
  description:
    - What was (or in check mode would be) restored, C(postgresql/<db>), C(mongodb), C(files:<data path>),
      C(redis), in restore order.
    - On failure, what this run had restored before it stopped.
  returned: always
  type: list
  elements: str
  sample: [postgresql/fleetdemo, redis]
unchanged:
  description: What already held this set and was left alone.
  returned: always
  type: list
  elements: str
details:
  description:
    - Per restored item, what happened - C(previous) (the copy of the replaced data this run kept), C(dropped),
      C(kept_earlier) (copies of earlier runs, left alone), row counts or key counts.
  returned: always
  type: dict
notes:
  description: What the operator should know beyond the items, e.g. a set whose files hold no data paths.
  returned: always
  type: list
  elements: str
actions:
  description: One line per action taken.
  returned: always
  type: list
  elements: str
msg:
  description: Summary.
  returned: always
  type: str
  sample: restored postgresql/fleetdemo, redis from 20250124T031500Z
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyfleet.server.plugins.module_utils.backup import RESTORABLE, utcnow
from ansible_collections.pyfleet.server.plugins.module_utils.pitr import PitrError, PitrRestorer
from ansible_collections.pyfleet.server.plugins.module_utils.restore import RestoreError, RestoreOptions, Restorer


def argument_spec() -> dict:
    """One entry per field of RestoreOptions."""
    return {
        "app": {"type": "str", "required": True},
        "root": {"type": "path", "default": "/var/backups/pyfleet"},
        "set": {"type": "str", "default": "latest"},
        "path": {"type": "path"},
        "components": {"type": "list", "elements": "str", "choices": list(RESTORABLE), "default": []},
        "databases": {"type": "list", "elements": "str", "default": []},
        "force": {"type": "bool", "default": False},
        "once": {"type": "bool", "default": False},
        "keep_previous": {"type": "int", "default": 1},
        "state_dir": {"type": "path", "default": "/var/lib/pyfleet/restore"},
        "timeout": {"type": "int", "default": 120},
        "lock_timeout": {"type": "int", "default": 600},
        "postgresql_port": {"type": "int", "default": 5432},
        "postgresql_os_user": {"type": "str", "default": "postgres"},
        "postgresql_jobs": {"type": "int", "default": 2},
        "redis_host": {"type": "str", "default": "127.0.0.1"},
        "redis_port": {"type": "int", "default": 6379},
        "redis_password": {"type": "str", "no_log": True},
        "redis_service": {"type": "str", "default": "redis-server"},
        "redis_rdb_path": {"type": "path"},
        "mongodb_uri": {"type": "str", "no_log": True},
        "age_identity": {"type": "str", "no_log": True},
        "source": {"type": "str", "choices": ["backup_set", "pgbackrest"], "default": "backup_set"},
        "stanza": {"type": "str"},
        "target_time": {"type": "str", "default": "latest"},
        "verify_query": {"type": "str"},
        "verify_database": {"type": "str"},
        "recovery_timeout": {"type": "int", "default": 1800},
        "postgresql_version": {"type": "str", "default": "15"},
        "postgresql_data_dir": {"type": "path", "default": "/var/lib/postgresql/15/main"},
        "postgresql_service": {"type": "str", "default": "postgresql@15-main"},
    }


# Options that choose or shape a backup set: meaningless for source=pgbackrest (and the reverse).
SET_ONLY = ("path", "components", "redis_password", "mongodb_uri", "age_identity")
PITR_ONLY = ("stanza", "verify_query", "verify_database")


def source_problems(params: dict) -> list[str]:
    """Options given that the chosen source does not use: refused rather than silently ignored."""
    if params["source"] == "pgbackrest":
        wrong = [name for name in SET_ONLY if params.get(name)]
        if params.get("set") not in (None, "latest"):
            wrong.insert(0, "set")
        if not params.get("stanza"):
            return ["source=pgbackrest needs stanza (the database host's pgbackrest_stanza)"]
        return [f"{name} is not used with source=pgbackrest (it restores the whole cluster to target_time)"
                for name in wrong]
    wrong = [name for name in PITR_ONLY if params.get(name)]
    if params.get("target_time") not in (None, "latest"):
        wrong.insert(0, "target_time")
    return [f"{name} needs source=pgbackrest" for name in wrong]


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[("set", "path")])
    problems = source_problems(module.params)
    if problems:
        module.fail_json(msg="; ".join(problems) + "; nothing was changed")
    opts = RestoreOptions.from_params(module.params)
    if opts.keep_previous < 0:
        module.fail_json(msg=f"keep_previous must be 0 or more, got {opts.keep_previous}")

    def run(argv, env=None):
        return module.run_command(argv, environ_update=env or {}, cwd="/")

    if opts.source == "pgbackrest":
        pitr = PitrRestorer(opts, run, check_mode=module.check_mode, warn=module.warn, clock=utcnow,
                            sleep=time.sleep, monotonic=time.monotonic)
        try:
            result = pitr.execute()
        except PitrError as exc:
            module.fail_json(msg=str(exc), actions=pitr.actions, restored=[], details={})
        if not module._diff:
            result.pop("diff")
        module.exit_json(**result)

    restorer = Restorer(opts, run, check_mode=module.check_mode, warn=module.warn)
    try:
        result = restorer.execute()
    except RestoreError as exc:
        module.fail_json(msg=str(exc), set=restorer.info.to_dict() if restorer.info else None,
                         id=restorer.info.id if restorer.info else None,
                         path=restorer.info.path if restorer.info else None,
                         actions=restorer.actions, restored=exc.restored, details=exc.details)
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
