#!/usr/bin/env bash
# Runs the gateway on the bundled example: two sample backends (dev and prod, backend.py) and
# portico-proxy in standalone mode on $LISTEN (default 127.0.0.1:8080; admin on $ADMIN,
# default 127.0.0.1:9901). Ctrl-C stops everything.
#
# The backends listen on 127.0.0.1:9000 (dev) and :9001 (prod), as the example's manifests
# say, and the proxy serves examples/mobile-backend/ itself: edit a file there while it runs
# and the proxy recompiles and swaps the config (a broken edit is logged, the old config keeps
# serving). When 9000 or 9001 is taken, the backends get free ports instead and the proxy
# serves a copy of the manifests rewritten to them (the script says where; edit that copy).
# When $LISTEN or $ADMIN is taken, or a backend or the proxy fails to start or stops, the
# script says so, stops the rest and exits non-zero.
#
# The build uses the `quick` profile (Cargo.toml): about 3 minutes the first time on 2 cores
# (release, with fat LTO: 6 to 7.5), seconds after that (README, "Two commands"); bench/ and
# the container image use `release`.
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLE=${EXAMPLE:-examples/mobile-backend}
LISTEN=${LISTEN:-127.0.0.1:8080}
ADMIN=${ADMIN:-127.0.0.1:9901}
BIN=${CARGO_TARGET_DIR:-target}/quick/portico-proxy

die() { echo "run-example: $*" >&2; exit 1; }

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

command -v python3 >/dev/null || die "python3 is needed for the sample backends"
check_proxy_ports # before a build that may take minutes

cargo build --profile quick -p portico-proxy

pids=()
names=()
work=$(mktemp -d "${TMPDIR:-/tmp}/portico-example.XXXXXX")
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The backends' ports: the example's own when both are free, else two free ones and a copy of
# the manifests pointing at them (stage variables and the Authorizer's jwksUri).
DEV_PORT=9000
PROD_PORT=9001
MANIFESTS=$EXAMPLE
taken=()
can_bind 127.0.0.1:$DEV_PORT || taken+=($DEV_PORT)
can_bind 127.0.0.1:$PROD_PORT || taken+=($PROD_PORT)
if [ "${#taken[@]}" -gt 0 ]; then
  DEV_PORT=$(free_port)
  PROD_PORT=$(free_port)
  while [ "$PROD_PORT" = "$DEV_PORT" ]; do PROD_PORT=$(free_port); done
  MANIFESTS=$work/manifests
  mkdir "$MANIFESTS"
  for f in "$EXAMPLE"/*.yaml "$EXAMPLE"/*.yml "$EXAMPLE"/*.json; do
    [ -f "$f" ] || continue
    sed -e "s/127\.0\.0\.1:9000/127.0.0.1:$DEV_PORT/g" -e "s/127\.0\.0\.1:9001/127.0.0.1:$PROD_PORT/g" \
      "$f" > "$MANIFESTS/$(basename "$f")"
  done
  echo "run-example: 127.0.0.1:${taken[*]} in use: the backends listen on $DEV_PORT (dev) and $PROD_PORT (prod) instead," >&2
  echo "  and the proxy serves a copy of $EXAMPLE rewritten to them: $MANIFESTS (edit that copy to see a reload)." >&2
fi

# start NAME COMMAND...: runs it in the background, remembered for the supervision below.
start() {
  local name=$1
  shift
  "$@" &
  pids+=($!)
  names+=("$name")
}
# alive INDEX: whether that process still runs; if not, says so and exits.
alive() {
  kill -0 "${pids[$1]}" 2>/dev/null && return 0
  local rc=0
  wait "${pids[$1]}" || rc=$?
  die "${names[$1]} exited (status $rc) before it was serving; its output is above"
}

start "backend dev (backend.py on 127.0.0.1:$DEV_PORT)" python3 "$EXAMPLE/backend.py" "$DEV_PORT" dev
start "backend prod (backend.py on 127.0.0.1:$PROD_PORT)" python3 "$EXAMPLE/backend.py" "$PROD_PORT" prod
# Each backend must answer (bounded: 30 s) while its own process is alive.
for i in 0 1; do
  port=$([ "$i" = 0 ] && echo "$DEV_PORT" || echo "$PROD_PORT")
  for ((n = 0; ; n++)); do
    alive "$i"
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "http://127.0.0.1:$port/.well-known/jwks.json" 2>/dev/null; then
      alive "$i"
      break
    fi
    [ "$n" -lt 300 ] || die "${names[$i]} did not answer within 30 s"
    sleep 0.1
  done
done

check_proxy_ports # again: the build took a while
ready=$work/ready.json
start "portico-proxy" "$BIN" --manifests "$MANIFESTS" --listen "$LISTEN" --admin-listen "$ADMIN" \
  --log-format text --ready-file "$ready"
for ((n = 0; ; n++)); do
  alive 2
  [ -s "$ready" ] && python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$ready" 2>/dev/null && break
  [ "$n" -lt 300 ] || die "portico-proxy wrote no ready file within 30 s"
  sleep 0.1
done

echo "portico: serving $MANIFESTS on http://$LISTEN (admin http://$ADMIN); backends on :$DEV_PORT (dev), :$PROD_PORT (prod)." >&2
echo "  The walk-through (token, API key, a 429) is in README.md, \"Two commands\". First steps:" >&2
echo "  curl -si http://$LISTEN/dev/profile                 # 401: no token" >&2
echo "  curl -s -XPOST http://$LISTEN/dev/auth/login -d '{\"username\":\"ana\",\"password\":\"s3cret\"}'" >&2

# Serve until one of the three stops (or Ctrl-C): then stop the others and say which.
rc=0
exited=
wait -n -p exited "${pids[@]}" || rc=$?
for i in "${!pids[@]}"; do
  if [ "${pids[$i]}" = "$exited" ]; then
    die "${names[$i]} stopped (status $rc); stopping the rest"
  fi
done
die "a process stopped (status $rc); stopping the rest"
