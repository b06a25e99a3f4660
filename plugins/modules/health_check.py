#!/usr/bin/python
# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

# Ansible module layout: imports follow DOCUMENTATION/EXAMPLES/RETURN; the shebang is required but the file must
# not be executable (ansible-test shebang rule).
# ruff: noqa: E402, EXE001


DOCUMENTATION = r"""
module: health_check
short_description: Probe an HTTP(S) health endpoint and judge the service and its dependencies
version_added: 0.1.0
author:
  - pyfleet.server contributors (@pyfleet)
description:
  - Sends an HTTP(S) request to a health endpoint, retrying until it is healthy, an attempt limit or an overall
    deadline is reached, and reports whether the service is healthy.
  - Understands the common shapes of health responses. The top-level C(status), C(state), C(healthy) or C(ok) field,
    and every dependency listed under C(dependencies), C(checks), C(services) or C(components). A dependency may be
    a word (V(healthy)), a boolean, an object with C(status), C(state), C(healthy) or C(ok), or, as in the IETF
    C(application/health+json) draft, an array of such objects (the worst one counts).
  - 'It also understands a flat map of checks, the Dockerflow C(__heartbeat__) convention, such as
    C({"storage": true, "cache": false}). A body is read as a flat map when it is a JSON object with at least one key,
    none of the keys C(status), C(state), C(healthy), C(ok), C(dependencies), C(checks), C(services) or
    C(components), and every value is a boolean or a known status word. Every key is then a dependency. V(true) is
    V(pass), V(false) is V(fail), and words are normalised as below. A V(false) is never healthy, whatever
    O(status_codes) accepts.'
  - 'A JSON object without any of those keys that holds other values as well, such as
    C({"storage": true, "version": "1.2"}), is not a flat map. It is judged by the HTTP status code alone. A warning
    (or, with an unaccepted code, the failure message) names its top-level booleans and status words that are not
    V(pass). A name in O(require) also finds such a top-level value, so O(require=[storage]) checks C(storage) there.'
  - Status words are normalised to V(pass), V(warn) or V(fail). V(pass) is pass, ok, up, healthy, true, green, ready,
    available or connected. V(warn) is warn, warning, degraded, yellow or partial. V(fail) is fail, error, down,
    unhealthy, false, red, critical, unavailable or disconnected. An unknown word counts as V(fail), and the reason
    quotes it.
  - A body that is not a JSON object is judged by the HTTP status code alone. A JSON body is parsed even when the
    code is not accepted (for example a V(503) listing its checks or a flat map with a V(false)), so the message names
    the failing dependency. An object without any status gets its C(message), C(error) or C(detail) appended.
  - The endpoint's status is the worst of the HTTP code, the top-level status and all dependencies. The service is
    healthy when that status is V(pass) or V(warn) (only V(pass) with O(strict=true)), every O(require)d dependency
    is present, and the latency is within O(max_latency_ms).
  - The module never changes anything. It sends its request in check mode too.
extends_documentation_fragment:
  - pyfleet.server.attributes
  - pyfleet.server.attributes.read_only
attributes:
  check_mode:
    details:
      - The probe is read-only, so it runs normally in check mode and reports the real result.
options:
  url:
    description:
      - URL of the health endpoint, for example V(http://127.0.0.1:8000/readyz).
    type: str
    required: true
  name:
    description:
      - Label of the endpoint in RV(summary), for example V(api) or V(worker-ready).
      - Defaults to O(url).
    type: str
  method:
    description:
      - HTTP method of the probe. Use a method that does not change anything on the server.
    type: str
    default: GET
  headers:
    description:
      - Extra request headers, for example C(Host) when probing through nginx by IP address.
      - Values are shown in task output and logs like any other option. Do not put bearer tokens here unless the task
        sets C(no_log).
      - An C(Accept) header preferring C(application/health+json) is sent unless one is given here.
    type: dict
    default: {}
  timeout:
    description:
      - Seconds to wait for a response in each attempt (connection, headers and body).
    type: float
    default: 10
  retries:
    description:
      - How many times to try again after an unhealthy attempt. The total number of attempts is at most O(retries) + 1.
      - When omitted, a single attempt is made, unless O(wait_timeout) is set. Then attempts go on until the deadline.
    type: int
  delay:
    description:
      - Seconds to wait between attempts.
    type: float
    default: 2
  wait_timeout:
    description:
      - Overall deadline in seconds across all attempts. No attempt starts after it, and the last attempt's O(timeout)
        is shortened so that it ends by the deadline.
      - Combines with O(retries). Whichever limit is reached first ends the probe.
    type: float
  status_codes:
    description:
      - HTTP status codes that count as a successful response. Any other code makes the endpoint fail.
    type: list
    elements: int
    default: [200]
  validate_certs:
    description:
      - Verify the server's TLS certificate and host name. Only set V(false) for throw-away test hosts.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificate(s) that the server certificate is verified against, for example a private CA or
        a self-signed certificate.
    type: path
  client_cert:
    description:
      - PEM client certificate for mutual TLS. It may also contain the private key.
    type: path
  client_key:
    description:
      - PEM private key of O(client_cert), when it is not in the same file.
    type: path
  use_proxy:
    description:
      - Use proxies from the environment (C(http_proxy), C(https_proxy), C(no_proxy)).
      - Set V(false) when probing an application on the loopback interface of a host that has a proxy configured.
    type: bool
    default: true
  require:
    description:
      - Names of dependencies that must be present in the response and not failing.
      - A name matches a dependency key exactly, or case-insensitively. It also matches the component part of IETF
        C(component:measurement) keys, so V(postgres) matches C(postgres:connections).
      - A required dependency reporting V(warn) is accepted unless O(strict=true).
    type: list
    elements: str
    default: []
  max_latency_ms:
    description:
      - Longest acceptable response time in milliseconds, measured from sending the request to the end of the body.
    type: float
  strict:
    description:
      - Treat a V(warn) (degraded) status of the endpoint or any dependency as a failure.
    type: bool
    default: false
  follow_redirects:
    description:
      - Which HTTP redirects (301, 302, 303, 307, 308) of V(GET) and V(HEAD) probes to follow, up to 10 hops,
        judging the final answer.
      - V(same_host) (the default) follows a redirect only to the same host name as O(url), whatever the scheme
        and port, so an C(http) to C(https) or trailing-slash redirect keeps working, but a probe of a loopback
        address never wanders off to the public name a server redirects to (and then blames that host's TLS).
      - V(all) (or V(yes)/V(true)) follows redirects to any host, as M(ansible.builtin.uri) does. A hop to another host
        does not carry the C(Host), C(Authorization) or C(Cookie) headers of O(headers).
      - V(none) (or V(no)/V(false)) makes a redirect the answer. It fails unless its code is in O(status_codes). Use it
        for a health gate that must reach the application itself.
      - Redirects are never silent. Every hop seen is returned in RV(redirects); a redirect not followed is named in
        the message with the reason. When the probe is unhealthy, the message starts with the hops followed, as in
        C(http://a answered 307 → https://a; then) followed by the reason. When it is healthy, a warning names them.
      - O(timeout) covers all hops of an attempt together.
    type: str
    choices: [same_host, all, none, "yes", "no"]
    default: same_host
  units:
    description:
      - systemd units that serve O(url) on the host the module runs on, for example V([myapp-api.service]). Needs
        C(systemctl) and C(journalctl) there (a probe of a local service, as the app role's health gate is).
      - After each unhealthy attempt their state is read. The wait ends early, without using up O(retries) or
        O(wait_timeout), when a unit cannot serve the URL. That is when it is not loaded, V(failed) or
        V(inactive), when systemd could not even start its program (an exit status of 200 or more from systemd
        itself, such as V(203/EXEC) for a missing program), or when systemd restarted it twice or more while
        the probe waited (a crash loop).
      - When the probe ends unhealthy, the message carries each unit's C(ActiveState), C(SubState), C(Result),
        C(ExecMainStatus) and C(NRestarts), and its last O(journal_lines) journal lines. RV(units) and RV(journal)
        return them.
      - A healthy answer is never second-guessed. The units are read only after an unhealthy attempt.
    type: list
    elements: str
    default: []
  journal_lines:
    description:
      - How many of the last journal lines of each unit in O(units) an unhealthy result shows. V(0) shows none.
    type: int
    default: 15
  fail_on_unhealthy:
    description:
      - Fail the task when the service is unhealthy after the last attempt.
      - With V(false), the task succeeds and only reports RV(healthy) and RV(failures). Use this to collect results and
        decide later.
    type: bool
    default: true
notes:
  - Supports C(http) and C(https) URLs. Requests go through C(ansible.module_utils.urls.open_url), which honours the
    usual proxy environment variables unless O(use_proxy=false).
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
"""

