"""Celery's log file and extra arguments (app role), PostgreSQL extensions (postgresql role), and the logrotate rule
the Celery log file joins: bad input refused by the preflights naming the variable and item, good input rendered
as the units, the server settings and the rotation rules will carry it.

One ansible-playbook run on the controller (connection local; the preflights only read and assert): each inventory
host is one case, its variables as host_vars. A case's role preflight runs with its role's variables made public,
then the values the role derives from the input are reported. The worker's rendered command line is then checked
with the real `systemd-analyze verify` (roles/app/files/pyfleet-check-unit), as the role's `validate` does.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ME = getpass.getuser()

APP = {
    "app_name": "fleetdemo",
    "app_version": "1.0.0",
    "app_entrypoint": "fleetdemo.main:app",
    "app_env": {"SECRET_KEY": "unit-test-secret"},
    "app_celery_app": "fleetdemo.worker:celery_app",
    "app_celery_beat": True,
}
PG = {
    "postgresql_users": [{"name": "loyalty", "password": "loyalty-password-1234"}],
    "postgresql_databases": [{"name": "loyalty", "owner": "loyalty"}],
}
PGSS = [{"name": "pg_stat_statements", "database": "loyalty"}]

# case: (role, variables, expected failure text or None when the input is good)
CASES: dict[str, tuple[str, dict, str | None]] = {
    "app-good-journal": ("app", {}, None),
    "app-good-args": (
        "app", {"app_celery_log_file": "/var/log/fleetdemo/celery.log",
                "app_celery_worker_args": ["--queues", "default,emails", "--max-tasks-per-child", 100,
                                           "-X", 'a b 100% $HOME "q" \\n'],
                "app_celery_beat_args": ["--max-interval", "30"]},
        None,
    ),
    "app-good-own-dir": ("app", {"app_celery_log_file": "/var/log/fleetdemo-celery/celery.log"}, None),
    "app-log-relative": (
        "app", {"app_celery_log_file": "logs/celery.log"},
        "app_celery_log_file must be an absolute path of letters, digits and ._@+- such as "
        "/var/log/fleetdemo/celery.log, got \"logs/celery.log\"",
    ),
    "app-log-dotdot": ("app", {"app_celery_log_file": "/var/log/fleetdemo/../celery.log"},
                       "app_celery_log_file must be an absolute path"),
    "app-log-percent": ("app", {"app_celery_log_file": "/var/log/fleetdemo/celery-%n.log"},
                        "app_celery_log_file must be an absolute path"),
    "app-log-in-var-log": (
        "app", {"app_celery_log_file": "/var/log/celery.log"},
        "app_celery_log_file (/var/log/celery.log) must lie in app_log_dir (/var/log/fleetdemo) or in a directory of "
        "its own at least two levels deep",
    ),
    "app-log-in-config-dir": ("app", {"app_celery_log_file": "/etc/fleetdemo/celery.log"},
                              "app_celery_log_file (/etc/fleetdemo/celery.log) must lie in app_log_dir"),
    "app-worker-args-string": (
        "app", {"app_celery_worker_args": "--queues default"},
        'app_celery_worker_args must be a list of arguments (one item each), got "--queues default"',
    ),
    "app-beat-args-mapping": ("app", {"app_celery_beat_args": {"--max-interval": 30}},
                              "argument 'app_celery_beat_args' is of type dict and we were unable to convert to list"),
    "app-worker-app": (
        "app", {"app_celery_worker_args": ["--queues", "q", "--app=other:app"]},
        'app_celery_worker_args[2] ("--app=other:app") overrides --app/-A is set by app_celery_app; '
        "remove it from the list",
    ),
    "app-worker-short-concurrency": (
        "app", {"app_celery_worker_args": ["-c8"]},
        'app_celery_worker_args[0] ("-c8") overrides --concurrency/-c is set by app_celery_concurrency',
    ),
    "app-worker-logfile": (
        "app", {"app_celery_log_file": "/var/log/fleetdemo/celery.log", "app_celery_worker_args": ["--logfile", "/x"]},
        'app_celery_worker_args[0] ("--logfile") overrides --logfile/-f is set by app_celery_log_file',
    ),
    "app-beat-schedule": (
        "app", {"app_celery_beat_args": ["--max-interval", "30", "-s", "/tmp/s"]},
        'app_celery_beat_args[2] ("-s") overrides --schedule/-s is set by the role',
    ),
    "app-arg-newline": ("app", {"app_celery_beat_args": ["--max-interval\n30"]},
                        "app_celery_beat_args[0] (\"--max-interval\\n30\") must not contain control characters"),
    "app-arg-list": ("app", {"app_celery_worker_args": [["--queues", "q"]]},
                     "app_celery_worker_args[0] ([\"--queues\", \"q\"]) must be a string (one argument)"),
    "app-log-dir-owned-by-other": (
        "app", {"app_celery_log_file": "{{ case_tmp }}/other/celery.log", "app_user": "nobody"},
        "exists and is owned by " + ME + ", not nobody; the role would hand it to nobody",
    ),
    "app-log-dir-owned-by-app": ("app", {"app_celery_log_file": "{{ case_tmp }}/other/celery.log", "app_user": ME},
                                 None),
    "pg-good": ("postgresql", {"postgresql_extensions": PGSS}, None),
    "pg-good-merge": (
        "postgresql",
        {
            "postgresql_extensions": PGSS + [
                {"name": "auto_explain", "database": "loyalty"}, {"name": "pgcrypto", "database": "loyalty"}],
            "postgresql_settings": {"shared_preload_libraries": "pg_prewarm, auto_explain", "work_mem": "8MB"},
        },
        None,
    ),
    "pg-good-already-preloaded": (
        "postgresql", {"postgresql_extensions": PGSS,
                       "postgresql_settings": {"shared_preload_libraries": "pg_stat_statements , pg_prewarm"}},
        None,
    ),
    "pg-not-a-list": ("postgresql", {"postgresql_extensions": "pg_stat_statements"},
                      # (the argument spec answers first)
                      "Elements value for option 'postgresql_extensions' is of type str"),
    "pg-no-name": ("postgresql", {"postgresql_extensions": PGSS + [{"database": "loyalty"}]},
                   "postgresql_extensions[1] needs a name (the extension's, e.g. pg_stat_statements)"),
    "pg-no-database": (
        "postgresql", {"postgresql_extensions": [{"name": "pg_stat_statements"}]},
        "postgresql_extensions[0] ('pg_stat_statements') needs a database, one of postgresql_databases (loyalty)",
    ),
    "pg-unknown-database": (
        "postgresql", {"postgresql_extensions": [{"name": "pg_stat_statements", "database": "loyal"}]},
        "postgresql_extensions[0] ('pg_stat_statements'): database 'loyal' is not one of postgresql_databases "
        "(loyalty)",
    ),
    "pg-not-a-mapping": ("postgresql", {"postgresql_extensions": ["pg_stat_statements"]},
                         "Elements value for option 'postgresql_extensions' is of type str"),
    "logrotate-outside": (
        "logrotate", {"logrotate_app_name": "fleetdemo", "logrotate_app_log_dir": "/var/log/fleetdemo",
                      "logrotate_app_log_files": ["/var/log/fleetdemo-celery/celery.log"]},
        None,
    ),
    "logrotate-inside": (
        "logrotate", {"logrotate_app_name": "fleetdemo", "logrotate_app_log_dir": "/var/log/fleetdemo/",
                      "logrotate_app_log_files": ["/var/log/fleetdemo/celery.log", "/var/log/fleetdemo/celery.txt"]},
        None,
    ),
}

# What each role derives from the input (reported after its preflight passed).
SHOW = {
    "app": ["_app_units", "_app_read_write_paths", "_app_celery_log_dir"],
    "postgresql": ["_postgresql_settings", "_postgresql_extensions_created"],
    "logrotate": ["_logrotate_builtin"],
}

FACTS_MODULE = '''#!/usr/bin/python
import json
print(json.dumps({"changed": False, "ansible_facts": {"service_mgr": "systemd"}}))
'''

PLAYBOOK = [
    {
        "name": "Preflight cases",
        "hosts": "all",
        "gather_facts": True,
        "gather_subset": ["min"],
        "tasks": [
            {"name": "The app's units run under systemd on a real host", "unit_test_facts": {}},
            {
                "name": "Preflight of the case's role",
                "ansible.builtin.include_role": {"name": "pyfleet.server.{{ case_role }}", "tasks_from": "preflight",
                                                 "public": True},
            },
            {"name": "Report", "ansible.builtin.debug": {
                "msg": "{{ dict(case_show | zip(query('ansible.builtin.vars', *case_show))) | to_json }}"}},
        ],
    }
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    """{case: {"failure": message or None, "shown": {name: value} or None}}."""
    tmp = tmp_path_factory.mktemp("celery-extensions")
    (tmp / "library").mkdir()
    (tmp / "library" / "unit_test_facts.py").write_text(FACTS_MODULE)
    (tmp / "wheelhouse").mkdir()
    (tmp / "wheelhouse" / "fleetdemo-1.0.0-py3-none-any.whl").write_text("")
    (tmp / "other").mkdir()
    hosts = {}
    for case, (role, variables, _expected) in CASES.items():
        base = {"app": {**APP, "app_wheelhouse_dir": str(tmp / "wheelhouse"), "app_root": str(tmp / "app")},
                "postgresql": PG, "logrotate": {}}[role]
        hosts[case] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                       "case_role": role, "case_show": SHOW[role], "case_tmp": str(tmp), **base, **variables}
    (tmp / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (tmp / "play.yml").write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"),
         "--forks", "20"],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                 ANSIBLE_NOCOLOR="1", ANSIBLE_LIBRARY=str(tmp / "library")),
    )
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    out: dict[str, dict] = {case: {"failure": None, "shown": None} for case in CASES}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                for item in result.get("results") or [result]:
                    if item.get("failed") and out[host]["failure"] is None:
                        out[host]["failure"] = str(item.get("msg"))
                if task["task"]["name"] == "Report" and not result.get("failed"):
                    out[host]["shown"] = json.loads(result["msg"])
    missing = set(CASES) - set(report["stats"])
    assert not missing, f"cases that did not run: {missing}\n{proc.stderr[-3000:]}"
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight(results, case):
    expected = CASES[case][2]
    failure = results[case]["failure"]
    if expected is None:
        assert failure is None, f"{case}: good input refused: {failure}"
        assert results[case]["shown"] is not None
    else:
        assert failure is not None, f"{case}: bad input accepted"
        assert expected in " ".join(failure.split()), f"{case}: {failure}"


def commands(results, case) -> dict[str, str]:
    return {unit["name"]: unit["command"] for unit in results[case]["shown"]["_app_units"]}


def test_journal_only_keeps_today_s_command_lines(results):
    assert commands(results, "app-good-journal") == {
        "api": "gunicorn --bind 127.0.0.1:8000 --workers 2 --worker-class uvicorn_worker.UvicornWorker "
               "--graceful-timeout 30 --access-logfile - --forwarded-allow-ips 127.0.0.1 fleetdemo.main:app",
        "worker": "celery -A fleetdemo.worker:celery_app worker --loglevel INFO --concurrency 2 "
                  "--hostname fleetdemo@%H",
        "beat": "celery -A fleetdemo.worker:celery_app beat --loglevel INFO "
                "--schedule /var/lib/fleetdemo/celerybeat-schedule",
    }
    assert results["app-good-journal"]["shown"]["_app_celery_log_dir"] == ""


def test_log_file_and_extra_arguments_are_single_quoted_words(results):
    got = commands(results, "app-good-args")
    assert got["worker"] == (
        "celery -A fleetdemo.worker:celery_app worker --loglevel INFO --concurrency 2 --hostname fleetdemo@%H"
        ' --logfile /var/log/fleetdemo/celery.log "--queues" "default,emails" "--max-tasks-per-child" "100"'
        ' "-X" "a b 100%% $$HOME \\"q\\" \\\\n"')
    assert got["beat"] == (
        "celery -A fleetdemo.worker:celery_app beat --loglevel INFO --schedule /var/lib/fleetdemo/celerybeat-schedule"
        ' --logfile /var/log/fleetdemo/celery.log "--max-interval" "30"')
    # In app_log_dir: nothing more to create or open up.
    assert results["app-good-args"]["shown"]["_app_celery_log_dir"] == ""


def test_a_log_directory_of_its_own_is_created_and_writable(results):
    shown = results["app-good-own-dir"]["shown"]
    assert shown["_app_celery_log_dir"] == "/var/log/fleetdemo-celery"
    assert "/var/log/fleetdemo-celery" in shown["_app_read_write_paths"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_quoted_worker_unit(results, tmp_path):
    current, release = tmp_path / "app" / "current", tmp_path / "app" / "releases" / "1.0.0"
    (release / "venv" / "bin").mkdir(parents=True)
    celery = release / "venv" / "bin" / "celery"
    celery.write_text("#!/bin/sh\nexit 0\n")
    celery.chmod(0o755)
    unit = tmp_path / "fleetdemo-worker.service"
    unit.write_text(f"[Unit]\nDescription=worker\n\n[Service]\nExecStart={current}/venv/bin/"
                    f"{commands(results, 'app-good-args')['worker']}\n\n[Install]\nWantedBy=multi-user.target\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    check = subprocess.run([str(REPO / "roles/app/files/pyfleet-check-unit"), str(unit), str(current), str(release)],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(scratch)},
                           check=False, timeout=60)
    assert check.returncode == 0, check.stderr


def test_preloaded_extensions_join_the_user_s_shared_preload_libraries(results):
    assert results["pg-good"]["shown"]["_postgresql_settings"] == {"shared_preload_libraries": "pg_stat_statements"}
    merged = results["pg-good-merge"]["shown"]
    assert merged["_postgresql_settings"] == {
        "shared_preload_libraries": "pg_prewarm,auto_explain,pg_stat_statements", "work_mem": "8MB"}
    # auto_explain is a module: loaded, never CREATE EXTENSION.
    assert [e["name"] for e in merged["_postgresql_extensions_created"]] == ["pg_stat_statements", "pgcrypto"]
    # Nothing to add: the user's setting is written as it was (no restart for a respelling).
    assert results["pg-good-already-preloaded"]["shown"]["_postgresql_settings"] == {
        "shared_preload_libraries": "pg_stat_statements , pg_prewarm"}


def test_the_celery_log_file_joins_the_app_s_rotation_once(results):
    outside = results["logrotate-outside"]["shown"]["_logrotate_builtin"][0]
    assert outside["paths"] == ["/var/log/fleetdemo/*.log", "/var/log/fleetdemo-celery/celery.log"]
    assert outside["su"] == "fleetdemo fleetdemo"
    inside = results["logrotate-inside"]["shown"]["_logrotate_builtin"][0]
    assert inside["paths"] == ["/var/log/fleetdemo//*.log", "/var/log/fleetdemo/celery.txt"]
