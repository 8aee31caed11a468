#!/usr/bin/env bash
# Start or stop a throwaway CNCF distribution registry (Debian's docker-registry) on loopback.
#
#   registry.sh start VARIANT DIR   # VARIANT: http | tls | htpasswd | token
#   registry.sh stop DIR
#
# `start` prints the registry address (127.0.0.1:PORT) and writes into DIR:
#   addr          the address
#   ca.pem        the CA that signed the TLS certificate (tls, htpasswd, token)
#   registry.log  the registry's log, including its access log
#   registry.pid  (and token.pid) what `stop` kills: only processes this script started
# Test credentials (htpasswd, token): testuser / testpassword (pull+push), reader / readerpassword
# (pull only); the token server also accepts the refresh token "test-refresh-token".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "registry.sh: $*" >&2; exit 1; }

ensure_registry() {
    command -v docker-registry >/dev/null && return
    [ "$(id -u)" = 0 ] || die "docker-registry is missing; install it with: apt-get install -y docker-registry"
    DEBIAN_FRONTEND=noninteractive apt-get install -y docker-registry >/dev/null \
        || die "apt-get install docker-registry failed"
}

make_tls() {
    local dir=$1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=rbuild test CA" \
        -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$dir/server-key.pem" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
}

wait_for_file() { # FILE PATTERN SECONDS
    local i
    for i in $(seq 1 $(( $3 * 20 ))); do
        grep -qo "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

start() {
    local variant=$1 dir=$2
    mkdir -p "$dir/storage"
    dir="$(cd "$dir" && pwd)"
    ensure_registry
    local tls="" auth=""
    case "$variant" in
        http) ;;
        tls|htpasswd|token) make_tls "$dir"
            tls="  tls:
    certificate: $dir/server.pem
    key: $dir/server-key.pem" ;;
        *) die "unknown variant $variant (http, tls, htpasswd, token)" ;;
    esac
    case "$variant" in
        htpasswd)
            htpasswd -Bbn testuser testpassword > "$dir/htpasswd"
            htpasswd -Bbn reader readerpassword >> "$dir/htpasswd"
            auth="auth:
  htpasswd:
    realm: rbuild-test
    path: $dir/htpasswd" ;;
        token)
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=rbuild test token issuer" \
                -keyout "$dir/token-key.pem" -out "$dir/token-cert.pem" 2>/dev/null
            python3 "$here/token_server.py" "$dir" > "$dir/token.log" 2>&1 &
            echo $! > "$dir/token.pid"
            wait_for_file "$dir/token.port" '[0-9]' 10 || die "token server did not start (see $dir/token.log)"
            auth="auth:
  token:
    realm: http://127.0.0.1:$(cat "$dir/token.port")/token
    service: rbuild-test-registry
    issuer: rbuild-test-issuer
    rootcertbundle: $dir/token-cert.pem" ;;
    esac
    cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:0
  secret: rbuild-test-secret
$tls
$auth
YAML
    docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
    echo $! > "$dir/registry.pid"
    wait_for_file "$dir/registry.log" 'listening on 127.0.0.1:[0-9]*' 15 \
        || { stop "$dir"; die "registry did not start (see $dir/registry.log)"; }
    local addr
    addr="$(grep -o 'listening on 127.0.0.1:[0-9]*' "$dir/registry.log" | head -n1 | sed 's/listening on //')"
    echo "$addr" > "$dir/addr"
    echo "$addr"
}

kill_pidfile() { # FILE EXPECTED-COMMAND-SUBSTRING
    [ -f "$1" ] || return 0
    local pid
    pid="$(cat "$1")"
    if [ -n "$pid" ] && grep -qa "$2" "/proc/$pid/cmdline" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

stop() {
    local dir=$1
    kill_pidfile "$dir/registry.pid" docker-registry
    kill_pidfile "$dir/token.pid" token_server.py
}

case "${1:-}" in
    start) [ $# -eq 3 ] || die "usage: $0 start VARIANT DIR"; start "$2" "$3" ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) die "usage: $0 start VARIANT DIR | stop DIR" ;;
esac
