"""Unit tests of plugins/module_utils/health.py: every response shape the seed systems produce."""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import health
from ansible_collections.pyfleet.server.plugins.module_utils.health import (
    FAIL,
    PASS,
    WARN,
    classify_error,
    compose_message,
    evaluate,
    interpret_body,
    normalize_status,
    parse_body,
    summary_line,
)

# --- literal bodies from the seed guides ------------------------------------------------------------

PLAYPARK_HEALTHZ = {
    "ok": True,
    "status": "healthy",
    "timestamp": "2025-01-24T10:30:00Z",
    "version": "v1",
    "environment": "production",
}
PLAYPARK_READYZ = {
    "ok": True,
    "status": "ready",
    "checks": {"database": "connected", "redis": "connected", "external_apis": "available"},
}
BROWNIE_HEALTH = {
    "status": "healthy",
    "timestamp": "2025-10-24T04:00:00Z",
    "version": "1.0.0",
    "dependencies": {"database": "healthy", "redis": "healthy"},
}
FAIREDGE_HEALTH = {
    "status": "healthy",
    "timestamp": "2024-01-01T12:00:00Z",
    "services": {"database": "healthy", "redis": "healthy", "celery": "healthy"},
    "version": "1.0.0",
}
LOYALTY_HEALTH = {
    "status": "healthy",
    "timestamp": "2023-11-14T12:00:00Z",
    "checks": {"database": {"status": "healthy", "message": "Database connection OK", "latency": "2ms"}},
}
LOYALTY_READY = {
    "status": "healthy",
    "timestamp": "2023-11-14T12:00:00Z",
    "checks": {
        "database": {"status": "healthy"},
        "database_pool": {"status": "healthy"},
        "database_migration": {"status": "healthy"},
    },
}
DIET_HEALTH = {"status": "healthy", "timestamp": "...", "uptime": 3600}
REFERENCE_READYZ = {"status": "pass", "checks": {"database": "pass", "redis": "pass"}}
REFERENCE_DETAILED = {
    "status": "warn",
    "dependencies": {
        "database": {"status": "pass", "latency_ms": 1.2},
        "redis": {"status": "pass", "latency_ms": 0.4},
        "celery": {"status": "warn", "last_heartbeat": None},
    },
}
IETF_PASS = {
    "status": "pass",
    "version": "1",
    "releaseId": "1.2.2",
    "checks": {
        "postgres:connections": [
            {"componentId": "db1", "componentType": "datastore", "observedValue": 12, "status": "pass"},
            {"componentId": "db2", "componentType": "datastore", "observedValue": 15, "status": "pass"},
        ],
        "uptime": [{"componentType": "system", "observedValue": 1209600.245, "observedUnit": "s", "status": "pass"}],
    },
}


def with_changes(body: dict, **changes) -> dict:
    copy = {**body}
    copy.update(changes)
    return copy


# --- vocabulary ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "word",
    ["pass", "ok", "OK", "up", "UP", "healthy", "true", "green", "ready", "available", "connected", True, " Healthy "],
)
def test_pass_words(word):
    assert normalize_status(word) == PASS


@pytest.mark.parametrize("word", ["warn", "warning", "degraded", "Degraded", "yellow", "partial"])
def test_warn_words(word):
    assert normalize_status(word) == WARN


@pytest.mark.parametrize(
    "word",
    ["fail", "error", "down", "DOWN", "unhealthy", "false", "red", "critical", "unavailable", "disconnected", False],
)
def test_fail_words(word):
    assert normalize_status(word) == FAIL


@pytest.mark.parametrize("word", ["banana", "", 1, None, {"x": 1}])
def test_unknown_words(word):
    assert normalize_status(word) is None


