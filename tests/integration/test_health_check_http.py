"""Run the real ``pyfleet.server.health_check`` module against real HTTP(S) servers on 127.0.0.1.

Fixtures (servers, certificates, the ansible runner) live in tests/integration/conftest.py.
"""

from __future__ import annotations

import time

READY = {"status": "pass", "checks": {"database": "pass", "redis": "pass"}}
NOT_READY = {"status": "fail", "checks": {"database": "pass", "redis": "fail"}}


def ready(_server, path):
    return (200, READY) if path == "/readyz" else (404, "not found")


def test_healthy(serve, run_module):
    server = serve(ready)
    run = run_module({"url": server.url("/readyz"), "require": ["database", "redis"], "max_latency_ms": 5000})
    assert run.rc == 0, run.stdout
    r = run.result
    assert r["healthy"] is True
    assert r["changed"] is False
    assert r["status"] == "pass"
    assert r["status_code"] == 200
    assert r["attempts"] == 1
    assert r["dependencies"] == {"database": "pass", "redis": "pass"}
    assert r["body"] == READY
    assert r["failures"] == []
    assert 0 <= r["latency_ms"] < 5000
    assert r["summary"] == f"{server.url('/readyz')}: healthy status=pass HTTP 200 {r['latency_ms']} ms"


def test_healthy_in_check_mode(serve, run_module):
    server = serve(ready)
    run = run_module({"url": server.url("/readyz")}, "--check")
    assert run.rc == 0, run.stdout
    assert run.result["healthy"] is True
    assert run.result["changed"] is False
    assert server.hits == 1


def test_slow_endpoint_times_out(serve, run_module):
    def slow(_server, _path):
        time.sleep(3)
        return 200, READY

    server = serve(slow)
    run = run_module({"url": server.url("/readyz"), "timeout": 1})
    assert run.rc != 0
    r = run.result
    assert r["failed"] is True
    assert r["healthy"] is False
    assert r["status_code"] is None
    assert r["failures"] == ["timeout after 1 s (no response)"]
    assert r["summary"].endswith(" ms | timeout after 1 s (no response)")
    assert "is unhealthy after 1 attempt" in r["msg"]
    assert "timeout after 1 s" in r["msg"]


def test_connection_refused(free_port, run_module):
    url = f"http://127.0.0.1:{free_port}/readyz"
    run = run_module({"url": url, "retries": 1, "delay": 0.1})
    assert run.rc != 0
    r = run.result
    assert r["attempts"] == 2
    assert r["status"] == "fail"
    assert r["msg"] == (
        f"{url} is unhealthy after 2 attempts in {r['msg'].split(' in ')[1].split(' s:')[0]} s: "
        f"connection refused by 127.0.0.1:{free_port} (nothing listening?)"
    )


def test_becomes_healthy_after_three_attempts(serve, run_module):
    def warming_up(server, _path):
        return (503, {"status": "fail", "checks": {"database": "fail"}}) if server.hits < 3 else (200, READY)

    server = serve(warming_up)
    run = run_module({"url": server.url("/readyz"), "retries": 5, "delay": 0.2})
    assert run.rc == 0, run.stdout
    assert run.result["healthy"] is True
    assert run.result["attempts"] == 3
    assert server.hits == 3


def test_wait_timeout_deadline(free_port, run_module):
    run = run_module({"url": f"http://127.0.0.1:{free_port}/", "wait_timeout": 1.5, "delay": 0.4})
    assert run.rc != 0
    assert run.result["attempts"] >= 3
    assert run.seconds < 15


def test_503_names_failing_dependency(serve, run_module):
    server = serve(lambda _s, _p: (503, NOT_READY))
    run = run_module({"url": server.url("/readyz"), "name": "worker-ready"})
    assert run.rc != 0
    r = run.result
    assert r["status_code"] == 503
    assert r["status"] == "fail"
    assert r["dependencies"] == {"database": "pass", "redis": "fail"}
    assert r["body"] == NOT_READY
    assert "HTTP 503 (expected 200)" in r["msg"]
    assert "dependency 'redis' reported 'fail' (fail)" in r["msg"]
    assert r["summary"] == (f"worker-ready: UNHEALTHY status=fail HTTP 503 {r['latency_ms']} ms"
                            f" | degraded/failing: redis=fail | {'; '.join(r['failures'])}")


