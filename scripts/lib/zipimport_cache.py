"""Test hosts only (scripts/build-test-image.sh installs it): keeps the bytecode of the source files Python imports
from zip files, as Python keeps __pycache__ for files on disk.

Every Ansible task ships its module with ansible-core's module_utils in a zip (AnsiballZ), and Python compiles those
sources again at every task, since zipimport caches no bytecode: ~56 files, a third of the CPU a module run costs on
a host (docs/performance.md). On a test host every task of every scenario pays it, and `make test` is bound by CPU.
The code objects are the ones compile() would give (the same source, the same Python, the file name of this run
put back), so what the modules do is unchanged; only the compiling is skipped. Servers users run are not touched.

Cache: /var/cache/pyfleet-zipimport, one file per (Python version, path inside the zip, source), written atomically
by root (other users only read it). Any problem reading or writing it falls back to compiling.
"""

import marshal
import os
import sys
import zipimport

CACHE_DIR = "/var/cache/pyfleet-zipimport"
_compile_source = zipimport._compile_source  # noqa: SLF001 (zipimport's one compile step, Python 3.11)


def _with_filename(code, filename):
    """The code object, and every code object inside it, as compiled from ``filename``."""
    consts = tuple(_with_filename(c, filename) if isinstance(c, type(code)) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def cache_path(pathname: str, source: bytes) -> str:
    import hashlib  # noqa: PLC0415 (only when a zip import happens: every python3 start loads this module)

    inside = pathname.split(".zip" + os.sep, 1)[-1]  # the payload's temporary directory differs at every task
    key = hashlib.blake2b(digest_size=20)
    for part in (sys.version.encode(), inside.encode(), source):
        key.update(len(part).to_bytes(8, "little") + part)
    return os.path.join(CACHE_DIR, key.hexdigest())


def compile_source(pathname: str, source: bytes):
    path = cache_path(pathname, source)
    try:
        with open(path, "rb") as cached:
            return _with_filename(marshal.load(cached), pathname)
    except (OSError, EOFError, ValueError, TypeError):
        pass
    code = _compile_source(pathname, source)
    if os.access(CACHE_DIR, os.W_OK):  # root on a test host; others only read
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as out:
                marshal.dump(code, out)
            os.replace(tmp, path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return code


def install() -> None:
    if os.path.isdir(CACHE_DIR):
        zipimport._compile_source = compile_source  # noqa: SLF001


install()
