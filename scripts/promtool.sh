#!/usr/bin/env bash
# Usage: scripts/promtool.sh [promtool|amtool|prometheus-blackbox-exporter]
#
# Prints the path of a promtool (default), amtool or blackbox exporter binary taken from Debian 12's own
# packages (prometheus 2.42 / prometheus-alertmanager 0.25 / prometheus-blackbox-exporter 0.23, the versions
# the monitoring role installs on the monitoring host), so the controller can check and unit-test rule files and configurations without
# a Prometheus daemon. The .deb is fetched with `apt-get download` into a staging directory under
# build/, only usr/bin/<tool> is extracted (dpkg-deb's filesystem tarball), and the binary lands in
# build/promtool/usr/bin/<tool>. Nothing is installed or started on the controller.
#
# Cached and idempotent: when build/promtool/usr/bin/<tool> exists and runs, nothing is downloaded
# (PROMTOOL_REFRESH=1 fetches the current candidate again). Concurrent callers are serialised by a lock.
set -euo pipefail

tool=${1:-promtool}
case "$tool" in
  promtool) package=prometheus ;;
  amtool) package=prometheus-alertmanager ;;
  prometheus-blackbox-exporter) package=prometheus-blackbox-exporter ;;
  *) echo "usage: $0 [promtool|amtool|prometheus-blackbox-exporter]" >&2; exit 2 ;;
esac

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$repo_root/build/promtool"
binary="$cache/usr/bin/$tool"
mkdir -p "$cache"

usable() { [[ -x "$binary" ]] && "$binary" --version >/dev/null 2>&1; }

exec 9>"$cache/.lock"
flock 9

if [[ "${PROMTOOL_REFRESH:-0}" != 1 ]] && usable; then
  echo "$binary"
  exit 0
fi

for cmd in apt-get dpkg-deb tar; do
  command -v "$cmd" >/dev/null || { echo "promtool.sh: '$cmd' not found (a Debian controller is expected)" >&2; exit 1; }
done

staging=$(mktemp -d "$cache/.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT

# apt-get download writes into the current directory; as root it warns that _apt cannot write there (harmless).
if ! (cd "$staging" && apt-get download -q "$package" >"$staging/apt.log" 2>&1); then
  cat "$staging/apt.log" >&2
  echo "promtool.sh: 'apt-get download $package' failed (run 'apt-get update' if the lists are missing)" >&2
  exit 1
fi
deb=$(find "$staging" -maxdepth 1 -name "${package}_*.deb" -print -quit)
[[ -n "$deb" ]] || { echo "promtool.sh: no ${package}_*.deb was downloaded" >&2; exit 1; }

mkdir -p "$staging/root"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$staging/root" "./usr/bin/$tool"
"$staging/root/usr/bin/$tool" --version >/dev/null 2>&1 || {
  echo "promtool.sh: the extracted $tool does not run" >&2
  exit 1
}

mkdir -p "$cache/usr/bin"
mv -f "$staging/root/usr/bin/$tool" "$binary"
basename "$deb" >"$cache/.$tool.deb"
echo "$binary"
