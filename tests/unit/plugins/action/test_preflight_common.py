"""pyfleet.server.preflight_common: the OS refusal and the unknown-variable warning of every role's preflight.

The logic is pure functions over the roles' real files; one ansible-playbook run on the controller (connection local,
no facts gathered by the play) shows the action end to end: it gathers the distribution itself, warns once per host
naming each misspelt variable, and refuses them with unknown=fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.pyfleet.server.plugins.plugin_utils import preflight_common as pc

REPO = Path(__file__).resolve().parents[4]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())

DEBIAN_12 = {"distribution": "Debian", "distribution_release": "bookworm", "distribution_version": "12.11",
             "distribution_major_version": "12"}
DEBIAN_11 = {"distribution": "Debian", "distribution_release": "bullseye", "distribution_version": "11.9",
             "distribution_major_version": "11"}
UBUNTU_2204 = {"distribution": "Ubuntu", "distribution_release": "jammy", "distribution_version": "22.04",
               "distribution_major_version": "22"}
UBUNTU_2210 = {"distribution": "Ubuntu", "distribution_release": "kinetic", "distribution_version": "22.10",
               "distribution_major_version": "22"}
UBUNTU_2404 = {"distribution": "Ubuntu", "distribution_release": "noble", "distribution_version": "24.04",
               "distribution_major_version": "24"}
ROCKY_9 = {"distribution": "Rocky", "distribution_release": "Blue Onyx", "distribution_version": "9.3",
           "distribution_major_version": "9"}


def role(name: str) -> dict:
    return pc.read_role(str(REPO / "roles" / name))


# --- platforms -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ROLES)
def test_every_role_states_its_platforms_and_checks_them_first(name):
    assert role(name)["platforms"], f"{name}: meta/main.yml lists no galaxy_info.platforms"
    tasks = yaml.safe_load((REPO / "roles" / name / "tasks" / "preflight.yml").read_text())
    assert "pyfleet.server.preflight_common" in tasks[0], f"{name}: preflight.yml does not start with the check"


@pytest.mark.parametrize("name", [r for r in ROLES if r != "python"])
def test_a_debian_12_role_refuses_ubuntu_naming_both(name):
    assert pc.platform_error(name, role(name)["platforms"], DEBIAN_12) is None
    assert pc.platform_error(name, role(name)["platforms"], UBUNTU_2204) == (
        f"pyfleet.server.{name} supports Debian 12 (bookworm); this host is Ubuntu 22.04 (jammy)")
    assert "this host is Debian 11.9 (bullseye)" in pc.platform_error(name, role(name)["platforms"], DEBIAN_11)


def test_the_python_role_takes_ubuntu_22_04_only_besides_debian_12():
    platforms = role("python")["platforms"]
    assert pc.platform_error("python", platforms, DEBIAN_12) is None
    assert pc.platform_error("python", platforms, UBUNTU_2204) is None
    for facts in (UBUNTU_2210, UBUNTU_2404, DEBIAN_11, ROCKY_9):
        error = pc.platform_error("python", platforms, facts, "Why.")
        assert error.startswith("pyfleet.server.python supports Debian 12 (bookworm), Ubuntu 22.04 (jammy); this host "
                                f"is {facts['distribution']} {facts['distribution_version']}"), error
        assert error.endswith(". Why.")


def test_the_python_role_s_platforms_are_the_releases_it_has_packages_for():
    """meta/main.yml (what the check refuses) and vars/main.yml _python_supported (what install.yml installs)."""
    supported = yaml.safe_load((REPO / "roles/python/vars/main.yml").read_text())["_python_supported"]
    platforms = role("python")["platforms"]
    listed = {f"{name}-{pc.RELEASES[name.lower()][v].split('.')[0]}" for name, versions in platforms for v in versions}
    assert listed == set(supported)


@pytest.mark.parametrize(("platforms", "facts", "matches"), [
    ([("Debian", ["all"])], DEBIAN_11, True),
    ([("Debian", ["12"])], DEBIAN_12, True),
    ([("Debian", ["bookworm"])], {**DEBIAN_12, "distribution_release": ""}, True),  # no release name: the version
    ([("Ubuntu", ["22.04"])], UBUNTU_2204, True),
    ([("Ubuntu", ["jammy"])], UBUNTU_2210, False),
    ([("debian", ["Bookworm"])], DEBIAN_12, True),
    ([("Debian", ["bookworm"])], ROCKY_9, False),
    ([], DEBIAN_12, False),
])
def test_platform_matching(platforms, facts, matches):
    assert pc.platform_matches(platforms, facts) is matches


def test_describe():
    assert pc.describe_platforms([("Debian", ["all"]), ("EL", ["9"])]) == "Debian (any release), EL 9"
    assert pc.describe_host({**DEBIAN_12, "distribution_release": "NA"}) == "Debian 12.11"
    assert pc.describe_host({}) == "an unknown distribution"


# --- variables -------------------------------------------------------------------------------------------------------

def test_a_misspelt_variable_is_named_with_the_closest_known_one():
    known = role("app")["known"]
    names = ["app_health_url", "app_health_ur", "app_nonsense_thing", "nginx_health_ur", "_app_internal", "app_env"]
    unknown = pc.unknown_variables(names, "app_", known)
    assert unknown == ["app_health_ur", "app_nonsense_thing"]
    assert pc.suggestion("app_health_ur", known) == "app_health_url"
    assert pc.suggestion("app_nonsense_thing", known) is None
    message = pc.unknown_message("app", unknown, known, "app_", "web1")
    assert message == ("pyfleet.server.app on web1 does not know these variables named like its own (app_*), so they "
                       "are ignored: app_health_ur (did you mean app_health_url?), app_nonsense_thing. "
                       "Its variables: ansible-doc -t role pyfleet.server.app")


def test_a_role_knows_every_entry_point_s_options_its_defaults_internals_and_outputs():
    assert {"nginx_upstream_drain", "nginx_site_name", "nginx_preflight"} <= role("nginx")["known"]  # upstream, main
    assert {"postgresql_client_server", "postgresql_client_dsn_query"} <= role("postgresql")["known"]  # client, fact
    assert {"app_health_endpoint", "app_unit_after"} <= role("app")["known"]  # a fact of `endpoint`, the wiring
    assert "python_interpreter" in role("python")["known"]  # set_fact


def test_the_role_files_are_read_once(monkeypatch, tmp_path):
    """In the process, and across processes (each task's worker) from the JSON kept in the cache directory."""
    monkeypatch.setattr(pc, "_CACHE", {})
    fresh = pc.read_role(str(REPO / "roles" / "ufw"), str(tmp_path))
    assert pc.read_role(str(REPO / "roles" / "ufw")) is fresh
    monkeypatch.setattr(pc, "_CACHE", {})  # a new worker process
    monkeypatch.setattr(pc, "_load_yaml", lambda path: pytest.fail(f"{path} parsed again"))
    assert pc.read_role(str(REPO / "roles" / "ufw"), str(tmp_path)) == fresh


def test_a_changed_role_is_read_again(tmp_path):
    copy = tmp_path / "ufw"
    for name in ("meta/main.yml", "meta/argument_specs.yml", "defaults/main.yml"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text((REPO / "roles/ufw" / name).read_text())
    cache = str(tmp_path / "cache")
    assert "ufw_extra_thing" not in pc.read_role(str(copy), cache)["known"]
    with (copy / "defaults/main.yml").open("a") as handle:
        handle.write("ufw_extra_thing: 1\n")
    pc._CACHE.clear()
    assert "ufw_extra_thing" in pc.read_role(str(copy), cache)["known"]


def _inventory_variables() -> list[tuple[str, str]]:
    """(file, name) of every variable the repository's inventories, examples, scenarios and wiring set."""
    found = []
    for pattern in ("inventories/*/group_vars/**/*.yml", "inventories/*/host_vars/**/*.yml",
                    "examples/*/inventory/**/*.yml", "molecule/*/group_vars/**/*.yml", "molecule/*/host_vars/**/*.yml",
                    "playbooks/group_vars/**/*.yml"):
        for path in sorted(REPO.glob(pattern)):
            if path.name == "hosts.yml" or path.parts[len(REPO.parts)] == "molecule" and \
                    path.parts[len(REPO.parts) + 1].startswith("dev-"):  # uncommitted development copies
                continue
            data = yaml.safe_load(path.read_text()) or {}
            found += [(str(path.relative_to(REPO)), name) for name in data]
    return found


def test_the_repository_s_own_inventories_set_no_unknown_variable():
    assert len(_inventory_variables()) > 50
    unknown = []
    for path, name in _inventory_variables():
        for owner in ROLES:
            if pc.unknown_variables([name], f"{owner}_", role(owner)["known"]):
                unknown.append(f"{path}: {name} ({owner})")
    assert unknown == []


def test_no_role_s_defaults_or_vars_name_another_role_s_unknown_variable():
    unknown = []
    for name in ROLES:
        for path in sorted((REPO / "roles" / name).glob("*/main.yml")):
            if path.parent.name not in ("defaults", "vars"):
                continue
            for variable in yaml.safe_load(path.read_text()) or {}:
                for owner in ROLES:
                    if pc.unknown_variables([variable], f"{owner}_", role(owner)["known"]):
                        unknown.append(f"{path.relative_to(REPO)}: {variable} ({owner})")
    assert unknown == []


# --- the action, end to end on the controller ------------------------------------------------------------------------

PLAY = [{
    "hosts": "all",
    "gather_facts": False,
    "tasks": [{"name": "Common preflight", "pyfleet.server.preflight_common": {
        "role_path": str(REPO / "roles" / "app"), "unknown": "{{ case_unknown }}"}}],
}]


def test_the_action_gathers_the_distribution_and_warns_or_refuses(tmp_path):
    base = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {
        "clean": {**base, "case_unknown": "warn", "app_health_url": "http://127.0.0.1:8000/healthz"},
        "typo": {**base, "case_unknown": "warn", "app_health_ur": "/healthz", "app_wokers": 2},
        "strict": {**base, "case_unknown": "fail", "app_health_ur": "/healthz"},
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(PLAY, sort_keys=False))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
         str(tmp_path / "play.yml")],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                 ANSIBLE_NOCOLOR="1"))
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    results = report["plays"][0]["tasks"][0]["hosts"]
    assert set(results) == set(hosts), proc.stderr[-3000:]
    for result in results.values():  # the play gathered nothing: the action did, the distribution subset only
        assert result["ansible_facts"]["ansible_distribution"], result
        assert "ansible_processor" not in result["ansible_facts"]
    assert results["clean"]["unknown_variables"] == [] and not results["clean"].get("warnings")
    assert not results["typo"].get("failed")
    assert results["typo"]["unknown_variables"] == ["app_health_ur", "app_wokers"]
    assert results["typo"]["warnings"] == [
        "pyfleet.server.app on typo does not know these variables named like its own (app_*), so they are ignored: "
        "app_health_ur (did you mean app_health_url?), app_wokers (did you mean app_workers?). "
        "Its variables: ansible-doc -t role pyfleet.server.app"]
    assert results["strict"]["failed"] and "app_health_ur (did you mean app_health_url?)" in results["strict"]["msg"]