# --- healthy seed shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "deps"),
    [
        (PLAYPARK_HEALTHZ, {}),
        (PLAYPARK_READYZ, {"database": PASS, "redis": PASS, "external_apis": PASS}),
        (BROWNIE_HEALTH, {"database": PASS, "redis": PASS}),
        (FAIREDGE_HEALTH, {"database": PASS, "redis": PASS, "celery": PASS}),
        (LOYALTY_HEALTH, {"database": PASS}),
        (LOYALTY_READY, {"database": PASS, "database_pool": PASS, "database_migration": PASS}),
        (DIET_HEALTH, {}),
        (REFERENCE_READYZ, {"database": PASS, "redis": PASS}),
        (IETF_PASS, {"postgres:connections": PASS, "uptime": PASS}),
    ],
    ids=[
        "playpark-healthz",
        "playpark-readyz",
        "brownie",
        "fairedge",
        "loyalty-health",
        "loyalty-ready",
        "diet",
        "reference-readyz",
        "ietf",
    ],
)
def test_healthy_seed_shapes(body, deps):
    verdict = evaluate(200, body)
    assert verdict.healthy
    assert verdict.status == PASS
    assert verdict.dependencies == deps
    assert verdict.failures == []


# --- unhealthy seed shapes -------------------------------------------------------------------------


def test_playpark_ok_false():
    verdict = evaluate(200, with_changes(PLAYPARK_HEALTHZ, ok=False))
    assert not verdict.healthy
    assert verdict.status == FAIL
    assert verdict.failures == ["endpoint reported ok=false (fail)"]


def test_playpark_readyz_disconnected_redis():
    body = with_changes(
        PLAYPARK_READYZ,
        ok=False,
        status="not ready",
        checks={"database": "connected", "redis": "disconnected", "external_apis": "available"},
    )
    verdict = evaluate(503, body)
    assert not verdict.healthy
    assert verdict.dependencies["redis"] == FAIL
    assert "HTTP 503 (expected 200)" in verdict.failures
    assert "dependency 'redis' reported 'disconnected' (fail)" in verdict.failures


def test_brownie_unhealthy_database():
    body = with_changes(BROWNIE_HEALTH, status="unhealthy", dependencies={"database": "unhealthy", "redis": "healthy"})
    verdict = evaluate(200, body)
    assert not verdict.healthy
    assert verdict.dependencies == {"database": FAIL, "redis": PASS}
    assert verdict.failures == [
        "endpoint reported status 'unhealthy' (fail)",
        "dependency 'database' reported 'unhealthy' (fail)",
    ]


def test_brownie_dependency_objects():
    body = {"status": "healthy", "dependencies": {"database": {"status": "healthy"}, "redis": {"healthy": False}}}
    verdict = evaluate(200, body)
    assert verdict.dependencies == {"database": PASS, "redis": FAIL}
    assert verdict.failures == ["dependency 'redis' reported healthy=false (fail)"]


def test_fairedge_celery_down_while_top_says_healthy():
    """The top level claiming healthy does not hide a failing service."""
    body = with_changes(FAIREDGE_HEALTH, services={"database": "healthy", "redis": "healthy", "celery": "down"})
    verdict = evaluate(200, body)
    assert not verdict.healthy
    assert verdict.status == FAIL
    assert verdict.failures == ["dependency 'celery' reported 'down' (fail)"]


def test_loyalty_check_object_carries_message():
    body = with_changes(
        LOYALTY_HEALTH,
        status="unhealthy",
        checks={"database": {"status": "unhealthy", "message": "connection refused", "latency": "0ms"}},
    )
    verdict = evaluate(503, body)
    assert "dependency 'database' reported 'unhealthy' (fail): connection refused" in verdict.failures


def test_loyalty_ready_pool_degraded_is_warn():
    body = with_changes(LOYALTY_READY, checks={**LOYALTY_READY["checks"], "database_pool": {"status": "degraded"}})
    verdict = evaluate(200, body)
    assert verdict.healthy
    assert verdict.status == WARN
    assert verdict.warnings == ["dependency 'database_pool' reported 'degraded' (warn)"]


def test_diet_planner_unhealthy():
    verdict = evaluate(200, with_changes(DIET_HEALTH, status="unhealthy"))
    assert not verdict.healthy
    assert verdict.failures == ["endpoint reported status 'unhealthy' (fail)"]


