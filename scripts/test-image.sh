#!/usr/bin/env bash
# Image check: builds a container image FROM scratch out of the host-built binaries and the
# libraries `ldd` lists (Containerfile.local; base images cannot be pulled on the project's
# machines, so ./Dockerfile, the shipped recipe, cannot be built here), then checks it without
# running a container (the sandbox forbids the rlimits a container runtime sets): the image is
# mounted and its binaries are run with `chroot --userspec=65532:65532` and an empty
# environment, so they see nothing but the image:
#
#   - the image's user is 65532:65532, as in ./Dockerfile; it holds no shell;
#   - `portico-proxy --version` and `portico-operator --version` start; `portico-operator crds`
#     prints the five CRDs;
#   - the proxy serves the mobile-backend example (two backend.py on host ports, the Stage and
#     Authorizer addresses rewritten to them) on 127.0.0.1: signup (MOCK) 201, login proxied to
#     the identity provider, /dev/content/1 with the token (JWKS fetched from inside the image)
#     and the API key 200, /readyz 200; it runs as uid 65532; SIGTERM stops it with status 0.
#
# Needs root (podman's storage, chroot) and podman; installs podman with apt-get when missing.
# When podman cannot be had, it says so and exits 0 (SKIPPED), or 1 with
# PORTICO_IMAGE_CHECK_REQUIRED=1. Everything lives in a temporary directory (podman's own
# storage included: --root/--runroot, vfs driver) that is removed at the end; every process it
# starts is stopped by PID and bounded by `timeout`.
# PORTICO_BINS_BUILT=1: use target/debug's binaries as they are (no cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=localhost/portico:image-check
EXAMPLE=examples/mobile-backend
STEP_TIMEOUT=${PORTICO_IMAGE_CHECK_TIMEOUT:-60}  # seconds any one wait may take

skip() {
  if [ -n "${PORTICO_IMAGE_CHECK_REQUIRED:-}" ]; then
    echo "test-image: FAILED: $*" >&2
    exit 1
  fi
  echo "test-image: SKIPPED: $* (set PORTICO_IMAGE_CHECK_REQUIRED=1 to fail instead)" >&2
  exit 0
}
fail() { echo "test-image: FAILED: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

[ "$(id -u)" = 0 ] || skip "needs root (podman's storage and chroot)"
# Absolute paths: the image's binaries run under `env -i` (no PATH).
CHROOT=$(command -v chroot) || skip "no chroot"
TIMEOUT=$(command -v timeout) || skip "no timeout"
if ! command -v podman >/dev/null; then
  command -v apt-get >/dev/null || skip "no podman and no apt-get to install it"
  step "installing podman (apt-get)"
  if ! apt-get install -y -qq podman >/dev/null 2>&1; then
    { apt-get update -qq && apt-get install -y -qq podman >/dev/null; } 2>&1 | tail -5 >&2 || true
  fi
  command -v podman >/dev/null || skip "podman could not be installed"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portico-image.XXXXXX")
PODMAN=(podman --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs --log-level error)
CTR="" PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$CTR" ]; then
    "${PODMAN[@]}" umount "$CTR" >/dev/null 2>&1 || true
    "${PODMAN[@]}" rm -f "$CTR" >/dev/null 2>&1 || true
  fi
  "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# wait_until WHAT CMD...: runs CMD every 0.1 s until it succeeds; fails after $STEP_TIMEOUT s.
wait_until() {
  local what=$1
  shift
  local deadline=$((SECONDS + STEP_TIMEOUT))
  until "$@" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${STEP_TIMEOUT}s waiting for $what"
    sleep 0.1
  done
}

# --- binaries and the root filesystem -------------------------------------------------------
if [ -z "${PORTICO_BINS_BUILT:-}" ]; then
  step "cargo build (debug) portico-proxy portico-operator"
  cargo build -q -p portico-proxy --bin portico-proxy -p portico-operator --bin portico-operator
fi
BINS=(target/debug/portico-proxy target/debug/portico-operator)
for bin in "${BINS[@]}"; do
  [ -x "$bin" ] || fail "$bin is missing (unset PORTICO_BINS_BUILT to build it)"
done

step "laying out the root filesystem (binaries + the libraries ldd lists)"
ROOTFS="$WORK/context/rootfs"
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
for bin in "${BINS[@]}"; do
  cp "$bin" "$ROOTFS/usr/local/bin/"
  # Debug info is most of a debug binary's size; the code is the same.
  if command -v strip >/dev/null; then strip --strip-debug "$ROOTFS/usr/local/bin/$(basename "$bin")"; fi
done
# `libc.so.6 => /lib/.../libc.so.6 (0x...)` and the loader's `/lib64/ld-linux-x86-64.so.2 (0x...)`.
LIBS=$(ldd "${BINS[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$LIBS" ] || fail "ldd listed no libraries"
for lib in $LIBS; do
  mkdir -p "$ROOTFS$(dirname "$lib")"
  cp -L "$lib" "$ROOTFS$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$ROOTFS/etc/group"

# The check's recipe must keep the shipped one's user.
want_user=$(sed -n 's/^USER[[:space:]]*//p' Dockerfile | tail -1)
[ "$want_user" = "$(sed -n 's/^USER[[:space:]]*//p' Containerfile.local | tail -1)" ] \
  || fail "Containerfile.local's USER differs from the Dockerfile's ($want_user)"

# --- build and inspect ------------------------------------------------------------------------
step "podman build -f Containerfile.local (FROM scratch, vfs storage in $WORK)"
build_start=$SECONDS
"${PODMAN[@]}" build -q --pull=never -f Containerfile.local -t "$IMAGE" "$WORK/context" >/dev/null
step "built in $((SECONDS - build_start))s: $("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE") bytes"
user=$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = "65532:65532" ] || fail "image user is '$user', want 65532:65532"

