#!/usr/bin/env bash
# ansible-test sanity on the collection as it ships (no ignore files): a copy of the tracked files minus
# galaxy.yml's build_ignore, laid out as ansible_collections/pyfleet/server. --local: no test venvs to download.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=build/sanity/ansible_collections/pyfleet/server
rm -rf build/sanity && mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard \
  | grep -z -v -E '^(\.venv|build|collections|\.ci|bench|scripts|examples/apps)/|^Makefile$' \
  | xargs -0 cp --parents -P -t "$dest" 2>/dev/null || true
cd "$dest"
# ansible-test lists a collection's files through git.
git init -q && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
exec ansible-test sanity --local --python 3.11 --color no "$@"
