#!/usr/bin/env bash
# WebSocket messages side by side on a 2-core machine: direct echo, nginx, portico.
#
#   bench/ws.sh                   # DURATION=5 REPS=3 CONNECTIONS=32, builds both binaries
#   SKIP_BUILD=1 PORTICO_BIN=/path/to/portico-proxy bench/ws.sh
#   TARGETS="nginx portico" bench/ws.sh
#
# Targets (all send the same 27-byte text message and wait for the same text back):
#   direct        the WebSocket echo backend itself (the ceiling)
#   nginx         nginx, 1 worker, proxying the WebSocket connection to that echo backend
#                 (proxy_http_version 1.1, Upgrade/Connection "upgrade")
#   portico       portico-proxy --workers 1, a WebSocket API (bench/ws-portico.yaml, /ws)
#                 whose two-way $default route is HTTP_PROXY: each message is an HTTP POST
#                 to the backend (nginx, `return 200` with the same body), its answer the reply
#   portico-mock  the same process, a second WebSocket API (/ws-mock): a two-way MOCK route
#                 answering the same body, no backend
#
# CPU 1: the backends (the echo server, the HTTP nginx) and the load client (one thread).
# CPU 0: the gateway under test (nginx or portico-proxy), one worker each.
# The load client (bench/ws-client, tokio-tungstenite) opens CONNECTIONS sockets, then each
# sends a message, waits for its answer and sends the next (closed loop) for DURATION
# seconds. Gateway CPU is utime + stime from /proc/PID/stat read by the client right after
# the sockets are open and right after the last answer (handshakes and closes not counted).
# Rounds are interleaved (direct nginx portico portico-mock, direct ...); the table shows
# medians. Results: stdout and bench/results/ws-latest.md. See bench/README.md.
set -euo pipefail

DURATION="${DURATION:-5}"
REPS="${REPS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
WARMUP="${WARMUP:-1}"
MESSAGE='{"ok":true,"items":[1,2,3]}'

# Not bench/run.sh's ports (18080-18084, 18093): both can run on one machine (not at once).
PORT_BACKEND=18180
PORT_NGINX=18181
PORT_PORTICO=18183
PORT_ECHO=18186
PORT_PORTICO_ADMIN=18193

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS_DIR="$ROOT/bench/results"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PORTICO_BIN="${PORTICO_BIN:-$TARGET_DIR/release/portico-proxy}"
CLIENT_DIR="$ROOT/bench/ws-client"
CLIENT_BIN="${WS_CLIENT_BIN:-$CLIENT_DIR/target/release/ws-bench}"

log() { printf '[ws-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_tools() {
  local missing=()
  for tool in nginx taskset; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local pkgs=()
  for tool in "${missing[@]}"; do
    case "$tool" in taskset) pkgs+=(util-linux) ;; *) pkgs+=("$tool") ;; esac
  done
  log "installing ${pkgs[*]}"
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  [ "$made_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  for tool in "${missing[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool still missing after install"
  done
}

WORK="$(mktemp -d /tmp/portico-ws-bench.XXXXXX)"
STARTED_PIDS=()

cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${STARTED_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port="$1" name="$2"
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$name did not listen on 127.0.0.1:$port"
}

nginx_common() { # dir -> the lines every nginx here shares
  cat <<EOF
worker_processes 1; daemon off; pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}

write_configs() {
  mkdir -p "$WORK/nginx-be" "$WORK/nginx-px" "$WORK/portico"
  local d
  for d in nginx-be nginx-px; do mkdir -p "$WORK/$d/tmp"; done
  { nginx_common "$WORK/nginx-be"; cat <<EOF
http { access_log off;
  client_body_temp_path $WORK/nginx-be/tmp; proxy_temp_path $WORK/nginx-be/tmp;
  fastcgi_temp_path $WORK/nginx-be/tmp; uwsgi_temp_path $WORK/nginx-be/tmp; scgi_temp_path $WORK/nginx-be/tmp;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$PORT_BACKEND;
    location / { default_type application/json; return 200 '$MESSAGE'; } } }
EOF
  } > "$WORK/nginx-be/nginx.conf"
  # The WebSocket proxy: nginx's documented setup (https://nginx.org/en/docs/http/websocket.html).
  # Once upgraded, nginx relays bytes both ways without looking at frames.
  { nginx_common "$WORK/nginx-px"; cat <<EOF
http { access_log off;
  client_body_temp_path $WORK/nginx-px/tmp; proxy_temp_path $WORK/nginx-px/tmp;
  fastcgi_temp_path $WORK/nginx-px/tmp; uwsgi_temp_path $WORK/nginx-px/tmp; scgi_temp_path $WORK/nginx-px/tmp;
  upstream echo { server 127.0.0.1:$PORT_ECHO; }
  server { listen 127.0.0.1:$PORT_NGINX;
    location / { proxy_pass http://echo; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h; proxy_send_timeout 1h; } } }
EOF
  } > "$WORK/nginx-px/nginx.conf"
  sed "s/BACKEND_ADDR/127.0.0.1:$PORT_BACKEND/" "$ROOT/bench/ws-portico.yaml" > "$WORK/portico/ws.yaml"
}

LAST_PID=""
start_bg() { # cpu logfile cmd... ; sets LAST_PID
  local cpu="$1" logf="$2"; shift 2
  taskset -c "$cpu" "$@" >"$logf" 2>&1 &
  LAST_PID="$!"
  STARTED_PIDS+=("$LAST_PID")
}

tree_pids() { echo "$1" $(pgrep -P "$1" 2>/dev/null || true); }

cpu_ticks() { # pids... -> utime+stime summed, in clock ticks
  local total=0 pid f
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    read -ra f <<<"$(sed 's/^.*) //' "/proc/$pid/stat")"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

target_url() {
  case "$1" in
    direct) echo "ws://127.0.0.1:$PORT_ECHO/ws" ;;
    nginx) echo "ws://127.0.0.1:$PORT_NGINX/ws" ;;
    portico) echo "ws://127.0.0.1:$PORT_PORTICO/ws" ;;
    portico-mock) echo "ws://127.0.0.1:$PORT_PORTICO/ws-mock" ;;
    *) die "unknown target '$1'" ;;
  esac
}

