"""Prometheus metrics.

Per-process registry by default. When PROMETHEUS_MULTIPROC_DIR names a writable directory,
prometheus_client records to files there and /metrics aggregates all gunicorn workers. If the
variable is set but the directory is unusable, fall back to per-process metrics with a warning.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

logger = logging.getLogger("fleetdemo")


def _usable_multiproc_dir() -> str | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
    if not path:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        logger.warning("PROMETHEUS_MULTIPROC_DIR unusable (%s); per-process metrics", exc)
    else:
        if os.access(path, os.W_OK):
            return path
        logger.warning("PROMETHEUS_MULTIPROC_DIR %s not writable; per-process metrics", path)
    values.ValueClass = values.MutexValue
    return None


MULTIPROC_DIR = _usable_multiproc_dir()

REQUESTS = Counter(
    "fleetdemo_http_requests_total",
    "HTTP requests handled, by method, route and status code.",
    ["method", "path", "status"],
)
LATENCY = Histogram(
    "fleetdemo_http_request_duration_seconds",
    "HTTP request latency in seconds, by method and route.",
    ["method", "path"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def observe(method: str, path: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, path, str(status)).inc()
    LATENCY.labels(method, path).observe(seconds)


def render() -> tuple[bytes, str]:
    """Return (body, content type) for the /metrics endpoint."""
    if MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
