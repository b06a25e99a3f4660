"""scripts/lib/testhost_flags.py: the `docker run` of a test host carries every flag of the Molecule platform."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "lib"))
import testhost_flags  # noqa: E402  pylint: disable=wrong-import-position

# How each platform key reads on the docker CLI, written independently of the module under test.
DOCKER_FLAG = {
    "capabilities": "--cap-add",
    "security_opts": "--security-opt",
    "cgroupns_mode": "--cgroupns",
    "volumes": "--volume",
    "tmpfs": "--tmpfs",
    "stop_signal": "--stop-signal",
}
NOT_RUN_FLAGS = {"name", "groups", "pre_build_image", "pull", "image", "command"}


def pairs(words: list[str]) -> list[tuple[str, str]]:
    assert len(words) % 2 == 0, f"a flag without its value: {words}"
    return [(words[i], words[i + 1]) for i in range(0, len(words), 2)]


def expected_pairs(entry: dict) -> list[tuple[str, str]]:
    out = []
    for key, value in entry.items():
        if key in NOT_RUN_FLAGS:
            continue
        assert key in DOCKER_FLAG, f"platform key {key!r} has no expected docker flag in this test"
        for item in value if isinstance(value, list) else [value]:
            out.append((DOCKER_FLAG[key], str(item)))
    return out


@pytest.fixture
def entry(monkeypatch) -> dict:
    monkeypatch.delenv("PYFLEET_TEST_IMAGE", raising=False)
    return testhost_flags.platform()


def test_argv_carries_every_flag_of_the_platform_entry(entry):
    argv = testhost_flags.run_argv("pyfleet-x", entry)
    command = shlex.split(entry["command"])
    assert argv[:7] == ["docker", "run", "-d", "--name", "pyfleet-x", "--hostname", "pyfleet-x"]
    assert argv[len(argv) - len(command) - 1:] == [entry["image"], *command]
    flags = argv[7:len(argv) - len(command) - 1]
    assert sorted(pairs(flags)) == sorted(expected_pairs(entry))
    assert len(flags) == 2 * len(expected_pairs(entry))


def test_the_real_platform_has_the_systemd_essentials(entry):
    # Names only: the values live in .config/molecule/config.yml and nowhere else.
    for key in ("image", "command", "capabilities", "security_opts", "cgroupns_mode", "volumes", "tmpfs",
                "stop_signal"):
        assert entry.get(key), f"platform entry lost {key}"
    assert "privileged" not in entry  # does not work on these kernels (DESIGN.md)


def test_image_is_the_one_the_build_script_tags_and_follows_pyfleet_test_image():
    build = (REPO / "scripts" / "build-test-image.sh").read_text(encoding="utf-8")
    default = re.search(r"^IMAGE=\$\{PYFLEET_TEST_IMAGE:-([^}]+)\}$", build, re.MULTILINE).group(1)
    assert testhost_flags.platform(env={})["image"] == f"{default}:latest"
    assert testhost_flags.platform(env={"PYFLEET_TEST_IMAGE": "local/other"})["image"] == "local/other:latest"


def test_switch_and_mapping_keys_translate():
    entry = {"image": "img", "privileged": True, "env": {"container": "docker"}}
    assert testhost_flags.run_argv("h", entry)[7:] == ["--privileged", "--env", "container=docker", "img"]
    assert testhost_flags.run_flags({"image": "img", "privileged": False}) == []


def test_a_platform_key_without_translation_is_refused():
    with pytest.raises(ValueError, match="shm_size"):
        testhost_flags.run_flags({"image": "img", "shm_size": "1g"})


@pytest.mark.parametrize("null", [False, True])
def test_cli_prints_the_same_argv(entry, capsys, null):
    assert testhost_flags.main(["-0", "pyfleet-y"] if null else ["pyfleet-y"]) == 0
    out = capsys.readouterr().out
    sep = "\0" if null else "\n"
    assert out.endswith(sep)
    assert out[:-1].split(sep) == testhost_flags.run_argv("pyfleet-y", entry)
