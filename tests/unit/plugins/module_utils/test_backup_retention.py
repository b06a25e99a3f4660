"""Retention in tiers: every set for a day, then one a day, then one a week; only good sets count as kept."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from test_backup import FakeRunner, job_config, make_set

# A Friday; ISO week 4 of 2025 runs from Monday 20 to Sunday 26 January.
NOW = dt.datetime(2025, 1, 24, 12, 0, 0, tzinfo=dt.UTC)
QUARTER = dt.timedelta(minutes=15)


def schedule(days: int, every: dt.timedelta = QUARTER, components=("postgresql", "redis")) -> list[b.SetInfo]:
    """A set every ``every`` from ``days`` days ago up to NOW, newest first, all good."""
    sets = []
    moment = NOW
    while moment >= NOW - dt.timedelta(days=days):
        set_id = b.new_set_id(moment)
        sets.append(b.SetInfo(id=set_id, path=f"/b/fleetdemo/{set_id}", complete=True, components=list(components)))
        moment -= every
    return sets


def kept(sets: list[b.SetInfo], policy: b.Retention) -> list[str]:
    doomed = {s.id for s in b.retention_plan(sets, policy, now=NOW)}
    return [s.id for s in sets if s.id not in doomed]


def test_fifteen_minutes_over_ten_days_keeps_a_day_of_everything_then_dailies():
    sets = schedule(10)
    assert len(sets) == 961
    remaining = kept(sets, b.Retention())
    # Every set of the last 24 h (both ends included) ...
    day = [b.new_set_id(NOW - i * QUARTER) for i in range(97)]
    assert remaining[:97] == day
    # ... then the newest set of each older day, 7 days in all counting today and yesterday (already in the 24 h);
    # the weekly of last week (Sunday 19th) is one of those dailies; the sets before the 18th are gone.
    assert remaining[97:] == ["20250122T234500Z", "20250121T234500Z", "20250120T234500Z", "20250119T234500Z",
                              "20250118T234500Z"]


def test_weeklies_reach_back_past_the_dailies():
    sets = schedule(40)
    remaining = kept(sets, b.Retention())
    assert len(remaining) == 97 + 5 + 2
    # ISO weeks 4 (now), 3 (Sunday 19th, a daily too), 2 (Sunday 12th) and 1 (Sunday 5th): four weeklies.
    assert remaining[-2:] == ["20250112T234500Z", "20250105T234500Z"]
    assert sets[-1].id not in remaining


def test_damaged_and_incomplete_sets_never_count_as_kept():
    sets = schedule(10)
    by_id = {s.id: s for s in sets}
    # The daily of the 22nd is damaged: the day's next newest good set takes its place, and it is removed.
    by_id["20250122T234500Z"].verified = False
    by_id["20250122T234500Z"].problems.append("postgresql/fleetdemo.dump: sha256 mismatch")
    # A damaged set inside the 24 h stays visible for the operator but fills no place.
    by_id["20250124T110000Z"].problems.append("redis/dump.rdb is missing")
    by_id["20250124T110000Z"].complete = False
    remaining = kept(sets, b.Retention())
    assert "20250122T234500Z" not in remaining and "20250122T233000Z" in remaining
    assert "20250124T110000Z" in remaining
    doomed = [s.id for s in b.retention_plan(sets, b.Retention(), now=NOW)]
    assert "20250122T234500Z" in doomed and "20250124T110000Z" not in doomed


def test_the_newest_good_set_always_stays():
    sets = schedule(3, every=dt.timedelta(days=1))
    sets[0].verified = False  # the newest set is damaged
    nothing = b.Retention(keep_all_hours=0, keep_daily=0, keep_weekly=0, keep_last=0)
    doomed = [s.id for s in b.retention_plan(sets, nothing, now=NOW + dt.timedelta(days=30))]
    assert doomed == [sets[0].id, sets[2].id, sets[3].id]  # the damaged newest goes, the newest good one stays


def test_tiers_apply_per_component():
    databases = schedule(10)
    for info in databases:
        info.components = ["postgresql"]
    files = schedule(10, every=dt.timedelta(days=1), components=("files",))
    for info in files:
        info.id = info.id[:9] + "033010Z"
        info.path = "/b/fleetdemo/" + info.id
    sets = sorted(databases + files, key=lambda s: s.id, reverse=True)
    remaining = kept(sets, b.Retention(keep_all_hours=24, keep_daily=3, keep_weekly=0))
    kept_files = [i for i in remaining if i.endswith("033010Z")]
    # The daily files sets are kept by the files tiers, whatever the 15-minute database sets do.
    assert kept_files == ["20250124T033010Z", "20250123T033010Z", "20250122T033010Z"]


def test_config_keys_and_the_older_keep_count_and_keep_days():
    assert b.Retention.from_config({}) == b.Retention(24, 7, 4, 1)
    assert b.Retention.from_config({"keep_all_hours": "12", "keep_daily": 3, "keep_weekly": 0}) == \
        b.Retention(12, 3, 0, 1)
    # keep_count N kept the N newest sets: keep_last; keep_days D promised D days of history: keep_daily.
    assert b.Retention.from_config({"keep_count": "96", "keep_days": "7.0"}) == b.Retention(24, 7, 4, 96)
    assert b.Retention.from_config({"keep_days": 1.5}).keep_daily == 2
    with pytest.raises(b.BackupError, match="retention: keep_days is the old name of keep_daily; give only keep_daily"):
        b.Retention.from_config({"keep_days": 7, "keep_daily": 7})
    with pytest.raises(b.BackupError, match=r"retention: keep_weekly must be a number of 0 or more, got -1"):
        b.Retention.from_config({"keep_weekly": -1})


def _sets_on_disk(root, moments):
    for moment in moments:
        make_set(root, b.new_set_id(moment), components=("postgresql",))


def test_the_older_defaults_now_keep_seven_days(tmp_path, monkeypatch):
    """keep_count 96 + keep_days 7 on a 15-minute schedule used to keep 24 h; keep_days never applied."""
    monkeypatch.setattr(b.shutil, "which", lambda name: None)
    root = tmp_path / "backups"
    hourly = [NOW - dt.timedelta(hours=h) for h in range(1, 101)]  # 100 sets over the last 4 days and more
    daily = [NOW - dt.timedelta(days=d, minutes=1) for d in range(5, 10)]
    _sets_on_disk(root, hourly + daily)
    config = job_config(tmp_path, redis=None, files=None, keep_count=96, keep_days=7)
    logs: list[str] = []
    deleted = b.BackupJob(config, FakeRunner(tmp_path / "dump.rdb"), log=logs.append, clock=lambda: NOW).prune()
    left = sorted((n for n in os.listdir(root / "fleetdemo") if n != ".lock"), reverse=True)
    # Days 19th-24th (today, and 6 days back) keep at least their newest set; the 15th-17th go (older than 7 days,
    # not in a weekly bucket of their own: the 19th is the newest of ISO week 3, the 15th-17th are week 3 too).
    days = {name[:8] for name in left}
    assert {"20250124", "20250123", "20250122", "20250121", "20250120", "20250119", "20250118"} <= days
    assert len([n for n in left if n < "20250123T120000Z"]) >= 5
    assert "20250115T115900Z" not in left and "20250115T115900Z" in deleted
    assert any(line.startswith("retention (every set for 24 h, 7 daily, 4 weekly, newest 96)") for line in logs)
    manifest = json.loads((root / "fleetdemo" / left[0] / "manifest.json").read_text())
    assert manifest["id"] == left[0]