def test_dependency_state_and_ok_fields():
    body = {"dependencies": {"a": {"state": "UP"}, "b": {"ok": True}, "c": {"state": "down"}}}
    verdict = evaluate(200, body)
    assert verdict.dependencies == {"a": PASS, "b": PASS, "c": FAIL}
    assert verdict.failures == ["dependency 'c' reported state 'down' (fail)"]


def test_dependency_object_without_status():
    verdict = evaluate(200, {"status": "ok", "dependencies": {"db": {"latency_ms": 3}}})
    assert not verdict.healthy
    assert verdict.failures == ["dependency 'db' reports no status field"]


def test_microprofile_checks_list():
    body = {"status": "UP", "checks": [{"name": "db", "status": "UP"}, {"name": "disk", "status": "DOWN"}]}
    verdict = evaluate(200, body)
    assert verdict.dependencies == {"db": PASS, "disk": FAIL}


# --- IETF application/health+json ------------------------------------------------------------------


def test_ietf_failing_check_in_array_with_output():
    body = with_changes(
        IETF_PASS,
        status="fail",
        checks={
            "postgres:connections": [
                {"componentId": "db1", "status": "pass"},
                {"componentId": "db2", "status": "fail", "output": "too many connections"},
            ],
            "uptime": [{"status": "pass"}],
        },
    )
    verdict = evaluate(503, body)
    assert verdict.status == FAIL
    assert verdict.dependencies == {"postgres:connections": FAIL, "uptime": PASS}
    assert "dependency 'postgres:connections' reported 'fail' (fail): too many connections" in verdict.failures


@pytest.mark.parametrize(("alias", "expected"), [("ok", PASS), ("up", PASS), ("error", FAIL), ("down", FAIL)])
def test_ietf_aliases(alias, expected):
    assert evaluate(200, {"status": alias}).status == expected


def test_ietf_warn_is_healthy_unless_strict():
    body = {"status": "warn", "checks": {"cpu:utilization": [{"status": "warn", "output": "85%"}]}}
    relaxed = evaluate(200, body)
    assert relaxed.healthy and relaxed.status == WARN and relaxed.failures == []
    strict = evaluate(200, body, strict=True)
    assert not strict.healthy
    assert strict.failures == [
        "endpoint reported status 'warn' (warn)",
        "dependency 'cpu:utilization' reported 'warn' (warn): 85%",
    ]


# --- reference app ---------------------------------------------------------------------------------


def test_reference_readyz_failing_redis_503():
    verdict = evaluate(503, {"status": "fail", "checks": {"database": "pass", "redis": "fail"}})
    assert not verdict.healthy
    assert verdict.failures == [
        "HTTP 503 (expected 200)",
        "endpoint reported status 'fail' (fail)",
        "dependency 'redis' reported 'fail' (fail)",
    ]


def test_reference_detailed_celery_warn():
    relaxed = evaluate(200, REFERENCE_DETAILED)
    assert relaxed.healthy
    assert relaxed.status == WARN
    assert relaxed.dependencies == {"database": PASS, "redis": PASS, "celery": WARN}
    strict = evaluate(200, REFERENCE_DETAILED, strict=True)
    assert not strict.healthy
    assert "dependency 'celery' reported 'warn' (warn)" in strict.failures


def test_strict_warn_dependency_only():
    body = {"status": "pass", "dependencies": {"celery": {"status": "warn"}}}
    verdict = evaluate(200, body, strict=True)
    assert verdict.status == WARN
    assert verdict.failures == ["dependency 'celery' reported 'warn' (warn)"]


# --- require ---------------------------------------------------------------------------------------


def test_require_present_and_healthy():
    assert evaluate(200, BROWNIE_HEALTH, require=["database", "redis"]).healthy


def test_require_missing():
    verdict = evaluate(200, BROWNIE_HEALTH, require=["database", "celery"])
    assert not verdict.healthy
    assert verdict.failures == ["required dependency 'celery' is missing from the response"]


def test_require_unhealthy_is_reported_once():
    body = with_changes(BROWNIE_HEALTH, dependencies={"database": "unhealthy", "redis": "healthy"})
    verdict = evaluate(200, body, require=["database"])
    assert verdict.failures == ["dependency 'database' reported 'unhealthy' (fail)"]


