#!/usr/bin/env bash
# Peer benchmark (issue 9): rbuild next to buildah and a private Docker engine on the cases in
# bench/cases/, on a loopback registry, in the same run. Benchmark only: never part of the tests.
#
#   bench/run.sh [--reps N] [--peers rbuild,buildah,docker] [--smoke] [--no-docs] [CASE…] [MODE…]
#   bench/run.sh --report-only     # regenerate the docs section and plot from peers.json
#
# CASE: small multistage manylayers codechange bigtree debian (default: all)
# MODE: cold cached-fresh-pod edit warm-local push            (default: all)
# --smoke: `small`, cold, 1 repetition, rbuild (+ buildah); results only under the state dir.
# --no-docs: results only under the state dir. Otherwise they merge by case and mode into
# docs/benchmarks/peers.json and regenerate docs/benchmarks.md's "Peer comparison" section.
#
# Needs root (it installs Debian packages, runs rbuild and buildah as the unprivileged user
# rbuild-test, and starts its own dockerd). State that is made once (the debootstrap minbase
# image) lives in $RBUILD_BENCH_STATE (default /var/tmp/rbuild-bench).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${RBUILD_BENCH_STATE:-/var/tmp/rbuild-bench}"
case " $* " in *" --report-only "*)
    exec python3 -B "$root/bench/peers.py" --state "$state" --root "$root" "$@" ;;
esac
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: run as root (it switches to rbuild-test itself)" >&2; exit 1; }

# Debian packages: the peers, the registry, debootstrap for the minbase image, GNU time.
pkgs=(docker-registry busybox-static skopeo uidmap python3 time debootstrap
      buildah runc fuse-overlayfs docker.io containerd)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
        --no-install-recommends "${missing[@]}" >/dev/null
fi

"$root/integration/scripts/test-users.sh" >/dev/null
echo "bench: cargo build --release -p rbuild; -p rbuild-integration --bin rbuild-fixture" >&2
cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p rbuild
# The fixture is what integration/scripts/make-base-images.sh runs (there in debug, through
# `cargo run`). Built separately: one command for both would unify features and rebuild rbuild.
cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p rbuild-integration --bin rbuild-fixture

mkdir -p "$state"
chmod 755 "$state"
# The two-platform rows (mp-2, issue 20): buildah's RUN under runc needs a host binfmt_misc
# handler for arm64; rbuild does not (it registers qemu-user in its own user namespace). When
# the host has none, one is registered for this run only and removed again on exit, with the
# binfmt_misc mount if this script made it. The tests never do this (they leave the host alone).
"$root/integration/scripts/foreign-busybox.sh" >/dev/null
binfmt=/proc/sys/fs/binfmt_misc
mounted_here=""
registered_here=""
restore_binfmt() {
    [ -n "$registered_here" ] && echo -1 > "$binfmt/qemu-aarch64" || true
    [ -n "$mounted_here" ] && umount "$binfmt" || true
}
trap restore_binfmt EXIT
if [ ! -e "$binfmt/register" ]; then
    mount -t binfmt_misc binfmt_misc "$binfmt" && mounted_here=1
fi
if [ ! -e "$binfmt/qemu-aarch64" ] && [ -x /usr/libexec/qemu-binfmt/aarch64-binfmt-P ]; then
    printf '%s' ':qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:FP' > "$binfmt/register" \
        && registered_here=1
fi
python3 -B "$root/bench/peers.py" --state "$state" --root "$root" "$@"
