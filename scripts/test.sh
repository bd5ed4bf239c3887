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

step "build (debug, for the end-to-end tests' proxy binary)"
cargo build --workspace --bins

step "cargo test"
cargo test --workspace -- --test-threads="${TEST_THREADS:-4}"

step "Helm chart: lint, render and RBAC checks (helm-python-sdk; no helm binary exists here)"
bash scripts/test-chart.sh -q

step "proxy --kube-configmap end to end (kubectl + kmock-based API server)"
bash scripts/test-kube.sh
