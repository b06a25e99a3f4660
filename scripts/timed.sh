#!/usr/bin/env bash
# timed.sh NAME CMD...: runs CMD and appends "NAME<TAB>seconds<TAB>ok|FAILED<TAB>CPU seconds" to $PYFLEET_TIMES
# (default build/times.tsv), so `make test` can print where its time went, failed steps included. The CPU is what
# CMD and every process it waited for used on this machine (ansible-playbook, pytest, lint tools), not what ran
# inside the test hosts: their containers are not our children (time-table.sh prints the hosts' total).
# CMD's output also goes to build/logs/NAME.log; when CMD fails, its failure lines (Ansible's `fatal:`/`failed:`
# and the message after them, pytest's FAILED/ERROR ids, Python exceptions) are appended to build/failures.txt,
# which time-table.sh prints above the table: the end of a CI log then says why, not only that, a step failed.
# timed.sh --log-path NAME: prints where NAME's output goes (the one home of that rule).
set -uo pipefail
times=${PYFLEET_TIMES:-build/times.tsv}
log_path() { echo "$(dirname "$times")/logs/${1//[^A-Za-z0-9_.-]/_}.log"; }
if [ "$1" = --log-path ]; then log_path "$2"; exit 0; fi
name=$1; shift
log=$(log_path "$name")
mkdir -p "$(dirname "$log")"
start=$(date +%s)
"$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# `times`' second line: the user and system CPU of this shell's waited-for children, e.g. "1m2.500s 0m3.250s".
# (Not in a $(...): a subshell's `times` would count its own children, none.)
times_out=$(mktemp)
times >"$times_out"
cpu=$(tail -1 "$times_out" | awk '{ for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } printf "%.0f", s }')
rm -f "$times_out"
printf '%s\t%s\t%s\t%s\n' "$name" "$(( $(date +%s) - start ))" "$([ "$rc" = 0 ] && echo ok || echo FAILED)" "$cpu" \
  >>"$times"
if [ "$rc" != 0 ]; then
  {
    echo "-- $name (exit $rc; whole output: $log)"
    # A fatal task line and the few lines of message that follow it; pytest's short summary lines.
    # (Colours and Molecule's box prefix "  │ " off first.)
    sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^ *│ //' "$log" \
      | grep -aE -B2 -A6 '(fatal|failed): \[|^(FAILED|ERROR) [^ ]+::|^E +[A-Za-z]*(Error|assert)|^[A-Za-z.]*(Error|Exception): ' \
      | grep -av 'RETRYING' | cut -c1-240 | tail -24
  } >>"$(dirname "$times")/failures.txt"
fi
exit "$rc"
