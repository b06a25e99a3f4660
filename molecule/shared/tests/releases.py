"""Make release variants of the reference app's wheelhouse on the controller (for release/rollback tests).

A variant is the 1.0.0 wheelhouse with the app's wheel re-versioned (and, for a broken release, an API that
cannot start), its RECORD rewritten so pip installs it like any other wheel.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
WHEELHOUSE = REPO / "build" / "wheelhouse" / "fleetdemo"
BREAK = '\nraise RuntimeError("fleetdemo: deliberately broken release (rollback test)")\n'


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_release(dest: Path, version: str, broken: bool = False) -> Path:
    """Copy the wheelhouse to dest with fleetdemo re-versioned to `version`; returns dest."""
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in WHEELHOUSE.glob("*.whl"):
        if not wheel.name.startswith("fleetdemo-"):
            shutil.copy2(wheel, dest / wheel.name)
    source = next(WHEELHOUSE.glob("fleetdemo-1.0.0-*.whl"))
    old_info, new_info = "fleetdemo-1.0.0.dist-info/", f"fleetdemo-{version}.dist-info/"
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(source) as zin:
        for item in zin.infolist():
            data = zin.read(item)
            name = item.filename.replace(old_info, new_info)
            if name.endswith("dist-info/RECORD"):
                continue
            if name == new_info + "METADATA":
                data = data.replace(b"\nVersion: 1.0.0\n", f"\nVersion: {version}\n".encode())
            if name == "fleetdemo/__init__.py":
                data = data.replace(b'"1.0.0"', f'"{version}"'.encode())
            if broken and name == "fleetdemo/main.py":
                data += BREAK.encode()
            files[name] = data
    record = [_record_line(n, d) for n, d in files.items()] + [f"{new_info}RECORD,,"]
    target = dest / source.name.replace("1.0.0", version)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in files.items():
            zout.writestr(name, data)
        zout.writestr(new_info + "RECORD", "\n".join(record) + "\n")
    return dest
