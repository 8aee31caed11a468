#!/usr/bin/env bash
# Create the unprivileged users the sandbox tests run as (idempotent, needs root):
#   rbuild-test   with a subordinate uid/gid range of 65536 in /etc/subuid and /etc/subgid
#   rbuild-nosub  without any subordinate range
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
    local name=$1 start=$2
    for f in /etc/subuid /etc/subgid; do
        touch "$f"
        sed -i "/^${name}:/d" "$f"
        if [ -n "$start" ]; then
            echo "${name}:${start}:65536" >>"$f"
        fi
    done
}

# useradd may add ranges itself (SUB_UID_MIN in login.defs); pin them to known values.
ensure_user rbuild-test
ensure_user rbuild-nosub
set_subids rbuild-test 200000
set_subids rbuild-nosub ""

echo "rbuild-test: $(id rbuild-test); subuid $(grep '^rbuild-test:' /etc/subuid)"
echo "rbuild-nosub: $(id rbuild-nosub); no subuid range"
