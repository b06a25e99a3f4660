"""Unit tests of plugins/modules/health_check.py: retry loop, deadline, error handling, main()."""

from __future__ import annotations

import io
import json
import urllib.error
from email.message import Message

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.pyfleet.server.plugins.modules import health_check
from ansible_collections.pyfleet.server.plugins.modules.health_check import HealthProbe, argument_spec

URL = "http://127.0.0.1:8000/readyz"


def params(**overrides) -> dict:
    """Module parameters with the argument spec defaults, as AnsibleModule would pass them."""
    values = {name: spec.get("default") for name, spec in argument_spec().items()}
    values["url"] = URL
    values.update(overrides)
    return values


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeResponse:
    def __init__(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.code = code
        self._body = body
        self.headers = Message()
        self.headers["Content-Type"] = content_type

    def getcode(self) -> int:
        return self.code

    def read(self, size: int = -1) -> bytes:
        return self._body

    def close(self) -> None:
        pass


def http_error(code: int, body: bytes) -> urllib.error.HTTPError:
    headers = Message()
    headers["Content-Type"] = "application/json"
    return urllib.error.HTTPError(URL, code, "error", headers, io.BytesIO(body))


class Script:
    """An opener that plays back a list of outcomes (responses or exceptions), one per call."""

    def __init__(self, clock: FakeClock, outcomes: list, cost: float = 0.01) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)
        self.calls: list[dict] = []
        self.cost = cost

    def __call__(self, url, **kwargs):
        self.calls.append({"url": url, **kwargs})
        self.clock.now += self.cost
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if callable(outcome):
            outcome = outcome()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def probe(outcomes: list, cost: float = 0.01, **overrides) -> tuple[dict, Script, FakeClock]:
    clock = FakeClock()
    script = Script(clock, outcomes, cost)
    result = HealthProbe(params(**overrides), opener=script, clock=clock, sleep=clock.sleep).run()
    return result, script, clock


OK = FakeResponse(200, b'{"status":"pass","checks":{"database":"pass","redis":"pass"}}')


def test_healthy_single_attempt():
    result, _script, clock = probe([OK])
    assert result["healthy"] is True
    assert result["changed"] is False
    assert result["status"] == "pass"
    assert result["status_code"] == 200
    assert result["attempts"] == 1
    assert result["latency_ms"] == 10.0
    assert result["dependencies"] == {"database": "pass", "redis": "pass"}
    assert result["body"] == {"status": "pass", "checks": {"database": "pass", "redis": "pass"}}
    assert result["failures"] == []
    assert clock.sleeps == []


def test_summary_is_labelled_with_name_or_url():
    result, _script, _clock = probe([OK])
    assert result["summary"] == f"{URL}: healthy status=pass HTTP 200 10.0 ms"
    result, _script, _clock = probe([http_error(503, b'{"status":"fail","checks":{"redis":"fail"}}')], name="api")
    assert result["summary"] == ("api: UNHEALTHY status=fail HTTP 503 10.0 ms | degraded/failing: redis=fail"
                                 " | HTTP 503 (expected 200); endpoint reported status 'fail' (fail);"
                                 " dependency 'redis' reported 'fail' (fail)")
    result, _script, _clock = probe([ConnectionRefusedError(111, "refused")], name="gone")
    assert result["summary"] == ("gone: UNHEALTHY status=fail HTTP - 10.0 ms"
                                 " | connection refused by 127.0.0.1:8000 (nothing listening?)")


def test_request_options_are_passed_to_open_url():
    _result, script, _clock = probe(
        [OK],
        method="head",
        headers={"Host": "app.example"},
        timeout=3.0,
        validate_certs=False,
        ca_path="/ca.pem",
        client_cert="/c.pem",
        client_key="/k.pem",
        use_proxy=False,
    )
    call = script.calls[0]
    assert call["url"] == URL
    assert call["method"] == "HEAD"
    assert call["headers"]["Host"] == "app.example"
    assert call["headers"]["Accept"].startswith("application/health+json")
    assert call["timeout"] == 3.0
    assert call["validate_certs"] is False
    assert (call["ca_path"], call["client_cert"], call["client_key"]) == ("/ca.pem", "/c.pem", "/k.pem")
    assert call["use_proxy"] is False


