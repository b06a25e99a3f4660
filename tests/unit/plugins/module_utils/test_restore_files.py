"""File data (issue 16): data paths archived one by one with a tree checksum, restored by a staged copy swapped in
whole; config/code paths archived for reference only; old sets without data entries restore nothing, and say so."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from ansible_collections.pyfleet.server.plugins.module_utils import restore as r

NOW = dt.datetime(2025, 1, 24, 12, 0, 0, tzinfo=dt.UTC)


def no_commands(argv, env=None):
    raise AssertionError(f"a files restore runs no command: {argv}")


def write_data(data: Path) -> None:
    (data / "uploads" / "pkg").mkdir(parents=True)
    (data / "uploads" / "pkg" / "pkg-1.0.tar.gz").write_bytes(b"release one" * 100)
    (data / "keep.txt").write_text("keep me\n")
    (data / "private.txt").write_text("secret-ish\n")
    os.chmod(data / "private.txt", 0o600)
    os.chmod(data / "uploads", 0o2750)
    os.symlink("uploads/pkg", data / "latest")
    os.link(data / "keep.txt", data / "keep-hardlink.txt")
    os.chmod(data, 0o750)


def take_set(tmp_path: Path, data_paths: list[str], config_paths: list[str] | None = None, clock=NOW) -> str:
    config = {"app": "fleetdemo", "root": str(tmp_path / "backups"), "host": "h1",
              "files": {"paths": config_paths or [], "data_paths": data_paths}}
    return b.BackupJob(config, runner=None, clock=lambda: clock, sleep=lambda s: None).run(["files"])["path"]


def restorer(tmp_path: Path, check_mode: bool = False, **extra) -> r.Restorer:
    params = {"app": "fleetdemo", "root": str(tmp_path / "backups"), "state_dir": str(tmp_path / "state"), **extra}
    return r.Restorer(r.RestoreOptions.from_params(params), no_commands, check_mode=check_mode,
                      clock=lambda: NOW, sleep=lambda s: None)


def listing(path: Path) -> dict[str, tuple]:
    """What a restore must bring back: every entry's type, mode, owner, content or link target."""
    out = {}
    for base, dirs, names in os.walk(path):
        for name in [*dirs, *names]:
            full = Path(base) / name
            st = full.lstat()
            content = os.readlink(full) if full.is_symlink() else full.read_bytes() if full.is_file() else None
            out[str(full.relative_to(path))] = (oct(st.st_mode), st.st_uid, st.st_gid, content)
    st = path.lstat()
    out["."] = (oct(st.st_mode), st.st_uid, st.st_gid, None)
    return out


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "srv" / "shared"
    path.mkdir(parents=True)
    write_data(path)
    return path


def test_data_paths_are_archived_one_by_one_with_what_a_restore_needs(tmp_path, data):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "app.env").write_text("SECRET_KEY=x\n")
    set_path = take_set(tmp_path, [str(data)], [str(tmp_path / "etc")])
    info = b.check_set(set_path, app="fleetdemo")
    assert info.good, info.problems
    files = info.manifest["components"]["files"]
    assert files["file"] == "files/files.tar.gz"  # config/code: for reference
    [entry] = files["data"]
    assert entry["path"] == str(data) and entry["data"] is True
    assert entry["file"].startswith("files/data-1-") and entry["file"] in info.manifest["files"]
    assert entry["mode"] == "0750" and entry["uid"] == os.getuid()
    assert entry["sha256"] == info.manifest["files"][entry["file"]]["sha256"]
    assert entry["tree_sha256"] == b.dir_tree(str(data))["tree_sha256"] == b.archive_tree(
        os.path.join(set_path, entry["file"]))["tree_sha256"]
    assert entry["entries"] == 8  # . uploads uploads/pkg the release keep.txt private.txt latest keep-hardlink.txt
    # A data archive missing from the manifest's file list is a damaged set.
    manifest = json.loads(Path(set_path, "manifest.json").read_text())
    del manifest["files"][entry["file"]]
    Path(set_path, "manifest.json").write_text(json.dumps(manifest))
    assert any(entry["file"] in p for p in b.check_set(set_path).problems)


def test_tree_checksum_sees_content_modes_links_but_not_times(tmp_path, data):
    first = b.dir_tree(str(data))["tree_sha256"]
    os.utime(data / "keep.txt", (0, 0))
    assert b.dir_tree(str(data))["tree_sha256"] == first
    for change in (lambda: os.chmod(data / "keep.txt", 0o604),
                   lambda: (data / "keep.txt").write_text("keep mE\n"),
                   lambda: (os.unlink(data / "latest"), os.symlink("uploads", data / "latest")),
                   (data / "stray").mkdir):
        change()
        assert b.dir_tree(str(data))["tree_sha256"] != first
        first = b.dir_tree(str(data))["tree_sha256"]


