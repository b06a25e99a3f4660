"""Testinfra helpers for the edge (nginx, ufw, logrotate): probes from outside the host under test."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

IMAGE = "pyfleet/debian12-systemd:latest"


def container_name(host) -> str:
    return host.backend.host


def container_ip(host) -> str:
    name = container_name(host)
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return out[0]


def container_network(host) -> str:
    name = container_name(host)
    return subprocess.run(
        ["docker", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", name],
        check=True, capture_output=True, text=True,
    ).stdout.split()[0]


def probe_ports(host, ports: list[int]) -> dict[int, bool]:
    """Which TCP ports of the host answer, seen from a second, throw-away container on the same network."""
    ip = container_ip(host)
    script = "; ".join(
        f'if timeout 3 bash -c "</dev/tcp/{ip}/{port}" 2>/dev/null; then echo {port} open; else echo {port} closed; fi'
        for port in ports
    )
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", container_network(host), "--entrypoint", "bash", IMAGE, "-c", script],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    seen = dict(line.split() for line in out.splitlines() if line.strip())
    return {int(port): state == "open" for port, state in seen.items()}


def sslyze_verdict(host, server_name: str, ca_pem: str, port: int = 443) -> tuple[str, str]:
    """Runs sslyze --mozilla_config=intermediate from the controller; returns (verdict line, full output)."""
    sslyze = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "sslyze"
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as ca:
        ca.write(ca_pem)
    try:
        out = subprocess.run(
            [str(sslyze), "--mozilla_config=intermediate", f"--certinfo_ca_file={ca.name}",
             f"{server_name}:{port}{{{container_ip(host)}}}"],
            capture_output=True, text=True, timeout=300, check=False,  # sslyze exits 1 on a failed check
        ).stdout
    finally:
        Path(ca.name).unlink()
    verdict = next((line.strip() for line in out.splitlines() if f"{server_name}:{port}:" in line), "no verdict")
    return verdict, out
