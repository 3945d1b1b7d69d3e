#!/usr/bin/env bash
# Installs everything the test suite needs, then runs every check CI runs:
# buf lint, gen/ up to date, buf breaking vs the previous commit, ruff, mypy, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -e ".[dev]"

echo "== buf lint";            make --no-print-directory lint
echo "== gen/ is up to date";  make --no-print-directory gen-check
echo "== buf breaking";        make --no-print-directory breaking
echo "== ruff + mypy";         make --no-print-directory check
echo "== pytest"
# pytest exits 5 when it collected no test: that is a failure here too.
python -m pytest -p no:cacheprovider "$@"