def test_user_accept_header_wins():
    _result, script, _clock = probe([OK], headers={"accept": "text/plain"})
    assert script.calls[0]["headers"] == {"accept": "text/plain"}


def test_default_is_one_attempt():
    result, script, _clock = probe([ConnectionRefusedError(111, "refused")])
    assert len(script.calls) == 1
    assert result["attempts"] == 1
    assert result["healthy"] is False
    assert result["status"] == "fail"
    assert result["status_code"] is None
    assert result["failures"] == ["connection refused by 127.0.0.1:8000 (nothing listening?)"]
    assert result["msg"].startswith(f"{URL} is unhealthy after 1 attempt in ")


def test_retries_until_healthy():
    refused = urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    result, _script, clock = probe([refused, refused, OK], retries=5, delay=1.5)
    assert result["healthy"] is True
    assert result["attempts"] == 3
    assert clock.sleeps == [1.5, 1.5]


def test_retries_exhausted_reports_last_failure():
    result, _script, _clock = probe(
        [lambda: http_error(503, b'{"status":"fail","checks":{"redis":"fail"}}')], retries=2
    )
    assert result["attempts"] == 3
    assert result["status_code"] == 503
    assert result["dependencies"] == {"redis": "fail"}
    assert "dependency 'redis' reported 'fail' (fail)" in result["failures"]
    assert "after 3 attempts" in result["msg"]


def test_wait_timeout_without_retries_keeps_trying_until_deadline():
    result, script, clock = probe([TimeoutError()], cost=1.0, wait_timeout=10, delay=2, timeout=5)
    # each attempt costs 1 s, then 2 s delay: attempts start at t=0, 3, 6, 9; after the 4th (t=10) it stops
    assert result["attempts"] == 4
    assert clock.now - 100.0 == pytest.approx(10.0)
    assert [c["timeout"] for c in script.calls] == [5, 5, pytest.approx(4.0), pytest.approx(1.0)]


def test_wait_timeout_shortens_last_attempt_timeout():
    _result, script, _clock = probe([TimeoutError()], cost=4.0, wait_timeout=6, delay=0.5, timeout=5)
    assert [c["timeout"] for c in script.calls] == [5, pytest.approx(1.5)]


def test_retries_and_wait_timeout_whichever_first():
    result, _script, _clock = probe([TimeoutError()], cost=0.1, wait_timeout=100, retries=1, delay=0.1)
    assert result["attempts"] == 2


def test_timeout_reason_quotes_seconds():
    result, _script, _clock = probe([TimeoutError("timed out")], timeout=2.5)
    assert result["failures"] == ["timeout after 2.5 s (no response)"]


def test_http_error_without_readable_body():
    err = urllib.error.HTTPError(URL, 502, "Bad Gateway", Message(), None)
    result, _script, _clock = probe([err])
    assert result["status_code"] == 502
    assert result["failures"] == ["HTTP 502 (expected 200)"]


def test_text_body():
    result, _script, _clock = probe([FakeResponse(200, b"OK", "text/plain")])
    assert result["healthy"] is True
    assert result["body"] == "OK"


def test_latency_limit():
    result, _script, _clock = probe([OK], cost=0.8, max_latency_ms=500)
    assert result["healthy"] is False
    assert result["failures"] == ["latency 800 ms over the limit of 500 ms"]


def run_main(args: dict, capsys) -> tuple[int, dict]:
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        health_check.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def test_main_fails_when_unhealthy(monkeypatch, capsys):
    monkeypatch.setattr(health_check, "open_url", Script(FakeClock(), [http_error(503, b'{"status":"fail"}')]))
    code, out = run_main({"url": URL}, capsys)
    assert code == 1
    assert out["failed"] is True
    assert out["healthy"] is False
    assert out["changed"] is False
    assert "HTTP 503 (expected 200)" in out["msg"]


