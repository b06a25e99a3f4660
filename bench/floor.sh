#!/bin/sh
# The floor bench/converge compares a converge with: the same Debian packages and the same wheelhouse venv
# install as site.yml, by a plain script with no checks. Runs on the test host; bench/packages.yml says what
# (from the roles' own variables).
#   floor.sh PYTHON REQUIREMENT WHEELHOUSE PACKAGE...
set -eu
python=$1 requirement=$2 wheelhouse=$3
shift 3
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q "$@" >/dev/null
"$python" -m venv /opt/pyfleet-floor-venv
/opt/pyfleet-floor-venv/bin/pip install -q --no-index --find-links "$wheelhouse" "$requirement"
