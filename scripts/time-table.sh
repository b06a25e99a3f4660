#!/usr/bin/env bash
# time-table.sh [FILE [STARTED]]: the failure lines scripts/timed.sh kept for the steps that failed (failures.txt
# next to FILE), then the table of steps it recorded, their sum, and the wall-clock time since the epoch second in
# the file STARTED (the sum is larger when steps ran side by side: the Molecule lanes).
set -euo pipefail
log=${1:-build/times.tsv}
[ -s "$log" ] || { echo "time table: nothing recorded in $log"; exit 0; }
failures=$(dirname "$log")/failures.txt
if [ -s "$failures" ]; then
  echo "== why the failed steps failed (from build/logs/)"
  cat "$failures"
fi
echo "== time table (seconds, 2 cores: $(nproc) here)"
awk -F'\t' '{ printf "%-34s %6d  %s\n", $1, $2, $3; total += $2 }
  END { printf "%-34s %6d  (%d min %02d s)\n", "sum of the steps", total, total / 60, total % 60 }' "$log"
started=${2:-}
if [ -n "$started" ] && [ -s "$started" ]; then
  wall=$(( $(date +%s) - $(cat "$started") ))
  printf '%-34s %6d  (%d min %02d s)\n' "wall clock" "$wall" $(( wall / 60 )) $(( wall % 60 ))
fi
