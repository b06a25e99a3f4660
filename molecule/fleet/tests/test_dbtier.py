"""The fleet's database tier: PostgreSQL over TLS with client certificates, Redis with a password, app hosts only.

Hosts (by name): pyfleet-fleet-db runs PostgreSQL (postgresql_remote_clients = the app hosts,
postgresql_client_cert_auth) and Redis; pyfleet-fleet-app1/app2 run the app, whose env file holds DATABASE_URL
(host = the DB host, ?sslmode=verify-full&sslrootcert=...&sslcert=...&sslkey=...) and REDIS_URL; pyfleet-fleet-lb
runs nginx only. Each test runs on the hosts it is about and skips the others.

The refusals are told apart by the server's own words: from an app host, TLS without a certificate reaches the
hostssl rule and is refused for the missing certificate; from the LB host the same probe is refused by pg_hba.conf
(or never gets a TCP connection, when the firewall drops it). A probe that reached authentication (the server
asking for a password) fails the test, so none of them can pass by accident.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import testinfra
from helpers import APP, REPO, molecule_hosts, run_playbook

testinfra_hosts = [name for name in molecule_hosts("all") if re.search(r"-(app\d*|lb|db)$", name)]

DB_HOST = "pyfleet-fleet-db"
ENV_FILE = f"/etc/{APP}/{APP}.env"
PKI = f"/etc/{APP}/pki"
PYTHON = f"/opt/{APP}/current/venv/bin/python"
CA_DIR = "/etc/postgresql/pyfleet-pki"


def role(host) -> str:
    name = host.backend.get_hostname()
    return "app" if re.search(r"-app\d*$", name) else name.rsplit("-", 1)[-1]


def only(host, *roles: str) -> None:
    if role(host) not in roles:
        pytest.skip(f"not a {'/'.join(roles)} host")


# Runs in the app's venv (psycopg, redis) as root; reads the env file itself, so no secret is on a command line.
APP_PROBE = r"""
import json, shlex, sys, urllib.parse
env = {}
for line in open("@ENV_FILE@"):
    if "=" in line and not line.startswith("#"):
        key, value = line.rstrip("\n").split("=", 1)
        env[key] = shlex.split(value)[0] if value else ""
