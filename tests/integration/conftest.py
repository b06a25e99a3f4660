"""Fixtures for integration tests: real HTTP(S) servers on 127.0.0.1 and a runner for the real module.

Only 127.0.0.1 is ever contacted. Servers listen on ephemeral ports in daemon threads.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import typing as t
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# A responder returns (code, body) or (code, body, extra headers), e.g. (307, "", {"Location": "https://..."}).
Responder = t.Callable[["Server", str], tuple]


@dataclass
class Server:
    """A running HTTP(S) server whose answers come from ``responder(server, path)``."""

    responder: Responder
    tls: ssl.SSLContext | None = None
    hits: int = 0
    httpd: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> Server:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server.lock:
                    server.hits += 1
                code, body, *extra = server.responder(server, self.path)
                if isinstance(body, (dict, list)):
                    payload, ctype = json.dumps(body).encode(), "application/json"
                else:
                    payload, ctype = str(body).encode(), "text/plain"
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in (extra[0] if extra else {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: t.Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self.tls:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        self.httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def serve():
    """``serve(responder, tls=None)`` starts a server for the test and stops it afterwards."""
    servers: list[Server] = []

    def start(responder: Responder, tls: ssl.SSLContext | None = None) -> Server:
        server = Server(responder, tls=tls).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> dict[str, Path]:
    """Self-signed server certificate for 127.0.0.1 and a self-signed client certificate, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not available")
    base = tmp_path_factory.mktemp("certs")
    out = {}
    for name, cn, ext in (
        ("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1"),
        ("client", "pyfleet-probe", "extendedKeyUsage=clientAuth"),
    ):
        cert, key = base / f"{name}.crt", base / f"{name}.key"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={cn}",
             "-addext", ext, "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        out[f"{name}_cert"], out[f"{name}_key"] = cert, key
    return out


@pytest.fixture
def server_tls(certs):
    """``server_tls(mutual=False)``: a server-side TLS context with the self-signed certificate.

    With ``mutual=True`` the server requires the self-signed client certificate.
    """

    def make(mutual: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs["server_cert"], certs["server_key"])
        if mutual:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(certs["client_cert"])
        return ctx

    return make


@pytest.fixture(scope="session")
def ansible_env(tmp_path_factory) -> dict[str, str]:
    """Environment resolving ``pyfleet.server`` from this checkout through a throw-away symlink farm."""
    if not (BIN / "ansible").exists() and shutil.which("ansible") is None:
        pytest.skip("ansible is not installed")
    farm = tmp_path_factory.mktemp("collections")
    empty_cfg = farm / "ansible.cfg"  # keep the checkout's ansible.cfg (inventory, callbacks) out of these runs
    empty_cfg.write_text("[defaults]\n")
    (farm / "ansible_collections" / "pyfleet").mkdir(parents=True)
    (farm / "ansible_collections" / "pyfleet" / "server").symlink_to(REPO)
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(farm),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCAL_TEMP=str(tmp_path_factory.mktemp("ansible-tmp")),
        ANSIBLE_CONFIG=str(empty_cfg),
    )
    return env


@dataclass
class Run:
    rc: int
    result: dict
    seconds: float
    stdout: str


def _tool(name: str) -> str:
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


@pytest.fixture
def run_module(ansible_env, tmp_path):
    """Run ``pyfleet.server.health_check`` for real through ``ansible localhost -m``; return its result."""

    def run(args: dict, *extra: str) -> Run:
        cmd = [_tool("ansible"), "localhost", "-i", "localhost,", "-c", "local",
               "-e", f"ansible_python_interpreter={sys.executable}",
               "-m", "pyfleet.server.health_check", "-a", json.dumps(args), *extra]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.run(
            cmd, check=False, cwd=tmp_path, env=ansible_env, capture_output=True, text=True, timeout=60
        )
        seconds = time.monotonic() - started
        try:
            data = json.loads(proc.stdout)
            result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError) as exc:
            raise AssertionError(f"unexpected ansible output ({exc}):\n{proc.stdout}\n{proc.stderr}") from exc
        return Run(proc.returncode, result, seconds, proc.stdout)

    return run


@pytest.fixture
def run_playbook(ansible_env, tmp_path):
    """Run a playbook of this checkout against localhost with the default (human-readable) output."""

    def run(playbook: str, extra_vars: dict) -> subprocess.CompletedProcess:
        env = {**ansible_env, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default"}
        (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
        cmd = [_tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{tmp_path / 'vars.json'}",
               str(REPO / playbook)]  # fmt: skip
        return subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    return run
