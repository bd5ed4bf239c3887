#!/usr/bin/env bash
# Side-by-side proxy benchmark on a 2-core machine: direct backend, nginx, haproxy, portico.
#
#   bench/run.sh                  # DURATION=5 REPS=3
#   DURATION=10 REPS=5 bench/run.sh
#   SKIP_BUILD=1 PORTICO_BIN=/path/to/portico-proxy bench/run.sh
#   TARGETS="direct nginx haproxy" bench/run.sh     # a subset (no portico build)
#   TARGETS="nginx nginx-cache portico portico-cache" bench/run.sh   # cache hits side by side
#
# Targets: direct (the backend), nginx, haproxy, portico (the plain REST HTTP_PROXY path) and
# portico-canary (the same process and route on a stage with a 10% canary: the split's cost),
# portico-auth (the same portico process, the same route behind a JWT authorizer, an API key,
# its usage plan's token bucket and a stage throttle: see bench/portico-bench.yaml).
# Cache hits (issue 14): nginx-cache (the same nginx process, a second server whose
# proxy_cache lives on tmpfs, /dev/shm) and portico-cache (the same portico process and route
# on a stage with the response cache on): after the first request every request is a hit,
# checked before measuring and again per run (the backend must use no CPU during it).
#
# CPU 1: the backend (nginx, 1 worker, fixed 27-byte JSON) and wrk (-t1 -c32).
# CPU 0: the proxy under test, one worker/thread each.
# Repetitions are interleaved (direct nginx haproxy portico, direct nginx ...) and medians are
# reported. The number that separates proxies here is CPU per request, not req/s: see
# bench/README.md. Results: stdout and bench/results/latest.md.
set -euo pipefail

DURATION="${DURATION:-5}"
REPS="${REPS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
WARMUP="${WARMUP:-1}"
REQ_PATH="/bench/items"
BODY='{"ok":true,"items":[1,2,3]}'

PORT_BACKEND=18080
PORT_NGINX=18081
PORT_HAPROXY=18082
PORT_PORTICO=18083
PORT_PORTICO_ADMIN=18093
PORT_NGINX_CACHE=18084

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS_DIR="$ROOT/bench/results"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PORTICO_BIN="${PORTICO_BIN:-$TARGET_DIR/release/portico-proxy}"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------------------------------
# Tools
# ------------------------------------------------------------------------------------------
install_tools() {
  local missing=()
  for tool in nginx haproxy wrk curl taskset; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local pkgs=()
  for tool in "${missing[@]}"; do
    case "$tool" in
      taskset) pkgs+=(util-linux) ;;
      *) pkgs+=("$tool") ;;
    esac
  done
  log "installing ${pkgs[*]}"
  # Keep package scripts from starting a system nginx/haproxy on port 80 while installing.
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

# ------------------------------------------------------------------------------------------
# Processes: everything started here is killed on exit
# ------------------------------------------------------------------------------------------
WORK="$(mktemp -d /tmp/portico-bench.XXXXXX)"
# nginx-cache's proxy_cache_path: on tmpfs (/dev/shm; /tmp may be a disk), as Portico's cache
# is in memory.
CACHE_DIR="$(mktemp -d /dev/shm/portico-bench-cache.XXXXXX 2>/dev/null || mktemp -d "$WORK/cache.XXXXXX")"
STARTED_PIDS=()

cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]}"; do
    # Bounded wait; a process that ignores TERM gets KILL.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK" "$CACHE_DIR"
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

write_configs() {
  mkdir -p "$WORK/nginx-be" "$WORK/nginx-px" "$WORK/portico"
  cat > "$WORK/nginx-be/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $WORK/nginx-be/nginx.pid;
error_log $WORK/nginx-be/error.log warn;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $WORK/nginx-be/tmp; proxy_temp_path $WORK/nginx-be/tmp;
  fastcgi_temp_path $WORK/nginx-be/tmp; uwsgi_temp_path $WORK/nginx-be/tmp; scgi_temp_path $WORK/nginx-be/tmp;
  server { listen 127.0.0.1:$PORT_BACKEND;
    location / { default_type application/json; return 200 '$BODY'; } } }
EOF
  cat > "$WORK/nginx-px/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $WORK/nginx-px/nginx.pid;
