"""app_files and app_directories (issue 16.2, issue 12 A.3): files, secret files and data directories of the app.

The scenario declares them in molecule/default/host_vars/pyfleet-default/app_files.yml.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers import APP, molecule_hosts, run_playbook

testinfra_hosts = molecule_hosts("pyfleet")

HOST_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "host_vars" / "pyfleet-default" / "app_files.yml").read_text())
PASSWORD = HOST_VARS["molecule_files_password"]
SECRET = f"/etc/{APP}/htpasswd"


def test_plain_file_rendered_root_owned_and_readable(host):
    f = host.file(f"/etc/{APP}/settings.ini")
    assert (f.user, f.group, f.mode) == ("root", APP, 0o644)
    assert "name = fleetdemo\nport = 8000\nuploads = /opt/fleetdemo/shared/uploads\n" in f.content_string
    readme = host.file(f"/opt/{APP}/shared/uploads/README")
    assert (readme.user, readme.group, readme.mode) == ("root", APP, 0o644)
    assert readme.content_string.startswith("Uploaded packages land here")


def test_secret_file_private_to_the_app(host):
    f = host.file(SECRET)
    assert (f.user, f.group, f.mode) == ("root", APP, 0o640)
    content = f.content_string
    assert content.startswith("operator:$6$pyfleetmolecule$"), content[:30]  # sha512-crypt made by passlib
    assert PASSWORD not in content
    assert host.check_output(f"runuser -u {APP} -- cat {SECRET}") == content.strip()
    assert host.run(f"runuser -u nobody -- cat {SECRET}").rc != 0


def test_directories_belong_to_the_app_which_can_write_there(host):
    for path in (f"/opt/{APP}/shared/uploads", f"/opt/{APP}/shared/uploads/incoming"):
        d = host.file(path)
        assert d.is_directory and (d.user, d.group, d.mode) == (APP, APP, 0o750), path
    probe = f"/opt/{APP}/shared/uploads/incoming/.probe"
    host.check_output(f"runuser -u {APP} -- touch {probe}")
    assert host.file(probe).user == APP
    host.check_output(f"rm -f {probe}")


def test_writable_file_is_the_apps(host):
    f = host.file(f"/var/lib/{APP}/instance-id")
    assert (f.user, f.group, f.mode) == (APP, APP, 0o640)
    assert f.content_string.startswith("written once by Ansible")


def test_bad_app_files_are_refused_before_anything_changes(host):
    bad = [
        {"dest": f"/etc/{APP}/../shadow", "content": "x"},
        {"dest": "/etc/other.conf", "content": "x"},
        {"dest": f"/etc/{APP}/empty.conf"},
        {"dest": f"/etc/{APP}/twice.conf", "content": "a"},
        {"dest": f"/etc/{APP}/twice.conf", "content": "b"},
    ]
    result = run_playbook("playbooks/site.yml", "-e", json.dumps({"app_files": bad}))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-4000:]
    for text in (
        f"app_files[0] ('/etc/{APP}/../shadow'): dest must be an absolute path without ., .. or empty parts",
        f"app_files[1] ('/etc/other.conf'): dest must lie inside /etc/{APP}, /var/lib/{APP}, /opt/{APP}/shared",
        f"app_files[2] ('/etc/{APP}/empty.conf'): needs exactly one of content, src (a file copied as is) or template",
        f"app_files[3] ('/etc/{APP}/twice.conf'): dest is listed more than once",
    ):
        assert text in out, f"expected {text!r}\n{out[-4000:]}"
    assert "changed=0" in result.stdout, result.stdout[-2000:]
    assert not host.file(f"/etc/{APP}/twice.conf").exists
