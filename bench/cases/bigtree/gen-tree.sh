#!/bin/sh
# 200 directories; 10,000 text files (~15 KB each, one awk process) and 10,000 random files
# (15,000 bytes each): ~300 MB in 20,000 files.
set -e
out=$1
awk -v out="$out" 'BEGIN { for (d = 0; d < 200; d++) printf "%s/d%03d\n", out, d }' | xargs mkdir -p
awk -v out="$out" 'BEGIN {
  for (i = 0; i < 10000; i++) {
    f = sprintf("%s/d%03d/doc%05d.txt", out, i % 200, i)
    for (j = 0; j < 310; j++) printf "record %d of document %d: status=ok value=%d\n", j, i, (i * 7919 + j * 104729) % 1000003 > f
    close(f)
  }
}'
for d in "$out"/d*; do
  for k in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 \
           25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49; do
    head -c 15000 /dev/urandom > "$d/blob$k.bin"
  done
done
