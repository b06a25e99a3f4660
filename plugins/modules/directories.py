#!/usr/bin/python
# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

# ruff: noqa: E402, EXE001

DOCUMENTATION = r"""
module: directories
short_description: Make a list of directories exist with their owner, group and mode, in one call
version_added: 0.1.0
author:
  - pyfleet.server contributors (@pyfleet)
description:
  - What a loop of M(ansible.builtin.file) with O(ansible.builtin.file#module:state=directory) does, in one module
    run instead of one per directory (each module run costs a round trip to the host and a Python start there).
  - Entries are handled in order. A missing directory is created with its missing parents; like
    M(ansible.builtin.file), the parents it creates get the entry's owner, group and mode. An existing directory
    gets the owner, group and mode that differ. An entry whose path exists and is not a directory (a file, or a
    symbolic link, which is never followed) fails the task.
  - Stops at the first entry that fails; entries before it keep what they got.
extends_documentation_fragment:
  - pyfleet.server.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports which directories would be created or changed, and changes nothing. The owner and group must exist
        already (as for M(ansible.builtin.file)).
  diff_mode:
    support: full
    details:
      - One before/after pair per directory that changes (state, owner, group, mode).
  idempotent:
    support: full
options:
  paths:
    description: The directories, in the order they are made.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      owner:
        description: Owner (name or uid). Unchanged when omitted.
        type: str
      group:
        description: Group (name or gid). Unchanged when omitted.
        type: str
      mode:
        description:
          - Mode as M(ansible.builtin.file) takes it, an octal string such as V("0750") or a symbolic mode such as
            V(u=rwx,g=rx,o=). Quote octal modes.
          - Unchanged when omitted (a created directory then gets the default mode the umask leaves).
        type: raw
seealso:
  - module: ansible.builtin.file
"""

EXAMPLES = r"""
- name: Create the release tree
  pyfleet.server.directories:
    paths:
      - {path: /opt/app, owner: root, group: root, mode: "0755"}
      - {path: /opt/app/releases, owner: root, group: root, mode: "0755"}
      - {path: /opt/app/shared, owner: app, group: app, mode: "0750"}
"""

RETURN = r"""
paths:
  description: Every entry, in order, with what this run did to it.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The directory.
      type: str
    created:
      description: Whether it (or one of its parents) did not exist and was created (in check mode, would be).
      type: bool
    changed:
      description: Whether it was created or its owner, group or mode changed (in check mode, would).
      type: bool
  sample: [{path: /opt/app, created: false, changed: false}]
"""

import os

from ansible.module_utils.basic import AnsibleModule


def missing_parts(path: str) -> list[str]:
    """The path and those of its parents that do not exist, outermost first."""
    missing = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return list(reversed(missing))


def ensure(module: AnsibleModule, entry: dict) -> tuple[dict, dict]:
    """Makes one entry's directory as asked; returns its result and its before/after diff."""
    path = entry["path"]
    if not os.path.isabs(path):
        module.fail_json(msg=f"paths: {path!r} is not an absolute path", path=path)
    diff = {"before": {"path": path}, "after": {"path": path}, "before_header": path, "after_header": path}
    missing = missing_parts(path)
    # The first existing ancestor (or the path itself) must be a directory, never a file or a link to one.
    existing = os.path.dirname(missing[0]) if missing else path
    if (not missing and os.path.islink(path)) or not os.path.isdir(existing):
        module.fail_json(msg=f"paths: {existing} exists and is not a directory", path=path)
    created = bool(missing)
    changed = created
    if created:
        diff["before"]["state"] = "absent"
        diff["after"]["state"] = "directory"
    if created and module.check_mode:
        return {"path": path, "created": True, "changed": True}, diff
    for part in missing:
        try:
            os.mkdir(part)
        except OSError as err:
            module.fail_json(msg=f"paths: cannot create {part}: {err}", path=path)
        # Created parents get the entry's attributes, as ansible.builtin.file gives them.
        if part != path:
            module.set_fs_attributes_if_different(module.load_file_common_arguments({**entry, "path": part}), False)
    changed = module.set_fs_attributes_if_different(module.load_file_common_arguments(entry), changed, diff)
    return {"path": path, "created": created, "changed": changed}, diff


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "owner": {"type": "str"},
                    "group": {"type": "str"},
                    "mode": {"type": "raw"},
                },
            },
        },
        supports_check_mode=True,
    )
    results, diffs = [], []
    for entry in module.params["paths"]:
        result, diff = ensure(module, entry)
        results.append(result)
        if result["changed"]:
            diffs.append(diff)
    module.exit_json(changed=any(r["changed"] for r in results), paths=results, diff=diffs)


if __name__ == "__main__":
    main()
