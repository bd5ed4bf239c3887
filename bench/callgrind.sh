#!/usr/bin/env bash
# Instructions per request of portico-proxy under callgrind (repeatable on a noisy machine,
# unlike CPU time): the bench route (REST {proxy+} ANY -> HTTP_PROXY to a local nginx),
# --workers 1, 2 s of wrk -c32 to warm up, counters zeroed, then DURATION s of wrk, dumped.
#
#   bench/callgrind.sh [BIN] [DURATION]        # BIN: target/release/portico-proxy
#   CG_PATH=/canary/items bench/callgrind.sh   # another route of bench/portico-bench.yaml
#   CG_PATH=/cached/items bench/callgrind.sh   # cache hits (the stage cache; the first curl fills it)
#   callgrind_annotate --inclusive=yes bench/results/callgrind.out.*   # where it goes
#
# Uses 127.0.0.1 ports 19280 (backend), 19283 and 19293; needs valgrind, nginx, wrk, curl.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/portico-proxy}"
DUR="${2:-4}"
OUT="$ROOT/bench/results"
W="$(mktemp -d /tmp/portico-callgrind.XXXXXX)"
mkdir -p "$W/be" "$W/portico" "$OUT"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"' EXIT
cat > "$W/be/nginx.conf" <<C
worker_processes 1; daemon off; pid $W/be/nginx.pid; error_log $W/be/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/be/tmp; proxy_temp_path $W/be/tmp;
  fastcgi_temp_path $W/be/tmp; uwsgi_temp_path $W/be/tmp; scgi_temp_path $W/be/tmp;
  server { listen 127.0.0.1:19280;
    location / { default_type application/json; return 200 '{"ok":true,"items":[1,2,3]}'; } } }
C
sed "s/BACKEND_ADDR/127.0.0.1:19280/" "$ROOT/bench/portico-bench.yaml" > "$W/portico/bench.yaml"
nginx -e stderr -p "$W/be/" -c "$W/be/nginx.conf" >"$W/be.log" 2>&1 &
PIDS+=($!)
CG_OUT="$OUT/callgrind.out"
rm -f "$CG_OUT"*
valgrind --tool=callgrind --callgrind-out-file="$CG_OUT" "$BIN" --manifests "$W/portico" \
  --listen 127.0.0.1:19283 --admin-listen 127.0.0.1:19293 --workers 1 \
  --ready-file "$W/ready" >"$W/portico.log" 2>&1 &
P=$!
PIDS+=($P)
for _ in $(seq 300); do [ -s "$W/ready" ] && break; sleep 0.2; done
[ -s "$W/ready" ] || { cat "$W/portico.log" >&2; exit 1; }
curl -sf http://127.0.0.1:19283${CG_PATH:-/bench/items} >/dev/null
wrk -t1 -c32 -d2s http://127.0.0.1:19283${CG_PATH:-/bench/items} >/dev/null
callgrind_control -z "$P" >/dev/null
wrk -t1 -c32 -d"${DUR}s" http://127.0.0.1:19283${CG_PATH:-/bench/items} >"$W/wrk.txt"
callgrind_control -d "$P" >/dev/null
REQ="$(awk '/requests in/ {print $1}' "$W/wrk.txt")"
F="$(ls -t "$CG_OUT".* | head -1)"
IR="$(callgrind_annotate "$F" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')"
echo "requests=$REQ instructions=$IR instructions/request=$((IR / REQ)) profile=$F"