def test_restore_brings_back_exactly_the_set_and_removes_a_stray_file(tmp_path, data):
    expected = listing(data)
    set_id = os.path.basename(take_set(tmp_path, [str(data)]))
    (data / "keep.txt").unlink()  # deleted (its hard link stays)
    (data / "private.txt").write_text("modified\n")
    os.chmod(data / "uploads", 0o755)
    (data / "uploads" / "stray.bin").write_bytes(b"added after the backup")
    key = f"files:{data}"

    plan = restorer(tmp_path, check_mode=True).execute()
    assert plan["changed"] and plan["restored"] == [key]
    assert plan["msg"] == f"would restore {key} from {set_id}"
    assert (data / "uploads" / "stray.bin").exists()  # check mode changed nothing

    result = restorer(tmp_path).execute()
    assert result["changed"] and result["restored"] == [key]
    assert listing(data) == expected
    assert not (data / "uploads" / "stray.bin").exists()
    assert (data / "keep.txt").stat().st_ino == (data / "keep-hardlink.txt").stat().st_ino
    # The previous directory is kept beside it, whole; no staging directory is left.
    previous = Path(result["details"][key]["previous"])
    assert previous.parent == data.parent and previous.name == f".shared.pre-{b.new_set_id(NOW).lower()}"
    assert (previous / "uploads" / "stray.bin").read_bytes() == b"added after the backup"
    assert not (data.parent / ".shared.pyfleet-restore").exists()

    again = restorer(tmp_path, check_mode=True).execute()
    assert not again["changed"] and again["unchanged"] == [key]
    assert again["msg"] == f"{key} already restored from {set_id}; nothing to do"


def test_unchanged_live_data_is_predicted_unchanged_without_any_marker(tmp_path, data):
    take_set(tmp_path, [str(data)])
    plan = restorer(tmp_path, check_mode=True).execute()
    assert not plan["changed"] and plan["unchanged"] == [f"files:{data}"]


def test_a_write_after_the_restore_restores_again_unless_once(tmp_path, data):
    take_set(tmp_path, [str(data)])
    restorer(tmp_path, force=True).execute()
    (data / "new-upload.txt").write_text("written after the restore\n")
    assert restorer(tmp_path, check_mode=True).execute()["changed"]
    assert not restorer(tmp_path, check_mode=True, once=True).execute()["changed"]
    assert restorer(tmp_path, check_mode=True, once=True, force=True).execute()["changed"]


def test_keep_previous_0_removes_only_this_runs_copy(tmp_path, data):
    take_set(tmp_path, [str(data)])
    earlier = data.parent / ".shared.pre-20240101t000000z"
    earlier.mkdir()
    (data / "stray").write_text("x")
    warnings = []
    opts = r.RestoreOptions.from_params({"app": "fleetdemo", "root": str(tmp_path / "backups"),
                                         "state_dir": str(tmp_path / "state"), "keep_previous": 0})
    result = r.Restorer(opts, no_commands, warn=warnings.append, clock=lambda: NOW).execute()
    detail = result["details"][f"files:{data}"]
    assert detail["previous"] is None and len(detail["dropped"]) == 1
    assert sorted(p.name for p in data.parent.iterdir()) == [".shared.pre-20240101t000000z", "shared"]
    assert detail["kept_earlier"] == [str(earlier)]
    assert any(str(earlier) in w for w in warnings)


def test_a_missing_data_directory_is_created_from_the_set(tmp_path, data):
    expected = listing(data)
    take_set(tmp_path, [str(data)])
    shutil.rmtree(data)
    result = restorer(tmp_path).execute()
    assert listing(data) == expected and result["details"][f"files:{data}"]["previous"] is None


def test_an_old_set_without_data_entries_restores_nothing_and_says_so(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "app.env").write_text("SECRET_KEY=x\n")
    set_path = take_set(tmp_path, [], [str(tmp_path / "etc")])
    manifest = json.loads(Path(set_path, "manifest.json").read_text())
    del manifest["components"]["files"]["data"]  # as written before data paths existed
    Path(set_path, "manifest.json").write_text(json.dumps(manifest))
    for extra in ({}, {"components": ["files"]}):
        result = restorer(tmp_path, **extra).execute()
        assert not result["changed"] and result["restored"] == []
        assert result["msg"].startswith(f"nothing to restore from {os.path.basename(set_path)}; files: backup set ")
        assert "records no data paths" in result["msg"] and "nothing of its files is restored" in result["msg"]
        assert "files/files.tar.gz, configuration and code, kept for reference" in result["msg"]
    assert (tmp_path / "etc" / "app.env").read_text() == "SECRET_KEY=x\n"


