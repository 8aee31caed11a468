#!/usr/bin/env bash
# Manual check (a Rust release build inside RUN is too slow for CI): rbuild builds its own
# top-level Dockerfile, rootless, from base images made locally, and the result runs.
#
#   integration/scripts/self-build.sh [RBUILD_BINARY]     # as root; default target/debug/rbuild
#
# 1. debootstrap --variant=minbase bookworm      → $REG/debian:bookworm-slim  (runtime base)
# 2. the same with gcc + libc6-dev + ca-certificates, plus the host's Rust toolchain
#    (rustc --print sysroot) in /usr/local/rust                → $REG/rust:local (builder base)
#    (both pushed with umoci + skopeo to a registry started by registry.sh)
# 3. rbuild build as the unprivileged test user (RUN in a user namespace) with
#    --build-arg RUST_IMAGE=… RUNTIME_IMAGE=…, pushing $REG/rbuild:self
# 4. skopeo + umoci read the image back; `rbuild --version` runs inside it (unshare -Ur chroot)
# Prints the build time, the digest and the version line. Needs deb.debian.org and crates.io.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "self-build.sh: run as root (debootstrap, test users)" >&2; exit 1; }
rbuild=$(realpath "${1:-target/debug/rbuild}")
[ -x "$rbuild" ] || { echo "self-build.sh: $rbuild missing: cargo build -p rbuild" >&2; exit 1; }
user=rbuild-test
integration/scripts/test-users.sh

work=$(mktemp -d /tmp/rbuild-self-build.XXXXXX)
chmod 755 "$work"
addr=$(integration/scripts/registry.sh start http "$work/registry")
cleanup() {
  integration/scripts/registry.sh stop "$work/registry" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "registry: $addr"

push_rootfs() { # ROOTFS NAME:TAG — one layer with `./` entries (`umoci insert … /` would
  # name the root entry "/", an absolute path rbuild's unpacker refuses)
  local layout="$work/oci-${2%%:*}"
  umoci init --layout "$layout"
  umoci new --image "$layout:base"
  tar -C "$1" --numeric-owner --xattrs -cf "$work/layer.tar" .
  umoci raw add-layer --image "$layout:base" "$work/layer.tar"
  rm "$work/layer.tar"
  skopeo copy -q --dest-tls-verify=false "oci:$layout:base" "docker://$addr/$2"
}

mirror=http://deb.debian.org/debian
debs=${RBUILD_DEB_CACHE:-/var/cache/rbuild-self-build}   # downloaded .debs, kept between runs
mkdir -p "$debs"
debootstrap --variant=minbase --cache-dir="$debs" bookworm "$work/debian" "$mirror" >"$work/debootstrap.log"
push_rootfs "$work/debian" debian:bookworm-slim
debootstrap --variant=minbase --cache-dir="$debs" --include=gcc,libc6-dev,ca-certificates \
  bookworm "$work/rust" "$mirror" >>"$work/debootstrap.log"
sysroot=$(rustc --print sysroot)
mkdir -p "$work/rust/usr/local/rust"
tar -C "$sysroot" --exclude=share --exclude=lib/rustlib/src --exclude=lib/rustlib/rustc-src -cf - . \
  | tar -C "$work/rust/usr/local/rust" -xf -
# This machine's CA bundle (it may include a TLS-intercepting egress proxy's CA) so cargo reaches crates.io.
cp /etc/ssl/certs/ca-certificates.crt "$work/rust/etc/ssl/certs/ca-certificates.crt"
for tool in cargo rustc rustdoc; do ln -s ../rust/bin/$tool "$work/rust/usr/local/bin/$tool"; done
push_rootfs "$work/rust" rust:local
echo "bases: $addr/debian:bookworm-slim, $addr/rust:local ($(rustc --version))"

# The context: the committed tree, readable by the build user.
mkdir "$work/src" "$work/cache"
git archive HEAD | tar -C "$work/src" -xf -
cp "$rbuild" "$work/rbuild"
chmod -R a+rX "$work/src" "$work/rbuild"
chown "$user:$user" "$work/cache"
start=$(date +%s)
setpriv --reuid "$user" --regid "$user" --init-groups env HOME="$work/cache" \
  "$work/rbuild" build --context "$work/src" --cache-dir "$work/cache" --insecure-registry "$addr" \
  --build-arg "RUST_IMAGE=$addr/rust:local" --build-arg "RUNTIME_IMAGE=$addr/debian:bookworm-slim" \
  --destination "$addr/rbuild:self" --digest-file "$work/cache/digest"
end=$(date +%s)

skopeo copy -q --src-tls-verify=false "docker://$addr/rbuild:self" "oci:$work/out:self"
umoci unpack --image "$work/out:self" "$work/bundle" >/dev/null
version=$(unshare -Ur chroot "$work/bundle/rootfs" /usr/local/bin/rbuild --version)
config=$(skopeo inspect --tls-verify=false --config "docker://$addr/rbuild:self")
echo "self-build: $((end - start)) s, digest $(cat "$work/cache/digest")"
echo "in the image: $version"
echo "entrypoint: $(echo "$config" | grep -A2 '"Entrypoint"' | tr -d ' \n')"
grep -q '^rbuild:100000:65536$' "$work/bundle/rootfs/etc/subuid" && echo "subuid: rbuild:100000:65536"
test -u "$work/bundle/rootfs/usr/bin/newuidmap" && echo "newuidmap: present, setuid"
test -f "$work/bundle/rootfs/etc/rbuild/own-image" && echo "own-image marker: present"
