"""Makes ``ansible_collections.pyfleet.server`` importable from this checkout under plain pytest."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

try:
    import ansible_collections.pyfleet.server.plugins  # noqa: F401
except ImportError:
    farm = Path(tempfile.mkdtemp(prefix="pyfleet-coll-"))
    (farm / "ansible_collections" / "pyfleet").mkdir(parents=True)
    (farm / "ansible_collections" / "pyfleet" / "server").symlink_to(REPO)
    sys.path.insert(0, str(farm))
