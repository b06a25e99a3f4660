"""bench/fleet-scale: its arguments, the recap it reads, the table and goal verdicts it prints, its fleet's shape."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "lib"))
import testhost_flags  # noqa: E402  pylint: disable=wrong-import-position

_loader = SourceFileLoader("bench_fleet_scale", str(REPO / "bench" / "fleet-scale"))
_spec = spec_from_loader("bench_fleet_scale", _loader)
bench = module_from_spec(_spec)
sys.modules["bench_fleet_scale"] = bench  # dataclasses look their module up
_loader.exec_module(bench)

RECAP = """
PLAY RECAP *********************************************************************
pyfleet-bench-fleet-scale-app1 : ok=120  changed=0    unreachable=0    failed=0    skipped=40   rescued=0    ignored=0
pyfleet-bench-fleet-scale-db : ok=95   changed=2    unreachable=0    failed=0    skipped=51   rescued=0    ignored=0
pyfleet-bench-fleet-scale-lb : ok=80   changed=0    unreachable=0    failed=0    skipped=60   rescued=0    ignored=0
"""


@pytest.mark.parametrize(("text", "counts"), [("1,4,8", [1, 4, 8]), ("8,1,4,4", [1, 4, 8]), ("2", [2]),
                                              ("1, 4,", [1, 4])])
def test_hosts_are_distinct_ascending_counts(text, counts):
    assert bench.parse_hosts(text) == counts


@pytest.mark.parametrize("text", ["", "0,4", "1,x", "-1", "51", ","])
def test_bad_host_counts_are_refused_by_name(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--hosts"):
        bench.parse_hosts(text)


@pytest.mark.parametrize("text", ["1", "4", "25%", "100%"])
def test_serial_takes_a_count_or_a_percentage(text):
    assert bench.parse_serial(text) == text


@pytest.mark.parametrize("text", ["0", "0%", "101%", "-1", "a", "1.5", "50 %", ""])
def test_bad_serial_is_refused_by_name(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--serial"):
        bench.parse_serial(text)


def test_recap_is_read_per_host():
    recap = bench.parse_recap(RECAP)
    assert set(recap) == {f"pyfleet-bench-fleet-scale-{h}" for h in ("app1", "db", "lb")}
    assert recap["pyfleet-bench-fleet-scale-db"] == {"ok": 95, "changed": 2, "unreachable": 0, "failed": 0,
                                                     "skipped": 51}
    assert bench.parse_recap("no recap here") == {}


def test_table_prints_ratios_to_one_host_and_the_goal_verdict():
    rows = [bench.Row(1, 80.0, 60.0, 50.0, {"a": 0, "b": 0, "c": 0}, 300, 20.0, 15.0),
            bench.Row(4, 120.0, 90.0, 200.0, {"a": 0}, 600, 40.0, 60.0),
            bench.Row(8, 200.0, 120.0, 400.0, {"a": 1}, 1000, 70.0, 110.5)]
    lines = bench.table(rows, "1")
    assert lines[0].split()[:3] == ["app", "hosts", "settle"]
    one, four, eight = (line.split() for line in lines[1:4])
    assert one[0] == "1" and one[-2:] == ["1.00", "1.00"]
    assert four[-2:] == ["1.50", "4.00"]
    # changed summed over hosts, s per host-task, the controller's CPU seconds of the no-change run and the deploy
    assert eight[:8] == ["8", "200.0", "120.0", "1", "0.120", "70.0", "400.0", "110.5"]
    assert eight[-2:] == ["2.00", "8.00"]
    verdicts = [line for line in lines if line.startswith("goal 3")]
    assert verdicts == ["goal 3, 4 app hosts <= 2 x 1 host: no-change 1.50 x (met), deploy 4.00 x (MISSED)",
                        "goal 3, 8 app hosts <= 2 x 1 host: no-change 2.00 x (met), deploy 8.00 x (MISSED)"]
    assert any("pyfleet_serial=1" in line for line in lines)


def test_table_without_one_host_prints_no_ratio():
    lines = bench.table([bench.Row(4, 1.0, 2.0, 3.0, {}, 0)], "2")
    assert lines[1].split()[-2:] == ["-", "-"]
    assert not [line for line in lines if line.startswith("goal 3")]


def test_inventory_is_one_lb_one_db_and_n_app_hosts_on_distinct_bench_addresses(tmp_path):
    inv = bench.inventory(tmp_path / "inv", 8)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())["pyfleet"]["children"]
    assert list(hosts["pyfleet_lb"]["hosts"]) == ["pyfleet-bench-fleet-scale-lb"]
    assert list(hosts["pyfleet_postgresql"]["hosts"]) == list(hosts["pyfleet_redis"]["hosts"]) == \
        ["pyfleet-bench-fleet-scale-db"]
    assert list(hosts["pyfleet_app"]["hosts"]) == [f"pyfleet-bench-fleet-scale-app{i}" for i in range(1, 9)]
    addresses = [v["ansible_host"] for group in ("pyfleet_lb", "pyfleet_postgresql", "pyfleet_app")
                 for v in hosts[group]["hosts"].values()]
    assert len(set(addresses)) == 10
    subnet = ipaddress.ip_network(bench.SUBNET)
    assert all(ipaddress.ip_address(a) in subnet for a in addresses)
    # Not the fleet scenario's network: both may run on one machine.
    fleet = yaml.safe_load((REPO / "molecule/fleet/molecule.yml").read_text())
    fleet_subnet = fleet["platforms"][0]["docker_networks"][0]["ipam_config"][0]["subnet"]
    assert not subnet.overlaps(ipaddress.ip_network(fleet_subnet))
    # The reference app's fleet variables come from their one home, the fleet scenario.
    assert (inv / "group_vars" / "pyfleet.yml").resolve() == (REPO / "molecule/fleet/group_vars/pyfleet.yml")
    all_vars = yaml.safe_load((inv / "group_vars" / "all.yml").read_text())
    assert all_vars["ansible_connection"] == "ssh"
    assert str(bench.STATE) in all_vars["ansible_ssh_private_key_file"]


def test_the_highest_host_count_still_has_an_address():
    assert ipaddress.ip_address(bench.app_ip(bench.MAX_HOSTS)) in ipaddress.ip_network(bench.SUBNET)


def test_docker_run_is_the_test_hosts_plus_the_bench_network():
    image = "pyfleet/bench-fleet-scale-app:latest"
    argv = bench.run_argv("h1", "172.30.88.21", image)
    plain = testhost_flags.run_argv("h1", {**testhost_flags.platform(), "image": image})
    extra = ["--network", bench.NAME, "--ip", "172.30.88.21", "--label", f"pyfleet.bench={bench.NAME}"]
    assert argv == [*plain[:3], *extra, *plain[3:]]