def test_require_warn_accepted_unless_strict():
    assert evaluate(200, REFERENCE_DETAILED, require=["celery"]).healthy
    assert not evaluate(200, REFERENCE_DETAILED, require=["celery"], strict=True).healthy


def test_require_case_insensitive_and_ietf_component():
    assert evaluate(200, BROWNIE_HEALTH, require=["Database"]).healthy
    assert evaluate(200, IETF_PASS, require=["postgres"]).healthy


def test_require_with_text_body():
    verdict = evaluate(200, "OK", require=["database"])
    assert verdict.failures == ["required dependency 'database' cannot be checked: the response is not a JSON object"]


# --- unknown status words --------------------------------------------------------------------------


def test_unknown_top_level_status_is_fail_and_quoted():
    verdict = evaluate(200, {"status": "banana"})
    assert not verdict.healthy
    assert verdict.status == FAIL
    assert verdict.failures == ["unknown status 'banana' reported by the endpoint"]


def test_unknown_dependency_status_is_fail_and_quoted():
    verdict = evaluate(200, {"status": "ok", "services": {"celery": "sleepy"}})
    assert verdict.dependencies == {"celery": FAIL}
    assert verdict.failures == ["dependency 'celery' reported unknown status 'sleepy'"]


# --- non-JSON bodies and HTTP codes ----------------------------------------------------------------


def test_text_body_judged_by_code():
    assert evaluate(200, "OK").healthy
    assert evaluate(200, "<html>whatever</html>").status == PASS
    verdict = evaluate(502, "<html>Bad Gateway</html>")
    assert not verdict.healthy
    assert verdict.status == FAIL
    assert verdict.failures == ["HTTP 502 (expected 200)"]


def test_json_without_status_judged_by_code():
    assert evaluate(200, {"version": "1.0"}).healthy
    assert evaluate(200, ["a", "b"]).healthy


def test_custom_status_codes():
    assert evaluate(204, None, status_codes=[200, 204]).healthy
    verdict = evaluate(500, None, status_codes=[200, 204])
    assert verdict.failures == ["HTTP 500 (expected one of 200, 204)"]


def test_accepted_503_still_judges_body():
    verdict = evaluate(503, {"status": "pass"}, status_codes=[200, 503])
    assert verdict.healthy


# --- latency ---------------------------------------------------------------------------------------


def test_latency_over_limit():
    verdict = evaluate(200, REFERENCE_READYZ, latency_ms=812.4, max_latency_ms=500)
    assert not verdict.healthy
    assert verdict.status == PASS
    assert verdict.failures == ["latency 812 ms over the limit of 500 ms"]


def test_latency_within_limit():
    assert evaluate(200, REFERENCE_READYZ, latency_ms=12.0, max_latency_ms=500).healthy


# --- body parsing ----------------------------------------------------------------------------------


def test_parse_body():
    assert parse_body(b'{"status": "pass"}') == {"status": "pass"}
    assert parse_body(b"OK") == "OK"
    assert parse_body(b"") is None
    assert parse_body(None) is None
    assert parse_body("\xff".encode("latin-1")) == "\ufffd"


def test_interpret_body_non_object():
    assert interpret_body("OK") is None
    assert interpret_body([1, 2]) is None


# --- error classification and messages -------------------------------------------------------------

KW = {"host": "127.0.0.1", "netloc": "127.0.0.1:8000", "timeout": 5.0}


def test_classify_refused_direct_and_wrapped():
    expected = "connection refused by 127.0.0.1:8000 (nothing listening?)"
    assert classify_error(ConnectionRefusedError(111, "Connection refused"), **KW) == expected
    assert classify_error(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), **KW) == expected


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError("timed out"),
        OSError("timed out"),
        urllib.error.URLError(TimeoutError("timed out")),
        urllib.error.URLError("timed out"),
    ],
)
def test_classify_timeout(exc):
    assert classify_error(exc, **KW) == "timeout after 5 s (no response)"


