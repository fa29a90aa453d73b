#!/usr/bin/env bash
# Set up a virtual environment with the test tools (first time only), lint, and run the whole test suite.
# Usage: scripts/run-tests.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=1 source scripts/_venv.sh
# Debian packages the integration tests run for real (a broker); installed when missing and possible.
for pkg in mosquitto; do
  if ! command -v "$pkg" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$pkg" ]; then
    echo "installing Debian package $pkg for the integration tests" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q "$pkg" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$pkg" >/dev/null; }
    else sudo apt-get install -y -q "$pkg" >/dev/null; fi
  fi
done
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
exec "$VENV/bin/python" -m pytest "$@"
