"""nginx preflight refuses bad restricted locations and static archives, naming the variable and the problem.

One ansible-playbook run on the controller (connection local, nothing changes: preflight only asserts and stats):
each inventory host is one case, with its variables as host_vars.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]

METRICS = {"path": "/api/metrics", "allow": ["127.0.0.1"]}

# case: (variables, expected text or None when the input is good); {tmp} is the case directory.
CASES: dict[str, tuple[dict, str | None]] = {
    "good-restricted": ({"nginx_restricted_locations": [
        METRICS, {"path": "/admin/", "match": "prefix", "allow": ["10.0.0.0/8", "::1"]},
        {"path": "/admin/", "match": "exact", "allow": ["10.0.0.1"]},
        {"path": "/metrics", "match": "prefix", "allow": ["10.0.0.1"]}]}, None),
    "good-archive": ({"nginx_static_root": "{tmp}/www/app", "nginx_static_archive": "{tmp}/app.tar.gz"}, None),
    "good-archive-root-is-link": (
        {"nginx_static_root": "{tmp}/link", "nginx_static_archive": "{tmp}/app.tar.gz"}, None),
    "path-relative": (
        {"nginx_restricted_locations": [{"path": "api/metrics", "allow": ["127.0.0.1"]}]},
        "nginx_restricted_locations[0] (api/metrics): path must start with /"),
    "path-with-brace": (
        {"nginx_restricted_locations": [{"path": "/x{ }", "allow": ["127.0.0.1"]}]},
        "nginx_restricted_locations[0] (/x{ }): path must start with / and hold no spaces, braces"),
    "match-unknown": (
        {"nginx_restricted_locations": [METRICS, {"path": "/a", "match": "regex", "allow": ["127.0.0.1"]}]},
        "nginx_restricted_locations"),
    "allow-empty": (
        {"nginx_restricted_locations": [{"path": "/api/metrics", "allow": []}]},
        "nginx_restricted_locations[0] (/api/metrics): allow must list at least one IP address or CIDR network"),
    "allow-not-address": (
        {"nginx_restricted_locations": [{"path": "/api/metrics", "allow": ["10.0.0.0/33", "all", "127.0.0.1"]}]},
        "nginx_restricted_locations[0] (/api/metrics): allow entries must be IP addresses or CIDR networks "
        "(e.g. 10.0.0.5 or 10.0.0.0/8), not 10.0.0.0/33, all"),
    "duplicate": (
        {"nginx_restricted_locations": [METRICS, {"path": "/b", "allow": ["::1"]},
                                        {**METRICS, "match": "exact", "allow": ["10.0.0.1"]}]},
        "nginx_restricted_locations[2] (/api/metrics): duplicates an earlier entry with the same path and match"),
    "metrics-exact": (
        {"nginx_restricted_locations": [{"path": "/metrics", "allow": ["10.0.0.1"]}]},
        "nginx_restricted_locations[0] (/metrics): /metrics (exact) is the site's own location: set "
        "nginx_metrics_allow instead"),
    "whole-site": (
        {"nginx_restricted_locations": [{"path": "/", "match": "prefix", "allow": ["10.0.0.1"]}]},
        "nginx_restricted_locations[0] (/): prefix / would restrict the whole site"),
    "unknown-key": (
        {"nginx_restricted_locations": [{"path": "/api/metrics", "allow": ["::1"], "allowed": ["10.0.0.1"]}]},
        # The argument spec (checked when site.yml includes the preflight) names it first.
        "nginx_restricted_locations.allowed. Supported parameters include: allow, match, path"),
    "archive-without-root": (
        {"nginx_static_archive": "{tmp}/app.tar.gz"},
        "nginx_static_archive needs nginx_static_root"),
    "archive-relative": (
        {"nginx_static_root": "{tmp}/www/app", "nginx_static_archive": "app.tar.gz"},
        "nginx_static_archive must be the absolute path of a .tar.gz on the controller (got 'app.tar.gz')"),
    "archive-missing": (
        {"nginx_static_root": "{tmp}/www/app", "nginx_static_archive": "{tmp}/none.tar.gz"},
        "nginx_static_archive must be the absolute path of a .tar.gz on the controller (got '{tmp}/none.tar.gz': "
        "no such file)"),
    "archive-root-real-directory": (
        {"nginx_static_root": "{tmp}/realdir", "nginx_static_archive": "{tmp}/app.tar.gz"},
        "nginx_static_root {tmp}/realdir is a real directory on the host, but with nginx_static_archive the role "
        "makes it a symlink to the unpacked release. Move it away first (e.g. mv {tmp}/realdir {tmp}/realdir.orig)"),
}

PLAYBOOK = [{"name": "Preflight cases", "hosts": "all", "gather_facts": False, "tasks": [
    {"name": "nginx preflight", "ansible.builtin.include_role": {"name": "pyfleet.server.nginx",
                                                                 "tasks_from": "preflight"}}]}]


def _fill(value, tmp: Path):
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, dict):
        return {k: _fill(v, tmp) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, tmp) for v in value]
    return value


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict[str, str | None]]:
    """(the case directory, {case: the failure message of its host, or None when the preflight passed})."""
    tmp = tmp_path_factory.mktemp("nginx-preflight")
    (tmp / "build").mkdir()
    (tmp / "build" / "index.html").write_text("<p>app</p>\n")
    with tarfile.open(tmp / "app.tar.gz", "w:gz") as tar:
        tar.add(tmp / "build", arcname=".")
    (tmp / "realdir").mkdir()
    (tmp / "link").symlink_to(tmp / "build")
    hosts = {case: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                    **_fill(variables, tmp)} for case, (variables, _expected) in CASES.items()}
    (tmp / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (tmp / "play.yml").write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"),
         "--forks", "20"],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                 ANSIBLE_NOCOLOR="1"),
    )
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    failures: dict[str, str | None] = {case: None for case in CASES}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                for item in result.get("results") or [result]:
                    if item.get("failed") and failures[host] is None:
                        failures[host] = str(item.get("msg"))
    missing = set(CASES) - set(report["stats"])
    assert not missing, f"cases that did not run: {missing}\n{proc.stderr[-3000:]}"
    return tmp, failures


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight(run, case):
    tmp, failures = run
    expected = CASES[case][1]
    if expected is None:
        assert failures[case] is None, f"{case}: good input refused: {failures[case]}"
    else:
        assert failures[case] is not None, f"{case}: bad input accepted"
        assert _fill(expected, tmp) in " ".join(failures[case].split()), f"{case}: {failures[case]}"