def test_classify_timeout_fraction():
    assert classify_error(TimeoutError(), host="h", netloc="h:1", timeout=0.5) == "timeout after 0.5 s (no response)"


def test_classify_tls_verification():
    err = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    err.verify_message = "self-signed certificate"
    reason = classify_error(urllib.error.URLError(err), **KW)
    assert reason.startswith("TLS certificate verification failed: self-signed certificate")


def test_classify_other_tls_error():
    err = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    err.reason = "WRONG_VERSION_NUMBER"
    assert classify_error(err, **KW) == "TLS handshake with 127.0.0.1:8000 failed: WRONG_VERSION_NUMBER"


def test_classify_client_certificate_required():
    err = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required")
    err.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert classify_error(err, **KW) == (
        "TLS handshake with 127.0.0.1:8000 failed: TLSV13_ALERT_CERTIFICATE_REQUIRED"
        " (the server requires a client certificate: client_cert)"
    )


def test_classify_dns():
    err = socket.gaierror(-2, "Name or service not known")
    reason = classify_error(urllib.error.URLError(err), host="nope.invalid", netloc="nope.invalid", timeout=5)
    assert reason == "DNS lookup of 'nope.invalid' failed: Name or service not known"


def test_classify_remote_disconnected_and_reset():
    assert classify_error(http.client.RemoteDisconnected("x"), **KW) == (
        "127.0.0.1:8000 closed the connection without sending a response"
    )
    assert classify_error(ConnectionResetError(104, "reset"), **KW) == "connection reset by 127.0.0.1:8000"


def test_classify_fallbacks():
    assert classify_error(OSError(113, "No route to host"), **KW) == "connection failed: No route to host"
    assert classify_error(ValueError("bad url"), **KW) == "connection failed: ValueError: bad url"


def test_compose_message():
    url = "http://127.0.0.1:8000/readyz"
    assert compose_message(url, [], 1, 0.04) == f"{url} is healthy after 1 attempt in 0.0 s"
    msg = compose_message(url, ["HTTP 503 (expected 200)", "dependency 'redis' reported 'fail' (fail)"], 3, 4.25)
    assert msg == (
        f"{url} is unhealthy after 3 attempts in 4.2 s: HTTP 503 (expected 200); "
        "dependency 'redis' reported 'fail' (fail)"
    )
    assert compose_message(url, ["x"], 2) == f"{url} is unhealthy after 2 attempts: x"


def test_module_utils_has_no_ansible_imports():
    source = Path(health.__file__).read_text()
    assert "import ansible" not in source
    assert "from ansible" not in source


# --- the one-line summary (playbooks/healthcheck.yml prints it) --------------------------------------


def test_summary_healthy():
    line = summary_line("api", healthy=True, status=PASS, status_code=200, latency_ms=12.4,
                        dependencies={"database": PASS, "redis": PASS}, failures=[])
    assert line == "api: healthy status=pass HTTP 200 12.4 ms"


def test_summary_degraded_dependency_while_healthy():
    line = summary_line("brownie", healthy=True, status=WARN, status_code=200, latency_ms=3.0,
                        dependencies={"database": PASS, "celery": WARN, "metadata": WARN}, failures=[])
    assert line == "brownie: healthy status=warn HTTP 200 3.0 ms | degraded/failing: celery=warn, metadata=warn"


def test_summary_unhealthy_lists_failing_dependencies_then_reasons():
    failures = ["HTTP 503 (expected 200)", "dependency 'redis' reported 'fail' (fail)"]
    line = summary_line("worker-ready", healthy=False, status=FAIL, status_code=503, latency_ms=4.1,
                        dependencies={"database": PASS, "redis": FAIL}, failures=failures)
    assert line == ("worker-ready: UNHEALTHY status=fail HTTP 503 4.1 ms | degraded/failing: redis=fail"
                    " | HTTP 503 (expected 200); dependency 'redis' reported 'fail' (fail)")


