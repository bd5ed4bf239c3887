#!/usr/bin/env bash
# The one test command (README, and .ci/run calls exactly this). Installs what it needs,
# checks formatting, lints, the dependency rules, then builds once (debug profile, one shared
# target dir) and runs every test: unit, golden, CRD-staleness and end-to-end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*" >&2; }

step "tools"
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }
# The usage-plan end-to-end tests start their own redis-server on a free port (they fail,
# not skip, without it).
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }

step "dependency rules (STYLE.md A.1)"
if cargo tree -p portico-proxy -e normal | grep -E 'kube-client|kube-runtime'; then
  echo "portico-proxy must not depend on kube-client or kube-runtime" >&2; exit 1
fi
if cargo tree -p portico-config -e normal | grep -E 'k8s-openapi|kube'; then
  echo "portico-config must not depend on Kubernetes types" >&2; exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# One debug build serves every phase below. `cargo test --workspace` also builds the
# portico-proxy and portico-operator binaries (both packages have integration tests), with the
# test feature set; the end-to-end harness and test-kube.sh use those, so no `cargo build` runs
# here: with the build feature set it would compile every dependency a second time, and CI's
# disk is small. Incremental artifacts are of no use to a one-off build.
export CARGO_INCREMENTAL=0

step "cargo test (unit, golden, operator with a mocked API server, end to end)"
cargo test --workspace -- --test-threads="${TEST_THREADS:-4}"

step "Helm chart: lint, render and RBAC checks (helm-python-sdk; no helm binary exists here)"
bash scripts/test-chart.sh -q

step "proxy --kube-configmap end to end (kubectl + kmock-based API server)"
PORTICO_BINS_BUILT=1 bash scripts/test-kube.sh
