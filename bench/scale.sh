#!/usr/bin/env bash
# Multi-tenant scale bench (issue 16): generated fleets served by the standalone proxy.
#
#   bench/scale.sh                                   # SIZES="10:100:5000 10:100:20000 1000:30000:10000"
#   SIZES="100:3000:100000" READY_CAP=120 bench/scale.sh
#   SIZES="10:100:5000" AUTHORIZERS=2 PLANS=4 bench/scale.sh
#   SKIP_BUILD=1 PORTICO_BIN=... PROBE_BIN=... BUILT_FROM="commit abc1234" bench/scale.sh
#                                                    # already built binaries (BUILT_FROM: for the report)
#
# A size is APIS:ROUTES:KEYS (ROUTES counts methods over all APIs). For each size:
#  1. bench/scale/gen.py writes the fleet (N RestApis with their Stages, one usage plan per
#     PLANS covering every stage, K ApiKeys with their Secrets, AUTHORIZERS JWT authorizers) in
#     files of PER_FILE objects, and once more as one multi-document file (the parser's case);
#  2. bench/scale/probe (scale-probe) times the proxy's load path alone: parse (both layouts),
#     compile, validate, and measures the compiled config: JSON bytes and as the operator would
#     publish it (gzipped from 512 KiB, at most 1 MiB in one ConfigMap);
#  3. portico-proxy --manifests DIR --workers 1 starts on CPU 0: the time until its ready file
#     appears (read + parse + compile + runtime build + listen), at most READY_CAP seconds (a
#     size not ready by then is reported so and skipped); its RSS (VmRSS) once ready;
#  4. CPU per request on the first and the last tenant's keyed GET route (first key on the
#     first API, last key on the last API): wrk -t1 -c32 on CPU 1 for DURATION s, REPS times
#     interleaved, the proxy's utime+stime from /proc/PID/stat per completed request (median);
#  5. one-object changes, each written atomically (a rename) and timed from the rename to the
#     first curl that sees it served (polled every 20 ms, at most CHANGE_CAP seconds): a new
#     ApiKey + Secret (in a new file), a route added to the last API, the last Stage's variable
#     changed (both: that API's file rewritten); then the proxy's RSS and peak RSS (VmHWM);
#  6. the compiled config (written by scale-probe) served with --config, as a Kubernetes-mode
#     proxy holds it: ready time, RSS, a key added and a stage variable changed in the file
#     (bench/scale/gen.py config-change), each timed to the first answer that shows it.
#
# CPU 1: the backend (nginx, 1 worker, a fixed JSON body naming the URI it was asked for:
# stage variables are visible) and wrk. CPU 0: the proxy. Ports 127.0.0.1:18280, 18283, 18293.
# Tables: stdout and bench/results/scale-latest.md (gitignored). See bench/README.md.
set -euo pipefail

SIZES="${SIZES:-10:100:5000 10:100:20000 1000:30000:10000}"
AUTHORIZERS="${AUTHORIZERS:-0}"
PLANS="${PLANS:-1}"
PER_FILE="${PER_FILE:-1000}"
READY_CAP="${READY_CAP:-180}"
CHANGE_CAP="${CHANGE_CAP:-120}"
DURATION="${DURATION:-5}"
REPS="${REPS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
CHANGES="${CHANGES:-key route stagevar}"
ONE_FILE="${ONE_FILE:-1}"   # 0: skip the one-big-file parse measurement

PORT_BACKEND=18280
PORT_PORTICO=18283
PORT_ADMIN=18293

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS_DIR="$ROOT/bench/results"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PORTICO_BIN="${PORTICO_BIN:-$TARGET_DIR/release/portico-proxy}"
PROBE_BIN="${PROBE_BIN:-$ROOT/bench/scale/probe/target/release/scale-probe}"
GEN="$ROOT/bench/scale/gen.py"