def test_summary_without_an_http_answer():
    line = summary_line("gone", healthy=False, status=FAIL, status_code=None, latency_ms=None, dependencies={},
                        failures=["connection refused by 127.0.0.1:9 (nothing listening?)"])
    assert line == "gone: UNHEALTHY status=fail HTTP - - ms | connection refused by 127.0.0.1:9 (nothing listening?)"


# --- flat top-level maps (Dockerflow __heartbeat__, issue 12 A.1) ------------------------------------

HEARTBEAT_OK = {"storage": True, "cache": True, "permission": True}
HEARTBEAT_STORAGE_DOWN = {"storage": False, "cache": True, "permission": True}


def test_flat_map_all_true_is_healthy():
    verdict = evaluate(200, HEARTBEAT_OK)
    assert verdict.healthy
    assert verdict.status == PASS
    assert verdict.dependencies == {"storage": PASS, "cache": PASS, "permission": PASS}
    assert verdict.failures == [] and verdict.warnings == []


def test_flat_map_one_false_names_the_key():
    verdict = evaluate(200, HEARTBEAT_STORAGE_DOWN)
    assert not verdict.healthy
    assert verdict.status == FAIL
    assert verdict.dependencies == {"storage": FAIL, "cache": PASS, "permission": PASS}
    assert verdict.failures == ["dependency 'storage' reported false (fail)"]


def test_flat_map_503_is_parsed_for_the_message():
    verdict = evaluate(503, HEARTBEAT_STORAGE_DOWN)
    assert verdict.failures == ["HTTP 503 (expected 200)", "dependency 'storage' reported false (fail)"]
    assert summary_line(
        "heartbeat", healthy=False, status=verdict.status, status_code=503, latency_ms=3.0,
        dependencies=verdict.dependencies, failures=verdict.failures,
    ).startswith("heartbeat: UNHEALTHY status=fail HTTP 503 3.0 ms | degraded/failing: storage=fail | ")  # fmt: skip


@pytest.mark.parametrize("codes", [[200, 503], [503], list(range(100, 600))])
def test_flat_map_false_is_never_healthy_whatever_code_is_accepted(codes):
    verdict = evaluate(503, HEARTBEAT_STORAGE_DOWN, status_codes=codes)
    assert not verdict.healthy
    assert verdict.status == FAIL
    assert verdict.failures == ["dependency 'storage' reported false (fail)"]


def test_flat_map_of_status_words():
    body = {"database": "ok", "redis": "DOWN", "queue": "degraded"}
    verdict = evaluate(200, body)
    assert verdict.dependencies == {"database": PASS, "redis": FAIL, "queue": WARN}
    assert verdict.failures == ["dependency 'redis' reported 'DOWN' (fail)"]
    assert verdict.warnings == ["dependency 'queue' reported 'degraded' (warn)"]
    assert not evaluate(200, {"database": "ok", "queue": "degraded"}, strict=True).healthy


def test_flat_map_require_present_key():
    assert evaluate(200, HEARTBEAT_OK, require=["storage"]).healthy
    assert evaluate(200, HEARTBEAT_OK, require=["Storage", "cache"]).healthy
    verdict = evaluate(503, HEARTBEAT_STORAGE_DOWN, require=["storage"])
    assert verdict.failures.count("dependency 'storage' reported false (fail)") == 1
    missing = evaluate(200, HEARTBEAT_OK, require=["database"])
    assert missing.failures == ["required dependency 'database' is missing from the response"]


def test_flat_checks_rule():
    assert health.flat_checks(HEARTBEAT_OK) == HEARTBEAT_OK
    assert health.flat_checks({"db": "connected"}) == {"db": "connected"}
    assert health.flat_checks({}) is None
    assert health.flat_checks([True]) is None
    # an envelope key anywhere: the envelope rules apply, not the flat map
    assert health.flat_checks({"ok": True, "storage": False}) is None
    assert health.flat_checks({"status": "pass", "db": True}) is None
    # a value that is not a boolean or a known status word
    assert health.flat_checks({"storage": True, "version": "1.2.3"}) is None
    assert health.flat_checks({"storage": True, "cache": "sleepy"}) is None
    assert health.flat_checks({"storage": True, "latency_ms": 3}) is None
    assert health.flat_checks({"storage": True, "cache": None}) is None


