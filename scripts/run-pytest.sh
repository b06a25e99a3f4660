#!/usr/bin/env bash
# Runs pytest and refuses to pass silently when nothing was collected (pytest exit 5).
set -uo pipefail
"$(dirname "$0")/../.venv/bin/pytest" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run-pytest: no tests were collected in $* — failing on purpose (exit 5 must not pass)" >&2
  exit 5
fi
exit "$rc"
