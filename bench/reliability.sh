#!/usr/bin/env bash
# Cost of issue 16's timeouts and verification: the same build with a baseline rbuild binary
# (main's) and this tree's, in the same run, on a loopback registry. Benchmark only.
#
#   bench/reliability.sh BASELINE_BIN NEW_BIN [RUNS]
#
# cold: fresh --cache-dir, base layer pulled, verified and unpacked, layers written and pushed.
# cached: the same build again with a warm --cache-dir and the registry layer cache (every
# step a hit). Prints hyperfine's medians and the ratio new/baseline for each.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base_bin=$1 new_bin=$2 runs=${3:-7}
work=$(mktemp -d /var/tmp/rbuild-rel-bench.XXXXXX)
reg_dir="$work/registry"
mkdir -p "$reg_dir"
cleanup() { "$root/integration/scripts/registry.sh" stop "$reg_dir" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
addr=$("$root/integration/scripts/registry.sh" start http "$reg_dir")
"$root/integration/scripts/make-base-images.sh" "$addr" >/dev/null
ctx="$work/ctx"
mkdir -p "$ctx/data"
# ~24 MiB of incompressible-ish files in 48 files plus the busybox base.
for i in $(seq 1 48); do head -c 524288 /dev/urandom > "$ctx/data/f$i"; done
printf 'FROM %s/busybox:latest\nCOPY data /data\nRUN cat /data/* | wc -c > /size\n' "$addr" > "$ctx/Dockerfile"
cp "$base_bin" "$work/rbuild-baseline"
cp "$new_bin" "$work/rbuild-new"
build() { # BIN CACHE_DIR MODE: cold pushes to fresh repositories (nothing to skip or hit)
    local suffix="$1"
    [ "$3" = cold ] && suffix="$1-$RANDOM$RANDOM"
    "$work/$1" build -c "$ctx" --insecure-registry "$addr" --cache-dir "$2" \
        --cache-repo "$addr/bench/cache-$suffix" --destination "$addr/bench/app-$suffix:$3" >"$work/last-$1.log" 2>&1 || { cat "$work/last-$1.log" >&2; return 1; }
}
export -f build
export work ctx addr
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
hyperfine --shell bash --runs "$runs" --warmup 1 --export-json "$work/cold.json" \
    --prepare 'rm -rf $work/cold-cache' \
    -n baseline "build rbuild-baseline $work/cold-cache cold" \
    -n new "build rbuild-new $work/cold-cache cold" | grep -E "Time|±|faster|baseline|new" || true
for bin in rbuild-baseline rbuild-new; do build "$bin" "$work/warm-$bin" warm; done
hyperfine --shell bash --runs "$runs" --warmup 1 --export-json "$work/cached.json" \
    -n baseline "build rbuild-baseline $work/warm-rbuild-baseline warm" \
    -n new "build rbuild-new $work/warm-rbuild-new warm" | grep -E "Time|±|faster|baseline|new" || true
python3 - "$work" <<'PY'
import json, sys
for case in ("cold", "cached"):
    r = {x["command"]: x for x in json.load(open(f"{sys.argv[1]}/{case}.json"))["results"]}
    b, n = r["baseline"]["median"], r["new"]["median"]
    print(f"{case}: baseline median {b:.3f} s, new median {n:.3f} s, new/baseline {n / b:.3f}")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
