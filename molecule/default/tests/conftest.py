import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))


def pytest_collection_modifyitems(items):
    """test_disaster_recovery.py replaces the host with a blank one: it runs last, whatever the file order."""
    items.sort(key=lambda item: item.path.name == "test_disaster_recovery.py")
