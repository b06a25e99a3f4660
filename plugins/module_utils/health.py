# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure logic of the ``pyfleet.server.health_check`` module.

Nothing here talks to the network or imports Ansible: it turns what an endpoint answered (HTTP code,
parsed body, latency) into a verdict, and composes the messages. The module does the HTTP part.

Vocabulary: every status word is normalised to one of ``pass``, ``warn`` or ``fail`` (the terms of the
IETF ``application/health+json`` draft). Status words nobody knows count as ``fail`` and the reason
quotes them, so a typo in an application never reads as healthy.

Shapes: an object with a top-level status (``status``/``state``/``healthy``/``ok``) and/or a dependency map or
list (``dependencies``/``checks``/``services``/``components``), IETF ``application/health+json``, and a *flat map*
of checks (Dockerflow ``__heartbeat__``: ``{"storage": true, "cache": false}``), see :func:`flat_checks`.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import typing as t
import urllib.error
from dataclasses import dataclass, field

PASS = "pass"
WARN = "warn"
FAIL = "fail"

_RANK = {PASS: 0, WARN: 1, FAIL: 2}

# fmt: off
PASS_WORDS = frozenset({
    "pass", "passed", "passing", "ok", "up", "healthy", "true", "green", "ready", "available", "connected",
    "online", "alive", "live", "running", "success", "good",
})
WARN_WORDS = frozenset({"warn", "warning", "degraded", "yellow", "partial", "partially_available"})
FAIL_WORDS = frozenset({
    "fail", "failed", "failing", "failure", "error", "down", "unhealthy", "false", "red", "critical",
    "unavailable", "disconnected", "offline", "not_ready", "notready", "dead", "stopped", "timeout",
})
# fmt: on

# Keys that may carry a status, at the top level and inside a dependency object, in order of preference.
STATUS_KEYS = ("status", "state", "healthy", "ok")
# Keys whose value maps dependency names to their status.
DEPENDENCY_KEYS = ("dependencies", "checks", "services", "components")
# Keys of a dependency object that explain a bad status (IETF uses ``output``).
DETAIL_KEYS = ("output", "message", "error", "detail", "details", "reason")
# Keys that make an object an envelope (it is then never read as a flat map of checks).
ENVELOPE_KEYS = STATUS_KEYS + DEPENDENCY_KEYS


@dataclass
class Judgement:
    """A status as understood by us, plus the raw value it came from."""

    status: str
    raw: t.Any
    known: bool = True
    detail: str | None = None
    key: str | None = None


@dataclass
class BodyReport:
    """What a parsed JSON body says about the service."""

    status: str | None = None
    top: Judgement | None = None
    dependencies: dict[str, Judgement] = field(default_factory=dict)
    flat: bool = False
    # Not a flat map and no envelope key: the top-level values that look like statuses were not read.
    unread: dict[str, Judgement] = field(default_factory=dict)
    not_flat_because: str | None = None

    def dependency_statuses(self) -> dict[str, str]:
        return {name: item.status for name, item in self.dependencies.items()}


@dataclass
class Verdict:
    """The outcome of one attempt."""

    healthy: bool
    status: str
    dependencies: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def worst(*statuses: str | None) -> str | None:
    """Return the worst of the given normalised statuses, ignoring ``None``."""
    present = [s for s in statuses if s is not None]
    if not present:
        return None
    return max(present, key=lambda s: _RANK[s])


def normalize_status(value: t.Any) -> str | None:
    """Map a status value (word or boolean) to ``pass``/``warn``/``fail``; ``None`` when unknown."""
    if isinstance(value, bool):
        return PASS if value else FAIL
    if not isinstance(value, str):
        return None
    word = value.strip().lower().replace("-", "_").replace(" ", "_")
    if word in PASS_WORDS:
        return PASS
    if word in WARN_WORDS:
        return WARN
    if word in FAIL_WORDS:
        return FAIL
    return None


