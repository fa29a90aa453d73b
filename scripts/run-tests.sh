#!/usr/bin/env bash
# Set up a virtual environment with the test tools (first time only), lint, and run the whole test suite.
# Usage: scripts/run-tests.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=1 source scripts/_venv.sh
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
exec "$VENV/bin/python" -m pytest "$@"
