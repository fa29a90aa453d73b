#!/usr/bin/env bash
# Set up a virtual environment (first time only) and run the node from this checkout.
# Usage: scripts/run-node.sh            (any extra arguments go to device.py)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
exec "$VENV/bin/python" device.py "$@"
