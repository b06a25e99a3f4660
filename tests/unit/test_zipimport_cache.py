"""scripts/lib/zipimport_cache.py, the test image's cache of the bytecode Python compiles for zip imports: a module
imported from a new zip (Ansible's payload lives in a new temporary directory at every task) runs from the cached
code object, with this run's file name; a changed source, another Python or a damaged cache file compiles again."""

from __future__ import annotations

import importlib
import sys
import zipfile
import zipimport
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "lib"))
import zipimport_cache  # noqa: E402

SOURCE = "def where():\n    return where.__code__.co_filename\n\n\nVALUE = 41 + 1\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    directory.mkdir()
    monkeypatch.setattr(zipimport_cache, "CACHE_DIR", str(directory))
    monkeypatch.setattr(zipimport, "_compile_source", zipimport_cache.compile_source)
    compiled: list[str] = []
    real = zipimport_cache._compile_source

    def counting(pathname, source):
        compiled.append(pathname)
        return real(pathname, source)

    monkeypatch.setattr(zipimport_cache, "_compile_source", counting)
    yield directory, compiled
    for name in [n for n in sys.modules if n.startswith("pyfleet_zc_")]:
        del sys.modules[name]


def payload(tmp_path: Path, run: str, source: str = SOURCE) -> Path:
    """A zip like an AnsiballZ payload: a new directory per run, the same path inside."""
    path = tmp_path / run / "ansible_stat_payload.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg_mod.py", source)
    return path


def load(path: Path, name: str):
    sys.path.insert(0, str(path))
    try:
        spec = zipimport.zipimporter(str(path)).find_spec("pkg_mod")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path))


def test_a_second_run_uses_the_cached_code_with_its_own_file_name(tmp_path, cache):
    directory, compiled = cache
    first = load(payload(tmp_path, "run1"), "pyfleet_zc_1")
    assert first.VALUE == 42 and len(compiled) == 1 and len(list(directory.iterdir())) == 1
    second_zip = payload(tmp_path, "run2")
    second = load(second_zip, "pyfleet_zc_2")
    assert second.VALUE == 42 and len(compiled) == 1, "compiled again instead of using the cache"
    assert second.where.__code__.co_filename == str(second_zip / "pkg_mod.py")


def test_a_changed_source_compiles_again(tmp_path, cache):
    _directory, compiled = cache
    load(payload(tmp_path, "run1"), "pyfleet_zc_1")
    changed = load(payload(tmp_path, "run2", SOURCE.replace("41", "40")), "pyfleet_zc_2")
    assert changed.VALUE == 41 and len(compiled) == 2


def test_another_python_does_not_share_the_entry(tmp_path, cache, monkeypatch):
    _directory, compiled = cache
    load(payload(tmp_path, "run1"), "pyfleet_zc_1")
    monkeypatch.setattr(zipimport_cache.sys, "version", "3.99.0 (another build)")
    load(payload(tmp_path, "run2"), "pyfleet_zc_2")
    assert len(compiled) == 2


def test_a_damaged_cache_file_compiles_again_and_is_replaced(tmp_path, cache):
    directory, compiled = cache
    load(payload(tmp_path, "run1"), "pyfleet_zc_1")
    (entry,) = directory.iterdir()
    entry.write_bytes(b"\x00not marshal")
    again = load(payload(tmp_path, "run2"), "pyfleet_zc_2")
    assert again.VALUE == 42 and len(compiled) == 2
    assert entry.read_bytes() != b"\x00not marshal"
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_without_the_cache_directory_nothing_is_patched(tmp_path, monkeypatch):
    monkeypatch.setattr(zipimport_cache, "CACHE_DIR", str(tmp_path / "absent"))
    monkeypatch.setattr(zipimport, "_compile_source", "untouched")
    zipimport_cache.install()
    assert zipimport._compile_source == "untouched"
