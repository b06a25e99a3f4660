"""What site.yml's monitoring wiring (playbooks/group_vars/all/wiring.yml, "Monitoring"; tasks/topology.yml) makes of
an inventory, run by ansible-playbook itself (local connection, no facts, nothing contacted): where the exporters
listen, which firewall rules open them to the monitoring host, the targets the monitoring host scrapes, and a
monitoring host the firewall could not let in refused, naming the variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
PROBE = """
- name: Main play's topology
  hosts: pyfleet
  gather_facts: false
  connection: local
  any_errors_fatal: true
  tasks:
    - name: Topology
      ansible.builtin.include_tasks: tasks/topology.yml
    - name: Exporter values
      ansible.builtin.debug:
        msg: "PROBE {{ {'host': inventory_hostname, 'roles': __pyfleet_roles, 'listen': exporters_listen_address,
               'pg': exporters_postgres | bool, 'redis': exporters_redis | bool,
               'ufw': ufw_fleet_rules} | to_json }}"
- name: Monitoring play's targets
  hosts: pyfleet_monitoring
  gather_facts: false
  connection: local
  tasks:
    - name: Monitoring values
      ansible.builtin.debug:
        msg: "PROBE {{ {'host': 'monitoring:' ~ inventory_hostname, 'hosts': monitoring_hosts,
               'addresses': monitoring_addresses, 'apps': monitoring_apps,
               'ca_file': monitoring_blackbox_ca_file} | to_json }}"
