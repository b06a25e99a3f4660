#!/usr/bin/env bash
# ansible-test sanity on the collection as it ships (no ignore files): a copy of the tracked files minus
# galaxy.yml's build_ignore, laid out as ansible_collections/pyfleet/server.
# ansible-test builds one venv per sanity test and bootstraps pip into it with a get-pip script it downloads
# from a host these machines cannot reach. It runs here with its own HOME inside build/ (venvs cached there,
# nothing read from or left in the user's home), and finds that script already "cached": scripts/lib/get_pip.py
# beside the pip wheel ansible-test asks for, fetched from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export HOME=$root/build/ansible-test-home
pip_version=$(.venv/bin/python -c 'import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="3.11"))["pip"])')
cache=$HOME/.ansible/test/cache
if ! compgen -G "$cache/pip-$pip_version-*.whl" >/dev/null; then
  mkdir -p "$cache"
  .venv/bin/pip download -q --no-deps --only-binary=:all: -d "$cache" "pip==$pip_version"
fi
cp scripts/lib/get_pip.py "$cache/get_pip_${pip_version//./_}.py"
dest=build/sanity/ansible_collections/pyfleet/server
rm -rf build/sanity && mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard \
  | grep -z -v -E '^(\.venv|build|collections|\.ci|bench|scripts|examples/apps)/|^Makefile$' \
  | xargs -0 cp --parents -P -t "$dest" 2>/dev/null || true
cd "$dest"
# ansible-test lists a collection's files through git.
git init -q && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
exec "$root/.venv/bin/ansible-test" sanity --local --python 3.11 --color no "$@"
