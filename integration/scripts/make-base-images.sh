#!/usr/bin/env bash
# Push the offline base images (busybox:latest from Debian's busybox-static, and the
# two-platform multiarch:latest index, and busybox-multi:latest, a runnable busybox for
# linux/amd64 + linux/arm64 when foreign-busybox.sh has extracted the arm64 binary) to
# REGISTRY (host:port).
#
#   make-base-images.sh REGISTRY [--ca PEM]    # without --ca the registry is plain HTTP
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 REGISTRY [--ca PEM]" >&2; exit 1; }
[ -x /bin/busybox ] || { [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >/dev/null; }
[ -x /bin/busybox ] || { echo "make-base-images.sh: /bin/busybox missing: apt-get install -y busybox-static" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then "$(dirname "${BASH_SOURCE[0]}")/foreign-busybox.sh" || echo "make-base-images.sh: no arm64 busybox; busybox-multi is not pushed" >&2; fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# RBUILD_FIXTURE: a prebuilt rbuild-fixture (scripts/main-job.sh builds it with rbuild, in one
# compile); else cargo builds and runs it.
if [ -n "${RBUILD_FIXTURE:-}" ]; then
  exec "$RBUILD_FIXTURE" base-images "$@"
fi
cargo run --quiet --manifest-path "$root/Cargo.toml" -p rbuild-integration --bin rbuild-fixture -- base-images "$@"