error_log $WORK/nginx-px/error.log warn;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $WORK/nginx-px/tmp; proxy_temp_path $WORK/nginx-px/tmp;
  fastcgi_temp_path $WORK/nginx-px/tmp; uwsgi_temp_path $WORK/nginx-px/tmp; scgi_temp_path $WORK/nginx-px/tmp;
  upstream be { server 127.0.0.1:$PORT_BACKEND; keepalive 64; }
  server { listen 127.0.0.1:$PORT_NGINX; location / { proxy_pass http://be;
    proxy_http_version 1.1; proxy_set_header Connection ""; } }
  # nginx-cache: the same upstream and path, answered from proxy_cache on tmpfs. The backend
  # sends no Cache-Control, Expires or Set-Cookie; they are ignored anyway, as API Gateway's
  # stage cache ignores them. X-Cache-Status lets the smoke check see HIT.
  proxy_cache_path $CACHE_DIR levels=1:2 keys_zone=bench:1m max_size=64m inactive=1h
    use_temp_path=off;
  server { listen 127.0.0.1:$PORT_NGINX_CACHE; location / { proxy_pass http://be;
    proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_cache bench; proxy_cache_valid 200 1h; proxy_cache_lock on;
    proxy_ignore_headers Cache-Control Expires Set-Cookie;
    add_header X-Cache-Status \$upstream_cache_status; } } }
EOF
  cat > "$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$PORT_HAPROXY
  default_backend be
backend be
  server s1 127.0.0.1:$PORT_BACKEND
EOF
  # The bench API (bench/portico-bench.yaml) pointed at the backend.
  sed "s/BACKEND_ADDR/127.0.0.1:$PORT_BACKEND/" "$ROOT/bench/portico-bench.yaml" > "$WORK/portico/bench.yaml"
  cat > "$WORK/done.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
EOF
}

LAST_PID=""
start_bg() { # cpu logfile cmd... ; sets LAST_PID (no subshell: the pid must reach cleanup)
  local cpu="$1" logf="$2"; shift 2
  taskset -c "$cpu" "$@" >"$logf" 2>&1 &
  LAST_PID="$!"
  STARTED_PIDS+=("$LAST_PID")
}

# All pids of a process tree (the root and its direct children: nginx master + worker).
tree_pids() { echo "$1" $(pgrep -P "$1" 2>/dev/null || true); }

cpu_ticks() { # pids... -> utime+stime summed, in clock ticks
  local total=0 pid f
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    # Field 2 (comm) may contain spaces: drop everything up to the last ')'. What is left
    # starts at field 3, so utime (14) and stime (15) are at indexes 11 and 12.
    read -ra f <<<"$(sed 's/^.*) //' "/proc/$pid/stat")"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# Per target: the request path and headers wrk and curl send.
AUTH_KEY="bench-key-0123456789abcdef0123456789"
target_path() {
  case "$1" in
    portico-auth) echo /secure/items ;;
    portico-canary) echo /canary/items ;;
    portico-cache) echo /cached/items ;;
    *) echo "$REQ_PATH" ;;
  esac
}
target_headers() { # name -> one "Header: value" per line
  if [ "$1" = portico-auth ]; then
    printf 'Authorization: Bearer %s\nx-api-key: %s\n' "$AUTH_TOKEN" "$AUTH_KEY"
  fi
}
header_args() { # flag name -> argv words (flag "Header: value" ...)
  local h
  while IFS= read -r h; do [ -n "$h" ] && printf '%s\0%s\0' "$1" "$h"; done < <(target_headers "$2")
}

check_target() { # name port
  local got hdrs=()
  mapfile -d '' hdrs < <(header_args -H "$1")
  got="$(curl -s --max-time 5 "${hdrs[@]}" "http://127.0.0.1:$2$(target_path "$1")" || true)"
  [ "$got" = "$BODY" ] || die "$1 on :$2 answered '${got:0:200}' instead of the backend body"
  if [ "$1" = portico-auth ]; then # the guards are on: no token or no key is refused
    got="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$2/secure/items")"
    [ "$got" = 401 ] || die "portico-auth without a token answered $got, not 401"
  fi
  if [ "$1" = nginx-cache ]; then # the request above filled the cache: this one is a hit
    got="$(curl -s -o /dev/null -D - --max-time 5 "http://127.0.0.1:$2$(target_path "$1")" |
      tr -d '\r' | sed -n 's/^[Xx]-[Cc]ache-[Ss]tatus: //p')"
    [ "$got" = HIT ] || die "nginx-cache's second request was not a cache hit (X-Cache-Status '$got')"
  fi
  if [ "$1" = portico-cache ]; then # a hit now, counted on the admin port's metrics
    local before after
    before="$(cache_hits)"
    got="$(curl -s --max-time 5 "http://127.0.0.1:$2$(target_path "$1")" || true)"
    [ "$got" = "$BODY" ] || die "portico-cache's second answer was '${got:0:200}'"
    after="$(cache_hits)"
    [ "$after" -gt "$before" ] || die "portico-cache's second request was not a cache hit (portico_cache_hit_count $before -> $after)"
  fi
}

