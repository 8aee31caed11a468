#!/usr/bin/env bash
# Makes the sparse-file corpus with GNU tar: PAX sparse 0.0, 0.1 and 1.0 and old GNU sparse,
# each holding dir/sparse.bin (4 MiB: "head" at 0, "middle" at 1 MiB, "tail" at the end,
# holes between) and dir/hole.bin (1 MiB, all hole). Usage: make.sh OUTDIR
set -euo pipefail
out=$1
mkdir -p "$out"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
mkdir "$src/dir"
f="$src/dir/sparse.bin"
truncate -s 4M "$f"
printf 'head' | dd of="$f" conv=notrunc status=none
printf 'middle' | dd of="$f" bs=1 seek=$((1024 * 1024)) conv=notrunc status=none
printf 'tail' | dd of="$f" bs=1 seek=$((4 * 1024 * 1024 - 4)) conv=notrunc status=none
truncate -s 1M "$src/dir/hole.bin"
for version in 0.0 0.1 1.0; do
  tar -C "$src" --sparse --format=pax --sparse-version="$version" -cf "$out/pax-$version.tar" dir
done
tar -C "$src" --sparse --format=gnu -cf "$out/gnu.tar" dir
