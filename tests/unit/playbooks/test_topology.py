"""The fleet's topology (playbooks/group_vars/all/topology.yml, wiring.yml, playbooks/tasks/topology.yml), run by
ansible-playbook itself against inventories of every shape: what each host runs, the values derived from the other
hosts, and the bad shapes refused naming the host and the variable. No host is contacted (local connection, no
facts): the topology needs only the inventory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
PROBE = """
- name: Topology probe
  hosts: pyfleet
  gather_facts: false
  connection: local
  any_errors_fatal: true  # as site.yml's preflight block
  tasks:
    - name: Topology
      ansible.builtin.include_tasks: tasks/topology.yml
    - name: Derived values
      ansible.builtin.debug:
        msg: "PROBE {{ {'host': inventory_hostname, 'roles': __pyfleet_roles, 'upstreams': nginx_upstream_servers,
               'bind': app_bind_address, 'forwarded': app_forwarded_allow_ips, 'pg_host': pyfleet_postgresql_host,
               'pg_listen': postgresql_listen_addresses, 'pg_clients': postgresql_remote_clients,
               'redis_bind': redis_bind, 'ufw': ufw_fleet_rules, 'web': ufw_web_enabled,
               'pg_client': __pyfleet_postgresql_client} | to_json }}"
"""
APP = {"app_name": "shop", "app_port": 8000}


def run(tmp_path: Path, inventory: dict) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """site.yml's topology tasks and the wiring, from a directory beside a copy of nothing but links to them."""
    play_dir = tmp_path / "playbooks"
    play_dir.mkdir()
    (play_dir / "group_vars").symlink_to(REPO / "playbooks" / "group_vars")
    (play_dir / "tasks").symlink_to(REPO / "playbooks" / "tasks")
    (tmp_path / "roles").symlink_to(REPO / "roles")
    (play_dir / "probe.yml").write_text(PROBE)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    result = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "hosts.yml"), str(play_dir / "probe.yml")],
                            capture_output=True, text=True, timeout=300, check=False,
                            env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                                     ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
                                     ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    probes = {}
    for line in result.stdout.splitlines():
        if '"msg": "PROBE ' in line:
            data = json.loads(json.loads("{" + line.strip().rstrip(",") + "}")["msg"].removeprefix("PROBE "))
            probes[data["host"]] = data
    return result, probes


def fleet(lb=("lb1",), app=("app1", "app2"), pg=("db1",), redis=("db1",), loose=(), address=None) -> dict:
    ips = {name: f"10.0.0.{i}" for i, name in enumerate(sorted({*lb, *app, *pg, *redis, *loose}), start=10)}
    ips.update(address or {})

    def group(names):
        return {"hosts": {n: {"ansible_host": ips[n]} for n in names}}

    children = {"pyfleet_lb": group(lb), "pyfleet_app": group(app), "pyfleet_postgresql": group(pg),
                "pyfleet_redis": group(redis)}
    return {"pyfleet": {"vars": APP, "hosts": {n: {"ansible_host": ips[n]} for n in loose},
                        "children": {k: v for k, v in children.items() if v["hosts"]}}}


def test_one_server_runs_everything_on_loopback(tmp_path):
    result, probes = run(tmp_path, {"pyfleet": {"vars": APP, "hosts": {"web1": {"ansible_host": "203.0.113.5"}}}})
    assert result.returncode == 0, result.stdout[-2000:]
    web = probes["web1"]
    assert web["roles"] == ["python", "postgresql", "redis", "ufw", "app", "nginx", "logrotate", "backup"]
    assert web["upstreams"] == ["127.0.0.1:8000"]
    assert web["bind"] == "127.0.0.1" and web["forwarded"] == ["127.0.0.1"]
    assert web["pg_host"] == "127.0.0.1" and web["pg_listen"] == ["127.0.0.1"] and web["pg_clients"] == []
    assert web["ufw"] == [] and web["web"] is True and web["pg_client"] is False


