# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: the wording of the attributes every module declares. Each module still states its own
# support level (and details) under attributes:, or extends the read_only fragment below.

from __future__ import annotations


class ModuleDocFragment:
    # What each attribute means; the module says how far it supports it.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
"""

    # For modules that only read (use together with the standard fragment).
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - Read-only, so it runs normally in check mode and reports the real result.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - This module does not change anything.
"""
