import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))

# The order of the files, whatever their names: the kill-the-host test first (it rebuilds the app host; everything
# after runs on what the recovery built: archiving, keys, timers, a restore across its new timeline); then the
# pgBackRest, point-in-time and off-site tests, which count the repository's backups and copies; then the backup
# sets' tests, whose many runs would disturb those counts.
ORDER = ["test_kill_the_host.py", "test_pgbackrest.py", "test_pitr.py", "test_offsite.py", "test_backup_restore.py",
         "test_fetch_private.py", "test_file_data.py", "test_restore_safety.py"]


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: ORDER.index(item.path.name) if item.path.name in ORDER else len(ORDER))
