#!/usr/bin/env bash
# Overhead of one RUN: `RUN true` through the sandbox (release build of the sandbox_run
# example, as an unprivileged user with a subuid range) next to
# `unshare -Urmpf --mount-proc true` and a bare `true`, in the same hyperfine run; also the
# no-process-sandbox mode (`--shared-pid`: no pid namespace, the existing /proc bound, as
# `--no-process-sandbox` and the masked-/proc fallback run RUN) next to `unshare -Urm true`.
# Usage: bench/sandbox.sh            (run as root: it switches to the test user)
set -euo pipefail
cd "$(dirname "$0")/.."

USER_NAME=rbuild-test
if [ "$(id -u)" -eq 0 ]; then
    bash integration/scripts/test-users.sh >/dev/null
    AS=(setpriv "--reuid=$USER_NAME" "--regid=$USER_NAME" --init-groups)
else
    AS=()
fi

cargo build --quiet --release -p rbuild-builder --example sandbox_run

DIR=$(mktemp -d /tmp/rbuild-sandbox-bench-XXXXXX)
trap 'rm -rf "$DIR"' EXIT
chmod 755 "$DIR"
mkdir -p "$DIR/root/bin" "$DIR/root/etc"
cp /bin/busybox "$DIR/root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$DIR/root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$DIR/root/etc/passwd"
echo 'root:x:0:' >"$DIR/root/etc/group"
cp target/release/examples/sandbox_run "$DIR/sandbox_run"
if [ "$(id -u)" -eq 0 ]; then chown -R "$USER_NAME:" "$DIR"; fi

hyperfine -N --warmup 20 --runs "${RUNS:-300}" --export-json "$DIR/result.json" \
    -n 'rbuild sandbox: RUN true' "${AS[*]} $DIR/sandbox_run $DIR/root -- /bin/true" \
    -n 'rbuild sandbox, no process sandbox: RUN true' "${AS[*]} $DIR/sandbox_run --shared-pid $DIR/root -- /bin/true" \
    -n 'unshare -Urmpf --mount-proc true' "${AS[*]} unshare -Urmpf --mount-proc true" \
    -n 'unshare -Urm true' "${AS[*]} unshare -Urm true" \
    -n 'bare true' "${AS[*]} /bin/true"

python3 - "$DIR/result.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"{r['command']:<40} median {r['median']*1000:7.2f} ms  (mean {r['mean']*1000:.2f} ± {r['stddev']*1000:.2f})")
PY