cache_hits() { # portico_cache_hit_count summed over its label sets
  curl -s --max-time 5 "http://127.0.0.1:$PORT_PORTICO_ADMIN/metrics" |
    awk '/^portico_cache_hit_count/ { n += $NF } END { printf "%d\n", n }'
}

run_wrk() { # name port -> prints "rps p50_us p99_us cpu_us_per_req errors requests"
  local name="$1" port="$2" pids=() before after be_before be_after out line requests dur errors p50 p99 hdrs=()
  case "$name" in
    direct) pids=() ;;
    nginx|nginx-cache) pids=($(tree_pids "$NGINX_PID")) ;;
    haproxy) pids=($(tree_pids "$HAPROXY_PID")) ;;
    portico|portico-auth|portico-canary|portico-cache) pids=("$PORTICO_PID") ;;
  esac
  mapfile -d '' hdrs < <(header_args -H "$name")
  be_before="$(cpu_ticks $(tree_pids "$BACKEND_PID"))"
  before="$(cpu_ticks "${pids[@]}")"
  out="$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/done.lua" \
    "${hdrs[@]}" "http://127.0.0.1:$port$(target_path "$name")")"
  after="$(cpu_ticks "${pids[@]}")"
  be_after="$(cpu_ticks $(tree_pids "$BACKEND_PID"))"
  line="$(grep '^RESULT ' <<<"$out")" || die "wrk printed no RESULT line for $name:\n$out"
  requests="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")"
  # A cache target whose requests reached the backend measured misses, not hits. A miss costs
  # the backend several us of CPU; a hit nothing (a tick or two of noise allowed).
  if is_cache_target "$name" && [ $((be_after - be_before)) -gt 2 ]; then
    die "$name: the backend used $((be_after - be_before)) ticks of CPU during the run: not all cache hits"
  fi
  dur="$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$line")"
  errors="$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")"
  p50="$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")"
  p99="$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")"
  awk -v r="$requests" -v d="$dur" -v e="$errors" -v p50="$p50" -v p99="$p99" \
      -v t="$((after - before))" -v hz="$CLK_TCK" -v has_cpu="${#pids[@]}" 'BEGIN {
    rps = r / (d / 1e6);
    cpu = (has_cpu > 0 && r > 0) ? (t * 1e6 / hz) / r : -1;
    printf "%.0f %d %d %.2f %d %d\n", rps, p50, p99, cpu, e, r }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit }
  if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------
install_tools
CLK_TCK="$(getconf CLK_TCK)"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (proxy on CPU 0, backend + wrk on CPU 1)"

read -ra TARGETS <<<"${TARGETS:-direct nginx nginx-cache haproxy portico portico-auth portico-canary portico-cache}"
has_target() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }
has_portico() {
  has_target portico || has_target portico-auth || has_target portico-canary || has_target portico-cache
}
has_nginx() { has_target nginx || has_target nginx-cache; }
is_cache_target() { [ "$1" = nginx-cache ] || [ "$1" = portico-cache ]; }

if has_target portico-auth; then
  # A token for the bench authorizer, signed RS256 with the example's key by the example's
  # identity provider code (Python standard library), valid for a day.
  AUTH_TOKEN="$(cd "$ROOT/examples/mobile-backend" && python3 -c '
import time, backend
now = int(time.time())
print(backend.sign_rs256({"iss": backend.ISSUER, "aud": backend.AUDIENCE, "sub": "u-bench",
                          "iat": now, "exp": now + 86400}))')" || die "cannot mint the bench token"
fi

if has_portico; then
  if [ -z "${SKIP_BUILD:-}" ]; then
    log "building portico-proxy (release)"
    (cd "$ROOT" && cargo build --release -p portico-proxy) >&2
  fi
  [ -x "$PORTICO_BIN" ] || die "$PORTICO_BIN not found"
fi

for p in $PORT_BACKEND $PORT_NGINX $PORT_NGINX_CACHE $PORT_HAPROXY $PORT_PORTICO $PORT_PORTICO_ADMIN; do
  port_free "$p" || die "127.0.0.1:$p is already in use"
done
write_configs

