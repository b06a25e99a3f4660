#!/usr/bin/env bash
# molecule-lanes.sh STEP...: each step in parallel lanes; a step is a Molecule scenario (`molecule test -s STEP`),
# `integration` (the integration suite, which needs the same image and wheelhouse), `lint` or `unit` (`make lint` /
# `make unit` without setup; their own steps are timed one by one).
#
# The scenarios leave a core idle much of the time (a host booting, apt, a health gate waiting, a deploy's drain), so
# `make test` runs four lanes side by side; within a lane steps run one after another. MOLECULE_LANES names the
# lanes: lanes separated by spaces, a lane's steps by commas. The default below balances the last CI-equivalent run
# with times per step (2 cores, every scenario over SSH: fleet 1571 s, default 1689 s, examples 739 s, the integration
# suite 328 s, lint ~270 s, unit ~320 s, acme 146 s) with dr, which took in backup-restore's tests, and default, which
# took its disaster recovery from a set (~530 s): fleet + acme + unit; default; dr; examples + the integration suite
# + lint. The run is bound by CPU (the time table prints how busy the cores were): lanes only fill idle time; they do
# not cut work. A step
# given but named in no lane runs at the end of the first lane;
# tests/unit/test_molecule_lanes.py keeps every scenario named. MOLECULE_LANES=serial runs everything in one lane.
#
# The first lane prints as it runs; the others write to build/logs/ (scripts/timed.sh) and are printed whole after
# every lane has ended (not interleaved), so the log holds every line of every step. Every step runs even after
# one failed; exits 1 if any failed, naming them.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
LANES=${MOLECULE_LANES:-fleet,acme,unit default dr examples,integration,lint}
[ "$LANES" = serial ] && LANES=$(IFS=,; echo "$*")
wanted=" $* "

lanes=()
named=" "
for lane in $LANES; do
  picked=""
  for s in ${lane//,/ }; do
    named+="$s "
    [[ $wanted == *" $s "* ]] && picked+="$s "
  done
  [ -n "$picked" ] && lanes+=("$picked")
done
for s in "$@"; do
  [[ $named == *" $s "* ]] && continue
  echo "molecule-lanes: $s is in no lane of MOLECULE_LANES; it runs at the end of the first lane" >&2
  if [ ${#lanes[@]} = 0 ]; then lanes=("$s "); else lanes[0]+="$s "; fi
done
[ ${#lanes[@]} -gt 0 ] || { echo "molecule-lanes: no step to run"; exit 0; }

status_dir=$(mktemp -d)
trap 'rm -rf "$status_dir"' EXIT

# The name a step is timed and logged under (scripts/timed.sh).
step_name() { case $1 in integration | lint | unit) echo "$1" ;; *) echo "molecule:$1" ;; esac; }

run_lane() {  # run_lane NUMBER QUIET STEP...
  local number=$1 quiet=$2 s rc step
  shift 2
  for s in "$@"; do
    if [ "$s" = lint ] || [ "$s" = unit ]; then
      # Not timed as a whole: lint's and unit's own steps are (the table's sum would count them twice).
      echo "== make $s (lane $number)"
      if [ "$quiet" = 1 ]; then
        make --no-print-directory -k NO_SETUP=1 "$s" >"$(scripts/timed.sh --log-path "$s")" 2>&1
      else
        make --no-print-directory -k NO_SETUP=1 "$s"
      fi
      rc=$?
      echo "$rc" >"$status_dir/$s"
      [ "$quiet" = 1 ] && echo "== make $s (lane $number) ended: exit $rc (output below, after every lane)"
      continue
    elif [ "$s" = integration ]; then
      step=(integration scripts/run-pytest.sh tests/integration)
    else
      step=("$(step_name "$s")" molecule test -s "$s")
    fi
    echo "== ${step[*]:1} (lane $number)"
    if [ "$quiet" = 1 ]; then
      scripts/timed.sh "${step[@]}" >/dev/null 2>&1
    else
      scripts/timed.sh "${step[@]}"
    fi
    rc=$?
    echo "$rc" >"$status_dir/$s"
    [ "$quiet" = 1 ] && echo "== ${step[*]:1} (lane $number) ended: exit $rc (output below, after every lane)"
  done
}

pids=()
for i in "${!lanes[@]}"; do
  # shellcheck disable=SC2086 # a lane is a space-separated list of scenario names
  if [ "$i" = 0 ]; then run_lane 1 0 ${lanes[0]} & else run_lane $((i + 1)) 1 ${lanes[$i]} & fi
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

for i in "${!lanes[@]}"; do
  [ "$i" = 0 ] && continue
  for s in ${lanes[$i]}; do
    echo "== output of $s (lane $((i + 1)), exit $(cat "$status_dir/$s" 2>/dev/null || echo '?'))"
    cat "$(scripts/timed.sh --log-path "$(step_name "$s")")"
  done
done

failed=""
for s in "$@"; do
  [ "$(cat "$status_dir/$s" 2>/dev/null || echo 1)" = 0 ] || failed+=" $s"
done
if [ -n "$failed" ]; then
  echo "lanes: failed:$failed"
  exit 1
fi
echo "lanes: every step passed"
