"""Unit tests of plugins/modules/restore.py: the thin main(), options and docs kept in step with module_utils."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.pyfleet.server.plugins.module_utils import backup as b
from ansible_collections.pyfleet.server.plugins.module_utils.restore import RestoreOptions
from ansible_collections.pyfleet.server.plugins.modules import backup_info, restore


def run_main(args: dict, capsys) -> tuple[int, dict]:
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        restore.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def test_every_option_has_a_typed_field_with_the_same_default():
    spec = restore.argument_spec()
    fields = {f.name: f for f in dataclasses.fields(RestoreOptions)}
    assert list(fields) == list(spec)
    for name, option in spec.items():
        if "default" in option:
            default = fields[name].default
            assert (list(default) if isinstance(default, tuple) else default) == option["default"], name
        else:
            assert option.get("required") or fields[name].default is None, name


def test_component_choices_follow_the_one_list_in_module_utils_backup():
    assert restore.argument_spec()["components"]["choices"] == list(b.RESTORABLE)
    # The docs cannot import it: they repeat it, and this keeps them equal.
    assert yaml.safe_load(restore.DOCUMENTATION)["options"]["components"]["choices"] == list(b.RESTORABLE)
    assert yaml.safe_load(backup_info.DOCUMENTATION)["options"]["components"]["choices"] == list(b.COMPONENTS)


def test_main_refuses_a_negative_keep_previous(capsys):
    code, out = run_main({"app": "fleetdemo", "keep_previous": -1}, capsys)
    assert code == 1
    assert out["msg"] == "keep_previous must be 0 or more, got -1"


def test_main_reports_a_missing_set_without_touching_anything(tmp_path, capsys):
    code, out = run_main({"app": "fleetdemo", "path": str(tmp_path / "nope"), "_ansible_check_mode": True}, capsys)
    assert code == 1
    assert out["msg"] == f"backup set {tmp_path / 'nope'} does not exist; nothing was changed"
    assert out["set"] is None and out["actions"] == []


def test_main_fails_naming_the_holder_of_the_apps_lock(tmp_path, capsys):
    (tmp_path / "fleetdemo").mkdir()
    with b.AppLock(str(tmp_path), "fleetdemo", 0, purpose="retention"):
        code, out = run_main({"app": "fleetdemo", "root": str(tmp_path), "lock_timeout": 0,
                              "state_dir": str(tmp_path / "state"), "_ansible_check_mode": True}, capsys)
    assert code == 1
    assert "is held by pid" in out["msg"] and ": retention since " in out["msg"]
    assert out["msg"].endswith("; nothing was changed")
    assert out["id"] is None and out["restored"] == []


@pytest.mark.parametrize(("args", "msg"), [
    ({"source": "pgbackrest"}, "source=pgbackrest needs stanza (the database host's pgbackrest_stanza); nothing was"
                               " changed"),
    ({"source": "pgbackrest", "stanza": "app1", "set": "20250124T031500Z", "components": ["redis"]},
     "set is not used with source=pgbackrest (it restores the whole cluster to target_time); components is not used"
     " with source=pgbackrest (it restores the whole cluster to target_time); nothing was changed"),
    ({"target_time": "2026-11-27T10:45:00Z"}, "target_time needs source=pgbackrest; nothing was changed"),
    ({"verify_query": "SELECT 1"}, "verify_query needs source=pgbackrest; nothing was changed"),
])
def test_options_of_the_other_source_are_refused(capsys, args, msg):
    code, out = run_main({"app": "fleetdemo", "_ansible_check_mode": True, **args}, capsys)
    assert code == 1
    assert out["msg"] == msg


def test_a_bad_target_time_fails_the_module_before_anything_runs(tmp_path, capsys):
    code, out = run_main({"app": "fleetdemo", "root": str(tmp_path), "source": "pgbackrest", "stanza": "app1",
                          "target_time": "2026-11-27 10:45", "_ansible_check_mode": True}, capsys)
    assert code == 1
    assert out["msg"].startswith("target_time '2026-11-27 10:45' has no time zone") and out["actions"] == []
