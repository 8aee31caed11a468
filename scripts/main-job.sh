#!/usr/bin/env bash
# The main job: start a local registry on loopback, push the offline busybox base image to it,
# and build testdata/app with rbuild into that registry. Stops what it started on exit; with
# --keep the registry stays up and its address is printed. One release compile (rbuild and
# the fixture tool together), a progress line at least every 20 s, and the plan and digest
# kept in target/main-job/ (not in the temporary directory the exit trap removes).
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

# A line every 20 s while something long and quiet runs (a cold compile takes minutes).
heartbeat() {
  local what=$1 start=$SECONDS
  while sleep 20; do echo "main-job: still $what ($((SECONDS - start)) s)"; done
}
beat=""
stop_beat() { if [ -n "$beat" ]; then kill "$beat" 2>/dev/null || true; wait "$beat" 2>/dev/null || true; beat=""; fi; }

work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-main-job.XXXXXX")
out=target/main-job
addr=""
cleanup() {
  stop_beat
  if $keep && [ -n "$addr" ]; then echo "registry left running at $addr (stop: integration/scripts/registry.sh stop $work/registry)"; return; fi
  integration/scripts/registry.sh stop "$work/registry" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "main-job: compiling rbuild and the fixture tool (release, one cargo build)"
heartbeat "compiling" & beat=$!
cargo build --release --locked -p rbuild -p rbuild-integration --bin rbuild --bin rbuild-fixture
stop_beat
rbuild=target/release/rbuild
export RBUILD_FIXTURE="$PWD/target/release/rbuild-fixture"
mkdir -p "$out"
addr=$(integration/scripts/registry.sh start http "$work/registry")
echo "registry: $addr"

integration/scripts/make-base-images.sh "$addr"
base="$addr/busybox:latest"

"$rbuild" plan --build-arg "BASE=$base" testdata/app >"$out/plan.json"
echo "plan: $(grep -c '"index"' "$out/plan.json") stages, written to $out/plan.json"

# --allow-dirty: a checkout with local edits still runs the job, tagged <sha>-dirty.
"$rbuild" build --context testdata/app --image "$addr/example/app" --tag v1.0.0 \
  --commit-suffix auto --allow-dirty --latest --build-arg "BASE=$base" --insecure-registry "$addr" \
  --digest-file "$out/digest"
echo "pushed $addr/example/app@$(cat "$out/digest") (digest also in $out/digest), read back by skopeo:"
skopeo inspect --tls-verify=false "docker://$addr/example/app:latest"