def test_an_archive_that_does_not_hold_the_recorded_tree_is_refused_before_anything(tmp_path, data):
    set_path = take_set(tmp_path, [str(data)])
    manifest = json.loads(Path(set_path, "manifest.json").read_text())
    entry = manifest["components"]["files"]["data"][0]
    # Another archive with a manifest that agrees on its size and sha256 (only the tree checksum can tell).
    (data / "keep.txt").write_text("tampered\n")
    archive = Path(set_path, entry["file"])
    archive.unlink()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(str(data), arcname=".")
    manifest["files"].update(b.file_records(set_path, entry["file"]))
    Path(set_path, "manifest.json").write_text(json.dumps(manifest))
    (data / "stray").write_text("x")
    before = listing(data)
    for check_mode in (True, False):
        with pytest.raises(r.RestoreError, match=r"does not hold what the manifest recorded for .*; nothing was"):
            restorer(tmp_path, check_mode=check_mode).execute()
    assert listing(data) == before


def test_a_staged_copy_that_differs_leaves_the_live_directory_alone(tmp_path, data, monkeypatch):
    take_set(tmp_path, [str(data)])
    (data / "stray").write_text("x")
    before = listing(data)
    real = b.dir_tree
    monkeypatch.setattr(r.backup_lib, "dir_tree", lambda p: {**real(p), "tree_sha256": "0" * 64}
                        if p.endswith(".pyfleet-restore") else real(p))
    with pytest.raises(r.RestoreError, match=r"could not stage .*the staged copy differs from the set.*the live "):
        restorer(tmp_path).execute()
    assert listing(data) == before
    assert not (data.parent / ".shared.pyfleet-restore").exists()
    assert [p.name for p in data.parent.iterdir()] == ["shared"]


def test_a_symlink_or_a_mount_point_in_place_of_the_data_path_is_refused(tmp_path, data):
    take_set(tmp_path, [str(data)])
    moved = tmp_path / "elsewhere"
    data.rename(moved)
    data.symlink_to(moved)
    with pytest.raises(r.RestoreError, match=r"files: .* is a symlink here; a restore replaces directories only"):
        restorer(tmp_path, force=True).execute()
    assert data.is_symlink()


@pytest.mark.parametrize(("paths", "problem"), [
    (["srv/data"], "data path 'srv/data' is not absolute"),
    (["/"], "data path '/' would replace the whole system"),
    (["/srv/a", "/srv/a/b"], "data path /srv/a overlaps data path /srv/a/b"),
    (["/var/backups/pyfleet/x"], "data path /var/backups/pyfleet/x overlaps the backup root /var/backups/pyfleet"),
    (["/var"], "data path /var overlaps the backup root /var/backups/pyfleet"),
    (["/etc/app"], "data path /etc/app overlaps the config/code path /etc/app"),
])
def test_bad_data_paths_are_named(paths, problem):
    assert problem in b.data_path_problems(paths, "/var/backups/pyfleet", ["/etc/app"])


def test_the_backup_refuses_bad_data_paths_before_writing_a_set(tmp_path, data):
    link = tmp_path / "link"
    link.symlink_to(data)
    with pytest.raises(b.BackupError, match=r"data path .*/link is a symlink .*\(backup_data_paths\)"):
        take_set(tmp_path, [str(link)])
    with pytest.raises(b.BackupError, match=r"overlaps the backup root"):
        take_set(tmp_path, [str(tmp_path / "backups")])
    assert [n for n in os.listdir(tmp_path / "backups" / "fleetdemo") if not n.startswith(".")] == []


def test_archive_members_must_stay_inside(tmp_path):
    for members in ([("../evil", "f")], [("/abs", "f")], [("link", "l"), ("link/passwd", "f")]):
        path = tmp_path / "bad.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name, kind in members:
                info = tarfile.TarInfo(name)
                if kind == "l":
                    info.type, info.linkname = tarfile.SYMTYPE, "/etc"
                tar.addfile(info, None if kind == "l" else __import__("io").BytesIO(b""))
        with pytest.raises(b.BackupError, match="outside the directory|below a symlink"):
            b.archive_tree(str(path))