def _judge_value(value: t.Any, key: str | None = None) -> Judgement:
    status = normalize_status(value)
    if status is None:
        return Judgement(FAIL, value, known=False, key=key)
    return Judgement(status, value, key=key)


def _status_of_mapping(data: dict[str, t.Any]) -> Judgement | None:
    """Status carried by an object through ``status``/``state``/``healthy``/``ok``.

    When several are present the worst wins (``{"ok": true, "status": "degraded"}`` is a warn).
    Returns ``None`` when the object carries none of them.
    """
    found: list[Judgement] = []
    for key in STATUS_KEYS:
        if key in data and data[key] is not None:
            found.append(_judge_value(data[key], key))
    if not found:
        return None
    unknown = [j for j in found if not j.known]
    if unknown:
        return unknown[0]
    return max(found, key=lambda j: _RANK[j.status])


def _detail_of(data: dict[str, t.Any]) -> str | None:
    for key in DETAIL_KEYS:
        value = data.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def judge_dependency(value: t.Any) -> Judgement:
    """Judge one entry of a dependency map.

    Accepts a word or boolean (``"healthy"``, ``true``), an object with a status field
    (``{"status": "pass", "latency_ms": 2}``), or an IETF array of such objects (the worst counts).
    """
    if isinstance(value, dict):
        judgement = _status_of_mapping(value)
        if judgement is None:
            return Judgement(FAIL, None, known=False, detail="no status field")
        if judgement.status != PASS:
            judgement.detail = _detail_of(value)
        return judgement
    if isinstance(value, list):
        parts = [judge_dependency(item) for item in value]
        if not parts:
            return Judgement(FAIL, None, known=False, detail="empty list of checks")
        unknown = [p for p in parts if not p.known]
        if unknown:
            return unknown[0]
        return max(parts, key=lambda p: _RANK[p.status])
    return _judge_value(value)


def _is_status_value(value: t.Any) -> bool:
    """A boolean or a known status word (what every value of a flat map must be)."""
    return isinstance(value, bool) or (isinstance(value, str) and normalize_status(value) is not None)


def flat_checks(body: t.Any) -> dict[str, t.Any] | None:
    """The checks of a flat top-level map, or ``None`` when the body is not one.

    A body is a flat map when it is a JSON object with at least one key, none of the envelope keys
    (``status``, ``state``, ``healthy``, ``ok``, ``dependencies``, ``checks``, ``services``, ``components``)
    and every value a boolean or a known status word. Every key is then a check: ``false`` always fails.
    """
    if not isinstance(body, dict) or not body or any(key in body for key in ENVELOPE_KEYS):
        return None
    if not all(_is_status_value(value) for value in body.values()):
        return None
    return {str(key): value for key, value in body.items()}


def top_level_status_values(body: t.Any) -> dict[str, Judgement]:
    """Top-level entries of an object whose value is a boolean or a known status word (envelope keys excluded)."""
    if not isinstance(body, dict):
        return {}
    return {
        str(key): _judge_value(value)
        for key, value in body.items()
        if key not in ENVELOPE_KEYS and _is_status_value(value)
    }


def interpret_body(body: t.Any) -> BodyReport | None:
    """Read a parsed JSON body; ``None`` when it is not a JSON object (then the HTTP code decides)."""
    if not isinstance(body, dict):
        return None
    report = BodyReport()
    flat = flat_checks(body)
    if flat is not None:
        report.flat = True
        report.dependencies = {name: _judge_value(value) for name, value in flat.items()}
        return report
    if not any(key in body for key in ENVELOPE_KEYS):
        report.unread = top_level_status_values(body)
        others = [str(k) for k, v in body.items() if not _is_status_value(v)]
        if report.unread and others:
            report.not_flat_because = ", ".join(f"'{k}'" for k in others[:3]) + (" ..." if len(others) > 3 else "")
    top = _status_of_mapping(body)
    if top is not None:
        report.status = top.status
        report.top = top
    for key in DEPENDENCY_KEYS:
        deps = body.get(key)
        if isinstance(deps, list):
            # MicroProfile / Spring style: a list of {"name": ..., "status": ...}
            deps = {item["name"]: item for item in deps if isinstance(item, dict) and "name" in item}
        if not isinstance(deps, dict):
            continue
        for name, value in deps.items():
            name = str(name)
            judgement = judge_dependency(value)
            previous = report.dependencies.get(name)
            if previous is None or _RANK[judgement.status] > _RANK[previous.status]:
                report.dependencies[name] = judgement
    return report


