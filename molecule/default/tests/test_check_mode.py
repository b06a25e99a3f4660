"""Check mode tells the truth on a converged host: `site.yml --check --diff` predicts no change (issue 16.3).

Also: no secret file's content in that run's output, even at -v, where every loop item is printed (issue 16.2).
Runs first (pytest's file order), while the live release is still the inventory's.
"""

from __future__ import annotations

from helpers import APP, changed_tasks, molecule_hosts, recap, run_playbook

testinfra_hosts = molecule_hosts("pyfleet")

WRITABLE = f"/var/lib/{APP}/instance-id"
SECRET = f"/etc/{APP}/htpasswd"


def test_check_mode_on_a_converged_host_predicts_no_change(host):
    # The app's own write to a writable app_files entry is its data, not drift: check mode must not predict undoing it.
    host.check_output(f"runuser -u {APP} -- sh -c 'echo written-by-the-app >> {WRITABLE}'")
    secret = host.file(SECRET).content_string.strip()
    result = run_playbook("playbooks/site.yml", "--check", "--diff", "-v", timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    counts = recap(result.stdout)
    assert counts.get("changed") == 0, f"check mode predicts changes: {changed_tasks(result.stdout)}\n{out[-4000:]}"
    assert f"{APP} on pyfleet-default: live release 1.0.0; this run deploys 1.0.0" in result.stdout
    assert "written-by-the-app" in host.file(WRITABLE).content_string
    for part in (secret, secret.split(":", 1)[1], secret.rsplit("$", 1)[1]):
        assert part not in out, f"the secret file's content ({part[:12]}...) appears in the run's output"
    assert "censored due to no_log" in out