def test_mixed_map_is_not_a_flat_map_healthy_code_warns():
    body = {"storage": False, "cache": True, "version": "1.2.3"}
    verdict = evaluate(200, body)
    assert verdict.healthy  # judged by the HTTP code alone
    assert verdict.dependencies == {}
    assert verdict.warnings == [
        "the body holds storage=false but is not read as a flat map of checks ('version' is neither a boolean nor a"
        " status word); judged by the HTTP code alone (list such keys in require to check them)"
    ]


def test_mixed_map_all_passing_values_is_quiet():
    verdict = evaluate(200, {"storage": True, "version": "1.2.3", "uptime": 12})
    assert verdict.healthy and verdict.warnings == [] and verdict.dependencies == {}


def test_mixed_map_503_names_the_false_value():
    verdict = evaluate(503, {"storage": False, "cache": True, "version": "1.2.3"})
    assert not verdict.healthy
    assert verdict.failures == [
        "HTTP 503 (expected 200)",
        "the body holds storage=false but is not read as a flat map of checks ('version' is neither a boolean nor a"
        " status word)",
    ]


def test_mixed_map_require_finds_top_level_value():
    body = {"storage": True, "cache": False, "version": "1.2.3"}
    verdict = evaluate(200, body, require=["storage"])
    assert verdict.healthy
    assert verdict.dependencies == {"storage": PASS}
    failing = evaluate(200, body, require=["storage", "cache"])
    assert not failing.healthy
    assert failing.dependencies == {"storage": PASS, "cache": FAIL}
    assert failing.status == FAIL
    assert "dependency 'cache' reported false (fail)" in failing.failures
    # an accepted 503 does not make a required false healthy either
    assert not evaluate(503, body, require=["cache"], status_codes=[200, 503]).healthy


def test_require_finds_top_level_value_next_to_an_envelope():
    body = {"ok": True, "storage": False}
    assert evaluate(200, body).healthy  # not a flat map: ok decides (a flag like degraded=false stays harmless)
    verdict = evaluate(200, body, require=["storage"])
    assert verdict.failures == ["dependency 'storage' reported false (fail)"]
    assert evaluate(200, {"ok": True, "degraded": False}).healthy


def test_object_without_status_on_error_code_quotes_its_message():
    verdict = evaluate(503, {"error": "database unreachable"})
    assert verdict.failures == ["HTTP 503 (expected 200): database unreachable"]
    assert evaluate(503, {"version": "1"}).failures == ["HTTP 503 (expected 200)"]


def test_http_note_is_appended_to_the_code_failure():
    verdict = evaluate(307, None, http_note="redirect to https://b/ not followed (follow_redirects=none)")
    assert verdict.failures == ["HTTP 307 (expected 200): redirect to https://b/ not followed (follow_redirects=none)"]
    assert evaluate(307, None, status_codes=[307], http_note="x").healthy


def test_with_redirects_prefixes_the_first_reason():
    hops = [
        {"status": 307, "from": "http://a/h", "to": "https://a/h"},
        {"status": 301, "from": "https://a/h", "to": "https://a/h/"},
    ]
    assert health.describe_redirects(hops) == "http://a/h answered 307 → https://a/h; https://a/h answered 301 → https://a/h/"
    assert health.with_redirects(["TLS handshake with a failed: x", "other"], hops[:1]) == [
        "http://a/h answered 307 → https://a/h; then: TLS handshake with a failed: x",
        "other",
    ]
    assert health.with_redirects([], hops) == []
    assert health.with_redirects(["x"], []) == ["x"]


def test_mixed_map_required_key_is_not_warned_about_twice():
    verdict = evaluate(200, {"storage": False, "cache": False, "version": "1"}, require=["storage"])
    assert verdict.failures == ["dependency 'storage' reported false (fail)"]
    assert len(verdict.warnings) == 1 and "cache=false" in verdict.warnings[0] and "storage" not in verdict.warnings[0]
