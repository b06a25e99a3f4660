"""The acme scenario: a certificate from pebble through certbot's webroot, served by nginx, renewed."""

from __future__ import annotations

from helpers import assert_running, molecule_hosts

testinfra_hosts = molecule_hosts("pyfleet")

DOMAIN = "edge.pyfleet.test"
LIVE = "/etc/letsencrypt/live/fleetdemo"


def _served(host) -> dict[str, str]:
    out = host.check_output(
        f"echo | openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} 2>/dev/null"
        " | openssl x509 -noout -issuer -serial -subject"
    )
    return dict(line.split("=", 1) for line in out.splitlines())


def test_nginx_serves_the_pebble_certificate(host):
    assert_running(host, "nginx")
    served = _served(host)
    print(f"ACME certificate served: issuer={served['issuer']} serial={served['serial']}")
    assert "Pebble" in served["issuer"], served
    assert DOMAIN in served["subject"], served
    assert host.file(f"{LIVE}/fullchain.pem").is_symlink


def test_private_key_is_private(host):
    key = host.file(host.check_output(f"readlink -f {LIVE}/privkey.pem"))
    assert key.user == "root" and key.mode & 0o077 == 0, oct(key.mode)


def test_renewal_is_automatic(host):
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running
    dropin = host.file("/etc/systemd/system/certbot.service.d/pyfleet.conf").content_string
    assert "REQUESTS_CA_BUNDLE=/etc/pebble/ca.pem" in dropin
    renewal = host.file("/etc/letsencrypt/renewal/fleetdemo.conf").content_string
    assert "server = https://localhost:14000/dir" in renewal
    assert "authenticator = webroot" in renewal
    assert host.file("/etc/letsencrypt/renewal-hooks/deploy/pyfleet-nginx-reload").mode == 0o755


def test_forced_renewal_is_served_after_the_deploy_hook(host):
    before = _served(host)
    # The same environment certbot.timer's service gets from the role's drop-in.
    out = host.run("REQUESTS_CA_BUNDLE=/etc/pebble/ca.pem certbot renew --force-renewal --no-random-sleep-on-renew")
    assert out.rc == 0, out.stdout + out.stderr
    after = _served(host)
    print(f"renewal: serial {before['serial']} -> {after['serial']} (issuer {after['issuer']})")
    assert after["serial"] != before["serial"]
    assert "Pebble" in after["issuer"]
