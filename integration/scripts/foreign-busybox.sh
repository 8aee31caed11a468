#!/usr/bin/env bash
# Installs what the multi-platform tests need (run as root; idempotent):
#  - qemu-user-static (static qemu-user interpreters: an arm64 RUN is emulated through them;
#    rbuild registers them in its own user namespace's binfmt_misc, the host's is not touched);
#  - busybox-static for arm64, EXTRACTED (dpkg-deb -x, never installed over the host's
#    busybox) to /usr/local/lib/rbuild-test/arm64/bin/busybox, the arm64 half of the
#    two-platform busybox base image (integration/src/images.rs).
set -euo pipefail
dest=/usr/local/lib/rbuild-test/arm64
[ "$(id -u)" -eq 0 ] || { echo "foreign-busybox.sh: needs root (apt-get, dpkg)" >&2; exit 1; }
if ! dpkg-query -W -f='${Status}' qemu-user-static 2>/dev/null | grep -q "install ok installed"; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi
[ -x "$dest/bin/busybox" ] && exit 0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi
apt-get update -qq
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
(cd "$work" && apt-get download -q busybox-static:arm64 >/dev/null 2>&1 || { chown _apt "$work" 2>/dev/null; apt-get download -q busybox-static:arm64 >/dev/null; })
mkdir -p "$work/x"
dpkg-deb -x "$work"/busybox-static_*_arm64.deb "$work/x"
mkdir -p "$dest/bin"
install -m 0755 "$work/x/bin/busybox" "$dest/bin/busybox"
echo "foreign-busybox.sh: arm64 busybox at $dest/bin/busybox"
