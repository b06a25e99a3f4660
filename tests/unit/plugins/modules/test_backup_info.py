"""pyfleet.server.backup_info: summary, freshness gate, and what it says about encrypted sets."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from ansible_collections.pyfleet.server.plugins.modules import backup_info as m

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
from test_backup import make_set  # noqa: E402

NOW = dt.datetime(2025, 1, 24, 12, 0, 0, tzinfo=dt.UTC)


def encrypt_in_place(set_dir: Path) -> None:
    """Turn a plain set into what the program writes with age_recipients (fake ciphertext, real header)."""
    manifest = json.loads((set_dir / "manifest.json").read_text())
    files = {}
    for rel, record in manifest["files"].items():
        plain = (set_dir / rel).read_bytes()
        (set_dir / f"{rel}.age").write_bytes(b.AGE_MAGIC + plain[::-1])
        (set_dir / rel).unlink()
        files[f"{rel}.age"] = {**b.file_records(str(set_dir), f"{rel}.age")[f"{rel}.age"],
                               "plain_sha256": record["sha256"], "plain_size": record["size"]}
    manifest.update(files=files, encryption={"tool": "age", "recipients": ["age1" + "q" * 58]})
    (set_dir / "manifest.json").write_text(json.dumps(manifest))


def test_parse_age():
    assert m.parse_age("30m") == 1800 and m.parse_age("2d") == 172800 and m.parse_age(90) == 90
    with pytest.raises(ValueError, match="max_age must be a number of seconds"):
        m.parse_age("soon")


def test_summary_and_freshness_gate(tmp_path):
    make_set(tmp_path, "20250124T100000Z")
    make_set(tmp_path, "20250124T110000Z", components=("postgresql",))
    ok, result = m.summarise("fleetdemo", str(tmp_path), True, [], None, now=NOW)
    assert ok and result["count"] == 2 and result["good"] == 2
    assert result["msg"] == "2 sets of fleetdemo, 2 good; newest good 20250124T110000Z (60 min old, 350 B)"
    ok, result = m.summarise("fleetdemo", str(tmp_path), True, ["redis"], 3600, now=NOW)
    assert not ok and "20250124T100000Z, is 2.0 h old, older than max_age (60 min)" in result["msg"]


def test_an_encrypted_set_is_good_with_a_note_and_unprovable_entries_are_problems(tmp_path):
    path = make_set(tmp_path, "20250124T110000Z")
    encrypt_in_place(path)
    ok, result = m.summarise("fleetdemo", str(tmp_path), True, ["postgresql"], 7200, now=NOW)
    entry = result["sets"][0]
    assert ok and entry["good"] and entry["encrypted"] and entry["problems"] == []
    assert "can only be checked with the key" in entry["notes"][0]
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]["redis/dump.rdb.age"]["plain_sha256"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    ok, result = m.summarise("fleetdemo", str(tmp_path), True, ["postgresql"], 7200, now=NOW)
    assert not ok and result["latest"] is None
    assert result["sets"][0]["problems"] == [
        "redis/dump.rdb.age: the manifest does not say what it decrypts to (plain_sha256, plain_size), so its "
        "content cannot be proven without the key"]