EXAMPLES = r"""
- name: Gate a deployment on the app's readiness (PlayPark /readyz, Brownie, FairEdge)
  pyfleet.server.health_check:
    url: "http://127.0.0.1:{{ app_port }}/readyz"
    wait_timeout: 60
    delay: 2
    timeout: 5
    require:
      - database
      - redis

- name: Brownie detailed health, dependency map, a degraded dependency fails the check
  pyfleet.server.health_check:
    url: http://127.0.0.1:8080/health/detailed
    strict: true
    max_latency_ms: 1000

- name: Diet Planner through nginx with a private CA
  pyfleet.server.health_check:
    url: https://diet.example.internal/api/health
    ca_path: /etc/ssl/certs/pyfleet-ca.pem
    headers:
      Host: diet.example.internal

- name: Probe with mutual TLS
  pyfleet.server.health_check:
    url: https://metadata.example.internal/health
    client_cert: /etc/brownie/tls/client.crt
    client_key: /etc/brownie/tls/client.key

- name: Dockerflow heartbeat, a flat map of booleans (503 when one is false)
  pyfleet.server.health_check:
    url: http://127.0.0.1:8888/__heartbeat__
    require:
      - storage

- name: The app itself must answer, a redirect (for example to https) is a failure
  pyfleet.server.health_check:
    url: http://127.0.0.1:8000/health
    follow_redirects: none

- name: Gate on the API, ending early with its state and journal when its unit cannot start
  pyfleet.server.health_check:
    url: http://127.0.0.1:8000/readyz
    retries: 30
    delay: 2
    units:
      - myapp-api.service

- name: Loyalty readiness, only report (morning checks)
  pyfleet.server.health_check:
    url: http://127.0.0.1:8080/ready
    fail_on_unhealthy: false
  register: loyalty_ready

- name: Show what failed
  ansible.builtin.debug:
    msg: "{{ loyalty_ready.failures }}"
  when: not loyalty_ready.healthy
"""

