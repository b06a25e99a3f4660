# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The checks every role's preflight starts with (documented in plugins/modules/preflight_common.py): the host's OS is
one the role's meta/main.yml lists, and every variable named like the role's (``<role>_*``) is one the role knows.

All on the controller: the role's files are read once (cached by path and mtime, see read_role), the facts the play
already gathered are used (gathered here, the distribution subset only, when the play has none), and the variables
are the task's own. The logic is in plugins/plugin_utils/preflight_common.py."""

from __future__ import annotations

import os

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.pyfleet.server.plugins.plugin_utils.preflight_common import (
    platform_error,
    read_role,
    unknown_message,
    unknown_variables,
)

ARGUMENT_SPEC = {
    "role_path": {"type": "path"},
    "prefix": {"type": "str"},
    "unknown": {"type": "str", "choices": ["warn", "fail"], "default": "warn"},
    "reason": {"type": "str", "default": ""},
}


class ActionModule(ActionBase):
    """Controller-side: no module runs on the host unless the play gathered no distribution facts."""

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        role_path = args["role_path"] or getattr(getattr(self._task, "_role", None), "_role_path", None)
        if not role_path:
            raise AnsibleActionFail("pyfleet.server.preflight_common runs in a role's tasks, or needs role_path")
        role = os.path.basename(os.path.normpath(role_path))
        prefix = args["prefix"] or f"{role}_"
        # Beside Ansible's per-run local temporary directories (~/.ansible/tmp by default), the user's own.
        info = read_role(role_path, os.path.dirname(C.DEFAULT_LOCAL_TMP))

        facts = task_vars.get("ansible_facts") or {}
        if not facts.get("distribution"):
            # The play gathered nothing: the distribution subset alone (kept as facts for the tasks after this one).
            gathered = self._execute_module(module_name="ansible.legacy.setup", task_vars=task_vars,
                                            module_args={"gather_subset": ["!all", "!min", "distribution"]})
            if gathered.get("failed"):
                raise AnsibleActionFail(f"could not read the host's distribution: {gathered.get('msg', gathered)}")
            result["ansible_facts"] = gathered.get("ansible_facts", {})
            facts = {k.removeprefix("ansible_"): v for k, v in result["ansible_facts"].items()}

        error = platform_error(role, info["platforms"], facts, args["reason"])
        if error:
            result.update(failed=True, msg=error)
            return result

        unknown = unknown_variables(list(task_vars), prefix, info["known"])
        result.update(changed=False, unknown_variables=unknown, msg="ok")
        if unknown:
            host = task_vars.get("inventory_hostname", "this host")
            message = unknown_message(role, unknown, info["known"], prefix, host)
            if args["unknown"] == "fail":
                result.update(failed=True, msg=message)
            else:
                result.setdefault("warnings", []).append(message)
                result["msg"] = message
        return result
