#!/usr/bin/env bash
# Runs the gateway on the bundled example: two sample backends (dev on :9000, prod on :9001)
# and portico-proxy in standalone mode on 127.0.0.1:8080 (admin on 127.0.0.1:9901).
# Ctrl-C stops everything. Edit a file in examples/mobile-backend/ while it runs: the proxy
# recompiles and swaps the config; a broken edit is logged and the old config keeps serving.
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLE=${EXAMPLE:-examples/mobile-backend}
LISTEN=${LISTEN:-127.0.0.1:8080}
ADMIN=${ADMIN:-127.0.0.1:9901}

cargo build --release -p portico-proxy

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
python3 "$EXAMPLE/backend.py" 9000 dev & pids+=($!)
python3 "$EXAMPLE/backend.py" 9001 prod & pids+=($!)

echo "portico: serving $EXAMPLE on http://$LISTEN (admin http://$ADMIN)." >&2
echo "  The walk-through (token, API key, a 429) is in README.md, \"Two commands\". First steps:" >&2
echo "  curl -si http://$LISTEN/dev/profile                 # 401: no token" >&2
echo "  curl -s -XPOST http://$LISTEN/dev/auth/login -d '{\"username\":\"ana\",\"password\":\"s3cret\"}'" >&2
./target/release/portico-proxy --manifests "$EXAMPLE" --listen "$LISTEN" --admin-listen "$ADMIN" --log-format text &
pids+=($!)
wait "${pids[-1]}"