def test_main_report_only(monkeypatch, capsys):
    monkeypatch.setattr(health_check, "open_url", Script(FakeClock(), [http_error(503, b"down")]))
    code, out = run_main({"url": URL, "fail_on_unhealthy": False}, capsys)
    assert code == 0
    assert "failed" not in out
    assert out["healthy"] is False
    assert out["failures"] == ["HTTP 503 (expected 200)"]
    assert out["summary"].startswith(f"{URL}: UNHEALTHY status=fail HTTP 503 ")
    assert out["summary"].endswith(" ms | HTTP 503 (expected 200)")


def test_main_check_mode_probes_and_warns(monkeypatch, capsys):
    body = b'{"status":"warn","dependencies":{"celery":{"status":"warn","last_heartbeat":null}}}'
    monkeypatch.setattr(health_check, "open_url", Script(FakeClock(), [FakeResponse(200, body)]))
    code, out = run_main({"url": URL, "name": "celery-app", "_ansible_check_mode": True}, capsys)
    assert code == 0
    assert out["healthy"] is True
    assert out["status"] == "warn"
    assert out["changed"] is False
    assert out["summary"].startswith("celery-app: healthy status=warn HTTP 200 ")
    assert out["summary"].endswith(" ms | degraded/failing: celery=warn")
    # ansible-core 2.19 wraps warnings in structured summaries; the text is what matters
    assert "dependency 'celery' reported 'warn' (warn)" in json.dumps(out["warnings"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"url": "ftp://x/"}, "url must start with http:// or https://"),
        ({"url": URL, "timeout": 0}, "timeout must be a positive number of seconds"),
        ({"url": URL, "delay": -1}, "delay must not be negative"),
        ({"url": URL, "retries": -1}, "retries must be 0 or more"),
        ({"url": URL, "client_key": "/k.pem"}, "client_key"),
    ],
)
def test_main_rejects_bad_options(args, message, capsys):
    code, out = run_main(args, capsys)
    assert code == 1
    assert message in out["msg"]


# --- redirects (issue 12 A.2) ----------------------------------------------------------------------


def redirect(code: int, location: str, url: str = URL) -> urllib.error.HTTPError:
    """What open_url raises for a 3xx with follow_redirects='none'."""
    headers = Message()
    headers["Location"] = location
    return urllib.error.HTTPError(url, code, "redirect", headers, io.BytesIO(b""))


HTTPS = "https://127.0.0.1:8443/readyz"


def test_redirects_are_followed_hop_by_hop_and_returned():
    result, script, _clock = probe([redirect(307, HTTPS), redirect(301, "/readyz/"), OK])
    assert result["healthy"] is True
    assert [c["url"] for c in script.calls] == [URL, HTTPS, "https://127.0.0.1:8443/readyz/"]
    assert all(c["follow_redirects"] == "none" for c in script.calls)
    assert result["redirects"] == [
        {"status": 307, "from": URL, "to": HTTPS},
        {"status": 301, "from": HTTPS, "to": "https://127.0.0.1:8443/readyz/"},
    ]
    assert result["status_code"] == 200
    assert result["latency_ms"] == 30.0  # every hop counts
    assert result["_warnings"] == [
        f"followed {URL} answered 307 → {HTTPS}; {HTTPS} answered 301 → https://127.0.0.1:8443/readyz/;"
        " point url at the final address to probe it directly"
    ]


def test_no_redirect_returns_empty_list():
    result, _script, _clock = probe([OK])
    assert result["redirects"] == []
    assert result["_warnings"] == []


