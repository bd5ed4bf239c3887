#!/usr/bin/env python3
"""The chat function of the chat example (Python standard library only).

One Lambda-style function for the chat's three routes, as in AWS's WebSocket chat tutorial,
served on the HTTP invoke endpoint that AWS Lambda container images serve
(`POST /2015-03-31/functions/function/invocations`, what restapi.yaml's AWS_PROXY
integrations call). It gets AWS's WebSocket events and picks the work by
`requestContext.routeKey`:

- `$connect`: remember `requestContext.connectionId`, with the user the JWT authorizer
  verified (`requestContext.authorizer.claims.username`);
- `$disconnect`: forget it;
- `sendmessage`: post "<user>: <message>" to every remembered connection through the
  stage's @connections API (`POST {stage}/@connections/{id}`), signed with AWS Signature
  Version 4 (service `execute-api`) by the example credential of management-secret.yaml;
  a connection that answers 410 GoneException is forgotten, as AWS's tutorial does.

The stage's URL, where @connections is, is the second argument (default
http://127.0.0.1:8080/prod, the gateway of scripts/run-chat-example.sh). AWS's tutorial builds
it from the event (`https://{domainName}/{stage}`); here the gateway listens on a port the
event does not carry, so it is configured.
`GET /connections` lists the remembered connections (the tutorial keeps them in a DynamoDB
table; here a dict, so the README and the tests can look them up).

    python3 backend.py 9002 http://127.0.0.1:8080/prod   # serve on 127.0.0.1:9002 (restapi.yaml's URIs)
    python3 backend.py token ana       # print a JWT for user "ana" (valid 1 hour)

Tokens are signed with the mobile example's identity key
(examples/mobile-backend/identity/signing-key.json), whose public half authorizer.yaml lists:
an example key committed to the repository, as is the @connections secret: never use either
for anything real.
"""
import base64
import datetime
import hashlib
import hmac
import json
import os
import pathlib
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = os.environ.get("BACKEND_HOST", "127.0.0.1")

# The example @connections credential (must match restapi.yaml and management-secret.yaml).
ACCESS_KEY_ID = os.environ.get("CHAT_ACCESS_KEY_ID", "AKIAPORTICOCHATEXAMPLE")
SECRET_ACCESS_KEY = os.environ.get("CHAT_SECRET_ACCESS_KEY", "example-only-chat-secret-0123456789abcdef")
REGION = os.environ.get("CHAT_REGION", "us-east-1")  # any region: the gateway checks the signature, not the name
# The stage's URL (set from the command line).
STAGE_URL = "http://127.0.0.1:8080/prod"

# The example identity provider (the mobile example's; must match authorizer.yaml).
ISSUER = "https://auth.mobile.example"
AUDIENCE = "mobile-app"
TOKEN_TTL = 3600
KEY_FILE = pathlib.Path(__file__).resolve().parent.parent / "mobile-backend" / "identity" / "signing-key.json"

# connection id -> user name: the tutorial's DynamoDB table.
CONNECTIONS = {}
LOCK = threading.Lock()


def log(msg):
    sys.stderr.write(f"[chat] {msg}\n")
    sys.stderr.flush()


