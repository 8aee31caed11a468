#!/usr/bin/env bash
# Benchmark (not a test): push then pull a random-content single-layer image on loopback with
# rbuild (release build) and with skopeo, in the same run, each against a fresh registry.
#
#   bench/registry.sh [SIZE_MB=200] [RUNS=5]
#
# Prints a markdown table of median seconds and MB/s for docs/benchmarks.md.
set -euo pipefail
size_mb=${1:-200}
runs=${2:-5}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
reg="$root/integration/scripts/registry.sh"
cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p rbuild -p rbuild-integration --bins
fixture="$root/target/release/rbuild-fixture"
rbuild="$root/target/release/rbuild"
work="$(mktemp -d /tmp/rbuild-bench.XXXXXX)"
current=""
cleanup() { [ -n "$current" ] && "$reg" stop "$current"; rm -rf "$work"; }
trap cleanup EXIT

"$fixture" random-layout "$work/layout" "$size_mb"
now() { date +%s.%N; }

declare -A times
one_run() { # TOOL RUN
    local tool=$1 i=$2 dir="$work/reg-$1-$2" addr t0 t1 t2
    addr="$("$reg" start http "$dir")"
    current="$dir"
    t0=$(now)
    if [ "$tool" = rbuild ]; then
        "$fixture" push-layout "$work/layout" "$addr/bench:latest" >/dev/null
        t1=$(now)
        "$rbuild" pull "$addr/bench:latest" --oci-layout "$work/pull" --insecure-registry "$addr" >/dev/null
    else
        skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://$addr/bench:latest"
        t1=$(now)
        skopeo copy -q --src-tls-verify=false "docker://$addr/bench:latest" "oci:$work/pull:latest"
    fi
    t2=$(now)
    "$reg" stop "$dir"
    current=""
    rm -rf "$dir" "$work/pull"
    times[$tool-push]+="$(echo "$t1 - $t0" | bc) "
    times[$tool-pull]+="$(echo "$t2 - $t1" | bc) "
}

for i in $(seq 1 "$runs"); do
    one_run rbuild "$i"
    one_run skopeo "$i"
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bytes=$(find "$work/layout/blobs" -type f -size +1M -printf '%s\n' | head -n1)
mb=$(echo "scale=1; $bytes / 1048576" | bc)
echo "| tool | push s (median of $runs) | push MB/s | pull s | pull MB/s |"
echo "|---|---|---|---|---|"
for tool in rbuild skopeo; do
    p=$(echo "${times[$tool-push]}" | median)
    q=$(echo "${times[$tool-pull]}" | median)
    printf '| %s | %.2f | %.0f | %.2f | %.0f |\n' "$tool" "$p" "$(echo "$mb / $p" | bc -l)" "$q" "$(echo "$mb / $q" | bc -l)"
done
echo
echo "layer: $mb MiB random; $(uname -sr); $(nproc) cores; $(date -u +%Y-%m-%d)"
