#!/usr/bin/env python3
"""`docker run` for a test host, read from its one home: the platform of the shared Molecule base config.

`.config/molecule/config.yml` (platforms[0]) says how a Debian 12 systemd test host runs on these machines
(image, command, capabilities, seccomp, cgroup namespace, volumes, tmpfs, stop signal). Molecule reads it
directly; everything else that starts a test host (scripts/demo.sh, tests/integration/testhost.py, bench/*)
gets its `docker run` command line from here, so the flags are written down once.

    python3 scripts/lib/testhost_flags.py NAME        # the argv, one word per line (for `mapfile -t`)
    python3 scripts/lib/testhost_flags.py -0 NAME     # NUL-separated (for `mapfile -d ''`)
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from molecule.interpolation import Interpolator, TemplateWithDefaults

CONFIG = Path(__file__).resolve().parents[2] / ".config" / "molecule" / "config.yml"

# Platform keys that are `docker run` options: key -> (flag, kind). Lists repeat the flag once per item.
FLAGS: dict[str, tuple[str, str]] = {
    "capabilities": ("--cap-add", "list"),
    "security_opts": ("--security-opt", "list"),
    "cgroupns_mode": ("--cgroupns", "value"),
    "volumes": ("--volume", "list"),
    "tmpfs": ("--tmpfs", "list"),
    "stop_signal": ("--stop-signal", "value"),
    "privileged": ("--privileged", "switch"),
    "env": ("--env", "mapping"),
}
# Keys handled apart (image, command) or that only concern Molecule: where the image comes from (it is always
# built locally, see scripts/build-test-image.sh), the instance's name and its inventory groups.
POSITIONAL = ("image", "command")
MOLECULE_ONLY = ("name", "groups", "children", "pre_build_image", "pull")


def platform(config: Path = CONFIG, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The first platform of the Molecule config, with environment variables interpolated as Molecule does."""
    text = Interpolator(TemplateWithDefaults, dict(os.environ if env is None else env)).interpolate(
        config.read_text(encoding="utf-8")
    )
    platforms = (yaml.safe_load(text) or {}).get("platforms") or []
    if not platforms:
        raise ValueError(f"{config}: no platforms entry")
    return platforms[0]


def image(entry: Mapping[str, Any] | None = None) -> str:
    """The test-host image reference (PYFLEET_TEST_IMAGE overrides its repository, as in build-test-image.sh)."""
    return str((platform() if entry is None else entry)["image"])


def run_flags(entry: Mapping[str, Any] | None = None) -> list[str]:
    """The `docker run` options of a platform entry: everything except name, image and command."""
    entry = platform() if entry is None else entry
    unknown = sorted(set(entry) - set(FLAGS) - set(POSITIONAL) - set(MOLECULE_ONLY) - {"hostname"})
    if unknown:
        raise ValueError(f"platform keys with no docker run translation in {Path(__file__).name}: {unknown}")
    flags: list[str] = []
    for key, value in entry.items():
        if key not in FLAGS:
            continue
        flag, kind = FLAGS[key]
        if kind == "list":
            for item in value:
                flags += [flag, str(item)]
        elif kind == "mapping":
            for name, item in value.items():
                flags += [flag, f"{name}={item}"]
        elif kind == "switch":
            flags += [flag] if value else []
        else:
            flags += [flag, str(value)]
    return flags


def run_argv(name: str, entry: Mapping[str, Any] | None = None) -> list[str]:
    """`docker run -d` of a test host called `name` (also its hostname), exactly as Molecule would start it."""
    entry = platform() if entry is None else entry
    command = shlex.split(str(entry["command"])) if entry.get("command") else []
    hostname = str(entry.get("hostname") or name)
    return ["docker", "run", "-d", "--name", name, "--hostname", hostname, *run_flags(entry), image(entry),
            *command]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="container name (and hostname)")
    parser.add_argument("-0", "--null", action="store_true", help="separate words with NUL instead of newline")
    args = parser.parse_args(argv)
    words = run_argv(args.name)
    sep = "\0" if args.null else "\n"
    if any(sep in word for word in words):
        parser.error(f"a docker run word contains the separator {sep!r}; use the other one")
    sys.stdout.write(sep.join(words) + sep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