def parse_body(raw: bytes | str | None, content_type: str | None = None) -> t.Any:
    """Parse a response body as JSON when it is JSON, else return it as text (``None`` when empty)."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", errors="replace")
    else:
        text = raw
    if not text.strip():
        return None if not text else text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _fmt_raw(value: t.Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    return json.dumps(value)


def _fmt_field(judgement: Judgement, *, top: bool = False) -> str:
    """``'unhealthy'``, ``state 'down'``, ``ok=false``: the value, and the field when it is not obvious."""
    key = judgement.key
    if key in ("healthy", "ok"):
        return f"{key}={_fmt_raw(judgement.raw)}"
    if key == "state" or (top and key == "status"):
        return f"{key} {_fmt_raw(judgement.raw)}"
    return _fmt_raw(judgement.raw)


def _describe_dependency(name: str, judgement: Judgement) -> str:
    if not judgement.known:
        if judgement.raw is None:
            text = f"dependency '{name}' reports {judgement.detail or 'no status'}"
        else:
            text = f"dependency '{name}' reported unknown status {_fmt_raw(judgement.raw)}"
    else:
        text = f"dependency '{name}' reported {_fmt_field(judgement)} ({judgement.status})"
        if judgement.detail:
            text += f": {judgement.detail}"
    return text


def _describe_top(judgement: Judgement) -> str:
    if not judgement.known:
        return f"unknown status {_fmt_raw(judgement.raw)} reported by the endpoint"
    return f"endpoint reported {_fmt_field(judgement, top=True)} ({judgement.status})"


def _find_dependency(name: str, dependencies: dict[str, Judgement]) -> list[tuple[str, Judgement]]:
    """Dependencies matching a ``require`` name.

    Exact name first, then case-insensitive, then IETF ``component:measurement`` keys whose component
    part matches (``postgres`` matches ``postgres:connections`` and ``postgres:responseTime``).
    """
    if name in dependencies:
        return [(name, dependencies[name])]
    lowered = name.lower()
    matches = [(k, v) for k, v in dependencies.items() if k.lower() == lowered]
    if matches:
        return matches
    return [(k, v) for k, v in dependencies.items() if k.split(":", 1)[0].lower() == lowered]


def format_codes(codes: t.Iterable[int]) -> str:
    codes = list(codes)
    if len(codes) == 1:
        return str(codes[0])
    return "one of " + ", ".join(str(c) for c in codes)


def evaluate(
    status_code: int,
    body: t.Any,
    *,
    status_codes: t.Iterable[int] = (200,),
    require: t.Iterable[str] = (),
    strict: bool = False,
    latency_ms: float | None = None,
    max_latency_ms: float | None = None,
    http_note: str | None = None,
) -> Verdict:
    """Judge one HTTP response.

    ``status`` is what the endpoint says about itself (HTTP code, top-level status and every dependency,
    worst wins). ``healthy`` additionally applies our own rules: ``require``, ``max_latency_ms`` and
    ``strict`` (warn counts as failure). ``failures`` is empty exactly when ``healthy`` is true.
    ``http_note`` is appended to the failure about an unexpected HTTP code (a redirect that was not followed).
    """
    status_codes = list(status_codes)
    failures: list[str] = []
    warnings: list[str] = []

    code_ok = status_code in status_codes
    if not code_ok:
        failures.append(f"HTTP {status_code} (expected {format_codes(status_codes)})")
        if http_note:
            failures[0] += f": {http_note}"

    report = interpret_body(body)
    dependencies: dict[str, str] = {}
    if report is None:
        status = PASS if code_ok else FAIL
    else:
        dependencies = report.dependency_statuses()
        status = worst(report.status, *dependencies.values()) or PASS
        if not code_ok:
            status = FAIL

        top = report.top
        if top is not None and (top.status == FAIL or (top.status == WARN and strict)):
            failures.append(_describe_top(top))
        elif top is not None and top.status == WARN:
            warnings.append(_describe_top(top))

        for name, judgement in report.dependencies.items():
            if judgement.status == FAIL or (judgement.status == WARN and strict):
                failures.append(_describe_dependency(name, judgement))
            elif judgement.status == WARN:
                warnings.append(_describe_dependency(name, judgement))

        if not code_ok and report.top is None and not report.dependencies:
            detail = _detail_of(body)
            if detail:
                failures[0] += f": {detail}"

    for name in require or ():
        matches = _find_dependency(name, report.dependencies if report else {})
        if not matches and report is not None and not report.flat:
            # An operator's explicit name also finds a top-level boolean or status word outside any envelope.
            matches = _find_dependency(name, top_level_status_values(body))
            for dep_name, judgement in matches:
                dependencies[dep_name] = judgement.status
                status = worst(status, judgement.status) or status
                if judgement.status == FAIL or (judgement.status == WARN and strict):
                    failures.append(_describe_dependency(dep_name, judgement))
                elif judgement.status == WARN:
                    warnings.append(_describe_dependency(dep_name, judgement))
        if not matches:
            if report is None:
                failures.append(f"required dependency '{name}' cannot be checked: the response is not a JSON object")
            else:
                failures.append(f"required dependency '{name}' is missing from the response")
        # present ones were already judged above (a failing one is already in ``failures``)

    if report is not None and report.unread and report.not_flat_because:
        # not judged: say so when a value there does not read as pass (a required one was judged above)
        bad = {k: j for k, j in report.unread.items() if j.status != PASS and k not in dependencies}
        if bad:
            values = ", ".join(f"{k}={_fmt_raw(j.raw)}" for k, j in bad.items())
            note = (
                f"the body holds {values} but is not read as a flat map of checks"
                f" ({report.not_flat_because} is neither a boolean nor a status word)"
            )
            if code_ok:
                warnings.append(f"{note}; judged by the HTTP code alone (list such keys in require to check them)")
            else:
                failures.append(note)

    if latency_ms is not None and max_latency_ms is not None and latency_ms > max_latency_ms:
        failures.append(f"latency {latency_ms:.0f} ms over the limit of {max_latency_ms:g} ms")

    if strict and status == WARN and not failures:
        failures.append("endpoint reported status warn (strict mode)")

    return Verdict(
        healthy=not failures,
        status=status,
        dependencies=dependencies,
        failures=failures,
        warnings=warnings,
    )


# --- reasons for attempts that got no HTTP response -------------------------------------------------


def reason_timeout(seconds: float) -> str:
    return f"timeout after {seconds:g} s (no response)"


def reason_refused(netloc: str) -> str:
    return f"connection refused by {netloc} (nothing listening?)"


def reason_tls(detail: str) -> str:
    return f"TLS certificate verification failed: {detail} (set ca_path to the issuing CA, or validate_certs=false)"


def reason_dns(host: str, detail: str) -> str:
    return f"DNS lookup of '{host}' failed: {detail}"


def reason_connection(detail: str) -> str:
    return f"connection failed: {detail}"


def classify_error(exc: BaseException, *, host: str, netloc: str, timeout: float) -> str:
    """Turn an exception raised while requesting (no HTTP response) into a precise reason.

    ``urllib`` wraps errors raised while connecting in ``URLError`` (``reason`` holds the original);
    errors raised while waiting for or reading the response arrive unwrapped.
    """
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        inner = exc.reason
        if isinstance(inner, BaseException):
            return classify_error(inner, host=host, netloc=netloc, timeout=timeout)
        text = str(inner)
        if "timed out" in text.lower():
            return reason_timeout(timeout)
        if "certificate verify failed" in text.lower():
            return reason_tls(text)
        return reason_connection(text)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return reason_tls(exc.verify_message or str(exc))
    if isinstance(exc, ssl.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return reason_tls(str(exc))
        detail = getattr(exc, "reason", None) or str(exc)  # set by the ssl module, absent when raised by hand
        if "CERTIFICATE_REQUIRED" in str(detail).upper():
            hint = "the server requires a client certificate: client_cert"
            return f"TLS handshake with {netloc} failed: {detail} ({hint})"
        return f"TLS handshake with {netloc} failed: {detail}"
    if isinstance(exc, ConnectionRefusedError):
        return reason_refused(netloc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return reason_timeout(timeout)
    if isinstance(exc, socket.gaierror):
        return reason_dns(host, exc.strerror or str(exc))
    if isinstance(exc, http.client.RemoteDisconnected):
        return f"{netloc} closed the connection without sending a response"
    if isinstance(exc, ConnectionResetError):
        return f"connection reset by {netloc}"
    if isinstance(exc, OSError):
        detail = exc.strerror or str(exc)
        if "timed out" in detail.lower():
            return reason_timeout(timeout)
        return reason_connection(detail)
    return reason_connection(f"{type(exc).__name__}: {exc}")


def describe_redirects(redirects: t.Iterable[dict[str, t.Any]]) -> str:
    """``http://a answered 307 → https://b; https://b answered 301 → https://c``."""
    return "; ".join(f"{hop['from']} answered {hop['status']} → {hop['to']}" for hop in redirects)


