#!/usr/bin/env bash
# Render check of the Helm chart without a helm binary (none is packaged in the registries these
# machines reach): PyPI `helm-python-sdk` bundles the Helm v4 SDK as a native library and gives
# `lint` (= helm lint) and `Chart.render` (= helm template). This script keeps a venv with it and
# pytest (and kubernetes-validate, offline Kubernetes OpenAPI schemas) in a cache dir (reused
# when present) and runs charts/portico/tests/test_chart.py.
# Extra arguments go to pytest, e.g. `scripts/test-chart.sh -k rbac -x`.
# Exit status: pytest's (non-zero on any failure, or when no test ran).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_PYTHON_SDK_VERSION=0.2.2
PYTEST_VERSION=9.2.0
PYYAML_VERSION=6.0.3
KUBERNETES_VALIDATE_VERSION=1.37.0
VENV=${PORTICO_HELM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/portico/helm-venv}
STAMP="$VENV/.portico-requirements"
WANT="helm-python-sdk==$HELM_PYTHON_SDK_VERSION pytest==$PYTEST_VERSION pyyaml==$PYYAML_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"

if ! command -v python3 >/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3 python3-venv
fi
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "==> installing $WANT into $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    apt-get update -qq && apt-get install -y -qq python3-venv
    rm -rf "$VENV" && python3 -m venv "$VENV"
  fi
  # shellcheck disable=SC2086 # $WANT is a list of requirements
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $WANT
  echo "$WANT" > "$STAMP"
fi

echo "==> helm SDK: $("$VENV/bin/python" -c 'import importlib.metadata as m; print("helm-python-sdk", m.version("helm-python-sdk"))')" >&2
# -p no:cacheprovider: do not write .pytest_cache into the chart directory.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q charts/portico/tests "$@"
