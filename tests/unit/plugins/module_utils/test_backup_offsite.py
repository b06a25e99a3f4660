"""The off-site step of the backup program (roles/backup/files/pyfleet_offsite.py): restic's command lines carry no
password, which sets are copied (never a forgotten one again), the copy is compared with the manifest, retention and
check failures fail the run, a password probe, and a fetch back that is verified before it gets its name."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[4] / "roles" / "backup" / "files"
sys.path.insert(0, str(FILES))
import pyfleet_backup as lib  # noqa: E402
import pyfleet_offsite as off  # noqa: E402

PASSWORD = "correct-horse-battery-staple-1234"


def config(tmp_path: Path, **offsite) -> dict:
    password_file = tmp_path / "etc" / "fleetdemo.restic-password"
    password_file.parent.mkdir(parents=True, exist_ok=True)
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    block = {
        "repository": "sftp:pyfleet-offsite:/repos/fleetdemo",
        "password_file": str(password_file),
        "ssh_config": "/etc/pyfleet/backup/offsite/ssh_config",
        "ssh_host": "pyfleet-offsite",
        "cache_dir": str(tmp_path / "cache"),
        "check_read_data_subset": "10%",
        "keep": {"last": 2, "hourly": 0, "daily": 7, "weekly": 0, "monthly": 0},
    }
    block.update(offsite)
    return {"app": "fleetdemo", "host": "app1", "root": str(tmp_path / "root"), "offsite": block}


def make_set(root: Path, set_id: str, content: bytes = b"dump") -> Path:
    path = root / "fleetdemo" / set_id
    (path / "postgresql").mkdir(parents=True)
    (path / "postgresql" / "fleetdemo.dump").write_bytes(content)
    manifest = {"format": lib.FORMAT, "id": set_id, "app": "fleetdemo", "created_at": lib.iso(lib.set_time(set_id)),
                "components": {"postgresql": {"databases": {}}},
                "files": {"postgresql/fleetdemo.dump": {"size": len(content),
                                                        "sha256": lib.sha256_file(path / "postgresql/fleetdemo.dump")}}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


class FakeRestic:
    """Answers restic's commands from a dict of snapshots; records every argv and environment."""

    def __init__(self, snapshots=None, fail=None, stored=None):
        self.snapshots = list(snapshots or [])
        self.fail = fail or {}
        self.calls: list[tuple[list[str], dict]] = []
        self.stored = stored or {}

    def run(self, argv, env=None, stdout=None):
        self.calls.append((argv, dict(env or {})))
        command = argv[3]
        if command in self.fail:
            return self.fail[command]
        if command == "snapshots":
            return 0, json.dumps(self.snapshots), ""
        if command == "backup":
            path = argv[-1]
            set_id = next(a.split(":", 1)[1] for a in argv if a.startswith("pyfleet-set:"))
            snap_id = f"{len(self.snapshots):08d}" + "f" * 56
            self.snapshots.append({"id": snap_id, "short_id": snap_id[:8], "time": set_id, "paths": [path],
                                   "tags": ["pyfleet-app:fleetdemo", f"pyfleet-set:{set_id}"]})
            self.stored[snap_id] = path
            summary = {"message_type": "summary", "snapshot_id": snap_id, "data_added": 10}
            return 0, json.dumps({"message_type": "status"}) + "\n" + json.dumps(summary) + "\n", ""
        if command == "ls":
            path = self.stored[argv[-1]]
            nodes = [{"struct_type": "snapshot"}]
            for dirpath, _dirs, files in os.walk(path):
                for name in files:
                    full = os.path.join(dirpath, name)
                    nodes.append({"type": "file", "path": full, "size": os.path.getsize(full)})
            return 0, "\n".join(json.dumps(n) for n in nodes), ""
        if command == "forget":
            keep = int(argv[argv.index("--keep-last") + 1])
            ordered = sorted(self.snapshots, key=lambda s: s["time"])
            removed, self.snapshots = ordered[:-keep], ordered[-keep:]
            return 0, json.dumps([{"keep": self.snapshots, "remove": removed}]), ""
        if command in ("check", "init", "cat", "unlock"):
            return 0, "no errors were found", ""
        if command == "restore":
            target = argv[argv.index("--target") + 1]
            source = argv[argv.index("--include") + 1]
            shutil.copytree(self.stored_source, os.path.join(target, source.lstrip("/")))
            return 0, "", ""
        raise AssertionError(argv)