CTR=$("${PODMAN[@]}" create "$IMAGE" /usr/local/bin/portico-proxy --version)
MNT=$("${PODMAN[@]}" mount "$CTR")
[ -x "$MNT/usr/local/bin/portico-proxy" ] && [ -x "$MNT/usr/local/bin/portico-operator" ] \
  || fail "the binaries are not in the image"
for sh in bin/sh bin/bash usr/bin/sh; do
  [ ! -e "$MNT/$sh" ] || fail "the image holds a shell (/$sh)"
done

# in_image CMD...: CMD run inside the image as 65532:65532 with an empty environment.
in_image() { env -i "$TIMEOUT" "$STEP_TIMEOUT" "$CHROOT" --userspec=65532:65532 "$MNT" "$@"; }

step "binaries start inside the image as 65532"
proxy_version=$(in_image /usr/local/bin/portico-proxy --version) || fail "portico-proxy --version"
operator_version=$(in_image /usr/local/bin/portico-operator --version) || fail "portico-operator --version"
echo "    $proxy_version; $operator_version" >&2
crds=$(in_image /usr/local/bin/portico-operator crds | grep -c '^kind: CustomResourceDefinition$' || true)
[ "$crds" = 5 ] || fail "portico-operator crds printed $crds CRDs, want 5"

# --- the proxy serves the example -------------------------------------------------------------
step "proxy (inside the image) serving $EXAMPLE with two backend.py on host ports"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
DEV=$(port) PROD=$(port)
timeout 300 python3 "$EXAMPLE/backend.py" "$DEV" dev 2>"$WORK/backend-dev.log" & PIDS+=($!)
timeout 300 python3 "$EXAMPLE/backend.py" "$PROD" prod 2>"$WORK/backend-prod.log" & PIDS+=($!)
mkdir -p "$MNT/example"
for f in "$EXAMPLE"/*.yaml; do
  sed -e "s/127\.0\.0\.1:9000/127.0.0.1:$DEV/g" -e "s/127\.0\.0\.1:9001/127.0.0.1:$PROD/g" "$f" > "$MNT/example/$(basename "$f")"
done
grep -q "127.0.0.1:$DEV" "$MNT/example/stages.yaml" || fail "the example's backend addresses changed: update this script"

env -i "$TIMEOUT" 300 "$CHROOT" --userspec=65532:65532 "$MNT" /usr/local/bin/portico-proxy \
  --manifests /example --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --ready-file /tmp/ready.json --workers 1 --log-format text >"$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=("$PROXY")
wait_until "the proxy's ready file" test -s "$MNT/tmp/ready.json"
proxy_pid=$(pgrep -P "$PROXY" || true)  # timeout's child: chroot exec'd the proxy
proxy_uid=$(ps -o uid= -p "${proxy_pid:-0}" | tr -d ' ')
[ "$proxy_uid" = 65532 ] || fail "the proxy runs as uid '$proxy_uid', want 65532"

python3 - "$MNT/tmp/ready.json" "$DEV" <<'EOF' || { cat "$WORK/proxy.log" >&2; fail "requests through the image's proxy"; }
import json, sys, time, urllib.error, urllib.request

addrs = json.load(open(sys.argv[1]))
base, admin = f"http://{addrs['listen']}", f"http://{addrs['admin']}"


def call(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body and json.dumps(body).encode(), method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # bounds a hung request only
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# The backends were started just before the proxy: wait (bounded) until dev answers.
deadline = time.monotonic() + 60
while True:
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/.well-known/jwks.json", timeout=2).status == 200:
            break
    except OSError:
        pass
    assert time.monotonic() < deadline, "backend.py did not start"
    time.sleep(0.1)

status, body = call("GET", f"{admin}/readyz")
assert status == 200, ("readyz", status, body)
status, body = call("POST", f"{base}/dev/auth/signup", {"username": "ana"})
assert status == 201, ("signup", status, body)
status, body = call("POST", f"{base}/dev/auth/login", {"username": "ana", "password": "s3cret"})
assert status == 200, ("login", status, body)
auth = {"Authorization": "Bearer " + json.loads(body)["token"], "x-api-key": "example-mobile-key-0123456789abcdef"}
status, body = call("GET", f"{base}/dev/content/1", headers=auth)
assert status == 200 and json.loads(body)["env"] == "dev", ("dev content", status, body)
status, body = call("GET", f"{base}/prod/content/1", headers=auth)
assert status == 200 and json.loads(body)["env"] == "prod", ("prod content", status, body)
print("    readyz 200, signup 201, login 200, /dev/content/1 200 (dev), /prod/content/1 200 (prod)", file=sys.stderr)
EOF

kill -TERM "$proxy_pid"
status=0
wait "$PROXY" || status=$?
PIDS=("${PIDS[@]:0:2}")
[ "$status" = 0 ] || { cat "$WORK/proxy.log" >&2; fail "the proxy exited with status $status after SIGTERM"; }
step "image check passed ($((SECONDS))s)"
