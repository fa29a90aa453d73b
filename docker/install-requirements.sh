#!/bin/sh
# Build stage of docker/Dockerfile: create /opt/venv and install the node's dependencies into it.
#
#   sh install-requirements.sh               the node's requirements (below)
#   sh install-requirements.sh PACKAGE...    only these packages (the SeaweedFS image of docker-compose/)
#
#   PIP_SOURCE=index       (default) from the package index; PIP_INDEX_URL / PIP_EXTRA_INDEX_URL pick a mirror
#   PIP_SOURCE=wheelhouse  only from the wheels in docker/wheelhouse/ (docker/make-wheelhouse.sh), no network
#   VARIANT=cpu|gpu|openvino  onnxruntime, onnxruntime-gpu or onnxruntime-openvino for the model servers
#   EXTRA_CA_CERT          PEM text of a CA to trust besides pip's own (a TLS-intercepting proxy); CA files
#                          dropped in docker/ca/ (*.crt, *.pem) are trusted too
#
# requirements.txt is installed as is; requirements-models.txt (if present) too, except that its rapidocr
# lines are installed with --no-deps (DECISIONS 15) and, for VARIANT=gpu or openvino, onnxruntime becomes
# onnxruntime-gpu or onnxruntime-openvino (never two builds in one venv: they are the same `onnxruntime` module).
set -eu
B=/tmp/build
python3 -m venv /opt/venv
PY=/opt/venv/bin/python

# --- trust: pip's own CA bundle + the extra CAs, if any -------------------------------------------------
extra=""
for file in "$B"/ca/*.crt "$B"/ca/*.pem; do [ -f "$file" ] && extra="$extra $file"; done
if [ -n "${EXTRA_CA_CERT:-}" ] || [ -n "$extra" ]; then
  base="$("$PY" -c 'from pip._vendor import certifi; print(certifi.where())')"
  # shellcheck disable=SC2086
  cat "$base" $extra >"$B/ca-bundle.pem"
  [ -z "${EXTRA_CA_CERT:-}" ] || printf '%s\n' "$EXTRA_CA_CERT" >>"$B/ca-bundle.pem"
  export PIP_CERT="$B/ca-bundle.pem"
  echo "trusting $(grep -c 'BEGIN CERTIFICATE' "$B/ca-bundle.pem") CA certificates (extra: ${extra:-none}${EXTRA_CA_CERT:+, EXTRA_CA_CERT})"
fi

# --- where packages come from ----------------------------------------------------------------------------
case "${PIP_SOURCE:-index}" in
  index) source_options="" ;;
  wheelhouse)
    ls "$B"/wheelhouse/*.whl >/dev/null 2>&1 || { echo "error: PIP_SOURCE=wheelhouse but docker/wheelhouse/ has no wheels: run docker/make-wheelhouse.sh" >&2; exit 1; }
    source_options="--no-index --find-links $B/wheelhouse" ;;
  *) echo "error: PIP_SOURCE must be index or wheelhouse (got ${PIP_SOURCE})" >&2; exit 1 ;;
esac
# shellcheck disable=SC2086
pip_install() { "$PY" -m pip install --no-cache-dir --disable-pip-version-check --progress-bar off $source_options "$@"; }
if [ $# -gt 0 ]; then
  pip_install "$@"
  exit 0
fi

case "${VARIANT:-cpu}" in
  cpu) ort=onnxruntime ;;
  gpu) ort=onnxruntime-gpu ;;
  openvino) ort=onnxruntime-openvino ;;
  *) echo "error: VARIANT must be cpu, gpu or openvino (got ${VARIANT})" >&2; exit 1 ;;
esac

pip_install --upgrade pip "setuptools>=70.1" wheel
pip_install -r "$B/requirements.txt"
if [ -f "$B/requirements-models.txt" ]; then
  grep -v -i -E '^[[:space:]]*rapidocr' "$B/requirements-models.txt" \
    | sed -E "s/^[[:space:]]*onnxruntime([[:space:]]*([<>=!~;[].*)?)$/$ort\1/" >"$B/models.txt"
  grep -q -i -E "^[[:space:]]*$ort([^-a-z]|$)" "$B/models.txt" || echo "$ort" >>"$B/models.txt"
  pip_install -r "$B/models.txt"
  nodeps="$(grep -i -E '^[[:space:]]*rapidocr' "$B/requirements-models.txt" || true)"
  # shellcheck disable=SC2086
  [ -z "$nodeps" ] || pip_install --no-deps $nodeps
else
  pip_install "$ort"
fi
"$PY" -m pip check || true