def test_restic_gets_the_password_file_never_the_password(tmp_path):
    cfg = config(tmp_path)
    make_set(Path(cfg["root"]), "20261127T010000Z")
    fake = FakeRestic()
    off.Offsite(cfg, fake, lib).sync(lock_timeout=1)
    assert fake.calls
    for argv, env in fake.calls:
        assert PASSWORD not in " ".join(argv)
        assert PASSWORD not in json.dumps(env)
        assert env["RESTIC_PASSWORD_FILE"] == cfg["offsite"]["password_file"]
        sftp = "sftp.command=ssh -F /etc/pyfleet/backup/offsite/ssh_config pyfleet-offsite -s sftp"
        assert argv[:3] == ["restic", "-o", sftp]
    commands = [argv[3] for argv, _env in fake.calls]
    assert commands == ["unlock", "snapshots", "backup", "ls", "forget", "check"]
    backup = fake.calls[2][0]
    assert backup[backup.index("--time") + 1] == "2026-11-27 01:00:00"
    assert backup[backup.index("--host") + 1] == "app1"
    forget = fake.calls[4][0]
    assert forget[forget.index("--group-by") + 1] == "host"
    assert "--keep-daily" in forget and "--keep-hourly" not in forget
    assert fake.calls[5][0][-1] == "--read-data-subset=10%"


def test_an_empty_repository_gets_the_newest_set_then_every_newer_one(tmp_path):
    cfg = config(tmp_path, keep={"last": 5})
    root = Path(cfg["root"])
    for set_id in ("20261127T010000Z", "20261127T020000Z"):
        make_set(root, set_id)
    fake = FakeRestic()
    assert off.Offsite(cfg, fake, lib).sync(1)["copied"] == ["20261127T020000Z"]
    make_set(root, "20261127T030000Z")
    make_set(root, "20261127T040000Z")
    assert off.Offsite(cfg, fake, lib).sync(1)["copied"] == ["20261127T030000Z", "20261127T040000Z"]
    assert off.Offsite(cfg, fake, lib).sync(1)["copied"] == []


def test_a_copy_retention_forgot_is_not_copied_again(tmp_path):
    cfg = config(tmp_path)  # keep last 2
    root = Path(cfg["root"])
    fake = FakeRestic()
    for hour in range(1, 5):
        make_set(root, f"20261127T0{hour}0000Z")
        result = off.Offsite(cfg, fake, lib).sync(1)
        assert result["copied"] == [f"20261127T0{hour}0000Z"]
    assert sorted(off.snapshot_set_id(s) for s in fake.snapshots) == ["20261127T030000Z", "20261127T040000Z"]
    assert result["forgotten"] == ["20261127T020000Z"]
    assert len(list((root / "fleetdemo").iterdir())) >= 4  # the local sets are not the copy step's


def test_a_damaged_set_is_not_copied(tmp_path):
    cfg = config(tmp_path)
    path = make_set(Path(cfg["root"]), "20261127T010000Z")
    (path / "postgresql" / "fleetdemo.dump").write_bytes(b"DUMP")  # same size, other bytes
    fake = FakeRestic()
    assert off.Offsite(cfg, fake, lib).sync(1)["copied"] == []
    assert "backup" not in [argv[3] for argv, _env in fake.calls]


