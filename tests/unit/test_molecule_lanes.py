"""`make test` runs the Molecule scenarios in parallel lanes (scripts/molecule-lanes.sh): every scenario must be named
in exactly one lane, so a new scenario is placed on purpose (where it balances the lanes) rather than appended."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "molecule-lanes.sh"
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def _default_lanes() -> list[list[str]]:
    match = re.search(r"^LANES=\$\{MOLECULE_LANES:-([^}]*)\}$", SCRIPT.read_text(), re.MULTILINE)
    assert match, "scripts/molecule-lanes.sh has no default MOLECULE_LANES"
    return [lane.split(",") for lane in match.group(1).split()]


def test_every_scenario_is_in_exactly_one_lane():
    named = [s for lane in _default_lanes() for s in lane]
    assert sorted(named) == SCENARIOS, f"lanes name {sorted(named)}, molecule/ has {SCENARIOS}"


def test_there_are_at_least_two_lanes():
    assert len(_default_lanes()) >= 2


def test_no_scenario_at_all_runs_nothing(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "no scenario" in result.stdout, result
