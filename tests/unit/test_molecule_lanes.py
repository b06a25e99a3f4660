"""`make test` runs the Molecule scenarios and the integration suite in parallel lanes (scripts/molecule-lanes.sh):
each must be named in exactly one lane, so a new scenario is placed on purpose (where it balances the lanes' time)
rather than appended."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "molecule-lanes.sh"
# Scenarios committed but not yet in `make test` (the Makefile's SCENARIOS_NOT_IN_LANES, e.g. dr until issue 11's
# kill-the-host run is done): they must not be in a lane, and every other scenario must be in exactly one.
_NOT_IN_LANES = re.search(r"^SCENARIOS_NOT_IN_LANES := (.*)$", (REPO / "Makefile").read_text(), re.MULTILINE)
NOT_IN_LANES = set(_NOT_IN_LANES.group(1).split()) if _NOT_IN_LANES else set()
SCENARIOS = sorted(
    p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml") if p.parent.name not in NOT_IN_LANES)


def _default_lanes() -> list[list[str]]:
    match = re.search(r"^LANES=\$\{MOLECULE_LANES:-([^}]*)\}$", SCRIPT.read_text(), re.MULTILINE)
    assert match, "scripts/molecule-lanes.sh has no default MOLECULE_LANES"
    return [lane.split(",") for lane in match.group(1).split()]


def test_every_scenario_the_integration_suite_lint_and_unit_are_in_exactly_one_lane():
    named = [s for lane in _default_lanes() for s in lane]
    assert sorted(named) == sorted([*SCENARIOS, "integration", "lint", "unit"]), \
        f"lanes name {sorted(named)}; scenarios: {SCENARIOS}"


def test_make_test_runs_lint_and_unit_as_lane_steps_without_setup():
    """`make test` hands lint and unit to the lanes as steps; run there they must not run setup again."""
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "molecule-lanes.sh lint unit integration" in recipe, recipe
    assert re.search(r"^lint: \$\(SETUP\)$", makefile, re.MULTILINE), "lint must depend on $(SETUP)"
    assert re.search(r"^unit: \$\(SETUP\)$", makefile, re.MULTILINE), "unit must depend on $(SETUP)"
    assert 'NO_SETUP=1 "$s"' in SCRIPT.read_text()


def test_scenarios_not_in_lanes_yet_exist_and_are_in_no_lane():
    named = {s for lane in _default_lanes() for s in lane}
    for name in NOT_IN_LANES:
        assert (REPO / "molecule" / name / "molecule.yml").is_file(), name
        assert name not in named, f"{name} is in a lane: take it out of the Makefile's SCENARIOS_NOT_IN_LANES"


def test_there_are_at_least_two_lanes():
    assert len(_default_lanes()) >= 2


def test_no_step_at_all_runs_nothing():
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "no step" in result.stdout, result


def test_lanes_run_every_step_side_by_side_and_report_each_failure(tmp_path):
    """The script itself, with stand-ins for `molecule` and the integration suite: steps of one lane in order,
    lanes in parallel, every step timed, the second lane's output printed after both lanes, failures named."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("molecule-lanes.sh", "timed.sh"):
        (scripts / name).write_bytes((REPO / "scripts" / name).read_bytes())
    (scripts / "run-pytest.sh").write_text("#!/bin/sh\necho integration-ran \"$@\"\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "molecule").write_text(
        "#!/bin/sh\n# molecule test -s NAME: scenario 'bad' fails, 'slow' takes a moment\n"
        'echo "scenario $3 ran"\n[ "$3" = slow ] && sleep 1\n[ "$3" != bad ]\n')
    for path in (*scripts.iterdir(), bin_dir / "molecule"):
        path.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYFLEET_TIMES": str(tmp_path / "build" / "times.tsv"),
           "MOLECULE_LANES": "slow,integration bad,ok"}
    result = subprocess.run(["bash", str(scripts / "molecule-lanes.sh"), "integration", "slow", "bad", "ok"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    out = result.stdout
    assert result.returncode == 1 and "lanes: failed: bad" in out, out + result.stderr
    # Lane 1 prints as it runs; lane 2's output comes after both lanes ended.
    assert out.index("scenario slow ran") < out.index("integration-ran tests/integration")
    assert out.index("integration-ran") < out.index("scenario bad ran") < out.index("scenario ok ran")
    times = (tmp_path / "build" / "times.tsv").read_text()
    for row in ("molecule:slow\t", "integration\t", "molecule:ok\t"):
        assert row in times, times
    assert "molecule:bad\t0\tFAILED" in times or "molecule:bad\t1\tFAILED" in times, times


def test_timed_step_records_the_cpu_of_what_it_waited_for_and_the_table_prints_it(tmp_path):
    """timed.sh's fourth column is the CPU of the step's processes (here a child that burns 1.2 s of it), and
    time-table.sh prints it beside the step's wall time."""
    times = tmp_path / "build" / "times.tsv"
    burn = "import time\nwhile time.process_time() < 1.2: pass\n"
    result = subprocess.run(["bash", str(REPO / "scripts" / "timed.sh"), "burn", sys.executable, "-c", burn],
                            capture_output=True, text=True, env={"PYFLEET_TIMES": str(times), "PATH": "/usr/bin:/bin"},
                            check=False)
    assert result.returncode == 0, result
    name, _wall, status, cpu = times.read_text().strip().split("\t")
    assert (name, status) == ("burn", "ok") and int(cpu) >= 1, times.read_text()
    table = subprocess.run(["bash", str(REPO / "scripts" / "time-table.sh"), str(times)], capture_output=True,
                           text=True, check=True).stdout
    assert re.search(rf"^burn +\d+  ok +CPU +{cpu}$", table, re.M), table