def test_error_after_a_redirect_names_the_hop_and_the_host_that_failed():
    import ssl

    tls = urllib.error.URLError(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"))
    result, _script, _clock = probe([redirect(307, HTTPS), tls])
    assert result["healthy"] is False
    assert result["status_code"] is None
    assert result["redirects"] == [{"status": 307, "from": URL, "to": HTTPS}]
    (reason,) = result["failures"]
    assert reason.startswith(f"{URL} answered 307 → {HTTPS}; then: TLS handshake with 127.0.0.1:8443 failed")
    assert f"is unhealthy after 1 attempt in 0.0 s: {URL} answered 307 → {HTTPS}; then: TLS handshake" in result["msg"]
    assert f"| {URL} answered 307 → {HTTPS}; then: TLS handshake" in result["summary"]


def test_unhealthy_body_after_a_redirect():
    result, _script, _clock = probe([redirect(308, HTTPS), http_error(503, b'{"storage": false, "cache": true}')])
    assert result["status_code"] == 503
    assert result["dependencies"] == {"storage": "fail", "cache": "pass"}
    assert result["failures"] == [
        f"{URL} answered 308 → {HTTPS}; then: HTTP 503 (expected 200)",
        "dependency 'storage' reported false (fail)",
    ]


def test_follow_redirects_none_reports_the_redirect_as_the_answer():
    result, script, _clock = probe([redirect(307, HTTPS)], follow_redirects="none")
    assert len(script.calls) == 1
    assert result["healthy"] is False
    assert result["status_code"] == 307
    assert result["redirects"] == [{"status": 307, "from": URL, "to": HTTPS}]
    assert result["failures"] == [f"HTTP 307 (expected 200): redirect to {HTTPS} not followed (follow_redirects=none)"]


def test_follow_redirects_none_accepts_a_listed_redirect_code():
    result, _script, _clock = probe([redirect(301, HTTPS)], follow_redirects="none", status_codes=[301])
    assert result["healthy"] is True
    assert result["redirects"] == [{"status": 301, "from": URL, "to": HTTPS}]


def test_redirect_loop_and_limit():
    loop, script, _clock = probe([redirect(302, "/b"), redirect(302, URL)])
    assert len(script.calls) == 2
    assert loop["failures"] == [
        f"{URL} answered 302 → http://127.0.0.1:8000/b; then: HTTP 302 (expected 200): redirect loop back to {URL}"
    ]
    counter = iter(range(100))
    endless, script, _clock = probe([lambda: redirect(302, f"/r{next(counter)}")])
    assert len(script.calls) == 11
    assert len(endless["redirects"]) == 11
    assert "more than 10 redirects, the last to http://127.0.0.1:8000/r10" in endless["failures"][0]


def test_redirect_not_followed_for_other_methods():
    result, script, _clock = probe([redirect(307, HTTPS)], method="POST")
    assert len(script.calls) == 1
    assert result["failures"] == [f"HTTP 307 (expected 200): redirect to {HTTPS} not followed for method POST"]


def test_redirect_to_another_host_drops_host_and_credentials():
    _result, script, _clock = probe(
        [redirect(302, "/readyz/"), redirect(302, "https://elsewhere.example/readyz"), OK],
        headers={"Host": "app.example", "Authorization": "Bearer x", "X-Probe": "1"},
        follow_redirects="all",
    )
    same_host, other_host = script.calls[1]["headers"], script.calls[2]["headers"]
    assert same_host["Host"] == "app.example" and same_host["Authorization"] == "Bearer x"
    assert "Host" not in other_host and "Authorization" not in other_host
    assert other_host["X-Probe"] == "1"


def test_redirect_to_another_host_is_not_followed_by_default():
    """A loopback probe must not wander off to the public name the server redirects to (issue 16.6)."""
    public = "https://api.example.com/readyz"
    result, script, _clock = probe([redirect(301, "/readyz/"), redirect(308, public)])
    assert [c["url"] for c in script.calls] == [URL, URL + "/"]
    assert result["healthy"] is False
    assert result["status_code"] == 308
    assert result["redirects"] == [
        {"status": 301, "from": URL, "to": URL + "/"},
        {"status": 308, "from": URL + "/", "to": public},
    ]
    assert result["failures"] == [
        f"{URL} answered 301 → {URL}/; then: HTTP 308 (expected 200): redirect to {public} not followed: another host"
        " than 127.0.0.1 (follow_redirects=same_host; use all to follow it)"
    ]


@pytest.mark.parametrize(("given", "calls"), [(True, 2), ("yes", 2), ("all", 2), (False, 1), ("no", 1), ("none", 1)])
def test_main_maps_booleans_onto_the_choices(monkeypatch, capsys, given, calls):
    script = Script(FakeClock(), [redirect(307, "https://elsewhere.example/readyz"), OK])
    monkeypatch.setattr(health_check, "open_url", script)
    code, out = run_main({"url": URL, "follow_redirects": given}, capsys)
    assert len(script.calls) == calls
    assert code == (0 if calls == 2 else 1), out


def test_timeout_covers_all_hops():
    _result, script, _clock = probe([redirect(307, HTTPS), OK], cost=2.0, timeout=5.0)
    assert [c["timeout"] for c in script.calls] == [5.0, pytest.approx(3.0)]
    result, _script, _clock = probe([redirect(307, HTTPS), TimeoutError()], cost=2.0, timeout=5.0)
    assert result["failures"] == [f"{URL} answered 307 → {HTTPS}; then: timeout after 5 s (no response)"]


def test_main_returns_redirects_and_warns(monkeypatch, capsys):
    monkeypatch.setattr(health_check, "open_url", Script(FakeClock(), [redirect(301, "/readyz/"), OK]))
    code, out = run_main({"url": URL}, capsys)
    assert code == 0
    assert out["redirects"] == [{"status": 301, "from": URL, "to": URL + "/"}]
    assert f"followed {URL} answered 301 → {URL}/" in json.dumps(out["warnings"], ensure_ascii=False)


def test_main_flat_map_503_accepted_is_still_unhealthy(monkeypatch, capsys):
    body = b'{"storage": false, "cache": true}'
    monkeypatch.setattr(health_check, "open_url", Script(FakeClock(), [http_error(503, body)]))
    code, out = run_main({"url": URL, "status_codes": [200, 503], "require": ["storage"]}, capsys)
    assert code == 1
    assert out["healthy"] is False
    assert out["dependencies"] == {"storage": "fail", "cache": "pass"}
    assert out["failures"] == ["dependency 'storage' reported false (fail)"]
    assert out["summary"].startswith(f"{URL}: UNHEALTHY status=fail HTTP 503 ")


# --- units: an early end when the unit behind the URL cannot serve it, and its state and journal in the message


class FakeSystemd:
    """Plays back unit states (one dict per read, the last repeated) and a journal."""

    def __init__(self, states: list[dict[str, str]], journal: list[str] | None = None) -> None:
        self.states = list(states)
        self.reads = 0
        self.journal_asked: list[tuple[str, int]] = []
        self.lines = journal if journal is not None else ["line 1", "line 2"]

    def state(self, unit: str) -> dict[str, str]:
        self.reads += 1
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def journal(self, unit: str, lines: int) -> list[str]:
        self.journal_asked.append((unit, lines))
        return self.lines[-lines:]


UNIT = "app-api.service"
RUNNING = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "Result": "success",
           "ExecMainCode": "0", "ExecMainStatus": "0", "NRestarts": "0"}
