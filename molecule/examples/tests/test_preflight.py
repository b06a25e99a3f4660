"""Every single-host seed example passes site.yml's syntax check and every role's preflight on a real host: each
example's host is mapped onto one of the scenario's hosts (only connection settings and a stand-in wheel change),
preflight only (`--tags pyfleet-preflight-only`) in check mode, so nothing on the hosts changes. Brownie, a fleet, is
checked the same way on the fleet scenario's hosts (molecule/fleet/tests/test_examples.py)."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from seed_examples import WORK, example_vars, run_example

# Example -> the scenario host it is checked on (PostgreSQL-only systems on dietplanner's, Redis users on fairedge's).
ON_HOST = {"dietplanner": "dietplanner", "loyalty": "dietplanner", "fairedge": "fairedge", "playpark": "fairedge"}
ROLES = ("python", "postgresql", "redis", "app", "nginx", "ufw", "logrotate", "backup")


def _override(example: str, tmp: Path) -> Path:
    """The example's host on the scenario's container, with an empty wheel of the example's own name and version."""
    settings = example_vars(example)
    wheelhouse = tmp / f"wheelhouse-{example}"
    wheelhouse.mkdir(parents=True)
    package = settings["app_package"].replace("-", "_")
    (wheelhouse / f"{package}-{settings['app_version']}-py3-none-any.whl").write_bytes(b"")
    converged = yaml.safe_load((WORK / f"{ON_HOST[example]}.yml").read_text())["all"]["hosts"]
    connection = {key: value for key, value in next(iter(converged.values())).items() if key.startswith("ansible_")}
    host_vars = {**connection, "app_wheelhouse_dir": str(wheelhouse)}
    if "nginx_static_archive" in settings:
        host_vars["nginx_static_archive"] = str(WORK / "fairedge-frontend.tar.gz")
    path = tmp / f"{example}.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {f"{example}1": host_vars}}}))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]]:
    tmp = tmp_path_factory.mktemp("preflight")

    def check(example: str):
        syntax = run_example(example, "playbooks/site.yml", "--syntax-check", override=_override(example, tmp / "s"))
        preflight = run_example(example, "playbooks/site.yml", "--check", "--tags", "pyfleet-preflight-only",
                                override=_override(example, tmp / "p"))
        return syntax, preflight

    with ThreadPoolExecutor(max_workers=len(ON_HOST)) as pool:
        return dict(zip(ON_HOST, pool.map(check, ON_HOST), strict=True))


@pytest.mark.parametrize("example", sorted(ON_HOST))
def test_example_passes_the_syntax_check(runs, example):
    syntax = runs[example][0]
    assert syntax.returncode == 0, syntax.stdout[-2000:] + syntax.stderr[-2000:]


@pytest.mark.parametrize("example", sorted(ON_HOST))
def test_example_passes_every_preflight_on_a_real_host(runs, example):
    preflight = runs[example][1]
    output = preflight.stdout + preflight.stderr
    assert preflight.returncode == 0, output[-4000:]
    settings = example_vars(example)
    for role in (r for r in ROLES if settings.get(f"pyfleet_{r}_enabled", True)):
        assert f"pyfleet.server.{role} : " in output, f"no preflight of the {role} role ran"
    # preflight_common warns about a <role>_* variable the role does not know (a typo would be ignored otherwise).
    assert "does not know" not in output, "an example names a variable no role knows"
    recaps = [line for line in output.splitlines() if " ok=" in line and "changed=" in line]
    assert len(recaps) == 1 and "changed=0" in recaps[0] and "failed=0" in recaps[0], recaps
