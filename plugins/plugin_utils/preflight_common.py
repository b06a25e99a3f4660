# Copyright (c) pyfleet.server contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The logic of pyfleet.server.preflight_common (plugins/action/preflight_common.py, documented in
plugins/modules/preflight_common.py): the host's OS is one the role's meta/main.yml lists, and every variable named
like the role's (``<role>_*``) is one the role knows. Pure functions without Ansible imports (tested directly,
tests/unit/plugins/action/).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import tempfile

import yaml

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _Loader

COLLECTION = "pyfleet.server"

# Release names galaxy_info.platforms uses, with the version an operator knows them by (for the messages; a host
# matches by its release name or version, see platform_matches).
RELEASES = {
    "debian": {"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13"},
    "ubuntu": {"focal": "20.04", "jammy": "22.04", "noble": "24.04"},
}

_CACHE: dict[str, dict] = {}


def _load_yaml(path: str):
    with open(path, "rb") as handle:
        return yaml.load(handle, Loader=_Loader)  # noqa: S506 - a safe loader (C or pure Python)


def _yaml_files(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        return []
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if name.endswith((".yml", ".yaml")) and os.path.isfile(os.path.join(directory, name)))


def _assigned_names(node, names: set[str]) -> None:
    """Names a role's tasks give values to themselves: set_fact keys and registered results (its outputs)."""
    if isinstance(node, list):
        for item in node:
            _assigned_names(item, names)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("ansible.builtin.set_fact", "set_fact") and isinstance(value, dict):
                names.update(k for k in value if isinstance(k, str))
            elif key == "register" and isinstance(value, str):
                names.add(value)
            elif isinstance(value, (list, dict)):
                _assigned_names(value, names)


def read_role(role_path: str, cache_dir: str | None = None) -> dict:
    """What a role declares: its platforms and every variable name it knows (argument specs of all entry points,
    defaults, vars, and the facts and results its tasks set).

    Ansible runs each task in a new worker process, so an in-memory cache alone would parse the role's ~20 files
    (15-80 ms) for every host and role; with cache_dir the result is also kept there as JSON, keyed by every file's
    path, mtime and size, and a run reads one small file per role instead."""
    files = [os.path.join(role_path, "meta", "main.yml"), os.path.join(role_path, "meta", "argument_specs.yml")]
    files += _yaml_files(os.path.join(role_path, "defaults")) + _yaml_files(os.path.join(role_path, "vars"))
    tasks = _yaml_files(os.path.join(role_path, "tasks"))
    key = [[path, st.st_mtime_ns, st.st_size] for path in files + tasks if os.path.isfile(path)
           for st in (os.stat(path),)]
    memo = json.dumps(key)
    if memo in _CACHE:
        return _CACHE[memo]
    cache_file = None
    if cache_dir:
        digest = hashlib.sha256(os.path.abspath(role_path).encode()).hexdigest()[:16]
        cache_file = os.path.join(cache_dir, f"pyfleet-preflight-{digest}.json")
        try:
            with open(cache_file, encoding="utf-8") as handle:
                cached = json.load(handle)
            if cached.get("key") == key:
                info = {"platforms": [tuple(p) for p in cached["platforms"]], "known": frozenset(cached["known"])}
                _CACHE[memo] = info
                return info
        except (OSError, ValueError, KeyError, TypeError):
            pass
    meta = _load_yaml(files[0]) if os.path.isfile(files[0]) else None
    platforms = [(str(p.get("name", "")), [str(v) for v in p.get("versions") or ["all"]])
                 for p in ((meta or {}).get("galaxy_info") or {}).get("platforms") or [] if isinstance(p, dict)]
    known: set[str] = set()
    specs = (_load_yaml(files[1]) or {}) if os.path.isfile(files[1]) else {}
    for entry in (specs.get("argument_specs") or {}).values():
        known.update((entry or {}).get("options") or {})
    for path in files[2:]:
        data = _load_yaml(path)
        if isinstance(data, dict):
            known.update(k for k in data if isinstance(k, str))
    for path in tasks:
        _assigned_names(_load_yaml(path), known)
    info = {"platforms": platforms, "known": frozenset(known)}
    _CACHE[memo] = info
    if cache_file:
        try:  # written whole, then renamed: a parallel worker reads the old file or the new one
            os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=cache_dir, delete=False, encoding="utf-8") as handle:
                json.dump({"key": key, "platforms": platforms, "known": sorted(known)}, handle)
            os.replace(handle.name, cache_file)
        except OSError:
            pass
    return info


def platform_matches(platforms: list[tuple[str, list[str]]], facts: dict) -> bool:
    """A host matches a platform of the same distribution when a version is `all`, the host's release name
    (bookworm), its version (12.5 / 22.04) or major version (12), or a release name of that version."""
    distribution = str(facts.get("distribution", "")).lower()
    release = str(facts.get("distribution_release", "")).lower()
    version = str(facts.get("distribution_version", ""))
    major = str(facts.get("distribution_major_version", ""))
    names = RELEASES.get(distribution, {})
    for name, versions in platforms:
        if name.lower() != distribution:
            continue
        for wanted in (str(v).lower() for v in versions):
            if wanted in ("all", release, version, major):
                return True
            if names.get(wanted) in (version, major):
                return True
    return False


def describe_platforms(platforms: list[tuple[str, list[str]]]) -> str:
    """Debian 12 (bookworm), Ubuntu 22.04 (jammy)"""
    described = []
    for name, versions in platforms:
        names = RELEASES.get(name.lower(), {})
        for version in versions:
            if version.lower() == "all":
                described.append(f"{name} (any release)")
            elif version.lower() in names:
                described.append(f"{name} {names[version.lower()]} ({version})")
            else:
                described.append(f"{name} {version}")
    return ", ".join(described) or "no platform (galaxy_info.platforms is empty)"


def describe_host(facts: dict) -> str:
    """Ubuntu 24.04 (noble)"""
    text = f"{facts.get('distribution', 'an unknown distribution')} {facts.get('distribution_version', '')}".strip()
    release = facts.get("distribution_release")
    return f"{text} ({release})" if release and release not in ("NA", "n/a") else text


def platform_error(role: str, platforms: list[tuple[str, list[str]]], facts: dict, reason: str = "") -> str | None:
    """The refusal for a host whose OS the role does not list, or None."""
    if platform_matches(platforms, facts):
        return None
    message = f"{COLLECTION}.{role} supports {describe_platforms(platforms)}; this host is {describe_host(facts)}"
    return f"{message}. {reason}" if reason else message


def unknown_variables(names, prefix: str, known) -> list[str]:
    """Variables named like the role's (prefix) that the role does not know, sorted."""
    return sorted(n for n in names if isinstance(n, str) and n.startswith(prefix) and n not in known)


def suggestion(name: str, known) -> str | None:
    """The known name closest to a misspelt one (app_health_ur -> app_health_url), if any is close."""
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    return matches[0] if matches else None


def unknown_message(role: str, unknown: list[str], known, prefix: str, host: str = "this host") -> str:
    described = []
    for name in unknown:
        close = suggestion(name, known)
        described.append(f"{name} (did you mean {close}?)" if close else name)
    one = len(unknown) == 1
    return (f"{COLLECTION}.{role} on {host} does not know {'this variable' if one else 'these variables'} "
            f"named like its own ({prefix}*), so {'it is' if one else 'they are'} ignored: "
            f"{', '.join(described)}. Its variables: ansible-doc -t role {COLLECTION}.{role}")
