#!/usr/bin/env python3
"""A tiny Docker token server for rbuild's tests (stdlib + the openssl CLI).

    token_server.py DIR

Listens on 127.0.0.1 (free port, written to DIR/token.port), answers GET /token (Basic
credentials, `scope` params) and POST /token (grant_type=password or refresh_token) with an
RS256 JWT signed by DIR/token-key.pem, whose `kid` is the libtrust key id the registry derives
from DIR/token-cert.pem. Granted actions are the requested ones the user may do.
"""
import base64, hashlib, json, os, subprocess, sys, time, urllib.parse, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = sys.argv[1]
KEY = os.path.join(DIR, "token-key.pem")
ISSUER, SERVICE = "rbuild-test-issuer", "rbuild-test-registry"
USERS = {"testuser": ("testpassword", {"pull", "push", "delete"}),
         "reader": ("readerpassword", {"pull"})}
REFRESH_TOKENS = {"test-refresh-token": "testuser"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_id() -> str:
    der = subprocess.run(["openssl", "pkey", "-in", KEY, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


KID = key_id()


def sign(claims: dict) -> str:
    header = {"typ": "JWT", "alg": "RS256", "kid": KID}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", KEY], input=signing_input.encode(),
                         check=True, capture_output=True).stdout
    return signing_input + "." + b64url(sig)


def grant(user, scopes):
    allowed = USERS[user][1] if user else set()
    access = []
    for scope in scopes:
        for item in scope.split(" "):
            parts = item.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
            access.append({"type": "repository", "name": name,
                           "actions": [a for a in actions if a in allowed]})
    return access


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def deny(self):
        self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]})

    def issue(self, user, scopes):
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": str(uuid.uuid4()),
                  "access": grant(user, scopes)}
        token = sign(claims)
        self.reply(200, {"token": token, "access_token": token, "expires_in": 300,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})

    def basic_user(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None, True
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except Exception:
            return None, False
        ok = user in USERS and USERS[user][0] == password
        return (user if ok else None), ok

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != "/token":
            return self.reply(404, {})
        user, ok = self.basic_user()
        if not ok:
            return self.deny()
        self.issue(user, urllib.parse.parse_qs(url.query).get("scope", []))

    def do_POST(self):
        if urllib.parse.urlparse(self.path).path != "/token":
            return self.reply(404, {})
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        grant_type = form.get("grant_type", [""])[0]
        if grant_type == "refresh_token":
            user = REFRESH_TOKENS.get(form.get("refresh_token", [""])[0])
        elif grant_type == "password":
            user = form.get("username", [""])[0]
            if USERS.get(user, ("",))[0] != form.get("password", [None])[0]:
                user = None
        else:
            user = None
        if user is None:
            return self.deny()
        self.issue(user, form.get("scope", []))

    def log_message(self, fmt, *args):
        sys.stderr.write("token-server: " + (fmt % args) + "\n")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(os.path.join(DIR, "token.port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(DIR, "token.port.tmp"), os.path.join(DIR, "token.port"))
server.serve_forever()
