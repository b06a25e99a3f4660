"""Check mode tells the truth on a converged host: `site.yml --check --diff` predicts no change (issue 16.3).

Runs first (pytest's file order), while the live release is still the inventory's.
"""

from __future__ import annotations

from helpers import APP, changed_tasks, molecule_hosts, recap, run_playbook

testinfra_hosts = molecule_hosts("pyfleet")

WRITABLE = f"/var/lib/{APP}/instance-id"


def test_check_mode_on_a_converged_host_predicts_no_change(host):
    # The app's own write to a writable app_files entry is its data, not drift: check mode must not predict undoing it.
    host.check_output(f"runuser -u {APP} -- sh -c 'echo written-by-the-app >> {WRITABLE}'")
    result = run_playbook("playbooks/site.yml", "--check", "--diff", timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    counts = recap(result.stdout)
    assert counts.get("changed") == 0, f"check mode predicts changes: {changed_tasks(result.stdout)}\n{out[-4000:]}"
    assert f"{APP} on pyfleet-default: live release 1.0.0; this run deploys 1.0.0" in result.stdout
    assert "written-by-the-app" in host.file(WRITABLE).content_string
