#!/usr/bin/env bash
# time-table.sh [FILE [STARTED [CPU [HOSTS_CPU]]]]: the failure lines scripts/timed.sh kept for the steps that failed
# (failures.txt next to FILE), then the table of steps it recorded (wall seconds, result, CPU seconds of the step's
# own processes on this machine), their sum, and the wall-clock time since the epoch second in the file STARTED (the
# sum is larger when steps ran side by side: the Molecule lanes). CPU holds the `cpu` line of /proc/stat at the
# start: how busy the machine's cores were since then (is the run bound by CPU, or waiting?). HOSTS_CPU holds the
# Docker cgroup's CPU counter (nanoseconds) at the start: what ran inside the test hosts, which no step's own CPU
# counts.
# time-table.sh --hosts-cpu: prints that counter now (nothing where the cgroup v1 cpuacct hierarchy is absent).
set -euo pipefail
# Every container's CPU is charged to this parent as well, and stays counted after the container is removed.
HOSTS_CPU_FILE=/sys/fs/cgroup/cpuacct/docker/cpuacct.usage
if [ "${1:-}" = --hosts-cpu ]; then cat "$HOSTS_CPU_FILE" 2>/dev/null || true; exit 0; fi
log=${1:-build/times.tsv}
[ -s "$log" ] || { echo "time table: nothing recorded in $log"; exit 0; }
failures=$(dirname "$log")/failures.txt
if [ -s "$failures" ]; then
  echo "== why the failed steps failed (from build/logs/)"
  cat "$failures"
fi
echo "== time table (seconds, 2 cores: $(nproc) here; CPU: the step's own processes, outside the test hosts)"
awk -F'\t' '{ printf "%-34s %6d  %-6s  CPU %6s\n", $1, $2, $3, $4 == "" ? "-" : $4; total += $2; cpu += $4 }
  END { printf "%-34s %6d  (%d min %02d s)  CPU %6d\n", "sum of the steps", total, total / 60, total % 60, cpu }' "$log"
started=${2:-}
if [ -n "$started" ] && [ -s "$started" ]; then
  wall=$(( $(date +%s) - $(cat "$started") ))
  printf '%-34s %6d  (%d min %02d s)\n' "wall clock" "$wall" $(( wall / 60 )) $(( wall % 60 ))
fi
cpu=${3:-}
if [ -n "$cpu" ] && [ -s "$cpu" ]; then
  # user nice system idle iowait irq softirq steal: the busy share of all cores, and where it went.
  { cat "$cpu"; grep '^cpu ' /proc/stat; } | awk -v cores="$(nproc)" '
    { for (i = 2; i <= 9; i++) v[NR, i] = $i }
    END {
      for (i = 2; i <= 9; i++) { d[i] = v[2, i] - v[1, i]; total += d[i] }
      if (total <= 0) exit
      busy = total - d[5] - d[6]
      printf "%-34s %5.1f %%  of %d cores (user %.0f %%, system %.0f %%, iowait %.0f %%, idle %.0f %%)\n", "CPU busy",
        100 * busy / total, cores, 100 * (d[2] + d[3]) / total, 100 * (d[4] + d[7] + d[8]) / total,
        100 * d[6] / total, 100 * d[5] / total }'
fi
hosts_started=${4:-}
if [ -n "$hosts_started" ] && [ -s "$hosts_started" ] && [ -r "$HOSTS_CPU_FILE" ]; then
  awk -v a="$(cat "$hosts_started")" -v b="$(cat "$HOSTS_CPU_FILE")" \
    'BEGIN { printf "%-34s %6d  CPU seconds inside the test hosts (their containers)\n", "test hosts", (b - a) / 1e9 }'
fi
