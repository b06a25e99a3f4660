#!/usr/bin/python
# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

# ruff: noqa: E402, EXE001

DOCUMENTATION = r"""
module: backup_info
short_description: List and verify the backup sets of an app on a host
version_added: 0.1.0
author:
  - pyfleet.server contributors (@pyfleet)
description:
  - Lists the backup sets below O(root)/O(app) that the C(pyfleet.server.backup) role writes, newest first, with
    their age, size, components, completeness and (with O(verify=true)) the result of checking every file against
    the sizes and sha256 checksums in the set's C(manifest.json).
  - A set is C(good) when it is complete (renamed from its temporary name, manifest readable, every file present)
    and verified. Sets written by a run that did not finish (C(.tmp-<id>)) are listed as incomplete.
  - Beyond the listed files, what a restore needs is checked too - every component's file (each data archive of the
    files component included) is listed, every file inside a PostgreSQL directory-format dump is listed
    (C(toc.dat) among them), and in a set encrypted with age
    every file is a C(.age) file whose manifest entry records the sha256 and size of what it decrypts to. An entry
    without them is a problem (its content cannot be proven without the key), not a good set.
  - The key never comes here, so the plain content of an encrypted set is not decrypted; C(notes) says so. The
    backup program read every dump back before encrypting it, and C(pyfleet.server.restore) checks each decrypted
    file against its recorded sha256 before loading anything.
  - With O(max_age), the module fails when the newest good set (holding O(components)) is older, or there is none.
    A deploy can use this as a freshness gate.
  - Reads only; never changes anything.
extends_documentation_fragment:
  - pyfleet.server.attributes
  - pyfleet.server.attributes.read_only
  - pyfleet.server.backup_sets
options:
  verify:
    description:
      - Recompute the sha256 of every file and compare it with the manifest. Reads every byte of every set.
      - With V(false) only presence and sizes are checked, and C(verified) is V(null) for sets that passed.
    type: bool
    default: true
  components:
    description: Components the newest good set must hold for O(max_age) (for example V([postgresql])).
    type: list
    elements: str
    choices: [postgresql, redis, mongodb, files]
    default: []
  max_age:
    description:
      - Fail when the newest good set is older than this many seconds, or no good set exists.
      - Suffixes V(m), V(h) and V(d) are accepted (V(30m), V(26h), V(2d)).
    type: str
seealso:
  - module: pyfleet.server.restore
"""

EXAMPLES = r"""
- name: Refuse to deploy without a fresh database backup
  pyfleet.server.backup_info:
    app: fleetdemo
    components: [postgresql]
    max_age: 30m

- name: List the sets without reading them all
  pyfleet.server.backup_info:
    app: fleetdemo
    verify: false
  register: sets

- name: Show them
  ansible.builtin.debug:
    msg: "{{ sets.sets | map(attribute='id') | list }}"
"""

RETURN = r"""
sets:
  description: Every set, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    id: {description: Set id (UTC start time)., type: str, sample: 20250124T031500Z}
    path: {description: Directory of the set., type: str}
    created_at: {description: 'Start time, ISO 8601 in UTC.', type: str}
    age_seconds: {description: Age in seconds., type: float}
    size: {description: Bytes on disk (files of the manifest plus the manifest)., type: int}
    size_human: {description: Size for people., type: str, sample: 4.2 MiB}
    components: {description: Components the set holds., type: list, elements: str}
    complete: {description: 'Renamed from its temporary name, manifest readable, every file present.', type: bool}
    verified: {description: 'Every checksum matched; null when O(verify=false) and nothing looked wrong.', type: bool}
    good: {description: Complete and not found damaged., type: bool}
    problems: {description: What is wrong with the set., type: list, elements: str}
    encrypted: {description: Files are encrypted with age., type: bool}
    postgresql_format:
      description:
        - Format of the set's PostgreSQL dumps - V(custom) (C(<db>.dump)), V(directory) (C(<db>.dir/)) or V(plain)
          (C(<db>.sql.gz), plain SQL for C(psql)); null when the set holds no PostgreSQL dump.
      type: str
      sample: plain
    notes:
      description: What verification could not prove without the key (for encrypted sets), and similar remarks.
      type: list
      elements: str
    manifest_sha256: {description: sha256 of the set's manifest.json., type: str}
    host: {description: Host that wrote the set., type: str}
    app: {description: App the manifest names., type: str}
    duration_seconds: {description: How long the backup run took., type: float}
latest:
  description: The newest good set holding O(components), or null.
  returned: always
  type: dict
count:
  description: Number of sets (good or not).
  returned: always
  type: int
good:
  description: Number of good sets.
  returned: always
  type: int
msg:
  description: One-line summary.
  returned: always
  type: str
  sample: "3 sets of fleetdemo, 3 good; newest good 20250124T031500Z (12 min old, 4.2 MiB)"
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyfleet.server.plugins.module_utils.backup import (
    COMPONENTS,
    list_sets,
)

_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    match = _AGE_RE.match(str(text))
    if not match:
        raise ValueError(f"max_age must be a number of seconds or end in s, m, h or d, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def describe_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def summarise(app: str, root: str, verify: bool, components: list[str], max_age: float | None,
              now=None) -> tuple[bool, dict]:
    """(ok, result) for the module; ok is False only when the freshness gate fails."""
    sets = list_sets(os.path.join(root, app), app=app, checksums=verify, now=now)
    wanted = set(components)
    latest = next((s for s in sets if s.good and wanted <= set(s.components)), None)
    good = sum(1 for s in sets if s.good)
    holding = f" holding {', '.join(sorted(wanted))}" if wanted else ""
    if latest is not None:
        newest = (f"newest good{holding} {latest.id} ({describe_age(latest.age_seconds or 0)} old, "
                  f"{latest.to_dict()['size_human']})")
    else:
        newest = f"no good set{holding}"
    result = {
        "changed": False,
        "sets": [s.to_dict() for s in sets],
        "latest": latest.to_dict() if latest else None,
        "count": len(sets),
        "good": good,
        "msg": f"{len(sets)} sets of {app}, {good} good; {newest}",
    }
    ok = True
    if max_age is not None:
        if latest is None:
            ok = False
            where = os.path.join(root, app)
            result["msg"] = f"no good backup set{holding} of {app} in {where} (max_age {max_age:.0f} s)"
        elif (latest.age_seconds or 0) > max_age:
            ok = False
            result["msg"] = (f"the newest good backup set{holding} of {app}, {latest.id}, is "
                             f"{describe_age(latest.age_seconds or 0)} old, older than max_age "
                             f"({describe_age(max_age)})")
    return ok, result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "app": {"type": "str", "required": True},
            "root": {"type": "path", "default": "/var/backups/pyfleet"},
            "verify": {"type": "bool", "default": True},
            "components": {"type": "list", "elements": "str", "choices": list(COMPONENTS), "default": []},
            "max_age": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        max_age = parse_age(p["max_age"]) if p["max_age"] is not None else None
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    ok, result = summarise(p["app"], p["root"], p["verify"], p["components"], max_age)
    if not ok:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
