#!/usr/bin/env bash
# The demo: start (or reuse) a local Debian 12 systemd container named pyfleet-demo, deploy the reference app
# with PostgreSQL and Redis on it through playbooks/site.yml, then report where it answers and its health.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
NAME=pyfleet-demo
IMAGE=${PYFLEET_TEST_IMAGE:-pyfleet/debian12-systemd}:latest

if [ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != "true" ]; then
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  echo "demo: starting test host $NAME"
  docker run -d --name "$NAME" --hostname "$NAME" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add NET_RAW \
    --security-opt seccomp=unconfined --cgroupns host \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
    --stop-signal SIGRTMIN+3 "$IMAGE" >/dev/null
  docker exec "$NAME" systemctl is-system-running --wait >/dev/null || true
fi

ansible-playbook -i inventories/demo playbooks/site.yml
ansible-playbook -i inventories/demo playbooks/healthcheck.yml \
  -e '{"pyfleet_health_endpoints": [{"name": "fleetdemo-ready", "url": "http://127.0.0.1:8000/readyz", "require": ["database", "redis"]}, {"name": "fleetdemo-detailed", "url": "http://127.0.0.1:8000/health/detailed", "retries": 10, "delay": 3}]}'

ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$NAME")
cat <<MSG

demo: fleetdemo 1.0.0 runs on $NAME ($ip), API on the host's loopback port 8000 (nginx comes in front of it).
  health:  docker exec $NAME curl -s http://127.0.0.1:8000/health/detailed
MSG
docker exec "$NAME" curl -s http://127.0.0.1:8000/health/detailed; echo
cat <<MSG
  data:    docker exec $NAME curl -s -X POST -H 'content-type: application/json' \\
             -d '{"name":"hello","value":"world"}' http://127.0.0.1:8000/api/items
  again:   make demo   (a second run changes nothing)      remove: make demo-destroy
MSG