# --- AWS Signature Version 4 (docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html)


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_headers(method, url, body, access_key, secret_key, region, service="execute-api", now=None):
    """The headers that sign `method url` with `body`: host, x-amz-date, x-amz-content-sha256
    and Authorization (AWS4-HMAC-SHA256 over those three)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    u = urllib.parse.urlsplit(url)
    # Canonical URI: the path as sent, percent-encoded once more (unreserved characters and
    # '/' kept), as every AWS service but S3 wants it: '@' -> %40, an encoded '%3D' -> %253D.
    canonical_uri = urllib.parse.quote(u.path or "/", safe="/-_.~")
    query = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    encoded = sorted((urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in query)
    canonical_query = "&".join(f"{k}={v}" for k, v in encoded)
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": u.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical_headers = "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(headers))
    canonical_request = "\n".join(
        [method, canonical_uri, canonical_query, canonical_headers, signed, payload_hash]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret_key).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return headers


def post_to_connection(endpoint, connection_id, data):
    """@connections POST (apigatewaymanagementapi PostToConnection): the HTTP status."""
    url = f"{endpoint.rstrip('/')}/@connections/{urllib.parse.quote(connection_id, safe='')}"
    headers = sigv4_headers("POST", url, data, ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION)
    headers.pop("host")  # urllib sends it (the same value)
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        log(f"POST @connections/{connection_id}: {e.code} {e.headers.get('x-amzn-errortype')} {e.read()[:200]!r}")
        return e.code
    except OSError as e:  # the gateway did not answer
        log(f"POST @connections/{connection_id}: {e}")
        return None


# --- the example identity provider (RS256, as examples/mobile-backend/backend.py signs)


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(username, ttl=TOKEN_TTL):
    key = json.loads(KEY_FILE.read_text())

    def num(field):
        return int.from_bytes(base64.urlsafe_b64decode(key[field] + "=" * (-len(key[field]) % 4)), "big")

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"u-{username}", "username": username,
              "iat": now, "exp": now + ttl}
    header = {"alg": "RS256", "typ": "JWT", "kid": key["kid"]}
    signing_input = (_b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())).encode()
    n, d = num("n"), num("d")
    k = (n.bit_length() + 7) // 8
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(signing_input).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
    return signing_input.decode() + "." + _b64url(pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big"))


# --- the function


def handle_event(event):
    """One WebSocket event -> the Lambda result (statusCode 200, or 400 for a bad message)."""
    rc = event.get("requestContext") or {}
    route, cid = rc.get("routeKey"), rc.get("connectionId")
    if route == "$connect":
        claims = (rc.get("authorizer") or {}).get("claims") or {}
        user = claims.get("username") or claims.get("sub") or "anonymous"
        with LOCK:
            CONNECTIONS[cid] = user
        log(f"{user} joined ({cid}); {len(CONNECTIONS)} connected")
        return {"statusCode": 200}
    if route == "$disconnect":
        with LOCK:
            user = CONNECTIONS.pop(cid, None)
        log(f"{user} left ({cid}, status {rc.get('disconnectStatusCode')}); {len(CONNECTIONS)} connected")
        return {"statusCode": 200}
    if route == "sendmessage":
        try:
            message = json.loads(event.get("body") or "{}").get("message")
        except (ValueError, AttributeError):
            message = None
        if not isinstance(message, str):
            return {"statusCode": 400, "body": "message must be a string"}
        with LOCK:
            sender = CONNECTIONS.get(cid, "anonymous")
            targets = list(CONNECTIONS)
        data = f"{sender}: {message}".encode()
        for target in targets:
            if post_to_connection(STAGE_URL, target, data) == 410:  # GoneException
                with LOCK:
                    CONNECTIONS.pop(target, None)
        log(f"{sender} -> {len(targets)} connection(s): {message!r}")
        return {"statusCode": 200}
    return {"statusCode": 400, "body": f"no such route: {route}"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body are two writes: without TCP_NODELAY the second waits for a delayed ACK.
    disable_nagle_algorithm = True

    def _send(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server naming)
        if self.path.split("?", 1)[0] == "/connections":
            with LOCK:
                items = [{"connectionId": c, "user": u} for c, u in CONNECTIONS.items()]
            self._send(200, {"connections": items})
        else:
            self._send(404, {"message": "not found"})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.endswith("/invocations"):
            self._send(404, {"message": "not found"})
            return
        if os.environ.get("CHAT_LOG_EVENTS"):
            log(f"event: {raw.decode(errors='replace')}")
        try:
            event = json.loads(raw)
        except ValueError:
            self._send(400, {"message": "the event must be JSON"})
            return
        self._send(200, handle_event(event))

    def log_message(self, fmt, *args):
        pass  # handle_event logs what happened


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "token":
        print(mint_token(sys.argv[2]))
    elif len(sys.argv) <= 3 and (len(sys.argv) == 1 or sys.argv[1].isdigit()):
        port = int(sys.argv[1]) if len(sys.argv) > 1 else 9002
        STAGE_URL = sys.argv[2] if len(sys.argv) > 2 else STAGE_URL
        log(f"chat function on http://{HOST}:{port}/2015-03-31/functions/function/invocations;"
            f" @connections at {STAGE_URL}/@connections")
        ThreadingHTTPServer((HOST, port), Handler).serve_forever()
    else:
        sys.exit("usage: backend.py [PORT [STAGE_URL]] | backend.py token USER")