@pytest.mark.parametrize("command", ["backup", "forget", "check"])
def test_a_failed_step_raises_and_leaves_the_set(tmp_path, command):
    cfg = config(tmp_path)
    path = make_set(Path(cfg["root"]), "20261127T010000Z")
    before = sorted(p.name for p in path.rglob("*"))
    fake = FakeRestic(fail={command: (1, "", "Fatal: unable to open repository: ssh: connection refused")})
    with pytest.raises(off.OffsiteError, match="connection refused"):
        off.Offsite(cfg, fake, lib).sync(1)
    assert sorted(p.name for p in path.rglob("*")) == before
    assert lib.check_set(str(path), app="fleetdemo").good


def test_a_copy_that_differs_from_the_set_fails(tmp_path):
    cfg = config(tmp_path)
    make_set(Path(cfg["root"]), "20261127T010000Z")
    fake = FakeRestic()
    real_run = fake.run

    def short_listing(argv, env=None, stdout=None):
        rc, out, err = real_run(argv, env, stdout)
        if argv[3] == "ls":
            out = "\n".join(line for line in out.splitlines() if "fleetdemo.dump" not in line)
        return rc, out, err

    fake.run = short_listing
    with pytest.raises(off.OffsiteError, match="postgresql/fleetdemo.dump is missing"):
        off.Offsite(cfg, fake, lib).sync(1)


@pytest.mark.parametrize("change, message", [
    ({"keep": {"last": 0}}, "offsite.keep.last must be at least 1"),
    ({"keep": {"last": 1, "daily": -1}}, "offsite.keep.daily must be a count"),
    ({"keep": {"last": 1, "forever": 1}}, "offsite.keep.forever must be a count"),
    ({"check_read_data_subset": "lots"}, "check_read_data_subset must be n/t or a percentage"),
    ({"password_file": ""}, "offsite.password_file is missing"),
])
def test_bad_settings_are_refused(tmp_path, change, message):
    with pytest.raises(off.OffsiteError, match=message):
        off.settings(config(tmp_path, **change))


@pytest.mark.parametrize("subset", ["10%", "2.5%", "100%", "1/7", ""])
def test_good_subsets(tmp_path, subset):
    off.settings(config(tmp_path, check_read_data_subset=subset))


def test_init_creates_a_missing_repository_only(tmp_path):
    cfg = config(tmp_path)
    message = ("Fatal: unable to open config file: Stat: file does not exist\n"
               "Is there a repository at the following location?")
    missing = FakeRestic(fail={"cat": (1, "", message)})
    repository = cfg["offsite"]["repository"]
    assert off.Offsite(cfg, missing, lib).init(dry_run=True) == {"changed": True, "repository": repository}
    assert "init" not in [argv[3] for argv, _env in missing.calls]
    assert off.Offsite(cfg, missing, lib).init()["changed"] is True
    assert "init" in [argv[3] for argv, _env in missing.calls]
    assert off.Offsite(cfg, FakeRestic(), lib).init()["changed"] is False
    unreachable = FakeRestic(fail={"cat": (1, "", "ssh: connect to host 10.0.0.9 port 22: No route to host")})
    with pytest.raises(off.OffsiteError, match="No route to host"):
        off.Offsite(cfg, unreachable, lib).init()


@pytest.mark.parametrize("answer, opens", [
    ((0, "{}", ""), True),
    ((1, "", "Fatal: wrong password or no key found"), False),
    ((1, "", "Is there a repository at the following location?"), None),
    ((1, "", "ssh: Connection refused"), None),
])
def test_the_password_probe(tmp_path, answer, opens):
    cfg = config(tmp_path)
    seen = {}

    class Probe:
        def run(self, argv, env=None, stdout=None):
            path = env["RESTIC_PASSWORD_FILE"]
            assert path != cfg["offsite"]["password_file"]
            seen["mode"] = stat.S_IMODE(os.stat(path).st_mode)
            seen["content"] = Path(path).read_text()
            seen["path"] = path
            assert "the-candidate" not in " ".join(argv)
            return answer

    result = off.Offsite(cfg, Probe(), lib).probe_password("the-candidate-password\n")
    assert result["opens"] is opens
    assert seen["mode"] == 0o600 and seen["content"] == "the-candidate-password\n"
    assert not os.path.exists(seen["path"])


