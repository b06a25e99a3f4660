from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from fleetdemo.admin import alembic_config

APP_DIR = Path(__file__).resolve().parents[1]


def test_migration_chain_is_found_through_package_resources() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("postgresql+psycopg://u@h/db"))
    assert script.get_current_head() == "0002"
    assert [rev.revision for rev in script.walk_revisions()] == ["0002", "0001"]


def test_wheel_ships_migrations_as_package_data(tmp_path: Path) -> None:
    # Build offline with the installed setuptools/wheel when present (fast), else isolated.
    local_backend = all(importlib.util.find_spec(m) for m in ("setuptools", "wheel"))
    isolation = ["--no-build-isolation"] if local_backend else []
    source = tmp_path / "src-copy"
    shutil.copytree(APP_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", ".*"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *isolation,
         "--wheel-dir", str(tmp_path), str(source)],
        check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("fleetdemo-1.0.0-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "fleetdemo/main.py",
        "fleetdemo/wsgi.py",
        "fleetdemo/migrations/env.py",
        "fleetdemo/migrations/script.py.mako",
        "fleetdemo/migrations/versions/0001_create_items.py",
        "fleetdemo/migrations/versions/0002_items_created_at_index.py",
    ):
        assert required in names
    entry_points = zipfile.ZipFile(wheel).read("fleetdemo-1.0.0.dist-info/entry_points.txt")
    assert b"fleetdemo-admin = fleetdemo.admin:main" in entry_points
