#!/usr/bin/env bash
# timed.sh NAME CMD...: runs CMD and appends "NAME<TAB>seconds<TAB>ok|FAILED" to $PYFLEET_TIMES
# (default build/times.tsv), so `make test` can print where its time went, failed steps included.
set -uo pipefail
name=$1; shift
log=${PYFLEET_TIMES:-build/times.tsv}
mkdir -p "$(dirname "$log")"
start=$(date +%s)
"$@"
rc=$?
printf '%s\t%s\t%s\n' "$name" "$(( $(date +%s) - start ))" "$([ "$rc" = 0 ] && echo ok || echo FAILED)" >>"$log"
exit "$rc"
