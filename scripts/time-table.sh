#!/usr/bin/env bash
# time-table.sh [FILE]: the table of steps recorded by scripts/timed.sh, with the total.
set -euo pipefail
log=${1:-build/times.tsv}
[ -s "$log" ] || { echo "time table: nothing recorded in $log"; exit 0; }
echo "== time table (seconds, 2 cores: $(nproc) here)"
awk -F'\t' '{ printf "%-34s %6d  %s\n", $1, $2, $3; total += $2 }
  END { printf "%-34s %6d  (%d min %02d s)\n", "total", total, total / 60, total % 60 }' "$log"
