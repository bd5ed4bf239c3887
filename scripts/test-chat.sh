#!/usr/bin/env bash
# The chat example (examples/chat/) end to end with real clients: the portico-proxy binary
# serving the example's manifests, its chat function (backend.py), Python `websockets` clients
# and boto3's `apigatewaymanagementapi` client (tests/chat, pytest; the README's "WebSocket
# APIs" walk-through). Keeps a venv with pinned versions in a cache dir (reused when present),
# builds the proxy (debug) unless PORTICO_BINS_BUILT says scripts/test.sh just did, and runs
# tests/chat. Extra arguments go to pytest, e.g. `scripts/test-chat.sh -k boto3 -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

WEBSOCKETS_VERSION=17.4
BOTO3_VERSION=1.44.5
PYTEST_VERSION=9.2.0
VENV=${PORTICO_CHAT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/portico/chat-venv}
STAMP="$VENV/.portico-requirements"
WANT="websockets==$WEBSOCKETS_VERSION boto3==$BOTO3_VERSION pytest==$PYTEST_VERSION"

if ! command -v python3 >/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3 python3-venv
fi
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "==> installing $WANT into $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
    rm -rf "$VENV" && python3 -m venv "$VENV"
  fi
  # shellcheck disable=SC2086 # $WANT is a list of requirements
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $WANT
  echo "$WANT" > "$STAMP"
fi

# scripts/test.sh sets PORTICO_BINS_BUILT: its `cargo test --workspace` has just built the
# binary (a `cargo build` here would rebuild every dependency with another feature set).
if [ -z "${PORTICO_BINS_BUILT:-}" ]; then
  CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0} cargo build -q -p portico-proxy --bin portico-proxy
fi
bin=${PORTICO_PROXY_BIN:-target/debug/portico-proxy}
[ -x "$bin" ] || { echo "$bin is missing (unset PORTICO_BINS_BUILT to build it)" >&2; exit 1; }
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rs tests/chat "$@"
