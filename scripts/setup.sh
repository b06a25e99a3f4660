#!/usr/bin/env bash
# Installs everything the controller needs to run the demo and the tests: Debian packages (Docker engine,
# debootstrap, OpenSSL tools, age for the encrypted-set tests), a Python venv with the pinned tools in requirements-dev.txt.
# Idempotent: a second run installs nothing new. Run as root (or with sudo) on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker.io debootstrap make openssl curl ca-certificates iproute2 git shellcheck age)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python tools from requirements-dev.txt"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  echo "$want" >"$stamp"
fi

# pyfleet.server resolves from this checkout (ansible.cfg: collections_path = ./build/collections).
mkdir -p build/collections/ansible_collections/pyfleet
ln -sfn ../../../.. build/collections/ansible_collections/pyfleet/server
echo "setup: ok ($(.venv/bin/ansible --version | sed -n 1p))"