def test_a_fleet_derives_every_cross_host_value(tmp_path):
    result, probes = run(tmp_path, fleet())
    assert result.returncode == 0, result.stdout[-2000:]
    lb, app1, db = probes["lb1"], probes["app1"], probes["db1"]
    assert lb["roles"] == ["python", "ufw", "nginx", "logrotate"]
    assert app1["roles"] == ["python", "ufw", "app", "logrotate"]
    assert db["roles"] == ["python", "postgresql", "redis", "ufw", "backup"]
    assert lb["upstreams"] == ["10.0.0.10:8000", "10.0.0.11:8000"]
    assert app1["bind"] == "10.0.0.10" and app1["forwarded"] == ["10.0.0.13"]
    assert app1["pg_host"] == "10.0.0.12" and app1["pg_client"] is True
    assert db["pg_listen"] == ["127.0.0.1", "10.0.0.12"] and db["pg_clients"] == ["10.0.0.10", "10.0.0.11"]
    assert db["redis_bind"] == ["127.0.0.1", "-::1", "10.0.0.12"]
    assert sorted((r["port"], r["from"]) for r in db["ufw"]) == [
        (5432, "10.0.0.10"), (5432, "10.0.0.11"), (6379, "10.0.0.10"), (6379, "10.0.0.11")]
    assert app1["ufw"] == [{"from": "10.0.0.13", "port": 8000, "comment": "pyfleet app"}]
    assert lb["ufw"] == [] and lb["web"] is True and app1["web"] is False and db["web"] is False


def test_a_fleet_without_load_balancers_puts_nginx_on_each_app_server(tmp_path):
    result, probes = run(tmp_path, fleet(lb=()))
    assert result.returncode == 0, result.stdout[-2000:]
    app1 = probes["app1"]
    assert "nginx" in app1["roles"] and app1["upstreams"] == ["127.0.0.1:8000"]
    assert app1["bind"] == "127.0.0.1" and app1["ufw"] == [] and app1["web"] is True


@pytest.mark.parametrize(("inventory", "message"), [
    (fleet(loose=("stray",)), "stray is in none of the tier groups"),
    (fleet(app=(), pg=(), redis=()), "a load balancer needs app hosts in pyfleet_app"),
    (fleet(pg=("db1", "db2")), "hold one host each"),
    (fleet(pg=(), redis=()), "app hosts need a database host in pyfleet_postgresql"),
    (fleet(address={"app2": "app2.example.com"}), "pyfleet_address of app2 must be the IP address"),
], ids=["host-in-no-group", "lb-without-app-hosts", "two-database-hosts", "app-without-database", "address-name"])
def test_a_bad_shape_is_refused_naming_what_is_wrong(tmp_path, inventory, message):
    result, probes = run(tmp_path, inventory)
    assert result.returncode != 0
    assert message in " ".join(result.stdout.split()), result.stdout[-3000:]
    assert probes == {}, "a host went on after a bad topology"


def test_site_yml_runs_the_roles_in_the_wiring_order_with_the_firewall_before_the_app(tmp_path):
    """The order of site.yml's role imports is the order of __pyfleet_roles (the preflight's order), and UFW comes
    before the app: on a converged database host UFW is already enabled, and an app host added to the fleet runs its
    migrations in the app role, so the database host must admit it first (found growing a fleet, bench/fleet-scale)."""
    site = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    imported = [task["ansible.builtin.import_role"]["name"].removeprefix("pyfleet.server.")
                for task in site[0]["tasks"] if "ansible.builtin.import_role" in task]
    result, probes = run(tmp_path, {"pyfleet": {"hosts": {"web1": APP}}})
    assert result.returncode == 0, result.stdout
    wired = probes["web1"]["roles"]
    assert [role for role in imported if role in wired] == wired
    assert imported.index("ufw") < imported.index("app")
