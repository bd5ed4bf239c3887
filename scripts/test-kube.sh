#!/usr/bin/env bash
# End-to-end tests with a real kubectl, the portico-proxy binary (--kube-configmap) and the
# portico-operator binary (`run`) against an API-compatible test server (PyPI kmock +
# tests/kube/kube_server.py; no kube-apiserver can be installed on these machines), and, when
# PORTICO_E2E_KUBECONFIG names a real cluster's kubeconfig (kind, k3d), the operator scenarios
# against that cluster too (skipped otherwise). Keeps a venv with pinned versions in a cache
# dir (reused when present), builds both binaries (debug), and runs tests/kube with pytest.
# Extra arguments go to pytest, e.g. `scripts/test-kube.sh -k operator -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

KMOCK_VERSION=0.8
AIOHTTP_VERSION=3.14.5
PYTEST_VERSION=9.2.0
VENV=${PORTICO_KUBE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/portico/kube-venv}
STAMP="$VENV/.portico-requirements"
WANT="kmock==$KMOCK_VERSION aiohttp==$AIOHTTP_VERSION pytest==$PYTEST_VERSION"

# kubectl is packaged as kubernetes-client in Debian (bookworm: kubectl 1.20); any kubectl on PATH is used first.
command -v kubectl >/dev/null || { apt-get update -qq && apt-get install -y -qq kubernetes-client; }
if ! command -v python3 >/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3 python3-venv
fi
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "==> installing $WANT into $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
    rm -rf "$VENV" && python3 -m venv "$VENV"
  fi
  # shellcheck disable=SC2086 # $WANT is a list of requirements
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $WANT
  echo "$WANT" > "$STAMP"
fi

# scripts/test.sh sets PORTICO_BINS_BUILT: its `cargo test --workspace` has just built both
# binaries (a `cargo build` here would rebuild every dependency with another feature set).
if [ -z "${PORTICO_BINS_BUILT:-}" ]; then
  cargo build -q -p portico-proxy --bin portico-proxy -p portico-operator --bin portico-operator
fi
for bin in target/debug/portico-proxy target/debug/portico-operator; do
  [ -x "$bin" ] || { echo "$bin is missing (unset PORTICO_BINS_BUILT to build it)" >&2; exit 1; }
done
# -p no:kmock: kmock's pytest plugin needs pytest-asyncio; these tests run it as a process.
# -rs: print why a test was skipped (the real-cluster variant says how to run it).
exec "$VENV/bin/python" -m pytest -p no:kmock -p no:cacheprovider -q -rs tests/kube "$@"
