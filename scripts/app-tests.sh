#!/usr/bin/env bash
# Runs the reference app's own tests in a venv of its own (the app's pinned dependencies + test extras).
set -euo pipefail
cd "$(dirname "$0")/.."
app=examples/apps/fleetdemo
venv=build/appvenv
want=$(cat "$app/requirements.lock" "$app/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.inputs" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3.11 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$app/requirements.lock" -e "$app[test]"
  echo "$want" >"$venv/.inputs"
fi
cd "$app"
"../../../$venv/bin/python" -m pytest -q -p no:cacheprovider tests
rc=$?
[ "$rc" -ne 5 ] || { echo "app-tests: no tests collected" >&2; exit 5; }
exit "$rc"
