#!/bin/sh
# Regenerates the archives of this context (committed; run by hand when they change).
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
mkdir -p "$tmp/app/bin"
printf 'hello from the archive\n' > "$tmp/app/hello.txt"
printf '#!/bin/sh\necho extracted\n' > "$tmp/app/bin/run"
chmod 755 "$tmp/app/bin/run"
tar --owner=0 --group=0 --mtime=@1700000000 -C "$tmp" -cf app.tar app
gzip -9nc app.tar > app.tar.gz
bzip2 -9c app.tar > app.tar.bz2
xz -9c app.tar > app.tar.xz
zstd -19qc app.tar > app.tar.zst
printf 'compressed, but not a tar\n' | gzip -9nc > notes.gz
rm -rf "$tmp"