start_bg 1 "$WORK/backend.log" nginx -e stderr -p "$WORK/nginx-be/" -c "$WORK/nginx-be/nginx.conf"
BACKEND_PID="$LAST_PID"
wait_port "$PORT_BACKEND" backend
NGINX_PID="" HAPROXY_PID="" PORTICO_PID=""
if has_nginx; then
  start_bg 0 "$WORK/nginx.log" nginx -e stderr -p "$WORK/nginx-px/" -c "$WORK/nginx-px/nginx.conf"
  NGINX_PID="$LAST_PID"
  wait_port "$PORT_NGINX" nginx
  wait_port "$PORT_NGINX_CACHE" nginx-cache
fi
if has_target haproxy; then
  start_bg 0 "$WORK/haproxy.log" haproxy -db -f "$WORK/haproxy.cfg"
  HAPROXY_PID="$LAST_PID"
  wait_port "$PORT_HAPROXY" haproxy
fi
if has_portico; then
  start_bg 0 "$WORK/portico.log" "$PORTICO_BIN" --manifests "$WORK/portico" \
    --listen "127.0.0.1:$PORT_PORTICO" --admin-listen "127.0.0.1:$PORT_PORTICO_ADMIN" \
    --workers 1 --ready-file "$WORK/portico.ready"
  PORTICO_PID="$LAST_PID"
  for _ in $(seq 300); do [ -s "$WORK/portico.ready" ] && break; sleep 0.1; done
  [ -s "$WORK/portico.ready" ] || { cat "$WORK/portico.log" >&2; die "portico-proxy not ready"; }
fi

declare -A PORT=([direct]=$PORT_BACKEND [nginx]=$PORT_NGINX [nginx-cache]=$PORT_NGINX_CACHE
  [haproxy]=$PORT_HAPROXY [portico]=$PORT_PORTICO [portico-auth]=$PORT_PORTICO
  [portico-canary]=$PORT_PORTICO [portico-cache]=$PORT_PORTICO)
for t in "${TARGETS[@]}"; do [ -n "${PORT[$t]:-}" ] || die "unknown target '$t'"; done
for t in "${TARGETS[@]}"; do check_target "$t" "${PORT[$t]}"; done

log "warm-up ${WARMUP}s each"
for t in "${TARGETS[@]}"; do
  mapfile -d '' hdrs < <(header_args -H "$t")
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "${hdrs[@]}" \
    "http://127.0.0.1:${PORT[$t]}$(target_path "$t")" >/dev/null
done

declare -A RAW
for rep in $(seq "$REPS"); do
  for t in "${TARGETS[@]}"; do
    log "rep $rep/$REPS: $t"
    res="$(run_wrk "$t" "${PORT[$t]}")" || die "wrk run against $t failed"
    RAW[$t]+="$res"$'\n'
  done
done

# Processes still alive? A crash mid-run would make its numbers meaningless.
for pid in "${STARTED_PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || die "process $pid died during the run"
done

col() { awk -v c="$1" 'NF { print $c }' <<<"${RAW[$2]}" | median; }
fmt_us() { awk -v v="$1" 'BEGIN { printf "%d us", v }'; }

{
  echo "# Proxy benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores"
  echo "- $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(haproxy -v 2>&1 | head -1 | awk '{print "haproxy " $3}'), $(wrk -v 2>&1 | head -1 | awk '{print $1 " " $2}')"
  echo "- wrk -t1 -c$CONNECTIONS -d${DURATION}s on CPU 1 with the backend; proxy on CPU 0; median of $REPS interleaved runs"
  echo
  echo "| path | req/s | p50 | p99 | proxy CPU us/request | errors |"
  echo "|---|---|---|---|---|---|"
  for t in "${TARGETS[@]}"; do
    cpu="$(col 4 "$t")"
    if [ "$t" = direct ]; then cpu_s="-"; else cpu_s="$(awk -v v="$cpu" 'BEGIN { printf "%.1f us", v }')"; fi
    printf '| %s | %.0f | %s | %s | %s | %s |\n' "$t" "$(col 1 "$t")" \
      "$(fmt_us "$(col 2 "$t")")" "$(fmt_us "$(col 3 "$t")")" "$cpu_s" "$(col 5 "$t")"
  done
  echo
  echo "<details><summary>raw runs (req/s p50_us p99_us cpu_us/req errors requests)</summary>"
  echo
  for t in "${TARGETS[@]}"; do
    echo "$t:"
    awk 'NF { print "    " $0 }' <<<"${RAW[$t]}"
  done
  echo
  echo "</details>"
} > "$WORK/report.md"

mkdir -p "$RESULTS_DIR"
cp "$WORK/report.md" "$RESULTS_DIR/latest.md"
cat "$WORK/report.md"