RETURN = r"""
healthy:
  description: Whether the service passed every check on the last attempt.
  returned: always
  type: bool
  sample: true
status:
  description:
    - Normalised status of the endpoint on the last attempt. It is the worst of the HTTP code, the top-level status
      and all dependencies.
    - V(fail) when no response was received.
  returned: always
  type: str
  choices: [pass, warn, fail]
  sample: pass
status_code:
  description: HTTP status code of the last response, or V(null) when no response was received.
  returned: always
  type: int
  sample: 200
latency_ms:
  description: Duration of the last attempt in milliseconds, from sending the request to the end of the body.
  returned: always
  type: float
  sample: 12.4
attempts:
  description: Number of requests made.
  returned: always
  type: int
  sample: 1
dependencies:
  description: Normalised status of every dependency the response listed.
  returned: always
  type: dict
  sample: {"database": "pass", "redis": "pass", "celery": "warn"}
body:
  description: Body of the last response, parsed when it is JSON, else as text. V(null) when there was none.
  returned: always
  type: raw
  sample: {"status": "pass", "checks": {"database": "pass", "redis": "pass"}}
redirects:
  description:
    - Redirects answered during the last attempt, in order. Each has the HTTP C(status), the URL it came C(from) and the
      URL it pointed C(to).
    - With O(follow_redirects=none), or when a redirect was not followed (another host with V(same_host), not http(s),
      a loop, too many hops), the last entry is the redirect that was not followed, and RV(status_code) is its code.
  returned: always
  type: list
  elements: dict
  sample: [{"status": 307, "from": "http://app.example/health", "to": "https://app.example/health"}]
failures:
  description:
    - Reasons why the last attempt was unhealthy. Empty when healthy.
    - When redirects were followed, the first reason starts with them and C(; then) precedes the reason.
  returned: always
  type: list
  elements: str
  sample: ["HTTP 503 (expected 200)", "dependency 'redis' reported 'fail' (fail)"]
units:
  description:
    - State of every unit in O(units) when it was last read (after the last unhealthy attempt), by unit name.
    - Empty when O(units) is empty or every attempt was healthy.
  returned: always
  type: dict
  sample: {"myapp-api.service": {"ActiveState": "activating", "SubState": "auto-restart", "Result": "exit-code",
           "ExecMainStatus": "203", "NRestarts": "3", "LoadState": "loaded", "ExecMainCode": "1"}}
journal:
  description: The last O(journal_lines) journal lines of every unit in O(units), by unit name, when unhealthy.
  returned: always
  type: dict
  sample: {"myapp-api.service": ["... myapp-api.service: Failed at step EXEC spawning ...: No such file or directory"]}
summary:
  description:
    - One report line for the endpoint, as C(playbooks/healthcheck.yml) prints it.
    - "C(<name>: healthy|UNHEALTHY status=<status> HTTP <status_code> <latency_ms> ms), where C(-) stands for a
      missing status code or latency. Then C( | degraded/failing: <dependency>=<status>, ...) when a dependency is not
      V(pass), then C( | <failures joined by '; '>) when unhealthy."
    - C(<name>) is O(name), or O(url) when O(name) is not set.
  returned: always
  type: str
  sample: "worker-ready: UNHEALTHY status=fail HTTP 503 4.1 ms | degraded/failing: redis=fail | HTTP 503 (expected 200);
    dependency 'redis' reported 'fail' (fail)"
msg:
  description: One-line summary naming the URL, the number of attempts and what failed.
  returned: always
  type: str
  sample: "http://127.0.0.1:8000/readyz is unhealthy after 3 attempts in 4.2 s: connection refused by 127.0.0.1:8000"
"""

