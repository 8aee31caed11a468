#!/usr/bin/env bash
# Layer benchmark (issue 4): snapshot + compress a 300 MB / 20,000-file change and
# compare with `tar -c | gzip -6` and `tar -c | zstd -3` of the same directory, per
# gzip backend; then a one-file change diff on top of that 300 MB base.
# Usage: bench/layers.sh [WORKDIR]   (needs: python3, gzip, zstd, cmake for zlib-ng)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/rbuild-bench-layers}
DATA=$WORK/data
mkdir -p "$WORK"

if [ ! -f "$WORK/data.done" ]; then
  rm -rf "$DATA"
  # Prefixes of real files from /usr (realistic compressibility), sized to 300 MB total.
  python3 - "$DATA" <<'PY'
import os, sys
dst = sys.argv[1]
files = []
for top in ("/usr/lib", "/usr/share", "/usr/bin"):
    for d, dirs, names in os.walk(top):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                files.append((p, os.path.getsize(p)))
step = max(1, len(files) // 20000)
files = files[::step][:20000]
target = 300 * 1000 * 1000
lo, hi = 1, 64 << 20
while lo < hi:
    cap = (lo + hi) // 2
    if sum(min(s, cap) for _, s in files) < target: lo = cap + 1
    else: hi = cap
for i, (p, s) in enumerate(files):
    out = os.path.join(dst, "d%03d" % (i % 200), "%05d-%s" % (i, os.path.basename(p)))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(p, "rb") as f, open(out, "wb") as g:
        g.write(f.read(min(s, lo)))
print("files", len(files), "cap", lo)
PY
  touch "$WORK/data.done"
fi
echo "data: $(du -sb "$DATA" | cut -f1) bytes in $(find "$DATA" -type f | wc -l) files"
sync

measure() { # label, command...
  local t0 t1 label=$1
  shift
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M %U %S" -o "$WORK/rss" "$@" > "$WORK/out" 2>/dev/null
  t1=$(date +%s.%N)
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); m,u,k=open(sys.argv[4]).read().split()[-3:]; print(f'{sys.argv[3]:<30} {s:6.2f} s wall {300/s:7.1f} MB/s  cpu {float(u)+float(k):6.2f} s  peak RSS {int(m)/1024:6.1f} MB')" "$t0" "$t1" "$label" "$WORK/rss"
}
cat "$DATA"/d000/* > /dev/null  # warm the page cache
tar -cf - -C "$DATA" . > /dev/null

echo "== reference (same run)"
measure "tar -c | gzip -6" sh -c "tar -cf - -C '$DATA' . | gzip -6 > '$WORK/ref.tar.gz'"
measure "tar -c | zstd -3" sh -c "tar -cf - -C '$DATA' . | zstd -3 -q > '$WORK/ref.tar.zst'"
measure "tar -c | zstd -3 -T2" sh -c "tar -cf - -C '$DATA' . | zstd -3 -T2 -q > '$WORK/ref2.tar.zst'"

echo "== rbuild (builder/examples/snapshot_bench, release)"
for backend in zlib-rs miniz zlib-ng; do
  case $backend in
    zlib-rs) feats=() ;;
    miniz) feats=(--no-default-features) ;;
    zlib-ng) feats=(--no-default-features --features gzip-zlib-ng) ;;
  esac
  tgt=target/bench  # one target dir: switching features rebuilds only flate2 and this crate
  if ! CARGO_TARGET_DIR=$tgt cargo build -q --release -p rbuild-builder --example snapshot_bench "${feats[@]}" 2>/dev/null; then
    echo "gzip-6 $backend: build failed (zlib-ng needs cmake)"; continue
  fi
  cp $tgt/release/examples/snapshot_bench "$WORK/bench-$backend"; bin=$WORK/bench-$backend
  measure "rbuild gzip -6 ($backend)" "$bin" layer "$DATA" "$WORK/l.tar.gz" gzip 6 0 "$(nproc)"  # gzip workers = cores, as the CLI
  cat "$WORK/out"
  if [ $backend = zlib-rs ]; then
    measure "rbuild zstd -3" "$bin" layer "$DATA" "$WORK/l.tar.zst" zstd 3 0; cat "$WORK/out"
    measure "rbuild zstd -3 (2 zstd workers)" "$bin" layer "$DATA" "$WORK/l2.tar.zst" zstd 3 2; cat "$WORK/out"
    measure "rbuild uncompressed" "$bin" layer "$DATA" "$WORK/l.tar" none 0; cat "$WORK/out"
    measure "rbuild gzip -1 ($backend)" "$bin" layer "$DATA" "$WORK/l1.tar.gz" gzip 1 0 "$(nproc)"; cat "$WORK/out"
    echo "== native snapshot of a one-file change on the 300 MB base"
    "$bin" index "$DATA" "$WORK/index"
    echo changed >> "$DATA/d007/$(ls "$DATA/d007" | head -1)"
    for _ in 1 2 3; do "$bin" diff "$DATA" "$WORK/index"; done
    echo -n "find DATA (walk + lstat floor): "; /usr/bin/time -f "%e s" find "$DATA" -printf '%s %T@ %C@\n' > /dev/null
    echo "== overlay snapshot of a one-file change on the 300 MB base (needs root to mount)"
    mkdir -p "$WORK/ovl/upper" "$WORK/ovl/work" "$WORK/ovl/merged"
    if mount -t overlay overlay -o "lowerdir=$DATA,upperdir=$WORK/ovl/upper,workdir=$WORK/ovl/work,userxattr" "$WORK/ovl/merged" 2>/dev/null; then
      echo changed >> "$WORK/ovl/merged/d011/$(ls "$WORK/ovl/merged/d011" | head -1)"
      for _ in 1 2 3; do "$bin" upper "$WORK/ovl/upper"; done
      umount "$WORK/ovl/merged"
    else
      echo "overlay mount not permitted here"
    fi
    rm -rf "$WORK/ovl"
  fi
done
