#!/usr/bin/env bash
# Idle kept-alive connections (issue 17): the memory each one costs in nginx and portico-proxy.
#
#   bench/idle.sh                          # N = 10000 and 50000
#   COUNTS="5000" bench/idle.sh            # other sizes
#   PORTICO_BIN=/path/to/portico-proxy bench/idle.sh
#   MIMALLOC_PURGE_DELAY=0 bench/idle.sh   # portico's allocator hands freed pages back at once
#
# With mimalloc's defaults, portico's RSS after the run also holds pages its connections freed
# as they parked but the allocator has not handed back yet (it does so lazily, on later
# allocations): that part varies between runs; MIMALLOC_PURGE_DELAY=0 measures what is in use.
#
# One backend (nginx, 1 worker, the fixed 27-byte JSON of bench/run.sh), and in front of it,
# both proxying to it with upstream keep-alive: nginx (1 worker) and portico-proxy
# (--workers 1, the bench route of bench/portico-bench.yaml: REST {proxy+} -> HTTP_PROXY).
# Per proxy and N: bench/idle_client.py opens N connections from source addresses spread over
# 127.1.0.0/16 (one per address: no ephemeral port runs out), sends one keep-alive GET on each,
# reads the answer and keeps the connection open; once all are answered and 3 s have passed,
# the proxy's RSS is read and the connections close. Each proxy is restarted per N.
#
# RSS: VmRSS from /proc/PID/status, for nginx the worker alone (the process holding the
# connections; the master is constant and its pages are mostly shared with the worker), for
# portico its one process. Per connection: (after - before) / N, before = the warmed process
# (one request served) with no client connection open.
#
# fds: each connection is one fd in the proxy and one in the client; the script raises
# `ulimit -n` (and nginx's worker_rlimit_nofile / worker_connections) to the largest N + 4096,
# as far as the hard limit allows.
#
# Uses 127.0.0.1 ports 19380 (backend), 19381 (nginx), 19383 and 19393 (portico); needs nginx,
# python3, curl. Everything started is killed on exit; the whole run stops by itself.
set -euo pipefail

COUNTS="${COUNTS:-10000 50000}"
SETTLE="${SETTLE:-3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORTICO_BIN="${PORTICO_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/portico-proxy}"
P_BACKEND=19380
P_NGINX=19381
P_PORTICO=19383
P_ADMIN=19393
REQ_PATH=/bench/items

log() { printf '[idle] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

MAX_N=0
for n in $COUNTS; do [ "$n" -gt "$MAX_N" ] && MAX_N="$n"; done
# Each connection is one fd in the proxy and one in the client; some slack for the rest.
NOFILE=$((MAX_N + 4096))
# Past the hard limit only with CAP_SYS_RESOURCE: an N that does not fit is skipped (the
# table says so), the others run.
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
NOFILE="$(ulimit -n)"
[ -x "$PORTICO_BIN" ] || die "no $PORTICO_BIN (cargo build --release -p portico-proxy)"

W="$(mktemp -d /tmp/portico-idle.XXXXXX)"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on 127.0.0.1:$1"
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

mkdir -p "$W/be" "$W/px" "$W/portico"
cat > "$W/be/nginx.conf" <<C
worker_processes 1; daemon off; pid $W/be/nginx.pid; error_log $W/be/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/be/tmp; proxy_temp_path $W/be/tmp;
  fastcgi_temp_path $W/be/tmp; uwsgi_temp_path $W/be/tmp; scgi_temp_path $W/be/tmp;
  server { listen 127.0.0.1:$P_BACKEND;
    location / { default_type application/json; return 200 '{"ok":true,"items":[1,2,3]}'; } } }