import http.client
import time
import typing as t
import urllib.error
from urllib.parse import urljoin, urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url
from ansible_collections.pyfleet.server.plugins.module_utils.health import (
    FAIL,
    Verdict,
    classify_error,
    compose_message,
    describe_redirects,
    evaluate,
    parse_body,
    summary_line,
    with_redirects,
)

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_ACCEPT = "application/health+json, application/json;q=0.9, */*;q=0.1"
REDIRECT_CODES = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
CROSS_HOST_DROPPED_HEADERS = ("host", "authorization", "cookie")
UNIT_PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus", "NRestarts")
UNIT_SHOWN = ("ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts")
CLD_EXITED = "1"  # ExecMainCode of a process that exited (rather than being killed)
# Exit statuses systemd itself uses when it could not set up or run a unit's program (systemd.exec(5)).
SYSTEMD_EXIT_NAMES = {
    200: "CHDIR", 201: "NICE", 202: "FDS", 203: "EXEC", 204: "MEMORY", 205: "LIMITS", 206: "OOM_ADJUST",
    207: "SIGNAL_MASK", 208: "STDIN", 209: "STDOUT", 210: "CHROOT", 211: "IOPRIO", 212: "TIMERSLACK",
    213: "SECUREBITS", 214: "SETSCHEDULER", 215: "CPUAFFINITY", 216: "GROUP", 217: "USER", 218: "CAPABILITIES",
    219: "CGROUP", 220: "SETSID", 221: "CONFIRM", 222: "STDERR", 224: "PAM", 225: "NETWORK", 226: "NAMESPACE",
    227: "NO_NEW_PRIVILEGES", 228: "SECCOMP", 229: "SELINUX_CONTEXT", 230: "PERSONALITY", 231: "APPARMOR_PROFILE",
    232: "ADDRESS_FAMILIES", 233: "RUNTIME_DIRECTORY", 235: "CHOWN", 236: "SMACK_PROCESS_LABEL", 237: "KEYRING",
    238: "STATE_DIRECTORY", 239: "CACHE_DIRECTORY", 240: "LOGS_DIRECTORY", 241: "CONFIGURATION_DIRECTORY",
    242: "NUMA_POLICY", 243: "CREDENTIALS", 245: "BPF",
}
RESTART_LOOP = 2  # restarts by systemd while waiting that end the wait


