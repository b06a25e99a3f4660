#!/usr/bin/python
# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Documentation only: the work is done on the controller by the action plugin of the same name
# (plugins/action/preflight_common.py).

from __future__ import annotations

DOCUMENTATION = r"""
module: preflight_common
short_description: Refuse an OS a role does not support and warn about variables it does not know
version_added: 0.1.0
author:
  - pyfleet.server contributors (@pyfleet)
description:
  - The first check of every pyfleet.server role's preflight. It reads the role's C(meta/main.yml),
    C(meta/argument_specs.yml), C(defaults/) and C(vars/) on the controller (once per process).
  - Fails when the host's distribution and release are not among the role's C(galaxy_info.platforms), naming both
    (for example V(pyfleet.server.app supports Debian 12 (bookworm\); this host is Ubuntu 22.04 (jammy\))).
  - Uses the facts the play gathered. When it has none, it gathers the C(distribution) subset itself and returns it
    as facts. Nothing else runs on the host.
  - Lists the host's variables named like the role's (O(prefix)) that the role does not know (an option of any of its
    entry points, a default, one of its internal values, or a fact or result its tasks set). Such a variable is most
    likely misspelt and would be silently ignored. It warns once, naming each with the closest known name
    (V(app_health_ur (did you mean app_health_url?\))), or fails with O(unknown=fail).
extends_documentation_fragment:
  - pyfleet.server.attributes
  - pyfleet.server.attributes.read_only
attributes:
  action:
    support: full
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on
      the controller.
options:
  role_path:
    description:
      - The role whose platforms and variables are checked. Defaults to the role of the task.
    type: path
  prefix:
    description:
      - What the names of the role's variables start with. Defaults to the role's name and V(_), such as V(app_).
    type: str
  unknown:
    description:
      - What an unknown variable named like the role's does. V(warn) names them in one warning, V(fail) stops the host.
    type: str
    choices: [warn, fail]
    default: warn
  reason:
    description:
      - Appended to the refusal of an unsupported OS, to say why the role cannot run there.
    type: str
    default: ""
"""

EXAMPLES = r"""
# The first task of a role's tasks/preflight.yml.
- name: Check the platform and the role's variables
  pyfleet.server.preflight_common:

- name: Refuse unknown variables instead of warning about them
  pyfleet.server.preflight_common:
    unknown: fail
"""

RETURN = r"""
unknown_variables:
  description: The host's variables named like the role's that the role does not know, sorted.
  returned: unless the OS is refused
  type: list
  elements: str
  sample: [app_health_ur]
ansible_facts:
  description: The distribution facts, when the play had not gathered them.
  returned: when gathered
  type: dict
  sample: {ansible_distribution: Debian, ansible_distribution_release: bookworm}
"""
