#!/usr/bin/env bash
# Usage: scripts/build-wheelhouse.sh APP_DIR OUT_DIR
#
# Builds an offline wheelhouse on the controller: the application's own wheel plus every pin in
# APP_DIR/requirements.lock as a binary wheel for the targets (Linux x86_64, CPython 3.11), and
# OUT_DIR/manifest.txt ("name==version  sha256  file" per wheel). Targets then install with
#   pip install --no-index --find-links OUT_DIR <app>==<version>
#
# Cached and idempotent: OUT_DIR/.inputs.sha256 records a hash of the lock file, the application
# sources and this script; when it matches, nothing is rebuilt. The new wheelhouse is assembled in a
# staging directory and only then moved into OUT_DIR, so an interrupted run never leaves a
# half-built wheelhouse that looks complete.
#
# Environment: PYTHON (default: <repo>/.venv/bin/python if present, else python3.11).
set -euo pipefail

usage() { echo "usage: $0 APP_DIR OUT_DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
script_path="$repo_root/scripts/$(basename "${BASH_SOURCE[0]}")"
app_dir=$(cd "$1" && pwd)
mkdir -p "$2"
out_dir=$(cd "$2" && pwd)
lock="$app_dir/requirements.lock"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$repo_root/.venv/bin/python" ]]; then
    PYTHON="$repo_root/.venv/bin/python"
  else
    PYTHON=python3.11
  fi
fi
command -v "$PYTHON" >/dev/null || { echo "build-wheelhouse: PYTHON '$PYTHON' not found" >&2; exit 1; }
[[ -f "$app_dir/pyproject.toml" ]] || { echo "build-wheelhouse: no pyproject.toml in $app_dir" >&2; exit 1; }
[[ -f "$lock" ]] || { echo "build-wheelhouse: no requirements.lock in $app_dir" >&2; exit 1; }

# Target platform: Debian 12 x86_64 (glibc 2.36), CPython 3.11.
PY_VERSION=3.11
ABI=cp311
PLATFORMS=(manylinux2014_x86_64)
for minor in $(seq 5 36); do PLATFORMS+=("manylinux_2_${minor}_x86_64"); done

# ---- cache check -------------------------------------------------------------------------------
inputs_hash() {
  {
    echo "target=$PY_VERSION/$ABI/x86_64"
    sha256sum "$script_path" | cut -d' ' -f1
    (
      cd "$app_dir"
      find . -mindepth 1 \( -name build -o -name dist -o -name '*.egg-info' -o -name __pycache__ \
        -o -name '.*' -o -name tests \) -prune -o -type f -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum
    )
  } | sha256sum | cut -d' ' -f1
}
want=$(inputs_hash)
if [[ -f "$out_dir/.inputs.sha256" && -f "$out_dir/manifest.txt" ]] \
  && [[ "$(cat "$out_dir/.inputs.sha256")" == "$want" ]]; then
  echo "build-wheelhouse: $out_dir is up to date (inputs $want); nothing to do"
  exit 0
fi

# ---- build into a staging directory ------------------------------------------------------------
stage=$(mktemp -d "$out_dir/.stage.XXXXXX")
src_copy=$(mktemp -d)
trap 'rm -rf "$stage" "$src_copy"' EXIT

echo "build-wheelhouse: building $(basename "$app_dir") wheel with $("$PYTHON" --version 2>&1)"
# Build from a copy so the source tree gets no build/ or *.egg-info litter.
(cd "$app_dir" && tar --exclude=./build --exclude=./dist --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude=./tests -cf - .) | tar -xf - -C "$src_copy"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$stage" "$src_copy"

echo "build-wheelhouse: downloading pinned dependencies from $(basename "$lock")"
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version "$PY_VERSION" --implementation cp --abi "$ABI" "${platform_args[@]}" \
  --dest "$stage" --requirement "$lock"

# ---- manifest + completeness check -------------------------------------------------------------
"$PYTHON" - "$stage" "$lock" <<'PY'
import hashlib
import re
import sys
from pathlib import Path

stage, lock = Path(sys.argv[1]), Path(sys.argv[2])


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


wheels = {}
for whl in sorted(stage.glob("*.whl")):
    name, version = whl.name.split("-")[:2]
    wheels[norm(name)] = (name, version, whl)

missing = []
for line in lock.read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, version = line.partition("==")
    name = norm(name.split("[", 1)[0])
    if wheels.get(name, (None, None))[1] != version:
        missing.append(line)
if missing:
    sys.exit("build-wheelhouse: no wheel for: " + ", ".join(missing))
if len(list(stage.glob("*.whl"))) != len(wheels):
    sys.exit("build-wheelhouse: several wheels for one project in the staging directory")

lines = []
for key in sorted(wheels):
    name, version, whl = wheels[key]
    digest = hashlib.sha256(whl.read_bytes()).hexdigest()
    lines.append(f"{key}=={version}  sha256:{digest}  {whl.name}")
(stage / "manifest.txt").write_text("\n".join(lines) + "\n")
PY

# ---- swap into OUT_DIR -------------------------------------------------------------------------
rm -f "$out_dir"/*.whl "$out_dir/manifest.txt" "$out_dir/.inputs.sha256"
mv "$stage"/*.whl "$stage/manifest.txt" "$out_dir/"
echo "$want" >"$out_dir/.inputs.sha256"
count=$(find "$out_dir" -maxdepth 1 -name '*.whl' | wc -l)
size=$(du -sh "$out_dir" | cut -f1)
echo "build-wheelhouse: wrote $count wheels ($size) and manifest.txt to $out_dir"
