"""The site template's restricted locations: allow list, deny all, proxied to the app, no maintenance switch, in
both the proxied and the static-frontend site (where a restricted prefix takes over an nginx_proxy_paths entry).

Rendered by Ansible on the controller with the role's defaults and vars; `nginx -t` runs in the Molecule scenarios.
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

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "nginx"
RESTRICTED = [{"path": "/api/metrics", "allow": ["127.0.0.1", "10.0.0.0/8"]},
              {"path": "/api/", "match": "prefix", "allow": ["::1"]}]


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("nginx-site")
    role_vars = {**yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
                 **yaml.safe_load((ROLE / "vars" / "main.yml").read_text())}
    play = [{
        "name": "Render the site", "hosts": "localhost", "gather_facts": False,
        "vars": {**role_vars, "nginx_restricted_locations": RESTRICTED,
                 "__nginx_tls": {"cert": "/c", "key": "/k", "chain": ""}},
        "tasks": [
            {"name": "Render", "ansible.builtin.template": {
                "src": str(ROLE / "templates" / "site.conf.j2"), "dest": str(tmp / "{{ item.name }}.conf"),
                "mode": "0644"},
             "vars": {"nginx_static_root": "{{ item.root }}"},
             "loop": [{"name": "proxied", "root": ""}, {"name": "static", "root": "/srv/app/www"}]},
        ],
    }]
    (tmp / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", json.dumps({"ansible_python_interpreter": sys.executable}), str(tmp / "play.yml")],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {name: (tmp / f"{name}.conf").read_text() for name in ("proxied", "static")}


def _block(site: str, head: str) -> list[str]:
    """Every location block opened by `head` (e.g. 'location = /api/metrics'), as text."""
    return re.findall(r"^    " + re.escape(head) + r" \{\n(.*?)^    \}", site, re.M | re.S)


@pytest.mark.parametrize("kind", ["proxied", "static"])
def test_restricted_locations(sites, kind):
    site = sites[kind]
    upstream = "proxy_pass http://app_app;"
    exact = _block(site, "location = /api/metrics")
    assert len(exact) == 1, site
    assert [line.strip() for line in exact[0].splitlines()] == [
        "allow 127.0.0.1;", "allow 10.0.0.0/8;", "deny all;", upstream]
    prefix = _block(site, "location ^~ /api/")
    assert len(prefix) == 1, site  # with a static root it replaced the nginx_proxy_paths entry, not doubled it
    assert [line.strip() for line in prefix[0].splitlines()] == ["allow ::1;", "deny all;", upstream]


def test_static_site_keeps_the_other_proxy_paths(sites):
    site = sites["static"]
    assert "root /srv/app/www;" in site
    for path in ("/readyz", "/livez", "/healthz", "/health"):
        assert len(_block(site, f"location ^~ {path}")) == 1, path