def with_redirects(failures: list[str], followed: list[dict[str, t.Any]]) -> list[str]:
    """Put the redirects that were followed in front of the first reason: ``<hops>; then: <reason>``."""
    if not failures or not followed:
        return failures
    return [f"{describe_redirects(followed)}; then: {failures[0]}", *failures[1:]]


def compose_message(url: str, failures: list[str], attempts: int, elapsed_s: float | None = None) -> str:
    """Final message: what failed, on which URL, after how many attempts."""
    what = "; ".join(failures) if failures else "healthy"
    plural = "attempt" if attempts == 1 else "attempts"
    took = f" in {elapsed_s:.1f} s" if elapsed_s is not None else ""
    if not failures:
        return f"{url} is healthy after {attempts} {plural}{took}"
    return f"{url} is unhealthy after {attempts} {plural}{took}: {what}"


def summary_line(
    name: str,
    *,
    healthy: bool,
    status: str,
    status_code: int | None,
    latency_ms: float | None,
    dependencies: dict[str, str],
    failures: list[str],
) -> str:
    """One report line per endpoint (``playbooks/healthcheck.yml`` prints it).

    ``app: healthy status=pass HTTP 200 12.4 ms``, then ``| degraded/failing: celery=warn`` when a dependency is not
    ``pass``, then ``| <failures joined by '; '>`` when unhealthy. ``-`` stands for a missing HTTP code or latency.
    """
    code = "-" if status_code is None else str(status_code)
    latency = "-" if latency_ms is None else str(latency_ms)
    line = f"{name}: {'healthy' if healthy else 'UNHEALTHY'} status={status} HTTP {code} {latency} ms"
    bad = [f"{dep}={value}" for dep, value in dependencies.items() if value != PASS]
    if bad:
        line += " | degraded/failing: " + ", ".join(bad)
    if not healthy:
        line += " | " + "; ".join(failures)
    return line
