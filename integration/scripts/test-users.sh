#!/usr/bin/env bash
# Create the unprivileged users the sandbox tests run as (idempotent, needs root):
#   rbuild-test   with a subordinate uid/gid range of 65536 in /etc/subuid and /etc/subgid
#   rbuild-nosub  without any subordinate range
#   rbuild-wide   with a subordinate uid/gid range of 600000 (ids past 65536 in layers)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "test-users.sh: must run as root" >&2
    exit 1
fi

ensure_user() {
    local name=$1
    if ! getent passwd "$name" >/dev/null; then
        useradd --create-home --shell /bin/sh --user-group "$name"
    fi
}

# Lines for a user, removed first so reruns never duplicate them.
set_subids() {
    local name=$1 start=$2 count=${3:-65536}
    for f in /etc/subuid /etc/subgid; do
        touch "$f"
        # Already exactly right: leave the file alone (tests running at the same time read it).
        if [ -n "$start" ] && [ "$(grep -c "^${name}:" "$f")" = 1 ] && grep -qx "${name}:${start}:${count}" "$f"; then
            continue
        fi
        if [ -z "$start" ] && ! grep -q "^${name}:" "$f"; then
            continue
        fi
        sed -i "/^${name}:/d" "$f"
        if [ -n "$start" ]; then
            echo "${name}:${start}:${count}" >>"$f"
        fi
    done
}

# useradd may add ranges itself (SUB_UID_MIN in login.defs); pin them to known values.
ensure_user rbuild-test
ensure_user rbuild-nosub
ensure_user rbuild-wide
set_subids rbuild-test 200000
set_subids rbuild-nosub ""
set_subids rbuild-wide 1000000 600000

echo "rbuild-test: $(id rbuild-test); subuid $(grep '^rbuild-test:' /etc/subuid)"
echo "rbuild-nosub: $(id rbuild-nosub); no subuid range"
echo "rbuild-wide: $(id rbuild-wide); subuid $(grep '^rbuild-wide:' /etc/subuid)"
