"""Prometheus' and Alertmanager's UIs on the Diet Planner host (a single server that watches itself), as an operator
reaches them: through nginx, TLS on their own ports, refused without the password (401), refused from outside the
allowed networks even with it (403), answered with it from an allowed address (200). The password file holds bcrypt
hashes only, root:www-data 0640.

Skipped only while the example's inventory does not put its host in pyfleet_monitoring (no Monitoring play runs on
it then, so there is no UI to test); the reason says so.
"""

from __future__ import annotations

import ipaddress
import shlex

import pytest
import yaml
from helpers import REPO
from seed_examples import WORK, host

HOSTS = yaml.safe_load((REPO / "examples/dietplanner/inventory/hosts.yml").read_text())
pytestmark = pytest.mark.skipif(
    "pyfleet_monitoring" not in (HOSTS or {}),
    reason="examples/dietplanner/inventory does not put its host in pyfleet_monitoring: no monitoring, no UIs")

# converge.yml's override: monitoring_ui_users (ops), the role's default ports, an allow list of loopback and
# ALLOWED_NETWORK.
ALLOWED_NETWORK = "198.51.100.0/24"
USER = "ops"
PORTS = {"prometheus": 9443, "alertmanager": 9444}
# A path each daemon answers only when the request reached it.
PROBES = {"prometheus": ("/api/v1/status/buildinfo", '"status":"success"'),
          "alertmanager": ("/api/v2/status", '"cluster"')}
HTPASSWD = "/etc/nginx/pyfleet-monitoring-ui.htpasswd"


def _password() -> str:
    """The password the example's secrets pattern made on the controller (lookup password writes it first)."""
    return (WORK / "secrets-dietplanner" / "monitoring-ui-ops").read_text().split()[0]


def _get(ui: str, path: str, user: str = "", password: str = "", source: str = "127.0.0.1") -> tuple[int, str]:
    """A request on the host from `source` (an address of the host) to the UI's port, through nginx's TLS."""
    auth = f"-u {shlex.quote(f'{user}:{password}')} " if user else ""
    result = host("dietplanner").run(
        f"curl -sk --interface {source} {auth}-o /tmp/ui-resp -w '%{{http_code}}' https://{source}:{PORTS[ui]}{path}")
    return int(result.stdout or 0), host("dietplanner").file("/tmp/ui-resp").content_string


def _eth0() -> str:
    return host("dietplanner").check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")


@pytest.mark.parametrize("ui", sorted(PORTS))
def test_ui_asks_for_the_password(ui):
    path, marker = PROBES[ui]
    code, text = _get(ui, path)
    assert code == 401 and marker not in text, (code, text[:300])
    code, text = _get(ui, path, USER, _password() + "-wrong")
    assert code == 401 and marker not in text, (code, text[:300])
    code, text = _get(ui, path, "nobody", _password())
    assert code == 401, (code, text[:300])


@pytest.mark.parametrize("ui", sorted(PORTS))
def test_ui_answers_with_the_password_from_an_allowed_network(ui):
    path, marker = PROBES[ui]
    code, text = _get(ui, path, USER, _password())
    assert code == 200 and marker in text, (code, text[:300])


@pytest.mark.parametrize("ui", sorted(PORTS))
def test_ui_refuses_other_networks_even_with_the_password(ui):
    outside = _eth0()
    assert not ipaddress.ip_address(outside).is_loopback, outside
    path, marker = PROBES[ui]
    code, text = _get(ui, path, USER, _password(), source=outside)
    assert code == 403 and marker not in text, (code, text[:300])


def test_daemons_themselves_listen_on_loopback_only():
    """Only through nginx: nothing but loopback listens on Prometheus' and Alertmanager's own ports."""
    listeners = host("dietplanner").check_output("ss -Htln '( sport = :9090 or sport = :9093 )' | awk '{print $4}'")
    addresses = {line.rsplit(":", 1)[0] for line in listeners.split()}
    assert addresses and addresses <= {"127.0.0.1", "[::1]"}, listeners


def test_password_file_holds_bcrypt_hashes_only():
    htpasswd = host("dietplanner").file(HTPASSWD)
    assert (htpasswd.user, htpasswd.group, htpasswd.mode) == ("root", "www-data", 0o640)
    content = htpasswd.content_string
    assert _password() not in content
    entries = [line for line in content.splitlines() if line and not line.startswith("#")]
    assert [line.split(":", 1)[0] for line in entries] == [USER], entries
    assert all(line.split(":", 1)[1].startswith("$2b$") for line in entries), entries


def test_ufw_opens_the_ui_ports_to_the_allowed_networks_only():
    """UFW (incoming denied) lets the UI ports in from monitoring_ui_allow's network alone (loopback needs no rule):
    no rule for any other source."""
    status = host("dietplanner").run("ufw status")
    assert "Status: active" in status.stdout, (status.stdout, status.stderr)
    rules = [line.split() for line in status.stdout.splitlines() if "pyfleet monitoring ui" in line]
    for port in PORTS.values():
        sources = sorted(rule[2] for rule in rules if rule[0] in (str(port), f"{port}/tcp"))
        assert sources == [ALLOWED_NETWORK], (port, status.stdout)
    assert not [line for line in status.stdout.splitlines()
                if any(line.startswith((f"{p} ", f"{p}/")) for p in PORTS.values()) and ALLOWED_NETWORK not in line], \
        status.stdout
