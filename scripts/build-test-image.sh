#!/usr/bin/env bash
# Builds the Debian 12 systemd test-host image with debootstrap + docker import (no registry needed).
# The tag carries a hash of this script and of what it installs from scripts/lib, so the image is rebuilt only when
# the recipe changes.
# Prints the image reference on the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
recipe_hash=$(cat "$0" scripts/lib/zipimport_cache.py | sha256sum | cut -c1-12)
IMAGE=${PYFLEET_TEST_IMAGE:-pyfleet/debian12-systemd}
TAG="$IMAGE:$recipe_hash"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  docker tag "$TAG" "$IMAGE:latest"
  echo "$TAG"
  exit 0
fi

# The machine's own Debian mirror (deb822 sources first, classic list as fallback).
MIRROR=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

root=$(mktemp -d /var/tmp/pyfleet-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "build-test-image: debootstrap bookworm from $MIRROR" >&2
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,procps,iproute2,ca-certificates,sudo,gnupg,curl,openssh-server \
  bookworm "$root" "$MIRROR" >&2

# A container boots systemd: no gettys, no hardware units, a fresh machine-id at first boot.
rm -f "$root"/etc/systemd/system/getty.target.wants/* \
      "$root"/lib/systemd/system/multi-user.target.wants/getty.target \
      "$root"/lib/systemd/system/sysinit.target.wants/systemd-firstboot.service
ln -sf /dev/null "$root"/etc/systemd/system/systemd-remount-fs.service
ln -sf /dev/null "$root"/etc/systemd/system/sys-kernel-config.mount
ln -sf /dev/null "$root"/etc/systemd/system/systemd-logind.service
: >"$root"/etc/machine-id
# sshd is installed for the multi-host scenario (which connects over SSH like a real controller) but off: other
# scenarios use port 22 themselves, and each host gets its own host keys when a scenario turns sshd on.
rm -f "$root"/etc/systemd/system/multi-user.target.wants/ssh.service "$root"/etc/systemd/system/sshd.service \
      "$root"/etc/systemd/system/sockets.target.wants/ssh.socket "$root"/etc/ssh/ssh_host_*
# Package lists as a fresh server has them (check mode reads them), dated in the past so the first real
# apt task of a role refreshes them.
security_mirror=${MIRROR%/debian}/debian-security
cat >"$root"/etc/apt/sources.list <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $security_mirror bookworm-security main
SOURCES
cp /etc/resolv.conf "$root"/etc/resolv.conf
chroot "$root" apt-get update -qq >&2
: >"$root"/etc/resolv.conf
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/periodic/*
find "$root"/var/lib/apt/lists -exec touch -d 2000-01-01 {} +
# Keep the image small: no docs or man pages from later installs.
cat >"$root"/etc/dpkg/dpkg.cfg.d/01-nodoc <<'NODOC'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
NODOC
# The bytecode of what Python imports from zip files (Ansible's module_utils, shipped with every task) is kept, as
# __pycache__ keeps it for files on disk: a third of each module run's CPU (scripts/lib/zipimport_cache.py).
install -m 0644 scripts/lib/zipimport_cache.py "$root"/usr/lib/python3/dist-packages/pyfleet_zipimport_cache.py
echo "import pyfleet_zipimport_cache" >"$root"/usr/lib/python3/dist-packages/pyfleet-zipimport-cache.pth
install -d -m 0755 "$root"/var/cache/pyfleet-zipimport

echo "build-test-image: importing as $TAG" >&2
tar -C "$root" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' - "$TAG" >&2
docker tag "$TAG" "$IMAGE:latest"
echo "$TAG"
