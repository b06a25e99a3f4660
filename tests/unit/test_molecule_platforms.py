"""A multi-host scenario repeats the base platform once per host (Molecule replaces the platform list): every
repeated host must run with exactly the base platform's flags, so the test hosts' run flags keep one home."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / ".config" / "molecule" / "config.yml").read_text())["platforms"][0]
# What may differ per host: its name, the inventory groups and the scenario's network.
PER_HOST = {"name", "groups", "networks", "docker_networks"}
SCENARIOS = [
    p for p in sorted((REPO / "molecule").glob("*/molecule.yml")) if "platforms" in yaml.safe_load(p.read_text())
]


def test_some_scenario_has_platforms_of_its_own():
    assert SCENARIOS, "no scenario overrides the platforms: this test guards nothing"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.parent.name)
def test_every_host_runs_with_the_base_flags(path):
    platforms = yaml.safe_load(path.read_text())["platforms"]
    base = {k: v for k, v in BASE.items() if k not in PER_HOST}
    for platform in platforms:
        flags = {k: v for k, v in platform.items() if k not in PER_HOST}
        assert flags == base, f"{path.parent.name}/{platform['name']} differs from .config/molecule/config.yml"
        assert platform["name"].startswith(f"pyfleet-{path.parent.name}"), platform["name"]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.parent.name)
def test_host_names_and_addresses_are_unique(path):
    platforms = yaml.safe_load(path.read_text())["platforms"]
    names = [p["name"] for p in platforms]
    addresses = [n.get("ipv4_address") for p in platforms for n in p.get("networks", []) if n.get("ipv4_address")]
    assert len(set(names)) == len(names)
    assert len(set(addresses)) == len(addresses)


def test_scenarios_run_side_by_side_on_networks_of_their_own():
    """make test runs scenarios in parallel lanes: two scenarios on one network or subnet would collide."""
    networks, subnets = {}, {}
    for path in SCENARIOS:
        for platform in yaml.safe_load(path.read_text())["platforms"]:
            for net in platform.get("docker_networks", []):
                assert networks.setdefault(net["name"], path.parent.name) == path.parent.name, net["name"]
                for ipam in net.get("ipam_config", []):
                    assert subnets.setdefault(ipam["subnet"], path.parent.name) == path.parent.name, ipam["subnet"]
    assert len(subnets) >= 2, "fewer than two scenarios have networks: this test guards nothing"