NO_PROGRAM = {**RUNNING, "ActiveState": "activating", "SubState": "auto-restart", "Result": "exit-code",
              "ExecMainCode": "1", "ExecMainStatus": "203", "NRestarts": "1"}
REFUSED = ConnectionRefusedError(111, "refused")


def probe_units(states, outcomes, **overrides):
    clock = FakeClock()
    systemd = FakeSystemd(states)
    values = params(**{"units": [UNIT], "retries": 30, "delay": 2, **overrides})
    result = HealthProbe(values, opener=Script(clock, outcomes), clock=clock, sleep=clock.sleep,
                         systemd=systemd).run()
    return result, systemd, clock


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (NO_PROGRAM, f"{UNIT} cannot start: systemd could not run its program (status=203/EXEC)"),
        ({**RUNNING, "ActiveState": "failed", "SubState": "failed", "Result": "exit-code", "ExecMainCode": "1",
          "ExecMainStatus": "3"}, f"{UNIT} is failed (failed, result exit-code)"),
        ({**RUNNING, "ActiveState": "inactive", "SubState": "dead"}, f"{UNIT} is inactive (dead, result success)"),
        ({"LoadState": "not-found", "ActiveState": "inactive"}, f"{UNIT} is not loaded (LoadState=not-found)"),
    ],
)
def test_a_unit_that_cannot_serve_ends_the_wait_at_once(state, reason):
    result, systemd, clock = probe_units([state], [REFUSED])
    assert result["healthy"] is False
    assert result["attempts"] == 1 and clock.sleeps == []
    assert result["failures"][-1] == "stopped waiting: " + reason
    assert "Stopped waiting early: " + reason in result["msg"]
    assert result["units"] == {UNIT: state}
    assert systemd.journal_asked == [(UNIT, 15)]
    assert result["journal"] == {UNIT: ["line 1", "line 2"]}
    assert result["msg"].endswith("; its last 2 journal lines:\nline 1\nline 2")


