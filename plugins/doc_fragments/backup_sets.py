# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: the options that say where an app's backup sets are, shared by the modules that read
# them (backup_info, restore). The defaults match the backup role's backup_root.

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  app:
    description:
      - Application the backup sets belong to (the C(backup_app) of the C(pyfleet.server.backup) role). Its sets are
        the directories below O(root)/O(app).
      - A set whose manifest names another app counts as damaged and is never used.
    type: str
    required: true
  root:
    description: Directory holding the sets of every app (the C(backup_root) of the C(pyfleet.server.backup) role).
    type: path
    default: /var/backups/pyfleet
"""
