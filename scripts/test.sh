#!/usr/bin/env bash
# Runs every rbuild test. Installs what the tests need (Debian packages, test users) when missing.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: a real registry, independent image tools, busybox for base
# images, newuidmap/newgidmap for rootless RUN, openssl/htpasswd for the TLS and auth registries,
# buildah (+ runc) and Docker's engine (docker.io: dockerd with BuildKit) for the differential
# build test; runc, setcap (libcap2-bin) and git for the pod emulator (integration/src/pod:
# rbuild's image with file-capability helpers, the clone step); git and script (bsdutils):
# `--commit-suffix auto` and the tty progress tests.
packages=(docker-registry skopeo umoci busybox-static uidmap openssl apache2-utils ca-certificates buildah runc docker.io libcap2-bin git bsdutils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust >= 1.85 (https://rustup.rs)" >&2; exit 1; }

# Unprivileged users for the rootless tests (needs root; without it those tests skip locally).
if [ "$(id -u)" -eq 0 ] && [ -x integration/scripts/test-users.sh ]; then
  integration/scripts/test-users.sh
fi
# qemu-user-static and an arm64 busybox for the multi-platform tests (needs root too).
if [ "$(id -u)" -eq 0 ]; then
  integration/scripts/foreign-busybox.sh || echo "foreign-busybox.sh failed: the multi-platform tests will say what is missing" >&2
fi

# The integration tests run the real binary.
cargo build --workspace --all-targets --locked
cargo test --workspace --locked "$@"
# Without the corpus the conformance_* tests above ran no case: say so (CI fails instead).
corpus="${RBUILD_CONFORMANCE_DIR:-$(cd .. && pwd)/shared/conformance}"
if [ ! -d "$corpus" ]; then
  echo "conformance tests: SKIPPED, corpus missing at $corpus (see README, Tests)"
fi