def test_report_only(serve, run_module):
    server = serve(lambda _s, _p: (503, NOT_READY))
    run = run_module({"url": server.url("/readyz"), "fail_on_unhealthy": False})
    assert run.rc == 0, run.stdout
    assert run.result["healthy"] is False
    assert run.result.get("failed") is not True
    assert "dependency 'redis' reported 'fail' (fail)" in run.result["failures"]


def test_strict_degraded(serve, run_module):
    detailed = {
        "status": "warn",
        "dependencies": {
            "database": {"status": "pass", "latency_ms": 1.1},
            "redis": {"status": "pass", "latency_ms": 0.3},
            "celery": {"status": "warn", "last_heartbeat": None},
        },
    }
    server = serve(lambda _s, _p: (200, detailed))
    relaxed = run_module({"url": server.url("/health/detailed")})
    assert relaxed.rc == 0 and relaxed.result["status"] == "warn"
    strict = run_module({"url": server.url("/health/detailed"), "strict": True})
    assert strict.rc != 0
    assert "dependency 'celery' reported 'warn' (warn)" in strict.result["msg"]


def test_https_self_signed_rejected(serve, run_module, server_tls):
    server = serve(ready, tls=server_tls())
    run = run_module({"url": server.url("/readyz")})
    assert run.rc != 0
    (reason,) = run.result["failures"]
    assert reason.startswith("TLS certificate verification failed: self")
    assert "TLS certificate verification failed" in run.result["msg"]


def test_https_with_ca_path(serve, run_module, certs, server_tls):
    server = serve(ready, tls=server_tls())
    run = run_module({"url": server.url("/readyz"), "ca_path": str(certs["server_cert"])})
    assert run.rc == 0, run.stdout
    assert run.result["healthy"] is True
    assert run.result["dependencies"] == {"database": "pass", "redis": "pass"}


def test_https_mutual_tls(serve, run_module, certs, server_tls):
    server = serve(ready, tls=server_tls(mutual=True))
    run = run_module(
        {
            "url": server.url("/readyz"),
            "ca_path": str(certs["server_cert"]),
            "client_cert": str(certs["client_cert"]),
            "client_key": str(certs["client_key"]),
        }
    )
    assert run.rc == 0, run.stdout
    assert run.result["healthy"] is True
    without = run_module({"url": server.url("/readyz"), "ca_path": str(certs["server_cert"])})
    assert without.rc != 0
    assert without.result["healthy"] is False
    assert without.result["status_code"] is None
    assert "TLS handshake" in without.result["msg"]


# --- playbooks/healthcheck.yml (morning checks) -----------------------------------------------------


def test_morning_checks_playbook_reports_and_fails(serve, free_port, run_playbook):
    good = serve(ready)
    broken = serve(lambda _s, _p: (503, NOT_READY))
    endpoints = [
        {"name": "api-ready", "url": good.url("/readyz"), "require": ["database", "redis"]},
        {"name": "worker-ready", "url": broken.url("/readyz")},
        {"name": "gone", "url": f"http://127.0.0.1:{free_port}/health", "timeout": 2},
    ]
    proc = run_playbook("playbooks/healthcheck.yml", {"pyfleet_health_endpoints": endpoints})
    out = proc.stdout
    assert proc.returncode != 0, out
    assert "api-ready: healthy status=pass HTTP 200" in out
    assert "worker-ready: UNHEALTHY status=fail HTTP 503" in out
    assert "degraded/failing: redis=fail" in out
    assert "gone: UNHEALTHY status=fail HTTP -" in out
    assert "Unhealthy endpoints: localhost/worker-ready:" in out
    assert "localhost/gone: connection refused by 127.0.0.1" in out
    assert "localhost/api-ready" not in out