C
cat > "$W/px/nginx.conf" <<C
worker_processes 1; daemon off; pid $W/px/nginx.pid; error_log $W/px/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections $NOFILE; }
http { access_log off; client_body_temp_path $W/px/tmp; proxy_temp_path $W/px/tmp;
  fastcgi_temp_path $W/px/tmp; uwsgi_temp_path $W/px/tmp; scgi_temp_path $W/px/tmp;
  keepalive_timeout 600s; keepalive_requests 100000;
  upstream be { server 127.0.0.1:$P_BACKEND; keepalive 64; }
  server { listen 127.0.0.1:$P_NGINX backlog=4096; location / { proxy_pass http://be;
    proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
sed "s/BACKEND_ADDR/127.0.0.1:$P_BACKEND/" "$ROOT/bench/portico-bench.yaml" > "$W/portico/bench.yaml"

nginx -e stderr -p "$W/be/" -c "$W/be/nginx.conf" >"$W/be.log" 2>&1 &
PIDS+=($!)
wait_port "$P_BACKEND"

# start_proxy NAME -> sets PROXY_PID (the process holding the connections) and PROXY_PORT
start_proxy() {
  case "$1" in
    nginx)
      nginx -e stderr -p "$W/px/" -c "$W/px/nginx.conf" >"$W/px.log" 2>&1 &
      PIDS+=($!)
      PROXY_PORT=$P_NGINX
      wait_port "$PROXY_PORT"
      PROXY_PID="$(pgrep -P "${PIDS[-1]}" | head -1)"
      ;;
    portico)
      rm -f "$W/ready"
      "$PORTICO_BIN" --manifests "$W/portico" --listen 127.0.0.1:$P_PORTICO \
        --admin-listen 127.0.0.1:$P_ADMIN --workers 1 --client-header-timeout-seconds 600 \
        --ready-file "$W/ready" >"$W/portico.log" 2>&1 &
      PIDS+=($!)
      PROXY_PID=$!
      PROXY_PORT=$P_PORTICO
      for _ in $(seq 300); do [ -s "$W/ready" ] && break; sleep 0.1; done
      [ -s "$W/ready" ] || { cat "$W/portico.log" >&2; die "portico did not start"; }
      ;;
  esac
  [ -n "$PROXY_PID" ] || die "no $1 worker"
}
stop_proxy() {
  local root="${PIDS[-1]}"
  kill "$root" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$root" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$root" 2>/dev/null || true
  wait "$root" 2>/dev/null || true
  unset 'PIDS[-1]'
}

ROWS=()
for n in $COUNTS; do
  if [ "$NOFILE" -lt $((n + 100)) ]; then
    log "N=$n skipped: the fd limit is $NOFILE (hard limit $(ulimit -Hn)); the proxy needs N + 100"
    ROWS+=("| nginx, portico | $n | skipped: fd limit $NOFILE < N + 100 | | | | |")
    continue
  fi
  for target in nginx portico; do
    start_proxy "$target"
    curl -sf "http://127.0.0.1:$PROXY_PORT$REQ_PATH" >/dev/null || die "$target does not answer"
    sleep 1
    before="$(rss_kib "$PROXY_PID")"
    mkfifo "$W/go"
    python3 "$ROOT/bench/idle_client.py" 127.0.0.1 "$PROXY_PORT" "$REQ_PATH" "$n" \
      <"$W/go" >"$W/client.out" 2>"$W/client.err" &
    client=$!
    PIDS+=("$client")
    exec 4>"$W/go" # holds the client's stdin open until the measurement is taken
    for _ in $(seq 3000); do
      grep -q '^ready' "$W/client.out" 2>/dev/null && break
      kill -0 "$client" 2>/dev/null || { cat "$W/client.err" >&2; die "client failed"; }
      sleep 0.1
    done
    read -r _ ok failed <"$W/client.out" || die "client: $(cat "$W/client.err")"
    sleep "$SETTLE"
    after="$(rss_kib "$PROXY_PID")"
    exec 4>&- # the client closes its connections and exits
    wait "$client" 2>/dev/null || true
    unset 'PIDS[-1]'
    rm -f "$W/go"
    per="$(awk -v a="$after" -v b="$before" -v n="$ok" 'BEGIN { printf "%.2f", (a - b) / n }')"
    log "$target N=$n: $ok kept open ($failed failed); RSS $before -> $after KiB: $per KiB per connection"
    ROWS+=("| $target | $n | $ok | $failed | $before | $after | $per |")
    stop_proxy
  done
done

echo
echo "| proxy | N | kept open | failed | RSS before (KiB) | RSS after (KiB) | KiB per connection |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
