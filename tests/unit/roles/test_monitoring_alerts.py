"""The monitoring role's alert catalogue stays whole: every alert in its defaults is rendered by a template, has a
threshold range exactly when it has a threshold, is covered by a firing and a quiet promtool test case, and is
documented in docs/monitoring.md (issue 13: "at least one firing and one quiet case per alert")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles/monitoring"
DEFAULTS = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
VARS = yaml.safe_load((ROLE / "vars/main.yml").read_text())
ALERTS = DEFAULTS["monitoring_alerts"]
TEMPLATES = {
    "app": (ROLE / "templates/app.rules.yml.j2").read_text(),
    "host": (ROLE / "templates/hosts.rules.yml.j2").read_text(),
}


def _cases() -> dict[str, dict[str, int]]:
    """{alertname: {"firing": n, "quiet": n}} over every alert_rule_test of tests/promtool/*.test.yml."""
    counts: dict[str, dict[str, int]] = {}
    for path in sorted((ROOT / "tests/promtool").glob("*.test.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test") or []:
                kind = "firing" if case.get("exp_alerts") else "quiet"
                counts.setdefault(case["alertname"], {"firing": 0, "quiet": 0})[kind] += 1
    return counts


def test_every_alert_has_one_scope():
    app, host = VARS["_monitoring_app_alerts"], VARS["_monitoring_host_alerts"]
    assert not set(app) & set(host), "an alert is both per app and fleet-wide"
    assert sorted(app + host) == sorted(ALERTS), "vars/main.yml's alert lists and defaults' monitoring_alerts differ"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_is_rendered(name: str):
    scope = "app" if name in VARS["_monitoring_app_alerts"] else "host"
    assert f"name == '{name}'" in TEMPLATES[scope], f"{name}: no branch in the {scope} rules template"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_thresholds_have_a_range_and_defaults_are_in_it(name: str):
    spec, ranges = ALERTS[name], VARS["_monitoring_threshold_ranges"]
    assert ("threshold" in spec) == (name in ranges), f"{name}: a threshold needs a range in vars/main.yml and back"
    if "threshold" in spec:
        r, value = ranges[name], spec["threshold"]
        assert (value > r["min"]) if r["min_open"] else (value >= r["min"]), f"{name}: default below its range"
        assert value <= r["max"], f"{name}: default above its range"
    assert re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", spec["for"]), f"{name}: for is not a duration"
    assert spec["severity"] in {"critical", "warning", "info"}


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_fires_and_stays_quiet_in_promtool_tests(name: str):
    counts = _cases().get(name, {"firing": 0, "quiet": 0})
    assert counts["firing"] >= 1, f"{name}: no promtool case where it fires"
    assert counts["quiet"] >= 1, f"{name}: no promtool case where it stays quiet"


def test_promtool_tests_name_only_known_alerts():
    assert set(_cases()) <= set(ALERTS), f"tests for unknown alerts: {set(_cases()) - set(ALERTS)}"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_is_documented(name: str):
    doc = (ROOT / "docs/monitoring.md").read_text()
    assert re.search(rf"^\| `{name}` \|", doc, re.M), f"{name}: no row in docs/monitoring.md's alert table"
