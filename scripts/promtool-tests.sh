#!/usr/bin/env bash
# Usage: scripts/promtool-tests.sh
#
# Unit tests of the monitoring role's alert rules and configurations, on the controller, without any daemon:
#   1. tests/promtool/render.yml (ansible-playbook, connection local) runs the role's argument spec and preflight
#      and renders its real templates with its defaults into build/promtool-tests/ (a small fleet from
#      tests/promtool/inventory.yml); its second play feeds the preflight bad input and checks each refusal names
#      the variable;
#   2. the rendered files pass the checks the role's tasks use as `validate:` (promtool check rules / check config,
#      amtool check-config, prometheus-blackbox-exporter --config.check);
#   3. `promtool test rules` runs tests/promtool/*.test.yml against the rendered rules (every alert fires in one
#      case and stays quiet in another; tests/unit/roles/test_monitoring_alerts.py checks that coverage).
# The binaries come from Debian 12's packages via scripts/promtool.sh (cached in build/promtool/).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
export PATH="$repo_root/.venv/bin:$PATH" ANSIBLE_CONFIG="$repo_root/ansible.cfg"

promtool=$(scripts/promtool.sh promtool)
amtool=$(scripts/promtool.sh amtool)
blackbox=$(scripts/promtool.sh prometheus-blackbox-exporter)

out="$repo_root/build/promtool-tests"
rm -rf "$out"
mkdir -p "$out/rules"

echo "== render the monitoring role's templates (argument spec, preflight, bad input)"
if ! ansible-playbook -i tests/promtool/inventory.yml tests/promtool/render.yml \
    -e "out_dir=$out" -e "_monitoring_rules_dir=$out/rules" >"$out/render.log" 2>&1; then
  cat "$out/render.log"
  echo "promtool-tests: rendering failed (log above, also in $out/render.log)" >&2
  exit 1
fi
grep -E '^(PLAY RECAP|[a-z0-9]+ +: ok=)' "$out/render.log"

echo "== check what the role's validate: steps check"
"$promtool" check rules "$out"/rules/*.rules.yml
"$promtool" check config "$out/prometheus.yml"
"$amtool" check-config "$out/alertmanager.yml"
"$blackbox" --config.check --config.file="$out/blackbox.yml" 2>&1 | grep -F 'Config file is ok' || {
  "$blackbox" --config.check --config.file="$out/blackbox.yml" >&2 || true
  echo "promtool-tests: blackbox.yml is not valid" >&2
  exit 1
}

echo "== promtool test rules"
shopt -s nullglob
tests=(tests/promtool/*.test.yml)
[[ ${#tests[@]} -gt 0 ]] || { echo "promtool-tests: no tests/promtool/*.test.yml" >&2; exit 1; }
cp "${tests[@]}" "$out/"
cd "$out"
"$promtool" test rules "${tests[@]##*/}"
