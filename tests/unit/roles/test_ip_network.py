"""The collection's one IP address / CIDR network pattern (ufw and nginx preflight checks) accepts and refuses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROLES = Path(__file__).resolve().parents[3] / "roles"
PATTERN = re.compile((ROLES / "ufw" / "files" / "ip_network.regex").read_text().strip())

GOOD = ["10.0.0.0/8", "127.0.0.1", "0.0.0.0/0", "255.255.255.255/32", "10.0.0.1/8", "010.0.0.1",
        "::1", "::", "fe80::/64", "2001:db8::1/128", "1:2:3:4:5:6:7:8", "::ffff:10.0.0.1"]
BAD = ["10.0.0.0/33", "256.1.1.1", "1.2.3", "1.2.3.4.5", "10.0.0.0/", " 10.0.0.1", "any", "all", "host.example",
       "::1/129", "1:2:3:4:5:6:7:8:9", "fe80::1%eth0", "10.0.0.0/8 "]


def test_nginx_reads_the_same_file():
    link = ROLES / "nginx" / "files" / "ip_network.regex"
    assert link.is_symlink() and link.resolve() == (ROLES / "ufw" / "files" / "ip_network.regex").resolve()


@pytest.mark.parametrize("address", GOOD)
def test_accepts(address):
    assert PATTERN.match(address), address


@pytest.mark.parametrize("address", BAD)
def test_refuses(address):
    assert not PATTERN.match(address), address
