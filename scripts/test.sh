#!/usr/bin/env bash
# Lint, types and the whole test suite. Run through `bash scripts/setup.sh test`, which installs first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy --strict"
mypy
echo "== kapistrano crd matches crds/release.yaml"
kapistrano crd | diff -u crds/release.yaml - >/dev/null || { echo "crds/release.yaml is stale: run 'kapistrano crd > crds/release.yaml'"; exit 1; }

# pytest exits 5 when it collected nothing: that must not pass as green.
run_pytest() {
  set +e
  pytest -q -p no:cacheprovider "$@"
  local rc=$?
  set -e
  [ "$rc" = 5 ] && { echo "no tests were collected"; return 1; }
  return "$rc"
}

# The API server for the e2e tests (scripts/setup.sh may be building it in the background).
wait_for_api_server() {
  echo "== the test API server (waiting for its build if one runs)"
  python -m kapistrano.lab.kubeserver build >/dev/null
}

if [ "${KAPISTRANO_KUBE_BUILDING:-}" = 1 ] && [ "$#" = 0 ]; then
  echo "== pytest: tests that need no API server, while it builds"
  rc=0
  run_pytest tests/unit tests/integration || rc=$?
  wait_for_api_server
  echo "== pytest: the rest"
  run_pytest tests --ignore=tests/unit --ignore=tests/integration || rc=$?
  exit "$rc"
fi
[ "${KAPISTRANO_KUBE_BUILDING:-}" = 1 ] && wait_for_api_server
echo "== pytest"
run_pytest "$@"