def copied_then_lost(tmp_path) -> tuple[dict, Path, Path, Path, FakeRestic]:
    """A set copied off the host, then moved away locally (the repository serves it from `saved`):
    (config, backup root, the set's path, saved, restic)."""
    cfg = config(tmp_path)
    root = Path(cfg["root"])
    original = make_set(root, "20261127T010000Z", b"the dump bytes")
    fake = FakeRestic()
    off.Offsite(cfg, fake, lib).sync(1)
    saved = tmp_path / "saved"
    shutil.move(str(original), str(saved))
    fake.stored_source = str(saved)
    return cfg, root, original, saved, fake


def test_restore_fetches_verifies_and_names_the_set(tmp_path):
    cfg, root, original, _saved, fake = copied_then_lost(tmp_path)
    assert off.Offsite(cfg, fake, lib).restore("latest", dry_run=True)["changed"] is True
    assert not original.exists()
    result = off.Offsite(cfg, fake, lib).restore("latest")
    assert result == {"id": "20261127T010000Z", "path": str(original), "snapshot": fake.snapshots[0]["id"],
                      "changed": True}
    assert (original / "postgresql/fleetdemo.dump").read_bytes() == b"the dump bytes"
    assert not [p for p in (root / "fleetdemo").iterdir() if p.name.startswith(".tmp-")]
    assert off.Offsite(cfg, fake, lib).restore("20261127T010000Z")["changed"] is False


def test_restore_refuses_a_damaged_copy_and_keeps_nothing(tmp_path):
    cfg, root, original, saved, fake = copied_then_lost(tmp_path)
    (saved / "postgresql/fleetdemo.dump").write_bytes(b"THE DUMP BYTES")
    with pytest.raises(off.OffsiteError, match="does not verify"):
        off.Offsite(cfg, fake, lib).restore("latest")
    assert not original.exists()
    assert not [p for p in (root / "fleetdemo").iterdir() if p.name.startswith(".tmp-")]


def test_restore_of_an_unknown_set(tmp_path):
    cfg = config(tmp_path)
    make_set(Path(cfg["root"]), "20261127T010000Z")
    fake = FakeRestic()
    off.Offsite(cfg, fake, lib).sync(1)
    with pytest.raises(off.OffsiteError, match="set 20201127T010000Z is not in the off-site repository"):
        off.Offsite(cfg, fake, lib).restore("20201127T010000Z")


def test_the_program_fails_a_run_whose_copy_failed_and_keeps_the_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYFLEET_LIB", str(FILES))
    spec = importlib.util.spec_from_file_location("pyfleet_backup_cli_offsite", FILES / "pyfleet_backup_cli.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cfg = config(tmp_path)
    path = make_set(Path(cfg["root"]), "20261127T010000Z")
    config_file = tmp_path / "fleetdemo.json"
    config_file.write_text(json.dumps(cfg))

    class Job:
        def __init__(self, *args, **kwargs):
            pass

        def run(self, components):
            return {"id": "20261127T010000Z", "path": str(path)}

    monkeypatch.setattr(cli.lib, "BackupJob", Job)
    monkeypatch.setattr(cli, "SubprocessRunner",
                        lambda: FakeRestic(fail={"backup": (1, "", "Fatal: ssh: Host key verification failed.")}))
    rc = cli.main(["--config", str(config_file), "--json"])
    assert rc == 1
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["failed"] is True
    assert "Host key verification failed" in out["msg"]
    assert "set 20261127T010000Z is kept on this host as written" in out["msg"]
    assert lib.check_set(str(path), app="fleetdemo").good