def unit_trouble(unit: str, state: dict[str, str], restarts_before: int | None) -> str | None:
    """Why `unit` cannot serve the URL now, or None while it may still come up (pure; decides an early end)."""
    active, sub = state.get("ActiveState", ""), state.get("SubState", "")
    if state.get("LoadState", "loaded") != "loaded":
        return f"{unit} is not loaded (LoadState={state.get('LoadState')})"
    status = int(state.get("ExecMainStatus") or 0)
    if (state.get("ExecMainCode") == CLD_EXITED and status in SYSTEMD_EXIT_NAMES
            and state.get("Result", "success") != "success" and active != "active"):
        return (f"{unit} cannot start: systemd could not run its program "
                f"(status={status}/{SYSTEMD_EXIT_NAMES[status]})")
    if active in ("failed", "inactive"):
        return f"{unit} is {active} ({sub}, result {state.get('Result', '?')})"
    restarts = int(state.get("NRestarts") or 0)
    if restarts_before is not None and restarts - restarts_before >= RESTART_LOOP:
        return (f"{unit} is crash-looping: systemd restarted it {restarts - restarts_before} times while waiting "
                f"(result {state.get('Result', '?')}, exit status {status})")
    return None


def describe_unit(unit: str, state: dict[str, str]) -> str:
    return unit + " " + " ".join(f"{key}={state.get(key, '?')}" for key in UNIT_SHOWN)


class Systemd:
    """Reads unit state and journal lines through systemctl/journalctl (read-only)."""

    def __init__(self, run_command: t.Callable[..., tuple[int, str, str]]) -> None:
        self.run_command = run_command

    def state(self, unit: str) -> dict[str, str]:
        rc, out, err = self.run_command(
            ["systemctl", "show", "--property=" + ",".join(UNIT_PROPERTIES), "--", unit])
        if rc != 0:
            return {"LoadState": f"unknown (systemctl show: {(err or out).strip()})"}
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str, lines: int) -> list[str]:
        rc, out, err = self.run_command(
            ["journalctl", "--unit", unit, "--lines", str(lines), "--no-pager", "--quiet", "--output", "short-iso"])
        if rc != 0:
            return [f"(journalctl failed: {(err or out).strip()})"]
        return out.splitlines()


