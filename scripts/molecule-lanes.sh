#!/usr/bin/env bash
# molecule-lanes.sh SCENARIO...: `molecule test` of each scenario, in parallel lanes.
#
# The scenarios leave a core idle much of the time (a host booting, apt, a health gate waiting, a deploy's drain), so
# `make test` runs two lanes side by side; within a lane scenarios run one after another. MOLECULE_LANES names the
# lanes: lanes separated by spaces, a lane's scenarios by commas (default below: the 4-host scenario and the short
# one in one lane, the two single-server scenarios in the other, which balances the lanes' time). A scenario given
# but named in no lane runs at the end of the first lane; tests/unit/test_molecule_lanes.py keeps every scenario
# named. MOLECULE_LANES=serial runs everything in one lane.
#
# The first lane prints as it runs; the others write to build/logs/ (scripts/timed.sh) and are printed whole after
# every lane has ended (not interleaved), so the log holds every line of every scenario. Every scenario runs even after one failed; exits 1 if any
# failed, naming them.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
LANES=${MOLECULE_LANES:-fleet,acme default,backup-restore}
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
[ ${#lanes[@]} -gt 0 ] || { echo "molecule-lanes: no scenario to run"; exit 0; }

status_dir=$(mktemp -d)
trap 'rm -rf "$status_dir"' EXIT

run_lane() {  # run_lane NUMBER QUIET SCENARIO...
  local number=$1 quiet=$2 s rc
  shift 2
  for s in "$@"; do
    echo "== molecule test -s $s (lane $number)"
    if [ "$quiet" = 1 ]; then
      scripts/timed.sh "molecule:$s" molecule test -s "$s" >/dev/null 2>&1
    else
      scripts/timed.sh "molecule:$s" molecule test -s "$s"
    fi
    rc=$?
    echo "$rc" >"$status_dir/$s"
    [ "$quiet" = 1 ] && echo "== molecule test -s $s (lane $number) ended: exit $rc (output below, after every lane)"
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
    echo "== output of molecule test -s $s (lane $((i + 1)), exit $(cat "$status_dir/$s" 2>/dev/null || echo '?'))"
    cat "build/logs/molecule_$s.log"
  done
done

failed=""
for s in "$@"; do
  [ "$(cat "$status_dir/$s" 2>/dev/null || echo 1)" = 0 ] || failed+=" $s"
done
if [ -n "$failed" ]; then
  echo "molecule: failed:$failed"
  exit 1
fi
echo "molecule: every scenario passed"
