#!/usr/bin/env bash
# Runs the gateway on the WebSocket chat example (examples/chat/): its chat function
# (backend.py) and portico-proxy in standalone mode on $LISTEN (default 127.0.0.1:8080; admin
# on $ADMIN, default 127.0.0.1:9901). Ctrl-C stops both. The walk-through (two clients, a
# broadcast, boto3's @connections calls) is in README.md, "WebSocket APIs".
#
# The function listens on 127.0.0.1:9002, as the example's manifests say, and the proxy serves
# examples/chat/ itself (edit a file there while it runs and the proxy reloads it; open
# sockets stay open). When 9002 is taken, the function gets a free port instead and the proxy
# serves a copy of the manifests rewritten to it (the script says where). When $LISTEN or
# $ADMIN is taken, or a process fails to start or stops, the script says so, stops the rest
# and exits non-zero.
#
# The build uses the `quick` profile, as scripts/run-example.sh (README, "Two commands");
# PROFILE=dev uses the debug build that scripts/test.sh makes (target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLE=examples/chat
LISTEN=${LISTEN:-127.0.0.1:8080}
ADMIN=${ADMIN:-127.0.0.1:9901}
PROFILE=${PROFILE:-quick}
BIN=${CARGO_TARGET_DIR:-target}/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/portico-proxy

die() { echo "run-chat-example: $*" >&2; exit 1; }

# can_bind HOST:PORT: whether a listener could bind it now (SO_REUSEADDR, as the proxy and
# backend.py bind).
can_bind() {
  python3 - "$1" <<'EOF'
import socket, sys
host, _, port = sys.argv[1].rpartition(":")
host = host.strip("[]")
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((host, int(port)))
except (OSError, ValueError):
    sys.exit(1)
EOF
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
check_proxy_ports() {
  can_bind "$LISTEN" || die "$LISTEN is in use (\`ss -ltnp\` shows by whom): stop that process or pick another address, e.g. LISTEN=127.0.0.1:8081 $0"
  can_bind "$ADMIN" || die "the admin address $ADMIN is in use (\`ss -ltnp\` shows by whom): stop that process or pick another, e.g. ADMIN=127.0.0.1:9902 $0"
}

command -v python3 >/dev/null || die "python3 is needed for the chat function"
check_proxy_ports # before a build that may take minutes

cargo build --profile "$PROFILE" -p portico-proxy

pids=()
names=()
work=$(mktemp -d "${TMPDIR:-/tmp}/portico-chat.XXXXXX")
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The function's port: the example's own when free, else a free one and a copy of the
# manifests pointing at it.
FN_PORT=9002
MANIFESTS=$EXAMPLE
if ! can_bind 127.0.0.1:$FN_PORT; then
  FN_PORT=$(free_port)
  MANIFESTS=$work/manifests
  mkdir "$MANIFESTS"
  for f in "$EXAMPLE"/*.yaml; do
    sed -e "s/127\.0\.0\.1:9002/127.0.0.1:$FN_PORT/g" "$f" > "$MANIFESTS/$(basename "$f")"
  done
  echo "run-chat-example: 127.0.0.1:9002 in use: the chat function listens on $FN_PORT instead," >&2
  echo "  and the proxy serves a copy of $EXAMPLE rewritten to it: $MANIFESTS" >&2
fi
STAGE_URL="http://$LISTEN/prod"

start() {
  local name=$1
  shift
  "$@" &
  pids+=($!)
  names+=("$name")
}
alive() {
  kill -0 "${pids[$1]}" 2>/dev/null && return 0
  local rc=0
  wait "${pids[$1]}" || rc=$?
  die "${names[$1]} exited (status $rc) before it was serving; its output is above"
}

start "chat function (backend.py on 127.0.0.1:$FN_PORT)" python3 "$EXAMPLE/backend.py" "$FN_PORT" "$STAGE_URL"
for ((n = 0; ; n++)); do
  alive 0
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "http://127.0.0.1:$FN_PORT/connections" 2>/dev/null; then
    break
  fi
  [ "$n" -lt 300 ] || die "${names[0]} did not answer within 30 s"
  sleep 0.1
done

check_proxy_ports # again: the build took a while
ready=$work/ready.json
start "portico-proxy" "$BIN" --manifests "$MANIFESTS" --listen "$LISTEN" --admin-listen "$ADMIN" \
  --log-format text --ready-file "$ready"
for ((n = 0; ; n++)); do
  alive 1
  [ -s "$ready" ] && python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$ready" 2>/dev/null && break
  [ "$n" -lt 300 ] || die "portico-proxy wrote no ready file within 30 s"
  sleep 0.1
done

echo "portico: the chat on ws://$LISTEN/prod (@connections: $STAGE_URL/@connections; admin http://$ADMIN);" >&2
echo "  chat function on 127.0.0.1:$FN_PORT. The walk-through is in README.md, \"WebSocket APIs\"." >&2

rc=0
exited=
wait -n -p exited "${pids[@]}" || rc=$?
for i in "${!pids[@]}"; do
  if [ "${pids[$i]}" = "$exited" ]; then
    die "${names[$i]} stopped (status $rc); stopping the rest"
  fi
done
die "a process stopped (status $rc); stopping the rest"
