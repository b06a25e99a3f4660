#!/usr/bin/env bash
# Makes sure a Docker engine answers. When none does, starts Debian's dockerd in the background
# (log: /var/log/pyfleet-dockerd.log) and waits until it answers. Idempotent.
set -euo pipefail
DOCKER=${DOCKER:-docker}
if $DOCKER info >/dev/null 2>&1; then
  exit 0
fi
command -v dockerd >/dev/null || { echo "docker-engine: dockerd not found; run scripts/setup.sh first" >&2; exit 1; }
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl start docker || true
fi
if ! $DOCKER info >/dev/null 2>&1; then
  echo "docker-engine: starting dockerd in the background"
  # A session of its own: the engine outlives the shell (and the process group) that started it.
  setsid nohup dockerd >/var/log/pyfleet-dockerd.log 2>&1 < /dev/null &
fi
for _ in $(seq 1 60); do
  $DOCKER info >/dev/null 2>&1 && { echo "docker-engine: engine answers"; exit 0; }
  sleep 1
done
echo "docker-engine: dockerd did not answer within 60 s; see /var/log/pyfleet-dockerd.log" >&2
tail -n 20 /var/log/pyfleet-dockerd.log >&2 || true
exit 1
