#!/usr/bin/env bash
# The demo: start (or reuse) a local Debian 12 systemd container named pyfleet-demo, deploy the reference app
# with PostgreSQL and Redis on it through playbooks/site.yml, then report where it answers and its health.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
NAME=pyfleet-demo

if [ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != "true" ]; then
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  echo "demo: starting test host $NAME"
  # The same docker run as Molecule's test hosts (flags from .config/molecule/config.yml).
  argv=$(python3 scripts/lib/testhost_flags.py "$NAME")
  mapfile -t run <<<"$argv"
  "${run[@]}" >/dev/null
  docker exec "$NAME" systemctl is-system-running --wait >/dev/null || true
fi

ansible-playbook -i inventories/demo playbooks/site.yml
ansible-playbook -i inventories/demo playbooks/healthcheck.yml \
  -e '{"pyfleet_health_endpoints": [{"name": "fleetdemo-ready", "url": "http://127.0.0.1:8000/readyz", "require": ["database", "redis"]}, {"name": "fleetdemo-detailed", "url": "http://127.0.0.1:8000/health/detailed", "retries": 10, "delay": 3}]}'

ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$NAME")
docker exec "$NAME" cat /etc/nginx/tls/fleetdemo/ca.pem >build/demo-ca.pem
cat <<MSG

demo: fleetdemo 1.0.0 runs on $NAME, behind nginx (TLS, self-signed local CA) at https://$ip/
  (the API itself listens on the host's loopback port 8000; UFW lets only 22, 80 and 443 in).
  health:  curl --cacert build/demo-ca.pem --resolve $NAME:443:$ip https://$NAME/health/detailed
MSG
curl -sS --cacert build/demo-ca.pem --resolve "$NAME:443:$ip" "https://$NAME/health/detailed"; echo
cat <<MSG
  data:    curl --cacert build/demo-ca.pem --resolve $NAME:443:$ip -H 'content-type: application/json' \\
             -d '{"name":"hello","value":"world"}' https://$NAME/api/items
  again:   make demo   (a second run changes nothing)      remove: make demo-destroy
MSG