what = sys.argv[1]
out = {}
if what.startswith("pg"):
    import psycopg
    url = env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    out["query"] = query
    out["host"] = parts.hostname
    if what == "pg-nocert":
        query.pop("sslcert", None)
        query.pop("sslkey", None)
        query["sslcert"] = "/nonexistent/client.crt"
        query["sslkey"] = "/nonexistent/client.key"
    url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            out["row"] = list(conn.execute(
                "SELECT ssl, version, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone())
    except psycopg.OperationalError as exc:
        out["error"] = str(exc)
elif what.startswith("redis"):
    import redis
    url = env["REDIS_URL"]
    parts = urllib.parse.urlsplit(url)
    out["host"] = parts.hostname
    if what == "redis-nopass":
        url = urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.hostname}:{parts.port or 6379}"))
    try:
        out["ping"] = redis.Redis.from_url(url, socket_timeout=10).ping()
    except redis.RedisError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
""".replace("@ENV_FILE@", ENV_FILE)

# Plain python3 (any host): a PostgreSQL startup over TLS without a client certificate, as user/database APP;
# prints what the server answered: "tcp-refused: ...", "E <message>", or "R <auth code>" (asked to authenticate).
WIRE_PROBE = r"""
import socket, ssl, struct, sys
host, port, user = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    sock = socket.create_connection((host, port), timeout=5)
except OSError as exc:
    print(f"tcp-refused: {exc}"); sys.exit(0)
sock.sendall(struct.pack("!ii", 8, 80877103))
if sock.recv(1) != b"S":
    print("no-tls"); sys.exit(0)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
tls = ctx.wrap_socket(sock, server_hostname=host)
body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0" + user.encode() + b"\0\0"
tls.sendall(struct.pack("!i", len(body) + 4) + body)
kind = tls.recv(1)
length = struct.unpack("!i", tls.recv(4))[0]
data = b""
while len(data) < length - 4:
    chunk = tls.recv(length - 4 - len(data))
    if not chunk:
        break
    data += chunk
if kind == b"E":
    fields = {f[:1]: f[1:].decode(errors="replace") for f in data.split(b"\0") if f}
    print("E " + fields.get(b"M", ""))
else:
    print(f"{kind.decode(errors='replace')} {struct.unpack('!i', data[:4])[0] if len(data) >= 4 else ''}")
"""


CERT_CHECK = f"""
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
cert = x509.load_pem_x509_certificate(open("{PKI}/client.crt", "rb").read())
ca = x509.load_pem_x509_certificate(open("{PKI}/ca.crt", "rb").read())
eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
print(cert.subject.rfc4514_string(), "clientAuth" if x509.ExtendedKeyUsageOID.CLIENT_AUTH in eku else "-",
      "signed-by-ca" if cert.issuer == ca.subject else "other-issuer")
"""


def app_probe(host, what: str) -> dict:
    out = host.check_output(f"{PYTHON} - {what} <<'EOF'\n{APP_PROBE}\nEOF")
    return json.loads(out)


def wire_probe(host, target: str = DB_HOST, port: int = 5432) -> str:
    return host.check_output(f"python3 - {target} {port} {APP} <<'EOF'\n{WIRE_PROBE}\nEOF").strip()


# --- app hosts ------------------------------------------------------------------------------------------------------

def test_app_dsn_names_the_client_certificate(host):
    only(host, "app")
    query = app_probe(host, "pg")["query"]
    assert query == {
        "sslmode": "verify-full",
        "sslrootcert": f"{PKI}/ca.crt",
        "sslcert": f"{PKI}/client.crt",
        "sslkey": f"{PKI}/client.key",
    }, query


def test_app_host_has_its_client_files_for_the_app_only(host):
    only(host, "app")
    pki = host.file(PKI)
    assert pki.is_directory and (pki.user, pki.group, pki.mode) == ("root", APP, 0o750)
    for name in ("ca.crt", "client.crt", "client.key"):
        f = host.file(f"{PKI}/{name}")
        assert (f.user, f.group, f.mode) == ("root", APP, 0o640), f"{name}: {f.user}:{f.group} {oct(f.mode)}"
    # Debian's python3-cryptography (the client entry point installs it): CN, purpose and the CA's signature.
    check = host.check_output(f"python3 - <<'EOF'\n{CERT_CHECK}\nEOF")
    assert check == f"CN={APP} clientAuth signed-by-ca", check
    # The CA stays on the database host.
    assert not host.file(CA_DIR).exists


def test_app_talks_to_postgresql_over_tls_with_its_certificate(host):
    only(host, "app")
    result = app_probe(host, "pg")
    assert result["host"] != "127.0.0.1" and "error" not in result, result
    ssl_on, version, client_dn = result["row"]
    assert ssl_on is True and version.startswith("TLSv1."), result
    assert client_dn == f"/CN={APP}", result


def test_app_host_without_a_client_certificate_is_refused(host):
    only(host, "app")
    result = app_probe(host, "pg-nocert")
    assert "row" not in result, f"connected without a client certificate: {result}"
    assert "requires a valid client certificate" in result["error"], result


def test_tls_without_a_certificate_from_an_app_host_reaches_only_the_certificate_check(host):
    only(host, "app")
    answer = wire_probe(host)
    assert answer.startswith("E ") and "requires a valid client certificate" in answer, answer


def test_redis_answers_app_hosts_with_the_password_only(host):
    only(host, "app")
    ok = app_probe(host, "redis")
    assert ok["host"] != "127.0.0.1" and ok.get("ping") is True, ok
    refused = app_probe(host, "redis-nopass")
    assert "ping" not in refused and re.search(r"NOAUTH|Authentication", refused.get("error", "")), refused


# --- the load balancer ----------------------------------------------------------------------------------------------

def test_postgresql_refuses_the_lb_host(host):
    only(host, "lb")
    answer = wire_probe(host)
    refused_by_hba = answer.startswith("E ") and "pg_hba.conf rejects connection" in answer
    assert answer.startswith("tcp-refused") or refused_by_hba, answer


# --- the database host ----------------------------------------------------------------------------------------------

def test_db_host_listens_beyond_loopback_with_tls(host):
    only(host, "db")
    settings = host.check_output(
        "runuser -u postgres -- psql -Atc \"SELECT name || '=' || setting FROM pg_settings "
        "WHERE name IN ('ssl', 'listen_addresses', 'ssl_ca_file') ORDER BY name\""
    ).splitlines()
    values = dict(line.split("=", 1) for line in settings)
    assert values["ssl"] == "on" and values["ssl_ca_file"].endswith("/ca.crt"), values
    assert set(values["listen_addresses"].split(",")) - {"127.0.0.1", "::1", "localhost"}, values


def test_db_host_hba_admits_the_app_hosts_over_tls_with_certificates_only(host):
    only(host, "db")
    rules = host.check_output(
        "runuser -u postgres -- psql -Atc \"SELECT type, database[1], user_name[1], coalesce(address, ''), "
        "auth_method, coalesce(array_to_string(options, ','), ''), coalesce(error, '') FROM pg_hba_file_rules\""
    ).splitlines()
    rows = [line.split("|") for line in rules]
    assert all(not row[6] for row in rows), rules
    remote = [row for row in rows if row[0] != "local" and row[3] not in ("127.0.0.1", "::1")]
    admitted = [row for row in remote if row[4] != "reject"]
    assert len(admitted) >= 2, rules  # one per app host
    for row in admitted:
        assert row[0] == "hostssl" and row[1:3] == [APP, APP], row
        assert row[4] == "scram-sha-256" and "clientcert=verify-full" in row[5], row
    assert ["host", "all", "all", "0.0.0.0", "reject"] == remote[-2][:5], rules


def test_db_host_keeps_its_ca_to_root(host):
    only(host, "db")
    ca = host.file(CA_DIR)
    assert (ca.user, ca.group, ca.mode) == ("root", "root", 0o700)
    key = host.file(f"{CA_DIR}/ca.key")
    assert (key.user, key.mode) == ("root", 0o600)


# --- a backup of the database server from an app host (backup_postgresql_host, host_vars/pyfleet-fleet-app1.yml) ----

BACKUP_HOST = "pyfleet-fleet-app1"
BACKUP_UNIT = f"pyfleet-backup-{APP}-databases.service"


def test_an_app_host_backs_up_the_database_server_over_tls_with_its_certificate(host):
    """pg_dump on app1 reaches the database server as the app does (TLS verify-full, its client certificate, the
    pg_hba line for app hosts: nothing else admits it), the set holds every row of the server's database, no
    password reaches the unit's journal or its properties, and restore.yml refuses to load that set into a local
    server, before anything changes."""
    if host.backend.get_hostname() != BACKUP_HOST:
        pytest.skip(f"the backup of the database server runs on {BACKUP_HOST}")
    config = json.loads(host.check_output(f"cat /etc/pyfleet/backup/{APP}.json"))["postgresql"]
    db_address = config["host"]
    assert {k: config[k] for k in ("user", "sslmode", "sslrootcert", "sslcert", "sslkey")} == {
        "user": APP, "sslmode": "verify-full", "sslrootcert": f"{PKI}/ca.crt", "sslcert": f"{PKI}/client.crt",
        "sslkey": f"{PKI}/client.key"}, config
    assert host.run(f"systemctl start {BACKUP_UNIT}").rc == 0, host.run(f"journalctl -u {BACKUP_UNIT} -n 30").stdout
    root = f"/var/backups/pyfleet/{APP}"
    set_id = sorted(n for n in host.check_output(f"ls {root}").split() if re.fullmatch(r"\d{8}T\d{6}Z", n))[-1]
    manifest = json.loads(host.check_output(f"cat {root}/{set_id}/manifest.json"))
    dumped = manifest["components"]["postgresql"]
    assert dumped["host"] == db_address and dumped["os_user"] == "root", dumped
    db = testinfra.get_host(f"ansible://{DB_HOST}?ansible_inventory=" + os.environ["MOLECULE_INVENTORY_FILE"],
                            sudo=True)
    tables = dumped["databases"][APP]["tables"]
    assert tables and all(
        db.check_output(f"runuser -u postgres -- psql -XAtq -d {APP} -c 'SELECT count(*) FROM {name}'") == str(rows)
        for name, rows in tables.items()), tables
    password = (REPO / "build" / "secrets" / "fleet" / "postgres").read_text().strip()
    seen = host.check_output(f"journalctl -u {BACKUP_UNIT} --no-pager -o cat; systemctl show {BACKUP_UNIT}")
    assert password and password not in seen

    refused = run_playbook("playbooks/restore.yml", "--limit", BACKUP_HOST, "-e", f"restore_set={set_id}",
                           "-e", '{"restore_components": ["postgresql"]}', timeout=600)
    assert refused.returncode != 0
    assert f"was dumped from the PostgreSQL server {db_address}" in " ".join(refused.stdout.split()), \
        refused.stdout[-3000:]
    assert "changed=0" in refused.stdout