def test_a_crash_loop_ends_the_wait_after_two_restarts_while_waiting():
    crashed = {**RUNNING, "ActiveState": "activating", "SubState": "auto-restart", "Result": "exit-code",
               "ExecMainCode": "1", "ExecMainStatus": "3"}
    states = [{**RUNNING, "NRestarts": "5"}, {**crashed, "NRestarts": "6"}, {**RUNNING, "NRestarts": "7"}]
    result, _systemd, clock = probe_units(states, [REFUSED])
    # restarts counted from the first read (5): the third read sees two more
    assert result["attempts"] == 3 and clock.sleeps == [2, 2]
    assert result["failures"][-1] == (f"stopped waiting: {UNIT} is crash-looping: systemd restarted it 2 times "
                                      "while waiting (result success, exit status 0)")
    assert (f"{UNIT} ActiveState=active SubState=running Result=success ExecMainStatus=0 NRestarts=7"
            in result["msg"])


def test_a_unit_still_starting_is_waited_for():
    starting = {**RUNNING, "ActiveState": "activating", "SubState": "start"}
    result, systemd, _clock = probe_units([starting, starting, RUNNING], [REFUSED, REFUSED, OK])
    assert result["healthy"] is True and result["attempts"] == 3
    assert systemd.journal_asked == [] and result["journal"] == {}
    assert "is healthy after 3 attempts" in result["msg"]


def test_a_healthy_answer_never_reads_the_units():
    result, systemd, _clock = probe_units([NO_PROGRAM], [OK])
    assert result["healthy"] is True and systemd.reads == 0 and result["units"] == {}


def test_unhealthy_to_the_end_shows_the_state_and_journal_lines_asked():
    result, systemd, _clock = probe_units([RUNNING], [REFUSED], retries=2, journal_lines=1)
    assert result["attempts"] == 3
    assert not any(f.startswith("stopped waiting") for f in result["failures"])
    assert systemd.journal_asked == [(UNIT, 1)]
    assert result["msg"].endswith(f"{UNIT} ActiveState=active SubState=running Result=success ExecMainStatus=0"
                                  " NRestarts=0; its last 1 journal lines:\nline 2")


def test_journal_lines_zero_shows_the_state_only():
    result, systemd, _clock = probe_units([NO_PROGRAM], [REFUSED], journal_lines=0)
    assert systemd.journal_asked == []
    assert result["msg"].endswith("ExecMainStatus=203 NRestarts=1")


def test_systemd_reader_parses_systemctl_show():
    calls = []

    def run(argv):
        calls.append(argv)
        if argv[0] == "systemctl":
            return 0, "ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainStatus=203\n", ""
        return 0, "l1\nl2\n", ""

    systemd = health_check.Systemd(run)
    assert systemd.state(UNIT) == {"ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
                                   "ExecMainStatus": "203"}
    assert calls[0][:2] == ["systemctl", "show"] and calls[0][-1] == UNIT
    assert systemd.journal(UNIT, 15) == ["l1", "l2"]
    assert calls[1][:3] == ["journalctl", "--unit", UNIT] and "15" in calls[1]
    broken = health_check.Systemd(lambda argv: (1, "", "Failed to connect to bus"))
    assert broken.state(UNIT)["LoadState"] == "unknown (systemctl show: Failed to connect to bus)"
    assert broken.journal(UNIT, 3) == ["(journalctl failed: Failed to connect to bus)"]


def test_main_units_need_systemctl(monkeypatch, capsys):
    monkeypatch.setattr(health_check.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: None)
    code, out = run_main({"url": URL, "units": [UNIT]}, capsys)
    assert code == 1
    assert "units needs systemctl and journalctl on the host the probe runs on" in out["msg"]
