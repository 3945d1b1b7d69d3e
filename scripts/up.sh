#!/usr/bin/env bash
# The README's first command: run the whole mesh here with two sample agents.
#   bash scripts/up.sh --demo        (any `meshwright up` flag works: --help lists them)
# Creates the project's virtual environment .venv on first use (with the
# python3 or python on PATH; see scripts/_venv.sh), installs meshwright into it,
# then runs `meshwright up` from it. Nothing is installed into the system Python.
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "$0")/_venv.sh"
ensure_venv base
exec "$VENV_PY" -m meshwright up "$@"