"""
APP = {"app_name": "shop", "app_port": 8000}


def run(tmp_path: Path, inventory: dict) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    play_dir = tmp_path / "playbooks"
    play_dir.mkdir()
    (play_dir / "group_vars").symlink_to(REPO / "playbooks" / "group_vars")
    (play_dir / "tasks").symlink_to(REPO / "playbooks" / "tasks")
    (tmp_path / "roles").symlink_to(REPO / "roles")
    (play_dir / "probe.yml").write_text(PROBE)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
         str(play_dir / "probe.yml")],
        capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                 ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    probes = {}
    for line in result.stdout.splitlines():
        if '"msg": "PROBE ' in line:
            data = json.loads(json.loads("{" + line.strip().rstrip(",") + "}")["msg"].removeprefix("PROBE "))
            probes[data["host"]] = data
    return result, probes


def fleet(monitoring_address: str = "10.0.0.30") -> dict:
    return {
        "pyfleet": {"vars": APP, "children": {
            "pyfleet_lb": {"hosts": {"lb1": {"ansible_host": "10.0.0.5"}}},
            "pyfleet_app": {"hosts": {"app1": {"ansible_host": "10.0.0.11"}}},
            "pyfleet_postgresql": {"hosts": {"db1": {"ansible_host": "10.0.0.20"}}},
            "pyfleet_redis": {"hosts": {"db1": {}}}}},
        "pyfleet_monitoring": {"hosts": {"mon1": {"ansible_host": monitoring_address}}},
    }


def test_a_server_watching_itself_keeps_its_exporters_on_loopback(tmp_path):
    inventory = {"pyfleet": {"vars": APP, "hosts": {"web1": {"ansible_host": "203.0.113.5"}}},
                 "pyfleet_monitoring": {"hosts": {"web1": {}}}}
    result, probes = run(tmp_path, inventory)
    assert result.returncode == 0, result.stdout[-3000:]
    web, mon = probes["web1"], probes["monitoring:web1"]
    assert web["roles"][-1] == "exporters" and web["listen"] == "127.0.0.1"
    assert web["pg"] is True and web["redis"] is True and web["ufw"] == []
    assert mon["hosts"] == {"node": ["web1"], "postgres": ["web1"], "redis": ["web1"], "app": ["web1"],
                            "lb": ["web1"]}
    assert mon["addresses"] == {"web1": "127.0.0.1"}
    # The health probe goes through the host's own nginx TLS (the app role's default readiness path), named as the
    # site and verified against the self-signed site's local CA.
    assert mon["apps"] == [{"name": "shop", "port": 8000, "health_urls": ["https://127.0.0.1:443/readyz"],
                            "health_host": "web1", "tls_targets": ["127.0.0.1:443"]}]
    assert mon["ca_file"] == "/etc/nginx/tls/shop/ca.pem"


def test_a_fleet_opens_each_exporter_to_the_monitoring_host_only(tmp_path):
    result, probes = run(tmp_path, fleet())
    assert result.returncode == 0, result.stdout[-3000:]
    db, app1, lb = probes["db1"], probes["app1"], probes["lb1"]
    assert db["listen"] == "10.0.0.20" and db["pg"] is True and db["redis"] is True
    assert app1["pg"] is False and app1["redis"] is False
    monitoring_rules = sorted(r["port"] for r in db["ufw"] if r["from"] == "10.0.0.30")
    assert monitoring_rules == [9100, 9121, 9187], db["ufw"]
    assert [(r["port"], r["from"]) for r in lb["ufw"]] == [(9100, "10.0.0.30")]
    assert sorted((r["port"], r["from"]) for r in app1["ufw"]) == [
        (8000, "10.0.0.30"), (8000, "10.0.0.5"), (9100, "10.0.0.30")]
    mon = probes["monitoring:mon1"]
    assert mon["hosts"]["node"] == ["app1", "db1", "lb1", "mon1"]
    assert mon["hosts"]["postgres"] == ["db1"] and mon["hosts"]["redis"] == ["db1"]
    assert mon["hosts"]["app"] == ["app1"] and mon["hosts"]["lb"] == ["lb1"]
    # The monitoring host watches itself over loopback, the others at the address their exporters listen on.
    assert mon["addresses"] == {"app1": "10.0.0.11", "db1": "10.0.0.20", "lb1": "10.0.0.5", "mon1": "127.0.0.1"}
    assert mon["apps"][0]["tls_targets"] == ["10.0.0.5:443"]
    # Not the app host's port: each load balancer's nginx TLS, the path of the app's readiness URL.
    assert mon["apps"][0]["health_urls"] == ["https://10.0.0.5:443/readyz"]
    assert mon["apps"][0]["health_host"] == "lb1"
    # The load balancer's local CA is not on the monitoring host: the system's CAs.
    assert mon["ca_file"] == ""


def test_the_health_probe_takes_the_readiness_path_server_name_and_port_of_the_inventory(tmp_path):
    inventory = fleet()
    inventory["pyfleet"]["vars"] = {**APP, "app_health_url": "http://{{ app_bind_address }}:8000/api/health?full=1",
                                    "nginx_server_names": ["shop.example.com", "www.shop.example.com"],
                                    "nginx_tls_source": "acme"}
    lb2 = {"ansible_host": "10.0.0.6", "nginx_https_port": 8443}
    inventory["pyfleet"]["children"]["pyfleet_lb"]["hosts"]["lb2"] = lb2
    result, probes = run(tmp_path, inventory)
    assert result.returncode == 0, result.stdout[-3000:]
    app = probes["monitoring:mon1"]["apps"][0]
    assert app["health_urls"] == ["https://10.0.0.5:443/api/health?full=1", "https://10.0.0.6:8443/api/health?full=1"]
    assert app["health_host"] == "shop.example.com"
    assert app["tls_targets"] == ["10.0.0.5:443", "10.0.0.6:8443"]


def test_a_single_server_with_an_acme_certificate_trusts_the_system_cas(tmp_path):
    inventory = {"pyfleet": {"vars": {**APP, "nginx_tls_source": "acme"}, "hosts": {"web1": {}}},
                 "pyfleet_monitoring": {"hosts": {"web1": {}}}}
    result, probes = run(tmp_path, inventory)
    assert result.returncode == 0, result.stdout[-3000:]
    assert probes["monitoring:web1"]["ca_file"] == ""


def test_the_ui_ports_are_opened_to_the_allowed_networks_only(tmp_path):
    inventory = {"pyfleet": {"vars": APP, "hosts": {"web1": {"ansible_host": "203.0.113.5"}}},
                 "pyfleet_monitoring": {"hosts": {"web1": {}}, "vars": {
                     "monitoring_ui_enabled": True,
                     "monitoring_ui_allow": ["127.0.0.1", "::1", "10.8.0.0/24", "198.51.100.7"]}}}
    result, probes = run(tmp_path, inventory)
    assert result.returncode == 0, result.stdout[-3000:]
    rules = sorted((r["port"], r["from"], r["comment"]) for r in probes["web1"]["ufw"])
    # Loopback is never filtered by UFW: no rule for it.
    assert rules == [(9443, "10.8.0.0/24", "pyfleet monitoring ui"), (9443, "198.51.100.7", "pyfleet monitoring ui"),
                     (9444, "10.8.0.0/24", "pyfleet monitoring ui"), (9444, "198.51.100.7", "pyfleet monitoring ui")]
    # The inventory's ports.
    inventory["pyfleet_monitoring"]["vars"]["monitoring_ui_ports"] = {"prometheus": 19090, "alertmanager": 19093}
    inventory["pyfleet_monitoring"]["vars"]["monitoring_ui_allow"] = ["10.8.0.0/24"]
    (tmp_path / "ports").mkdir()
    result, probes = run(tmp_path / "ports", inventory)
    assert result.returncode == 0, result.stdout[-3000:]
    assert sorted((r["port"], r["from"]) for r in probes["web1"]["ufw"]) == [
        (19090, "10.8.0.0/24"), (19093, "10.8.0.0/24")]


def test_the_ui_ports_stay_closed_while_the_uis_are_off_or_elsewhere(tmp_path):
    inventory = fleet()
    inventory["pyfleet_monitoring"]["vars"] = {"monitoring_ui_allow": ["10.8.0.0/24"]}
    inventory["pyfleet"]["vars"] = {**APP, "monitoring_ui_enabled": True, "monitoring_ui_allow": ["10.8.0.0/24"]}
    result, probes = run(tmp_path, inventory)
    assert result.returncode == 0, result.stdout[-3000:]
    # Hosts of the main play that are not monitoring hosts open no UI port, even with the UI variables set.
    assert all(r["port"] not in (9443, 9444) for p in probes.values() for r in p.get("ufw", [])), probes


def test_no_monitoring_host_means_no_exporters(tmp_path):
    inventory = fleet()
    del inventory["pyfleet_monitoring"]
    result, probes = run(tmp_path, inventory)
    assert result.returncode == 0, result.stdout[-3000:]
    assert all("exporters" not in p["roles"] for p in probes.values()), probes
    assert all(r["port"] not in (9100, 9121, 9187) for p in probes.values() for r in p["ufw"]), probes


def test_a_monitoring_host_the_firewall_cannot_let_in_is_refused(tmp_path):
    result, _probes = run(tmp_path, fleet(monitoring_address="mon.example.com"))
    assert result.returncode != 0
    output = " ".join(result.stdout.split())
    assert "pyfleet_address of the monitoring host mon1 must be the IP address" in output, result.stdout[-3000:]
    assert "pyfleet_ufw_enabled is true" in output and "got 'mon.example.com'" in output


def test_without_ufw_a_named_monitoring_host_is_accepted(tmp_path):
    inventory = fleet(monitoring_address="mon.example.com")
    inventory["pyfleet"]["vars"] = {**APP, "pyfleet_ufw_enabled": False}
    result, probes = run(tmp_path, inventory)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "ufw" not in probes["db1"]["roles"] and "exporters" in probes["db1"]["roles"]
