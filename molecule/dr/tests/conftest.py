import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))


def pytest_collection_modifyitems(items):
    """test_kill_the_host.py runs first, whatever the file order: the pgBackRest and point-in-time restore tests then
    run on the host the recovery rebuilt (its archiving, keys, timers and a restore across its new timeline)."""
    items.sort(key=lambda item: item.path.name != "test_kill_the_host.py")
