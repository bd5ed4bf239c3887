#!/usr/bin/env bash
# The one test command (README, and .ci/run calls exactly this). Installs what it needs,
# checks the dependency rules, formatting and lints, then builds once (debug profile, one
# shared target dir) and runs every test: unit, golden, CRD-staleness and end-to-end, the Helm
# chart checks, the kubectl suite, the WebSocket chat example with real clients and the
# container image check.
#
# Every phase runs even when an earlier one failed (a lint error does not hide a failing
# test); the summary at the end lists each phase, and the exit status is non-zero when any
# failed. The one dependency: the kubectl suite, the chat example and the image check run the
# binaries the test build made, so they are not run (and count as failed) when that build
# failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*" >&2; }

results=()
failed=0
# phase NAME FUNCTION: runs FUNCTION in a subshell with `set -e` (its first failing command
# ends it) and records the outcome; never stops this script.
phase() {
  local name=$1 started=$SECONDS rc
  shift
  step "$name"
  ( set -e; "$@" )
  rc=$?
  if [ "$rc" -eq 0 ]; then
    results+=("ok      $name ($((SECONDS - started)) s)")
  else
    results+=("FAILED  $name (exit $rc, $((SECONDS - started)) s)")
    failed=$((failed + 1))
  fi
  return "$rc"
}
not_run() {
  step "$1"
  echo "not run: $2" >&2
  results+=("FAILED  $1 (not run: $2)")
  failed=$((failed + 1))
}

tools() {
  command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }
  # The usage-plan end-to-end tests start their own redis-server on a free port (they fail,
  # not skip, without it).
  command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
}

dependency_rules() {
  if cargo tree -p portico-proxy -e normal | grep -E 'kube-client|kube-runtime'; then
    echo "portico-proxy must not depend on kube-client or kube-runtime" >&2; return 1
  fi
  if cargo tree -p portico-config -e normal | grep -E 'k8s-openapi|kube'; then
    echo "portico-config must not depend on Kubernetes types" >&2; return 1
  fi
}

# One debug build serves every phase below. `cargo test --workspace` also builds the
# portico-proxy and portico-operator binaries (both packages have integration tests), with the
# test feature set; the end-to-end harness and test-kube.sh use those, so no `cargo build` runs
# here: with the build feature set it would compile every dependency a second time, and CI's
# disk is small. Incremental artifacts are of no use to a one-off build.
export CARGO_INCREMENTAL=0

phase "tools" tools
phase "dependency rules (docs/architecture.md)" dependency_rules
phase "cargo fmt --check" cargo fmt --all -- --check
phase "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
# (Not `if phase ...`: bash ignores `set -e` inside a command that is an `if` condition.)
phase "cargo test: build (unit, golden, operator, end to end)" cargo test --workspace --no-run
built=$?
if [ "$built" -eq 0 ]; then
  phase "cargo test (unit, golden, operator with a mocked API server, end to end)" \
    cargo test --workspace -- --test-threads="${TEST_THREADS:-4}"
else
  not_run "cargo test" "the test build failed"
fi
phase "Helm chart: lint, render and RBAC checks (helm-python-sdk; no helm binary exists here)" \
  bash scripts/test-chart.sh -q
if [ "$built" -eq 0 ]; then
  phase "proxy --kube-configmap and operator end to end (kubectl + kmock-based API server)" \
    env PORTICO_BINS_BUILT=1 bash scripts/test-kube.sh
else
  not_run "kubectl suite (tests/kube)" "it runs the binaries of the test build, which failed"
fi
if [ "$built" -eq 0 ]; then
  phase "WebSocket chat example with real clients (python websockets + boto3)" \
    env PORTICO_BINS_BUILT=1 bash scripts/test-chat.sh
else
  not_run "WebSocket chat example (tests/chat)" "it runs the proxy binary of the test build, which failed"
fi
if [ "$built" -eq 0 ]; then
  phase "container image: FROM-scratch image of the test build's binaries, run under chroot as 65532 (podman)" \
    env PORTICO_BINS_BUILT=1 PORTICO_IMAGE_CHECK_REQUIRED=1 bash scripts/test-image.sh
else
  not_run "container image check" "it packs the binaries of the test build, which failed"
fi

printf '\n==> summary\n' >&2
printf '  %s\n' "${results[@]}" >&2
if [ "$failed" -gt 0 ]; then
  echo "scripts/test.sh: $failed phase(s) failed (their output is above, under '==> NAME')" >&2
  exit 1
fi
echo "scripts/test.sh: every phase passed" >&2
