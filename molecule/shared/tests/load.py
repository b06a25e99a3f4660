"""A bounded HTTP load generator for the zero-downtime checks and bench/rolling (standard library only).

`Load(url)` runs `workers` threads, each sending a GET on a new connection, then pausing `pause` seconds, until it is
stopped or `limit` seconds have passed; every answer that is not a 200 and every connection error counts as failed.
The pause bounds the rate (4 workers, 0.3 s: ~12 requests a second, each overlapping the reloads and restarts of a
rollout) and leaves the cores to what is being measured. A 50 ms pause (~55 a second, one TLS handshake each) spent
two thirds of a rollout test's CPU on the load itself (282 s of CPU for a 167 s rollout, against 114 s and 81 s
paced) and slowed the rollout it watched past its timeout in CI.
Only the project's own test hosts or loopback are ever targeted.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from collections import Counter


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# One context for every request: building one loads the system's CA store, which cost more CPU than the request.
_CONTEXT = _unverified_context()


def get_json(url: str, host_header: str | None = None, timeout: float = 10) -> tuple[int, dict]:
    """One GET; TLS is not verified (the test hosts' certificates are self-signed; TLS is tested elsewhere)."""
    headers = {"Host": host_header} if host_header else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout, context=_CONTEXT) as response:  # noqa: S310
        return response.status, json.loads(response.read())


class Load:
    def __init__(self, url: str, host_header: str | None = None, workers: int = 4, limit: float = 420,
                 pause: float = 0.3):
        self.url, self.host_header, self.limit, self.pause = url, host_header, limit, pause
        self.sent = 0
        self.failed: list[str] = []
        self.latencies: list[float] = []
        self.answers: list[dict] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _worker in range(workers)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status, body = get_json(self.url, self.host_header)
                outcome = None if status == 200 else f"HTTP {status}"
            except Exception as exc:  # noqa: BLE001 - every failure counts, whatever its kind
                outcome, body = f"{type(exc).__name__}: {exc}", {}
            elapsed = time.monotonic() - started
            with self._lock:
                self.sent += 1
                self.latencies.append(elapsed)
                if outcome:
                    self.failed.append(outcome)
                else:
                    self.answers.append(body)
            self._stop.wait(self.pause)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def percentile(self, p: float) -> float:
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")

    def report(self, what: str) -> str:
        line = (f"{what}: requests sent {self.sent}, failed {len(self.failed)}, "
                f"p50 {self.percentile(50) * 1000:.0f} ms, p99 {self.percentile(99) * 1000:.0f} ms")
        if self.failed:
            line += f" ({Counter(self.failed).most_common(3)})"
        print(line)
        return line