def test_morning_checks_playbook_all_healthy(serve, run_playbook):
    good = serve(ready)
    proc = run_playbook(
        "playbooks/healthcheck.yml", {"pyfleet_health_endpoints": [{"name": "api", "url": good.url("/readyz")}]}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "api: healthy status=pass HTTP 200" in proc.stdout
    assert "All endpoints on all hosts are healthy" in proc.stdout
    assert "failed=0" in proc.stdout


def test_morning_checks_playbook_default_endpoint(serve, run_playbook):
    good = serve(ready)
    proc = run_playbook("playbooks/healthcheck.yml", {"app_port": good.port})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "app: healthy status=pass HTTP 200" in proc.stdout


# --- flat maps and redirects (issue 12 A.1, A.2) ----------------------------------------------------


def heartbeat(storage: bool):
    def respond(_server, path):
        if path != "/__heartbeat__":
            return 404, "not found"
        return (200 if storage else 503), {"storage": storage, "cache": True}

    return respond


def test_flat_heartbeat_map_healthy_with_require(serve, run_module):
    server = serve(heartbeat(True))
    run = run_module({"url": server.url("/__heartbeat__"), "require": ["storage"]})
    assert run.rc == 0, run.stdout
    assert run.result["healthy"] is True
    assert run.result["dependencies"] == {"storage": "pass", "cache": "pass"}
    assert run.result["redirects"] == []


def test_flat_heartbeat_map_false_is_unhealthy_even_with_503_accepted(serve, run_module):
    server = serve(heartbeat(False))
    run = run_module({"url": server.url("/__heartbeat__"), "require": ["storage"]})
    assert run.rc != 0
    assert run.result["failures"] == ["HTTP 503 (expected 200)", "dependency 'storage' reported false (fail)"]
    assert "degraded/failing: storage=fail" in run.result["summary"]
    accepted = run_module({"url": server.url("/__heartbeat__"), "status_codes": [200, 503]})
    assert accepted.rc != 0
    assert accepted.result["healthy"] is False
    assert accepted.result["failures"] == ["dependency 'storage' reported false (fail)"]


def test_plain_http_redirected_to_https_names_the_hop(serve, run_module, server_tls):
    """The issue's case: http answered 307 to https, whose certificate is not trusted."""
    tls = serve(ready, tls=server_tls())
    plain = serve(lambda _s, path: (307, "", {"Location": tls.url(path)}))
    run = run_module({"url": plain.url("/readyz")})
    assert run.rc != 0
    r = run.result
    assert r["redirects"] == [{"status": 307, "from": plain.url("/readyz"), "to": tls.url("/readyz")}]
    assert r["status_code"] is None
    (reason,) = r["failures"]
    assert reason.startswith(
        f"{plain.url('/readyz')} answered 307 → {tls.url('/readyz')}; then: TLS certificate verification failed"
    )
    assert f"answered 307 → {tls.url('/readyz')}; then: TLS certificate" in r["msg"]


def test_redirect_followed_to_healthy_endpoint_warns(serve, run_module, certs, server_tls):
    tls = serve(ready, tls=server_tls())
    plain = serve(lambda _s, path: (301, "", {"Location": tls.url(path)}))
    run = run_module({"url": plain.url("/readyz"), "ca_path": str(certs["server_cert"])})
    assert run.rc == 0, run.stdout
    r = run.result
    assert r["healthy"] is True
    assert r["status_code"] == 200
    assert r["redirects"] == [{"status": 301, "from": plain.url("/readyz"), "to": tls.url("/readyz")}]
    assert "point url at the final address" in str(r.get("warnings"))


def test_redirect_not_followed(serve, run_module):
    target = serve(ready)
    plain = serve(lambda _s, _path: (307, "", {"Location": "/elsewhere"}))
    run = run_module({"url": plain.url("/readyz"), "follow_redirects": "none"})
    assert run.rc != 0
    assert run.result["status_code"] == 307
    assert run.result["failures"] == [
        f"HTTP 307 (expected 200): redirect to {plain.url('/elsewhere')} not followed (follow_redirects=none)"
    ]
    assert target.hits == 0


def test_redirect_to_another_host_is_reported_not_followed(serve, run_module):
    """Issue 16.6: a loopback probe redirected to another name stops there (and says so) unless asked to follow."""
    target = serve(ready)
    other = target.url("/readyz").replace("127.0.0.1", "localhost")
    plain = serve(lambda _s, _path: (308, "", {"Location": other}))
    run = run_module({"url": plain.url("/readyz")})
    assert run.rc != 0
    assert run.result["redirects"] == [{"status": 308, "from": plain.url("/readyz"), "to": other}]
    assert "not followed: another host than 127.0.0.1 (follow_redirects=same_host" in run.result["failures"][0]
    assert target.hits == 0
    followed = run_module({"url": plain.url("/readyz"), "follow_redirects": True})
    assert followed.rc == 0, followed.stdout
    assert target.hits == 1