log() { printf '[scale] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in nginx wrk curl taskset python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool missing (bench/run.sh installs nginx and wrk with apt-get)"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (proxy on CPU 0, backend + wrk on CPU 1)"
CLK_TCK="$(getconf CLK_TCK)"

if [ -z "${SKIP_BUILD:-}" ]; then
  log "building portico-proxy (release) and scale-probe"
  (cd "$ROOT" && cargo build --release -p portico-proxy) >&2
  cargo build --release --manifest-path "$ROOT/bench/scale/probe/Cargo.toml" >&2
fi
[ -x "$PORTICO_BIN" ] || die "$PORTICO_BIN not found"
[ -x "$PROBE_BIN" ] || die "$PROBE_BIN not found (cargo build --release --manifest-path bench/scale/probe/Cargo.toml)"

WORK="$(mktemp -d /tmp/portico-scale.XXXXXX)"
STARTED_PIDS=()
stop_pid() { # pid: TERM, a bounded wait, KILL
  kill "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $PORT_BACKEND $PORT_PORTICO $PORT_ADMIN; do
  port_free "$p" || die "127.0.0.1:$p is already in use"
done

# The backend: answers every path with 200 and a JSON body naming the URI (so a changed stage
# variable in the integration URI is visible to the client).
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
  server { listen 127.0.0.1:$PORT_BACKEND;
    location / { default_type application/json; return 200 '{"ok":true,"uri":"\$uri"}'; } } }
EOF
taskset -c 1 nginx -e stderr -p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.log" 2>&1 &
STARTED_PIDS+=("$!")
for _ in $(seq 100); do port_free "$PORT_BACKEND" || break; sleep 0.1; done
port_free "$PORT_BACKEND" && die "the backend did not listen on :$PORT_BACKEND"

AUTH=()
if [ "$AUTHORIZERS" -gt 0 ]; then
  # The mobile example's signer and key, as bench/run.sh; valid for a day.
  TOKEN="$(cd "$ROOT/examples/mobile-backend" && python3 -c '
import time, backend
now = int(time.time())
print(backend.sign_rs256({"iss": backend.ISSUER, "aud": backend.AUDIENCE, "sub": "u-scale",
                          "iat": now, "exp": now + 86400}))')" || die "cannot mint the bench token"
  AUTH=(-H "Authorization: Bearer $TOKEN")
fi

cat > "$WORK/done.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d\n", summary.requests,
    summary.duration, e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

cpu_ticks() { # pid -> utime+stime in clock ticks (all threads)
  local f
  read -ra f <<<"$(sed 's/^.*) //' "/proc/$1/stat")"
  echo $((f[11] + f[12]))
}
status_kib() { # pid field -> the field of /proc/PID/status, in KiB
  awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

get() { # path key -> "status body" of one GET to the proxy
  local out
  out="$(curl -s --max-time 5 -w ' %{http_code}' "${AUTH[@]}" -H "x-api-key: $2" \
    "http://127.0.0.1:$PORT_PORTICO$1" 2>/dev/null || true)"
  echo "${out##* } ${out% *}"
}
served() { # path key expect -> 0 when the answer shows it: "200" (status) or a body substring
  local r
  r="$(get "$1" "$2")"
  if [ "$3" = 200 ]; then [ "${r%% *}" = 200 ]; else [ "${r%% *}" = 200 ] && [[ "$r" == *"$3"* ]]; fi
}

wrk_cpu() { # pid path key -> "cpu_us_per_request req_per_s requests errors"
  local before after out line
  before="$(cpu_ticks "$1")"
  out="$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/done.lua" \
    "${AUTH[@]}" -H "x-api-key: $3" "http://127.0.0.1:$PORT_PORTICO$2")"
  after="$(cpu_ticks "$1")"
  line="$(grep '^RESULT ' <<<"$out")" || die "wrk printed no RESULT line: $out"
  awk -v t="$((after - before))" -v hz="$CLK_TCK" -v line="$line" 'BEGIN {
    split(line, w, /[ =]/); r = w[3]; d = w[5]; e = w[7];
    printf "%.2f %.0f %d %d\n", (r > 0 ? t * 1e6 / hz / r : -1), r / (d / 1e6), r, e }'
}
# mimalloc returns freed pages to the kernel after a delay (1 s), and only when it next runs:
# an idle proxy just after a reload still shows the old and the new config in its RSS. A few
# requests (and a /metrics scrape) 1.5 s after the last change let it purge, as traffic does.
settle() { # pid
  sleep 1.5
  for _ in 1 2 3; do
    curl -s --max-time 5 "http://127.0.0.1:$PORT_ADMIN/metrics" >/dev/null || true
    get "/$FIRST_API/r00" "$FIRST_KEY" >/dev/null
  done
  sleep 0.5
}
# Starts portico-proxy on CPU 0 with the source arguments given, logging to $1; sets PID and
# `ready` (seconds until its ready file appeared, empty if it did not within READY_CAP).
start_proxy() { # log source-args...
  local log="$1"
  shift
  rm -f "$D/ready"
  local t0
  t0="$(now)"
  taskset -c 0 "$PORTICO_BIN" "$@" --listen "127.0.0.1:$PORT_PORTICO" \
    --admin-listen "127.0.0.1:$PORT_ADMIN" --workers 1 --log-format text \
    --ready-file "$D/ready" > "$log" 2>&1 &
  PID="$!"
  STARTED_PIDS+=("$PID")
  ready=""
  while kill -0 "$PID" 2>/dev/null; do
    if [ -s "$D/ready" ]; then ready="$(elapsed "$t0" "$(now)")"; break; fi
    [ "$(elapsed "$t0" "$(now)" | cut -d. -f1)" -ge "$READY_CAP" ] && break
    sleep 0.02
  done
}
# Makes a one-object change with `bench/scale/gen.py ARGS...` (it prints when it renamed the
# file and what shows the change: path, key, expected status or body) and records under NAME
# the seconds until an answer shows it (polled every 20 ms, at most CHANGE_CAP).
time_change() { # name label gen-args...
  local name="$1" label="$2" c at path key expect got=""
  shift 2
  c="$(python3 "$GEN" "$@")"
  read -r at path key expect < <(python3 -c 'import json,sys; c = json.load(sys.stdin)
print(c["at"], c["path"], c["key"], c["expect"])' <<<"$c")
  while [ "$(elapsed "$at" "$(now)" | cut -d. -f1)" -lt "$CHANGE_CAP" ]; do
    if served "$path" "$key" "$expect"; then got="$(elapsed "$at" "$(now)")"; break; fi
    kill -0 "$PID" 2>/dev/null || die "$size: the proxy exited after the change $label"
    sleep 0.02
  done
  rec "$name" "${got:-not served after ${CHANGE_CAP} s}"
  log "$size: $label served after ${got:-(not served within ${CHANGE_CAP}s)}"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit }
  if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

RES="$WORK/results"
mkdir -p "$RES"
n=0
for size in $SIZES; do
  n=$((n + 1))
  IFS=: read -r APIS ROUTES KEYS <<<"$size"
  R="$RES/$(printf '%02d' "$n")"
  mkdir -p "$R"
  rec() { printf '%s=%s\n' "$1" "$2" >> "$R/record"; }
  rec size "$size"
  rec apis "$APIS"; rec routes "$ROUTES"; rec keys "$KEYS"
  rec authorizers "$AUTHORIZERS"; rec plans "$PLANS"
  rec load "$(cut -d' ' -f1-3 /proc/loadavg)"
  D="$WORK/size-$n"
  mkdir -p "$D"
  gen_args=(--apis "$APIS" --routes "$ROUTES" --keys "$KEYS" --authorizers "$AUTHORIZERS" --plans "$PLANS")

  log "$size: generating"
  python3 "$GEN" fleet "${gen_args[@]}" --per-file "$PER_FILE" --out "$D/m" > "$R/gen.json"
  FIRST_API="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["first_api"])' < "$R/gen.json")"
  LAST_API="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["last_api"])' < "$R/gen.json")"
  FIRST_KEY="$(python3 "$GEN" value 0)"
  LAST_KEY="$(python3 "$GEN" value $((KEYS - 1)))"

  log "$size: scale-probe (parse, compile, config size), at most ${READY_CAP}s"
  if ! PROBE_WRITE_CONFIG="$D/config.json" timeout "$READY_CAP" taskset -c 0 "$PROBE_BIN" "$D/m" \
      > "$R/probe.json" 2> "$R/probe.err"; then
    rec probe_failed "$(tail -c 300 "$R/probe.err" | tr '\n' ' ')"
    rm -f "$R/probe.json"
    grep -q . "$R/probe.err" || rec probe_failed "not done after ${READY_CAP}s"
  fi
  if [ "$ONE_FILE" = 1 ]; then
    log "$size: the same fleet as one file: parse only"
    python3 "$GEN" fleet "${gen_args[@]}" --single-file --out "$D/one/m" > /dev/null
    timeout "$READY_CAP" taskset -c 0 "$PROBE_BIN" "$D/one/m" --parse-only > "$R/parse1.json" 2>/dev/null ||
      { rm -f "$R/parse1.json"; rec parse1_failed "not done after ${READY_CAP}s"; }
    rm -rf "$D/one"
  fi

  log "$size: starting portico-proxy, ready within ${READY_CAP}s?"
  start_proxy "$R/proxy.log" --manifests "$D/m"
  if [ -z "$ready" ]; then
    if kill -0 "$PID" 2>/dev/null; then
      rec ready "not ready after ${READY_CAP} s"
      rec rss_at_cap_kib "$(status_kib "$PID" VmRSS)"
    else
      rec ready "exited: $(tail -c 300 "$R/proxy.log" | tr '\n' ' ')"
    fi
    stop_pid "$PID"
    log "$size: $(grep '^ready=' "$R/record" | cut -d= -f2-)"
    rm -rf "$D"
    continue
  fi
  rec ready "$ready"
  sleep 1  # let the start-up settle before reading memory
  rec rss_kib "$(status_kib "$PID" VmRSS)"
  rec hwm_kib "$(status_kib "$PID" VmHWM)"
  log "$size: ready after ${ready}s, RSS $(status_kib "$PID" VmRSS) KiB"

  # The routes answer as they should: no key 403, the key 200 with the backend's body.
  for pk in "/$FIRST_API/r00 $FIRST_KEY" "/$LAST_API/r00 $LAST_KEY"; do
    read -r path key <<<"$pk"
    r="$(get "$path" "$key")"
    [[ "$r" == "200 "*"/v1$path"* ]] || die "$size: GET $path with its key answered '$r'"
    r="$(get "$path" "not-a-key-0000000000000000")"
    [ "${r%% *}" = 403 ] || die "$size: GET $path with a wrong key answered '$r', not 403"
  done

  log "$size: CPU per request, first and last tenant, ${REPS} x ${DURATION}s each"
  for t in first last; do # warm-up
    if [ "$t" = first ]; then p="/$FIRST_API/r00" k="$FIRST_KEY"; else p="/$LAST_API/r00" k="$LAST_KEY"; fi
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d1s "${AUTH[@]}" -H "x-api-key: $k" "http://127.0.0.1:$PORT_PORTICO$p" >/dev/null
  done
  for rep in $(seq "$REPS"); do
    wrk_cpu "$PID" "/$FIRST_API/r00" "$FIRST_KEY" >> "$R/wrk-first"
    wrk_cpu "$PID" "/$LAST_API/r00" "$LAST_KEY" >> "$R/wrk-last"
  done
  for t in first last; do
    rec "cpu_$t" "$(awk '{ print $1 }' "$R/wrk-$t" | median)"
    rec "rps_$t" "$(awk '{ print $2 }' "$R/wrk-$t" | median)"
    rec "errors_$t" "$(awk '{ s += $4 } END { print s + 0 }' "$R/wrk-$t")"
  done

  for kind in $CHANGES; do
    log "$size: change '$kind'"
    time_change "change_$kind" "'$kind'" change "$kind" --out "$D/m"
  done
  settle "$PID"
  rec rss_after_kib "$(status_kib "$PID" VmRSS)"
  rec hwm_after_kib "$(status_kib "$PID" VmHWM)"
  stop_pid "$PID"

  # 6. The published config: the compiled GatewayConfig served with --config, as a proxy in
  #    Kubernetes mode holds it (no manifests parsed, no compile): ready time, RSS, and a
  #    one-object change made to the config file (a rename), timed to the first answer that
  #    shows it. This is the proxy's share of a change published by the operator.
  if [ -s "$D/config.json" ]; then
    log "$size: portico-proxy --config (the published config)"
    start_proxy "$R/proxy-config.log" --config "$D/config.json"
    rec pub_ready "${ready:-not ready after ${READY_CAP} s}"
    if [ -n "$ready" ]; then
      sleep 1
      rec pub_rss_kib "$(status_kib "$PID" VmRSS)"
      for kind in key stagevar; do
        time_change "pub_change_$kind" "published config, '$kind'" \
          config-change "$kind" --config "$D/config.json"
      done
      settle "$PID"
      rec pub_rss_after_kib "$(status_kib "$PID" VmRSS)"
      rec pub_hwm_after_kib "$(status_kib "$PID" VmHWM)"
      rec pub_build_ms "$(grep -o 'build_ms=[0-9]*' "$R/proxy-config.log" | cut -d= -f2 | tr '\n' ' ')"
    fi
    stop_pid "$PID"
  fi
  rm -rf "$D"
done

{
  echo "# Scale bench"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), binaries built from ${BUILT_FROM:-commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') (the working tree)}: $PORTICO_BIN, $PROBE_BIN"
  echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores"
  echo "- SIZES=\"$SIZES\" AUTHORIZERS=$AUTHORIZERS PLANS=$PLANS PER_FILE=$PER_FILE READY_CAP=$READY_CAP CHANGE_CAP=$CHANGE_CAP DURATION=$DURATION REPS=$REPS"
  echo
  python3 "$ROOT/bench/scale/report.py" "$RES"
} > "$WORK/report.md"
mkdir -p "$RESULTS_DIR"
cp "$WORK/report.md" "$RESULTS_DIR/scale-latest.md"
cat "$WORK/report.md"
