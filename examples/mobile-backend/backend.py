#!/usr/bin/env python3
"""Sample backend for the mobile-backend example (Python standard library only).

Serves, on 127.0.0.1:PORT (or on $BACKEND_HOST:PORT: the Kubernetes manifests in k8s/ set
BACKEND_HOST=0.0.0.0 so that the Service reaches the pod):
- /content, /content/{id} and /comments, saying which environment answered (so the dev and
  prod stages can be told apart) and which user the gateway says is calling (the
  `x-user-id` header the RestApi maps from the token's `sub` claim), and, when the gateway
  says which API version called (`x-api-version`, set by restapi-v2.yaml), that too as "api";
- the example's identity provider: POST /auth/login mints an RS256 JWT signed with
  identity/signing-key.json, GET /.well-known/jwks.json publishes its public key (the
  Authorizer's jwksUri).

    python3 backend.py 9000 dev

The signing key is an example key committed to the repository: never use it for anything real.
"""
import base64
import hashlib
import json
import os
import pathlib
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = os.environ.get("BACKEND_HOST", "127.0.0.1")
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
ENV = sys.argv[2] if len(sys.argv) > 2 else "dev"

ARTICLES = {
    "1": {"id": "1", "title": "Welcome to Portico", "body": "API Gateway on your own cluster."},
    "2": {"id": "2", "title": "Stages", "body": "dev and prod point at different backends."},
}
COMMENTS = [{"id": "c1", "contentId": "1", "text": "Nice!"}]

# The example identity provider (must match authorizer.yaml).
ISSUER = "https://auth.mobile.example"
AUDIENCE = "mobile-app"
TOKEN_TTL = 3600
KEY = json.loads((pathlib.Path(__file__).parent / "identity" / "signing-key.json").read_text())


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(field):
    return int.from_bytes(base64.urlsafe_b64decode(KEY[field] + "=" * (-len(KEY[field]) % 4)), "big")


def sign_rs256(claims):
    """A compact JWS (RS256, RSASSA-PKCS1-v1_5 with SHA-256) over `claims`."""
    header = {"alg": "RS256", "typ": "JWT", "kid": KEY["kid"]}
    signing_input = (_b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())).encode()
    n, d = _int("n"), _int("d")
    k = (n.bit_length() + 7) // 8
    # EMSA-PKCS1-v1_5: 0x00 0x01 FF.. 0x00 DigestInfo(SHA-256) hash.
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(signing_input).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
    signature = pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")
    return signing_input.decode() + "." + _b64url(signature)


def jwks():
    public = {name: KEY[name] for name in ("kty", "kid", "alg", "use", "n", "e")}
    return {"keys": [public]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body are two writes: without TCP_NODELAY the second waits for a delayed ACK.
    disable_nagle_algorithm = True

    def _send(self, status, payload):
        version = self.headers.get("x-api-version")
        if version:
            payload = {**payload, "api": version}
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-backend-env", ENV)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server naming)
        path = self.path.split("?", 1)[0]
        user = self.headers.get("x-user-id")
        if path == "/.well-known/jwks.json":
            self._send(200, jwks())
        elif path == "/content":
            self._send(200, {"env": ENV, "user": user, "items": list(ARTICLES.values())})
        elif path.startswith("/content/"):
            item = ARTICLES.get(path[len("/content/"):])
            if item:
                self._send(200, {"env": ENV, "user": user, "item": item})
            else:
                self._send(404, {"env": ENV, "message": "no such content"})
        elif path == "/comments":
            self._send(200, {"env": ENV, "user": user, "comments": COMMENTS})
        else:
            self._send(404, {"env": ENV, "message": "not found"})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        path = self.path.split("?", 1)[0]
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"env": ENV, "message": "body must be JSON"})
            return
        if not isinstance(payload, dict):
            self._send(400, {"env": ENV, "message": "body must be a JSON object"})
        elif path == "/auth/login":
            self._login(payload)
        elif path == "/comments":
            payload["id"] = f"c{len(COMMENTS) + 1}"
            payload["author"] = self.headers.get("x-user-id")
            COMMENTS.append(payload)
            self._send(201, {"env": ENV, "comment": payload})
        else:
            self._send(404, {"env": ENV, "message": "not found"})

    def _login(self, creds):
        """The example's identity provider: any username with a non-empty password."""
        username, password = creds.get("username"), creds.get("password")
        if not isinstance(username, str) or not username or not isinstance(password, str) or not password:
            self._send(400, {"message": "username and password are required"})
            return
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"u-{username}",
            "username": username,
            "scope": "content comments",
            "iat": now,
            "exp": now + TOKEN_TTL,
        }
        self._send(200, {
            "token": sign_rs256(claims),
            "tokenType": "Bearer",
            "expiresIn": TOKEN_TTL,
            "user": {"id": claims["sub"], "username": username},
        })

    def log_message(self, fmt, *args):
        sys.stderr.write(f"[backend {ENV}] {fmt % args}\n")


if __name__ == "__main__":
    ThreadingHTTPServer((HOST, PORT), Handler).serve_forever()
