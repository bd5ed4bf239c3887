#!/usr/bin/env python3
"""Sample content backend for the mobile-backend example (Python standard library only).

Serves /content, /content/{id} and /comments on 127.0.0.1:PORT and says which environment
answered, so the dev and prod stages can be told apart:

    python3 backend.py 9000 dev
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
ENV = sys.argv[2] if len(sys.argv) > 2 else "dev"

ARTICLES = {
    "1": {"id": "1", "title": "Welcome to Portico", "body": "API Gateway on your own cluster."},
    "2": {"id": "2", "title": "Stages", "body": "dev and prod point at different backends."},
}
COMMENTS = [{"id": "c1", "contentId": "1", "text": "Nice!"}]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-backend-env", ENV)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server naming)
        path = self.path.split("?", 1)[0]
        if path == "/content":
            self._send(200, {"env": ENV, "items": list(ARTICLES.values())})
        elif path.startswith("/content/"):
            item = ARTICLES.get(path[len("/content/"):])
            if item:
                self._send(200, {"env": ENV, "item": item})
            else:
                self._send(404, {"env": ENV, "message": "no such content"})
        elif path == "/comments":
            self._send(200, {"env": ENV, "comments": COMMENTS})
        else:
            self._send(404, {"env": ENV, "message": "not found"})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        if self.path.split("?", 1)[0] != "/comments":
            self._send(404, {"env": ENV, "message": "not found"})
            return
        try:
            comment = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"env": ENV, "message": "body must be JSON"})
            return
        comment["id"] = f"c{len(COMMENTS) + 1}"
        COMMENTS.append(comment)
        self._send(201, {"env": ENV, "comment": comment})

    def log_message(self, fmt, *args):
        sys.stderr.write(f"[backend {ENV}] {fmt % args}\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