class HealthProbe:
    """Sends the request (with retries) and asks ``module_utils.health`` for the verdict."""

    def __init__(
        self,
        params: dict[str, t.Any],
        opener: t.Callable[..., t.Any] | None = None,
        clock: t.Callable[[], float] = time.monotonic,
        sleep: t.Callable[[float], None] = time.sleep,
        systemd: Systemd | None = None,
    ) -> None:
        self.params = params
        self.opener = opener or open_url
        self.systemd = systemd
        self.clock = clock
        self.sleep = sleep
        parts = urlsplit(params["url"])
        self.host = parts.hostname or ""
        self.netloc = parts.netloc
        headers = dict(params.get("headers") or {})
        if not any(k.lower() == "accept" for k in headers):
            headers["Accept"] = DEFAULT_ACCEPT
        self.headers = headers

    def _request(self, url: str, headers: dict[str, str], timeout: float) -> t.Any:
        p = self.params
        return self.opener(
            url,
            method=p["method"].upper(),
            headers=headers,
            timeout=timeout,
            validate_certs=p["validate_certs"],
            ca_path=p["ca_path"],
            client_cert=p["client_cert"],
            client_key=p["client_key"],
            use_proxy=p["use_proxy"],
            follow_redirects="none",  # hops are followed (and recorded) by attempt()
            http_agent="pyfleet.server.health_check",
        )

    def attempt(self, timeout: float) -> dict[str, t.Any]:
        """One request, following redirects hop by hop. Returns status_code, body, latency_ms, redirects, verdict."""
        p = self.params
        started = self.clock()
        url = p["url"]
        headers = dict(self.headers)
        redirects: list[dict[str, t.Any]] = []
        stopped: str | None = None  # why the last redirect answered was not followed
        status_code: int | None = None
        raw: bytes | None = None
        content_type: str | None = None
        error: str | None = None
        while True:
            parts = urlsplit(url)
            remaining = max(timeout - (self.clock() - started), 0.1)
            location: str | None = None
            try:
                response = self._request(url, headers, remaining)
                try:
                    status_code = response.getcode()
                    content_type = response.headers.get("Content-Type")
                    raw = response.read(MAX_BODY_BYTES)
                finally:
                    response.close()
            except urllib.error.HTTPError as exc:
                status_code = exc.code
                content_type = exc.headers.get("Content-Type") if exc.headers else None
                if status_code in REDIRECT_CODES and exc.headers and exc.headers.get("Location"):
                    location = exc.headers.get("Location")
                try:
                    raw = exc.read(MAX_BODY_BYTES) if getattr(exc, "fp", None) is not None else None
                except (OSError, http.client.HTTPException):  # the body of an error response is best effort
                    raw = None
                finally:
                    if getattr(exc, "fp", None) is not None:
                        exc.close()
            except (OSError, http.client.HTTPException, UrlsConnectionError, ValueError) as exc:
                status_code = None
                error = classify_error(exc, host=parts.hostname or "", netloc=parts.netloc, timeout=timeout)
            if location is None:
                break
            target = urljoin(url, location)
            redirects.append({"status": status_code, "from": url, "to": target})
            other_host = (urlsplit(target).hostname or "").lower() != (parts.hostname or "").lower()
            if p["follow_redirects"] == "none":
                stopped = f"redirect to {target} not followed (follow_redirects=none)"
            elif other_host and p["follow_redirects"] != "all":
                stopped = (f"redirect to {target} not followed: another host than {parts.hostname} "
                           f"(follow_redirects=same_host; use all to follow it)")
            elif p["method"].upper() not in ("GET", "HEAD"):
                stopped = f"redirect to {target} not followed for method {p['method'].upper()}"
            elif urlsplit(target).scheme.lower() not in ("http", "https"):
                stopped = f"redirect to {target} not followed (not http or https)"
            elif any(hop["from"] == target for hop in redirects):
                stopped = f"redirect loop back to {target}"
            elif len(redirects) > MAX_REDIRECTS:
                stopped = f"more than {MAX_REDIRECTS} redirects, the last to {target}"
            if stopped:
                break
            if other_host:
                # another host: do not send it this host's Host header nor its credentials
                headers = {k: v for k, v in headers.items() if k.lower() not in CROSS_HOST_DROPPED_HEADERS}
            url = target
            raw = content_type = None
        latency_ms = round((self.clock() - started) * 1000, 1)

        followed = redirects[:-1] if stopped else redirects
        if error is not None:
            verdict = Verdict(healthy=False, status=FAIL, failures=[error])
            body = None
        else:
            body = parse_body(raw, content_type)
            verdict = evaluate(
                status_code,
                body,
                status_codes=p["status_codes"],
                require=p["require"],
                strict=p["strict"],
                latency_ms=latency_ms,
                max_latency_ms=p["max_latency_ms"],
                http_note=stopped,
            )
        verdict.failures = with_redirects(verdict.failures, followed)
        if verdict.healthy and followed:
            verdict.warnings.append(
                f"followed {describe_redirects(followed)}; point url at the final address to probe it directly"
            )
        return {
            "status_code": status_code,
            "body": body,
            "latency_ms": latency_ms,
            "redirects": redirects,
            "verdict": verdict,
        }

    def run(self) -> dict[str, t.Any]:
        p = self.params
        start = self.clock()
        deadline = start + p["wait_timeout"] if p["wait_timeout"] is not None else None
        if p["retries"] is not None:
            max_attempts: int | None = p["retries"] + 1
        else:
            max_attempts = None if deadline is not None else 1

        units: list[str] = list(p.get("units") or [])
        unit_states: dict[str, dict[str, str]] = {}
        restarts_before: dict[str, int] = {}
        trouble: list[str] = []
        attempts = 0
        while True:
            attempts += 1
            timeout = p["timeout"]
            if deadline is not None:
                timeout = max(min(timeout, deadline - self.clock()), 0.1)
            outcome = self.attempt(timeout)
            verdict: Verdict = outcome["verdict"]
            if verdict.healthy:
                break
            if units and self.systemd is not None:
                for unit in units:
                    unit_states[unit] = self.systemd.state(unit)
                    restarts_before.setdefault(unit, int(unit_states[unit].get("NRestarts") or 0))
                trouble = [reason for unit in units
                           if (reason := unit_trouble(unit, unit_states[unit], restarts_before[unit]))]
                if trouble:
                    break
            if max_attempts is not None and attempts >= max_attempts:
                break
            if deadline is not None and self.clock() + p["delay"] >= deadline:
                break
            self.sleep(p["delay"])

        elapsed = self.clock() - start
        failures = list(verdict.failures)
        msg = compose_message(p["url"], verdict.failures, attempts, elapsed)
        journal: dict[str, list[str]] = {}
        if not verdict.healthy and unit_states and self.systemd is not None:
            if trouble:
                failures.append("stopped waiting: " + "; ".join(trouble))
                msg += ". Stopped waiting early: " + "; ".join(trouble)
            for unit in units:
                msg += ".\n" + describe_unit(unit, unit_states[unit])
                if p.get("journal_lines", 0) > 0:
                    journal[unit] = self.systemd.journal(unit, p["journal_lines"])
                    msg += f"; its last {len(journal[unit])} journal lines:\n" + "\n".join(journal[unit])
        return {
            "changed": False,
            "healthy": verdict.healthy,
            "status": verdict.status,
            "status_code": outcome["status_code"],
            "latency_ms": outcome["latency_ms"],
            "attempts": attempts,
            "dependencies": verdict.dependencies,
            "body": outcome["body"],
            "redirects": outcome["redirects"],
            "failures": failures,
            "units": unit_states,
            "journal": journal,
            "summary": summary_line(
                p.get("name") or p["url"],
                healthy=verdict.healthy,
                status=verdict.status,
                status_code=outcome["status_code"],
                latency_ms=outcome["latency_ms"],
                dependencies=verdict.dependencies,
                failures=failures,
            ),
            "msg": msg,
            "_warnings": verdict.warnings,
        }


