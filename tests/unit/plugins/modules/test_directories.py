"""pyfleet.server.directories on a real file system: created, corrected, left alone, check mode, diff, bad paths."""

from __future__ import annotations

import getpass
import grp
import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.pyfleet.server.plugins.modules import directories

ME = getpass.getuser()
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def run(paths: list[dict], capsys, check: bool = False, diff: bool = True) -> tuple[int, dict]:
    args = {"paths": paths, "_ansible_check_mode": check, "_ansible_diff": diff}
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        directories.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def mode(path) -> str:
    return oct(stat.S_IMODE(os.lstat(path).st_mode))


def test_creates_missing_directories_and_their_parents_then_changes_nothing(tmp_path, capsys):
    tree = [{"path": str(tmp_path / "app"), "owner": ME, "group": MY_GROUP, "mode": "0755"},
            {"path": str(tmp_path / "app/shared/uploads"), "owner": ME, "mode": "0750"}]
    code, out = run(tree, capsys)
    assert code == 0 and out["changed"], out
    assert [p["created"] for p in out["paths"]] == [True, True]
    assert mode(tmp_path / "app") == "0o755"
    # The missing parent gets the entry's mode, as ansible.builtin.file gives it.
    assert mode(tmp_path / "app/shared") == "0o750" and mode(tmp_path / "app/shared/uploads") == "0o750"
    assert out["diff"][0]["before"]["state"] == "absent" and out["diff"][0]["after"]["state"] == "directory"
    code, out = run(tree, capsys)
    assert code == 0 and not out["changed"] and out["diff"] == [], out


def test_corrects_only_what_differs_and_reports_it_in_the_diff(tmp_path, capsys):
    (tmp_path / "a").mkdir(mode=0o700)
    (tmp_path / "b").mkdir()
    os.chmod(tmp_path / "b", 0o750)
    code, out = run([{"path": str(tmp_path / "a"), "mode": "0751"}, {"path": str(tmp_path / "b"), "mode": "0750"}],
                    capsys)
    assert code == 0 and out["changed"]
    assert [(p["created"], p["changed"]) for p in out["paths"]] == [(False, True), (False, False)]
    assert mode(tmp_path / "a") == "0o751"
    assert len(out["diff"]) == 1 and out["diff"][0]["before"]["mode"] == "0700", out["diff"]
    assert out["diff"][0]["after"]["mode"] == "0751"


def test_symbolic_modes_are_accepted(tmp_path, capsys):
    (tmp_path / "s").mkdir(mode=0o777)
    os.chmod(tmp_path / "s", 0o777)
    code, out = run([{"path": str(tmp_path / "s"), "mode": "u=rwx,g=rx,o="}], capsys)
    assert code == 0 and out["changed"] and mode(tmp_path / "s") == "0o750"


def test_check_mode_predicts_and_changes_nothing(tmp_path, capsys):
    (tmp_path / "a").mkdir(mode=0o700)
    os.chmod(tmp_path / "a", 0o700)
    tree = [{"path": str(tmp_path / "a"), "mode": "0755"}, {"path": str(tmp_path / "new/deeper"), "mode": "0755"}]
    code, out = run(tree, capsys, check=True)
    assert code == 0 and out["changed"]
    assert [(p["created"], p["changed"]) for p in out["paths"]] == [(False, True), (True, True)]
    assert mode(tmp_path / "a") == "0o700" and not (tmp_path / "new").exists()


def test_a_file_or_a_link_in_the_way_fails_naming_it(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, out = run([{"path": str(tmp_path / "file/sub")}], capsys)
    assert code == 1 and out["msg"] == f"paths: {tmp_path / 'file'} exists and is not a directory", out
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    code, out = run([{"path": str(tmp_path / "link"), "mode": "0700"}], capsys)
    assert code == 1 and "link exists and is not a directory" in out["msg"], out
    # A link above the entry is an ordinary way to a directory (/var/run -> /run): followed.
    code, out = run([{"path": str(tmp_path / "link/sub"), "mode": "0700"}], capsys)
    assert code == 0 and (tmp_path / "real/sub").is_dir()


def test_a_relative_path_is_refused(capsys):
    code, out = run([{"path": "relative/dir"}], capsys)
    assert code == 1 and out["msg"] == "paths: 'relative/dir' is not an absolute path", out


def test_an_unknown_owner_fails_without_creating_anything_else_later(tmp_path, capsys):
    code, out = run([{"path": str(tmp_path / "a"), "owner": "no-such-user-pyfleet"},
                     {"path": str(tmp_path / "b")}], capsys)
    assert code == 1 and "no-such-user-pyfleet" in out["msg"], out
    assert not (tmp_path / "b").exists()
