#!/usr/bin/env bash
# The main job: start a local registry on loopback, push the offline busybox base image to it,
# and build testdata/app with rbuild into that registry. Stops what it started on exit; with
# --keep the registry stays up and its address is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false; [ "${1:-}" = "--keep" ] && keep=true

packages=(docker-registry busybox-static skopeo uidmap ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --release --locked -p rbuild
rbuild=target/release/rbuild
work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-main-job.XXXXXX")
addr=$(integration/scripts/registry.sh start http "$work/registry")
cleanup() {
  if $keep; then echo "registry left running at $addr (stop: integration/scripts/registry.sh stop $work/registry)"; return; fi
  integration/scripts/registry.sh stop "$work/registry" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "registry: $addr"

integration/scripts/make-base-images.sh "$addr"
base="$addr/busybox:latest"

"$rbuild" plan --build-arg "BASE=$base" testdata/app >"$work/plan.json"
echo "plan: $(grep -c '"index"' "$work/plan.json") stages, written to $work/plan.json"

"$rbuild" build --context testdata/app --image "$addr/example/app" --tag v1.0.0 \
  --commit-suffix auto --latest --build-arg "BASE=$base" --insecure-registry "$addr" \
  --digest-file "$work/digest"
echo "pushed $addr/example/app@$(cat "$work/digest"), read back by skopeo:"
skopeo inspect --tls-verify=false "docker://$addr/example/app:latest"
