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
echo "== pytest"
set +e
pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that must not pass as green.
[ "$rc" = 5 ] && { echo "no tests were collected"; exit 1; }
exit "$rc"