target_pids() { # the gateway's processes (none for direct)
  case "$1" in
    nginx) tree_pids "$NGINX_PID" ;;
    portico|portico-mock) echo "$PORTICO_PID" ;;
  esac
}

run_load() { # name -> "msgs_per_s p50_us p99_us cpu_us_per_msg errors messages"
  local name="$1" pids out line be_before be_after
  pids="$(target_pids "$name" | tr ' ' ',')"
  be_before="$(cpu_ticks $(tree_pids "$BACKEND_PID"))"
  out="$(taskset -c 1 "$CLIENT_BIN" load --url "$(target_url "$name")" --message "$MESSAGE" \
    --connections "$CONNECTIONS" --duration "$DURATION" --pids "$pids")"
  be_after="$(cpu_ticks $(tree_pids "$BACKEND_PID"))"
  line="$(grep '^RESULT ' <<<"$out")" || die "the client printed no RESULT line for $name: $out"
  # The HTTP backend is portico's alone: busy for the HTTP_PROXY route, idle for MOCK.
  if [ "$name" = portico-mock ] && [ $((be_after - be_before)) -gt 2 ]; then
    die "portico-mock: the HTTP backend used $((be_after - be_before)) ticks: messages reached it"
  fi
  if [ "$name" = portico ] && [ $((be_after - be_before)) -eq 0 ]; then
    die "portico: the HTTP backend used no CPU: messages did not reach it"
  fi
  awk -v hz="$CLK_TCK" -v has_cpu="$([ -n "$pids" ] && echo 1 || echo 0)" '
    { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { r = v["messages"]; rate = r / (v["duration_us"] / 1e6)
      cpu = (has_cpu && r > 0) ? (v["cpu_ticks"] * 1e6 / hz) / r : -1
      printf "%.0f %d %d %.2f %d %d\n", rate, v["p50_us"], v["p99_us"], cpu, v["errors"], r }' <<<"$line"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit }
  if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ------------------------------------------------------------------------------------------
install_tools
CLK_TCK="$(getconf CLK_TCK)"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (gateway on CPU 0, backends + client on CPU 1)"

read -ra TARGETS <<<"${TARGETS:-direct nginx portico portico-mock}"
for t in "${TARGETS[@]}"; do target_url "$t" >/dev/null; done
has_target() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }
has_portico() { has_target portico || has_target portico-mock; }

if [ -z "${SKIP_BUILD:-}" ]; then
  log "building the load client (release, bench/ws-client/target)"
  cargo build --release --manifest-path "$CLIENT_DIR/Cargo.toml" >&2
  if has_portico; then
    log "building portico-proxy (release)"
    (cd "$ROOT" && cargo build --release -p portico-proxy) >&2
  fi
fi
[ -x "$CLIENT_BIN" ] || die "$CLIENT_BIN not found (cargo build --release --manifest-path bench/ws-client/Cargo.toml)"
if has_portico; then [ -x "$PORTICO_BIN" ] || die "$PORTICO_BIN not found"; fi

for p in $PORT_BACKEND $PORT_NGINX $PORT_PORTICO $PORT_ECHO $PORT_PORTICO_ADMIN; do
  port_free "$p" || die "127.0.0.1:$p is already in use"
done
write_configs

start_bg 1 "$WORK/backend.log" nginx -e stderr -p "$WORK/nginx-be/" -c "$WORK/nginx-be/nginx.conf"
BACKEND_PID="$LAST_PID"
wait_port "$PORT_BACKEND" backend
start_bg 1 "$WORK/echo.log" "$CLIENT_BIN" echo --listen "127.0.0.1:$PORT_ECHO"
wait_port "$PORT_ECHO" "echo backend"
NGINX_PID="" PORTICO_PID=""
if has_target nginx; then
  start_bg 0 "$WORK/nginx.log" nginx -e stderr -p "$WORK/nginx-px/" -c "$WORK/nginx-px/nginx.conf"
  NGINX_PID="$LAST_PID"
  wait_port "$PORT_NGINX" nginx
fi
if has_portico; then
  start_bg 0 "$WORK/portico.log" "$PORTICO_BIN" --manifests "$WORK/portico" \
    --listen "127.0.0.1:$PORT_PORTICO" --admin-listen "127.0.0.1:$PORT_PORTICO_ADMIN" \
    --workers 1 --ready-file "$WORK/portico.ready"
  PORTICO_PID="$LAST_PID"
  for _ in $(seq 300); do [ -s "$WORK/portico.ready" ] && break; sleep 0.1; done
  [ -s "$WORK/portico.ready" ] || { cat "$WORK/portico.log" >&2; die "portico-proxy not ready"; }
fi

for t in "${TARGETS[@]}"; do
  taskset -c 1 "$CLIENT_BIN" check --url "$(target_url "$t")" --message "$MESSAGE" >/dev/null ||
    { [ -f "$WORK/portico.log" ] && tail -20 "$WORK/portico.log" >&2; die "$t did not echo the message"; }
done

log "warm-up ${WARMUP}s each"
for t in "${TARGETS[@]}"; do
  taskset -c 1 "$CLIENT_BIN" load --url "$(target_url "$t")" --message "$MESSAGE" \
    --connections "$CONNECTIONS" --duration "$WARMUP" >/dev/null
done

declare -A RAW
for rep in $(seq "$REPS"); do
  for t in "${TARGETS[@]}"; do
    log "rep $rep/$REPS: $t"
    res="$(run_load "$t")" || die "the load run against $t failed"
    RAW[$t]+="$res"$'\n'
  done
done

for pid in "${STARTED_PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || die "process $pid died during the run"
done

col() { awk -v c="$1" 'NF { print $c }' <<<"${RAW[$2]}" | median; }
fmt_us() { awk -v v="$1" 'BEGIN { printf "%d us", v }'; }

{
  echo "# WebSocket benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores"
  echo "- $(nginx -v 2>&1 | sed 's/^nginx version: //'), load client bench/ws-client (tokio-tungstenite 0.30)"
  echo "- $CONNECTIONS connections, ping-pong ${DURATION}s on CPU 1 with the backends; gateway on CPU 0; median of $REPS interleaved runs"
  echo
  echo "| path | messages/s | p50 | p99 | gateway CPU us/message | errors |"
  echo "|---|---|---|---|---|---|"
  for t in "${TARGETS[@]}"; do
    cpu="$(col 4 "$t")"
    if [ "$t" = direct ]; then cpu_s="-"; else cpu_s="$(awk -v v="$cpu" 'BEGIN { printf "%.1f us", v }')"; fi
    printf '| %s | %.0f | %s | %s | %s | %s |\n' "$t" "$(col 1 "$t")" \
      "$(fmt_us "$(col 2 "$t")")" "$(fmt_us "$(col 3 "$t")")" "$cpu_s" "$(col 5 "$t")"
  done
  echo
  echo "<details><summary>raw runs (messages/s p50_us p99_us cpu_us/message errors messages)</summary>"
  echo
  for t in "${TARGETS[@]}"; do
    echo "$t:"
    awk 'NF { print "    " $0 }' <<<"${RAW[$t]}"
  done
  echo
  echo "</details>"
} > "$WORK/report.md"

mkdir -p "$RESULTS_DIR"
cp "$WORK/report.md" "$RESULTS_DIR/ws-latest.md"
cat "$WORK/report.md"