def argument_spec() -> dict[str, t.Any]:
    return {
        "url": {"type": "str", "required": True},
        "name": {"type": "str"},
        "method": {"type": "str", "default": "GET"},
        "headers": {"type": "dict", "default": {}},
        "timeout": {"type": "float", "default": 10},
        "retries": {"type": "int"},
        "delay": {"type": "float", "default": 2},
        "wait_timeout": {"type": "float"},
        "status_codes": {"type": "list", "elements": "int", "default": [200]},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "client_cert": {"type": "path"},
        "client_key": {"type": "path"},
        "use_proxy": {"type": "bool", "default": True},
        "require": {"type": "list", "elements": "str", "default": []},
        "max_latency_ms": {"type": "float"},
        "strict": {"type": "bool", "default": False},
        "fail_on_unhealthy": {"type": "bool", "default": True},
        "units": {"type": "list", "elements": "str", "default": []},
        "journal_lines": {"type": "int", "default": 15},
        "follow_redirects": {
            "type": "str", "default": "same_host", "choices": ["same_host", "all", "none", "yes", "no"],
        },
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_by={"client_key": "client_cert"},
        supports_check_mode=True,
    )
    p = module.params
    p["follow_redirects"] = {"yes": "all", "no": "none"}.get(p["follow_redirects"], p["follow_redirects"])
    scheme = urlsplit(p["url"]).scheme.lower()
    if scheme not in ("http", "https"):
        module.fail_json(msg=f"url must start with http:// or https://, got {p['url']!r}")
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    for name in ("delay", "wait_timeout", "max_latency_ms"):
        if p[name] is not None and p[name] < 0:
            module.fail_json(msg=f"{name} must not be negative, got {p[name]}")
    if p["retries"] is not None and p["retries"] < 0:
        module.fail_json(msg=f"retries must be 0 or more, got {p['retries']}")

    if p["journal_lines"] < 0:
        module.fail_json(msg=f"journal_lines must be 0 or more, got {p['journal_lines']}")
    systemd = None
    if p["units"]:
        missing = [tool for tool in ("systemctl", "journalctl") if module.get_bin_path(tool) is None]
        if missing:
            module.fail_json(msg=f"units needs {' and '.join(missing)} on the host the probe runs on; "
                                 "leave units empty for a probe from elsewhere")
        systemd = Systemd(module.run_command)

    result = HealthProbe(p, systemd=systemd).run()
    for warning in result.pop("_warnings"):
        module.warn(f"{p['url']}: {warning}")
    if not result["healthy"] and p["fail_on_unhealthy"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
