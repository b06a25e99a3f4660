"""Makes ``ansible_collections.pyfleet.server`` importable from this checkout under plain pytest."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

if importlib.util.find_spec("ansible_collections") is None or \
        importlib.util.find_spec("ansible_collections.pyfleet") is None:
    farm = Path(tempfile.mkdtemp(prefix="pyfleet-coll-"))
    (farm / "ansible_collections" / "pyfleet").mkdir(parents=True)
    (farm / "ansible_collections" / "pyfleet" / "server").symlink_to(REPO)
    sys.path.insert(0, str(farm))
