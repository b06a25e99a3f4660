"""The monitoring UIs behind nginx: the site template (allow list, deny, basic auth, each UI on its port, proxied to
loopback), the password file (bcrypt made on the controller, stable salt, no plain password) and the preflight's
refusals, each naming the variable.

Rendered by Ansible on the controller through the role itself (include_role tasks_from: preflight, public, then the
role's templates); `nginx -t` and the requests run in the examples scenario (molecule/examples/tests/
test_monitoring_ui.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from passlib.hash import bcrypt
from preflight_cases import first_failures, run_cases

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "monitoring"
USERS = [{"name": "ops", "password": "correct horse battery staple"}, {"name": "grafana", "password": "s3cr3t-ü"}]
ALLOW = ["127.0.0.1", "::1", "10.8.0.0/24"]


def _render(tmp: Path, hosts: list[str]) -> None:
    play = [{
        "name": "Render the UI files", "hosts": "all", "gather_facts": False,
        "vars": {"monitoring_ui_enabled": True, "monitoring_ui_users": USERS, "monitoring_ui_allow": ALLOW},
        "tasks": [
            {"name": "Preflight", "ansible.builtin.include_role": {
                "name": "pyfleet.server.monitoring", "tasks_from": "preflight", "public": True}},
            {"name": "Render", "ansible.builtin.template": {
                "src": str(ROLE / "templates" / "{{ item }}.j2"),
                "dest": str(tmp / "{{ inventory_hostname }}-{{ item }}"), "mode": "0600"},
             "loop": ["ui-site.conf", "ui-htpasswd"], "delegate_to": "localhost"},
            # A second evaluation stands for a second run: the salt must not change between them.
            {"name": "Render the password file again", "ansible.builtin.template": {
                "src": str(ROLE / "templates" / "ui-htpasswd.j2"),
                "dest": str(tmp / "{{ inventory_hostname }}-ui-htpasswd-again"), "mode": "0600"},
             "delegate_to": "localhost"},
        ],
    }]
    (tmp / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (tmp / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": dict.fromkeys(hosts, local)}}))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp / "inventory.yml"),
         "-e", json.dumps({"ansible_python_interpreter": sys.executable}), str(tmp / "play.yml")],
        capture_output=True, text=True, cwd=REPO, timeout=180, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for user in USERS:  # the play ran with the passwords: none may show in its output
        assert user["password"] not in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("monitoring-ui")
    _render(tmp, ["mon1", "mon2"])
    return tmp


def _servers(site: str) -> list[str]:
    return re.findall(r"^server \{\n(.*?)^\}", site, re.M | re.S)


def test_each_ui_on_its_port_behind_the_allow_list_and_basic_auth(rendered):
    site = (rendered / "mon1-ui-site.conf").read_text()
    servers = _servers(site)
    assert len(servers) == 2, site
    for server, port, upstream in zip(servers, (9443, 9444), ("127.0.0.1:9090", "127.0.0.1:9093"), strict=True):
        lines = [line.strip() for line in server.splitlines()]
        assert f"listen {port} ssl http2;" in lines and f"listen [::]:{port} ssl http2;" in lines, server
        assert "server_name mon1;" in lines
        assert "ssl_certificate /etc/nginx/tls/pyfleet-monitoring-ui/selfsigned.pem;" in lines
        assert "ssl_certificate_key /etc/nginx/tls/pyfleet-monitoring-ui/selfsigned.key;" in lines
        start = lines.index("satisfy all;")
        assert lines[start + 1:start + 7] == [
            "allow 127.0.0.1;", "allow ::1;", "allow 10.8.0.0/24;", "deny all;",
            lines[start + 5], "auth_basic_user_file /etc/nginx/pyfleet-monitoring-ui.htpasswd;"], server
        assert lines[start + 5].startswith("auth_basic \"")
        assert f"proxy_pass http://{upstream};" in lines
        assert 'proxy_set_header Authorization "";' in lines
        # Nothing else opens a location without the server-wide checks.
        assert not any(line.startswith("allow all") or line.startswith("auth_basic off") for line in lines)


def test_password_file_holds_bcrypt_hashes_of_the_passwords_only(rendered):
    text = (rendered / "mon1-ui-htpasswd").read_text()
    entries = dict(line.split(":", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert list(entries) == ["ops", "grafana"], text
    for user in USERS:
        assert user["password"] not in text
        assert re.fullmatch(r"\$2b\$10\$[./A-Za-z0-9]{53}", entries[user["name"]]), entries
        assert bcrypt.verify(user["password"], entries[user["name"]])
        assert not bcrypt.verify(user["password"] + "x", entries[user["name"]])


def test_salt_is_stable_per_host_and_user(rendered):
    """A second run writes the same file (idempotence); another host or user gets another salt."""
    first = (rendered / "mon1-ui-htpasswd").read_text()
    assert (rendered / "mon1-ui-htpasswd-again").read_text() == first
    other = (rendered / "mon2-ui-htpasswd").read_text()
    salts = [line.split(":", 1)[1][7:29] for text in (first, other) for line in text.splitlines()
             if line and not line.startswith("#")]
    assert len(set(salts)) == 4, salts


GOOD_USER = {"name": "ops", "password": "pw"}
# case: (variables, expected text or None when the input is good)
CASES: dict[str, tuple[dict, str | None]] = {
    "good-off": ({}, None),
    "good-on": ({"monitoring_ui_enabled": True, "monitoring_ui_users": [GOOD_USER],
                 "monitoring_ui_allow": ["10.0.0.0/8", "2001:db8::/32"]}, None),
    "good-72-bytes": ({"monitoring_ui_enabled": True, "monitoring_ui_users": [{"name": "a", "password": "x" * 72}]},
                      None),
    "on-without-users": ({"monitoring_ui_enabled": True},
                         "monitoring_ui_users must list at least one user ({name: ..., password: ...}) when "
                         "monitoring_ui_enabled is true"),
    "user-without-password": (
        {"monitoring_ui_enabled": True, "monitoring_ui_users": [GOOD_USER, {"name": "bob"}]},
        "monitoring_ui_users"),
    "user-empty-password": (
        {"monitoring_ui_enabled": True, "monitoring_ui_users": [{"name": "bob", "password": ""}]},
        "monitoring_ui_users[0] (bob) is not valid: it needs a name (letters, digits, . _ - @) and a password, a "
        "string of 1 to 72 bytes"),
    "user-long-password": (
        {"monitoring_ui_enabled": True, "monitoring_ui_users": [{"name": "bob", "password": "ü" * 37}]},
        "monitoring_ui_users[0] (bob) is not valid"),
    "user-name-colon": (
        {"monitoring_ui_enabled": True, "monitoring_ui_users": [GOOD_USER, {"name": "a:b", "password": "pw"}]},
        "monitoring_ui_users[1] (a:b) is not valid"),
    "user-twice": (
        {"monitoring_ui_enabled": True, "monitoring_ui_users": [GOOD_USER, GOOD_USER]},
        "monitoring_ui_users names a user more than once: ops, ops"),
    "allow-bad": (
        {"monitoring_ui_allow": ["10.0.0.0/33", "all", "127.0.0.1"]},
        "monitoring_ui_allow must list at least one IP address or CIDR network (e.g. 10.8.0.0/24 or ::1), not "
        "10.0.0.0/33, all"),
    "allow-empty": ({"monitoring_ui_allow": []}, "monitoring_ui_allow must list at least one IP address"),
    "ports-same": ({"monitoring_ui_ports": {"prometheus": 9443, "alertmanager": 9443}},
                   "monitoring_ui_ports needs the keys prometheus and alertmanager, two different ports"),
    "ports-daemon": ({"monitoring_ui_ports": {"prometheus": 9090, "alertmanager": 9444}},
                     "that none of the daemons listens on (9090, 9093, 9115)"),
    "cert-without-key": ({"monitoring_ui_tls_cert": "/etc/ssl/ui.pem"},
                         "monitoring_ui_tls_cert and monitoring_ui_tls_key go together"),
    "server-name-bad": ({"monitoring_ui_server_names": ["bad name"]},
                        "monitoring_ui_server_names must list at least one host name"),
}

PLAYBOOK = [{"name": "Preflight cases", "hosts": "all", "gather_facts": False, "tasks": [
    {"name": "monitoring preflight", "ansible.builtin.include_role": {"name": "pyfleet.server.monitoring",
                                                                      "tasks_from": "preflight"}}]}]


@pytest.fixture(scope="module")
def failures(tmp_path_factory) -> dict[str, str | None]:
    tmp = tmp_path_factory.mktemp("monitoring-ui-preflight")
    return first_failures(run_cases(tmp, {case: variables for case, (variables, _expected) in CASES.items()}, PLAYBOOK))


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight(failures, case):
    expected = CASES[case][1]
    if expected is None:
        assert failures[case] is None, f"{case}: good input refused: {failures[case]}"
    else:
        assert failures[case] is not None, f"{case}: bad input accepted"
        assert expected in " ".join(failures[case].split()), f"{case}: {failures[case]}"
        assert "correct horse" not in failures[case]
