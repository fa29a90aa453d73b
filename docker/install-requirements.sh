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
#   TARGETARCH=amd64|arm64 the image's architecture, when it differs from this build stage's (docker/Dockerfile
#                          runs the build stage on the build host, e.g. amd64, for an arm64 image): the requirements
#                          are then installed as that architecture's binary wheels (pip --platform manylinux_*_ARCH
#                          --only-binary=:all: --python-version of this Python, up to this stage's glibc) and
#                          moved into the venv's site-packages and bin/. Nothing of them runs here (the image's
#                          runtime stage imports them); pip, setuptools and wheel (pure Python) install as usual.
#                          This Python must be the image's (same minor version; the same Debian release).
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

# --- another architecture's wheels (TARGETARCH): installed with --target, then moved into the venv ---------
build_arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
target_arch="${TARGETARCH:-$build_arch}"
cross=""
if [ "$target_arch" != "$build_arch" ]; then
  case "$target_arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "error: TARGETARCH must be amd64 or arm64 (got $target_arch)" >&2; exit 1 ;;
  esac
  python_version="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  glibc_minor="$("$PY" -c 'import platform; print(platform.libc_ver()[1].split(".")[1])')"
  cross="--only-binary=:all: --implementation cp --python-version $python_version --platform manylinux2014_$machine"
  for minor in $(seq 17 "$glibc_minor"); do cross="$cross --platform manylinux_2_${minor}_$machine"; done
  site="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
  echo "installing the requirements for linux/$target_arch (Python $python_version, glibc up to 2.$glibc_minor) on this $build_arch build stage"
fi
cross_targets=0
# pip_install_target ARGS...: pip_install, or for another architecture into a fresh --target folder
pip_install_target() {
  if [ -z "$cross" ]; then pip_install "$@"; return; fi
  cross_targets=$((cross_targets + 1))
  # shellcheck disable=SC2086
  pip_install $cross --target "$B/target-$cross_targets" "$@"
}
# move_targets: the --target folders into the venv (scripts, whose #! is already /opt/venv/bin/python, to bin/)
move_targets() {
  [ -n "$cross" ] || return 0
  for target in "$B"/target-*; do
    [ -d "$target" ] || continue
    if [ -d "$target/bin" ]; then cp -a "$target/bin/." /opt/venv/bin/; rm -rf "$target/bin"; fi
    # a package the venv has already (e.g. packaging, pulled in again): its old metadata goes, one version stays
    for info in "$target"/*.dist-info; do
      [ -d "$info" ] || continue
      name="$(basename "$info")"; name="${name%%-*}"
      for old in "$site/$name"-*.dist-info; do [ -d "$old" ] && rm -rf "$old"; done
    done
    cp -a "$target/." "$site/"
    rm -rf "$target"
  done
}
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
# (for another architecture the node's and the models' requirements are resolved together: one --target folder)
[ -n "$cross" ] || pip_install -r "$B/requirements.txt"
if [ -f "$B/requirements-models.txt" ]; then
  grep -v -i -E '^[[:space:]]*rapidocr' "$B/requirements-models.txt" \
    | sed -E "s/^[[:space:]]*onnxruntime([[:space:]]*([<>=!~;[].*)?)$/$ort\1/" >"$B/models.txt"
  grep -q -i -E "^[[:space:]]*$ort([^-a-z]|$)" "$B/models.txt" || echo "$ort" >>"$B/models.txt"
  if [ -n "$cross" ]; then pip_install_target -r "$B/requirements.txt" -r "$B/models.txt"; else pip_install -r "$B/models.txt"; fi
  nodeps="$(grep -i -E '^[[:space:]]*rapidocr' "$B/requirements-models.txt" || true)"
  # shellcheck disable=SC2086
  [ -z "$nodeps" ] || pip_install_target --no-deps $nodeps
else
  if [ -n "$cross" ]; then pip_install_target -r "$B/requirements.txt" "$ort"; else pip_install "$ort"; fi
fi
move_targets
# (pip check would judge another architecture's packages by this stage's platform: the image's runtime stage
# imports them instead)
[ -n "$cross" ] || "$PY" -m pip check || true
