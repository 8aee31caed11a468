#!/usr/bin/env bash
# Parallel gzip benchmark (issue 9/7): gzip -6 of a new layer on a 300 MB realistic change
# (bench/layers.sh's data) and a codechange-like `vendor/` (54 MB, half random), comparing
# the former single-stream pipeline, parallel gzip with/without stored incompressible
# blocks, and `tar -c | gzip -6` / `tar -c | pigz -6` in the same run. Medians of RUNS.
# Usage: bench/parallel_gzip.sh [WORKDIR] [RUNS]   (needs: python3, gzip, pigz)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/rbuild-bench-layers}
RUNS=${2:-3}
mkdir -p "$WORK"
[ -f "$WORK/data.done" ] || { echo "run bench/layers.sh $WORK once to generate the 300 MB data"; exit 1; }
VENDOR=$WORK/codechange/vendor
if [ ! -d "$VENDOR" ]; then  # same generator as bench/peers.py make_vendor
  python3 - "$VENDOR" bench/cases/codechange/deps.lock <<'PY'
import os, random, sys
out, lock = sys.argv[1], sys.argv[2]
rng = random.Random(9)
pkgs = [l.split() for l in open(lock) if l.strip() and not l.startswith("#")]
for i, (name, version) in enumerate(pkgs):
    d = os.path.join(out, f"{name}-{version}"); os.makedirs(d)
    with open(os.path.join(d, "index.js"), "w") as f:
        f.writelines(f"export function {name}_{j}(x) {{ return x * {j} + {len(name)}; }} // {version}\n" for j in range(1100))
    if i % 10 == 0:
        with open(os.path.join(d, f"lib{name}.so"), "wb") as f: f.write(rng.randbytes(655360))
PY
fi
CARGO_TARGET_DIR=target/bench cargo build -q --release -p rbuild-builder --example snapshot_bench
BIN=target/bench/release/examples/snapshot_bench
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"

one() { # label data out command... → "wall cpu blob_bytes"
  local out=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$WORK/cpu" "$@" > /dev/null 2>&1
  t1=$(date +%s.%N)
  read -r u s < <(tail -1 "$WORK/cpu")
  gzip -t "$out"
  echo "$t0 $t1 $u $s $(stat -c %s "$out")"
}
for data in "$WORK/data" "$WORK/codechange/vendor"; do
  tarsize=$(tar -cf - -C "$data" . | wc -c)
  echo "== $data ($tarsize tar bytes)"
  declare -A res=()
  for run in $(seq "$RUNS"); do
    res["tar | gzip -6"]+="$(one "$WORK/p.gz" sh -c "tar -cf - -C '$data' . | gzip -6 > '$WORK/p.gz'");"
    res["tar | pigz -6 (2 threads)"]+="$(one "$WORK/p.gz" sh -c "tar -cf - -C '$data' . | pigz -6 -p 2 > '$WORK/p.gz'");"
    res["rbuild single-stream gzip -6 (before)"]+="$(one "$WORK/l.gz" "$BIN" layer "$data" "$WORK/l.gz" gzip-serial 6);"
    res["rbuild parallel gzip -6, 1 worker"]+="$(one "$WORK/l.gz" "$BIN" layer "$data" "$WORK/l.gz" gzip 6 0 1 1);"
    res["rbuild parallel gzip -6, 2 workers, no stored"]+="$(one "$WORK/l.gz" "$BIN" layer "$data" "$WORK/l.gz" gzip 6 0 2 0);"
    res["rbuild parallel gzip -6, 2 workers (default)"]+="$(one "$WORK/l.gz" "$BIN" layer "$data" "$WORK/l.gz" gzip 6 0 2 1);"
  done
  for label in "tar | gzip -6" "tar | pigz -6 (2 threads)" "rbuild single-stream gzip -6 (before)" "rbuild parallel gzip -6, 1 worker" \
      "rbuild parallel gzip -6, 2 workers, no stored" "rbuild parallel gzip -6, 2 workers (default)"; do
    python3 - "$label" "${res[$label]}" "$tarsize" <<'PY'
import statistics, sys
label, runs, tar = sys.argv[1], [r.split() for r in sys.argv[2].split(";") if r], int(sys.argv[3])
wall = [float(r[1]) - float(r[0]) for r in runs]
cpu = [float(r[2]) + float(r[3]) for r in runs]
blob = int(runs[-1][4])
print(f"| {label} | {statistics.median(wall):.2f} ({min(wall):.2f}–{max(wall):.2f}) | {statistics.median(cpu):.2f} | {blob/1e6:.1f} | {blob/tar:.3f} |")
PY
  done
  unset res
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
