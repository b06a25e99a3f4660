"""Every role documents exactly the variables it defaults, with matching defaults (STYLE: keep the two in sync)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parents[3] / "roles"
ROLES = sorted(p.parent.parent for p in ROLES_DIR.glob("*/meta/argument_specs.yml"))


def _load(path: Path):
    return yaml.safe_load(path.read_text()) or {}


def test_every_role_has_argument_specs():
    missing = [p.name for p in ROLES_DIR.iterdir() if p.is_dir() and not (p / "meta/argument_specs.yml").exists()]
    assert not missing, f"roles without meta/argument_specs.yml: {missing}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_and_argument_specs_agree(role: Path):
    defaults = _load(role / "defaults/main.yml") if (role / "defaults/main.yml").exists() else {}
    options = _load(role / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) - set(options) == set(), f"{role.name}: defaults without a spec entry"
    for name, spec in options.items():
        if spec.get("required"):
            assert "default" not in spec, f"{role.name}.{name}: required options take no default"
            continue
        assert name in defaults, f"{role.name}.{name}: documented but has no default in defaults/main.yml"
        assert "default" in spec, f"{role.name}.{name}: spec lacks the default ({defaults[name]!r})"
        documented, actual = spec["default"], defaults[name]
        if isinstance(actual, str) and "{{" in actual:
            continue  # templated defaults are documented in words
        assert documented == actual, f"{role.name}.{name}: spec default {documented!r} != defaults {actual!r}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_option_is_described(role: Path):
    options = _load(role / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    undescribed = [name for name, spec in options.items() if not spec.get("description")]
    assert not undescribed, f"{role.name}: options without a description: {undescribed}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_entry_points_have_tasks_and_main_s_options(role: Path):
    """Every entry point (preflight, stop, run, ...) is a tasks file and documents its options as main does."""
    specs = _load(role / "meta/argument_specs.yml")["argument_specs"]
    main = specs["main"]["options"]
    for entry, spec in specs.items():
        assert (role / "tasks" / f"{entry}.yml").is_file(), f"{role.name}: entry point {entry} has no tasks/{entry}.yml"
        for name, option in (spec.get("options") or {}).items():
            assert option == main.get(name), f"{role.name}.{entry}: option {name} differs from main's"
