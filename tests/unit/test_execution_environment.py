"""execution-environment.yml carries what the playbooks run with: the pinned ansible-core, every collection the roles
and playbooks use, this checkout's tarball and the collection's controller requirements."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
EE = yaml.safe_load((REPO / "execution-environment.yml").read_text())
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
OWN = f"{GALAXY['namespace']}.{GALAXY['name']}"
NOT_NEEDED = {"ansible.builtin", "ansible.legacy", OWN}

# Where a collection's plugin is named in roles and playbooks: a task's module key (`community.general.ufw:`), a
# filter/test/lookup by name in a Jinja call (`map('community.general.dict_kv', ...)`, `lookup('x.y.z', ...)`) and
# a filter or test after a pipe or `is` (`x | community.general.json_query(...)`).
FQCN = r"([a-z_]+\.[a-z_]+)\.[a-z0-9_]+"
USES = [
    re.compile(rf"^\s*(?:-\s+)?{FQCN}:", re.M),
    re.compile(rf"\b(?:map|select|reject|selectattr|rejectattr|lookup|query|q)\(\s*['\"]{FQCN}['\"]"),
    re.compile(rf"(?:\||\bis(?:\s+not)?)\s*{FQCN}\b"),
]


def collections_used(text: str) -> set[str]:
    return {m.group(1) for pattern in USES for m in pattern.finditer(text)}


def used_in_repo() -> dict[str, set[str]]:
    """{collection: {file, ...}} for every collection named under roles/ and playbooks/."""
    found: dict[str, set[str]] = {}
    for top in ("roles", "playbooks"):
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and path.suffix in {".yml", ".yaml", ".j2"}:
                for name in collections_used(path.read_text()):
                    found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def ee_galaxy() -> list[dict]:
    return EE["dependencies"]["galaxy"]["collections"]


def ee_collections() -> dict[str, str]:
    """{name: version spec} of the Galaxy collections (not the tarball) the image installs."""
    return {c["name"]: c.get("version", "*") for c in ee_galaxy() if c.get("type") != "file"}


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower()] = version.strip()
    return out


def test_ansible_core_pin_is_requirements_devs():
    dev = pins(REPO / "requirements-dev.txt")["ansible-core"]
    assert EE["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={dev}"


def test_the_scanner_finds_module_keys_jinja_names_and_pipes():
    snippet = """
- name: Allow SSH
  community.general.ufw:
    rule: allow
  loop: "{{ x | map('community.general.dict_kv', 'a') }}"
  when: y is community.general.a_test and z | community.crypto.x509_filter
- community.postgresql.postgresql_db:
    name: app
  vars:
    files: "{{ lookup('ansible.builtin.file', 'pyfleet.conf.j2') }}"
"""
    assert collections_used(snippet) == {
        "community.general", "community.crypto", "community.postgresql", "ansible.builtin"}


def test_the_scanner_sees_what_the_roles_use():
    used = used_in_repo()
    # Known uses (roles/ufw, roles/nginx, roles/postgresql): a scanner that finds nothing proves nothing.
    for name in ("community.general", "community.crypto", "community.postgresql"):
        assert name in used, f"{name} not found under roles/ or playbooks/: the scanner is broken"


def test_every_collection_the_roles_and_playbooks_use_is_in_the_image():
    listed = set(ee_collections())
    missing = {name: sorted(files) for name, files in used_in_repo().items()
               if name not in NOT_NEEDED and name not in listed}
    assert not missing, (
        f"execution-environment.yml (dependencies.galaxy) lacks collections the content uses: {missing}")


def test_every_galaxy_dependency_is_in_the_image_within_its_constraint():
    listed = ee_collections()
    for name, constraint in GALAXY["dependencies"].items():
        assert name in listed, f"galaxy.yml depends on {name}; execution-environment.yml does not install it"
        pinned = listed[name]
        assert pinned.startswith("=="), f"{name}: pin an exact version in execution-environment.yml, not {pinned}"
        assert Version(pinned[2:]) in SpecifierSet(constraint), (
            f"execution-environment.yml pins {name}{pinned}, outside galaxy.yml's {constraint}")


@pytest.mark.parametrize("name", sorted(ee_collections()))
def test_the_image_pins_the_collection_versions_the_tests_ran(name):
    # The `ansible` package of requirements-dev.txt brings the collections every test and scenario runs with.
    namespace, coll = name.split(".")
    module = importlib.import_module(f"ansible_collections.{namespace}.{coll}")
    manifest = json.loads((Path(next(iter(module.__path__))) / "MANIFEST.json").read_text())
    shipped = manifest["collection_info"]["version"]
    assert ee_collections()[name] == f"=={shipped}", (
        f"execution-environment.yml pins {name}{ee_collections()[name]}; the tests ran {shipped} "
        "(the ansible package of requirements-dev.txt): pin that")


def test_the_image_installs_this_checkouts_tarball():
    tarball = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
    files = [c["name"] for c in ee_galaxy() if c.get("type") == "file"]
    copied = [(f["src"], f["dest"]) for f in EE["additional_build_files"]]
    assert files == [f"collections/{tarball}"], f"galaxy.yml's version is {GALAXY['version']}; the EE installs {files}"
    assert (f"build/dist/{tarball}", "collections") in copied, (
        f"additional_build_files must copy build/dist/{tarball} (ansible-galaxy collection build) to collections/")


def test_the_collection_declares_its_controller_requirements():
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert meta["version"] == 1
    for kind, home in (("python", "meta/ee-requirements.txt"), ("system", "meta/ee-bindep.txt")):
        assert meta["dependencies"][kind] == home
        assert (REPO / home).is_file()
    bindep = (REPO / "meta" / "ee-bindep.txt").read_text()
    # Every playbook reaches its hosts with the ssh connection plugin.
    assert re.search(r"^openssh-clients \[platform:rpm\]$", bindep, re.M)


def test_controller_python_requirements_are_pinned_as_in_requirements_dev():
    dev = pins(REPO / "requirements-dev.txt")
    ee = pins(REPO / "meta" / "ee-requirements.txt")
    assert ee, "meta/ee-requirements.txt pins nothing"
    for name, version in ee.items():
        assert dev.get(name) == version, (
            f"meta/ee-requirements.txt pins {name}=={version}, requirements-dev.txt {dev.get(name)}: "
            "the image must run what the tests ran")
