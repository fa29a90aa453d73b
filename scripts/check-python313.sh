#!/usr/bin/env bash
# The test suite under Python 3.13 on Debian 13 (trixie), in a container: the check CI cannot make (CI runs this
# machine's Python). It runs the README's test command, scripts/run-tests.sh, so .venv is made by scripts/_venv.sh
# with the container's python3 and every requirement is installed for 3.13 (ruff, then pytest).
#
#   scripts/check-python313.sh                          # the whole suite
#   scripts/check-python313.sh tests/test_serving.py -x # pytest arguments, as for scripts/run-tests.sh
#   BASE=python:3.13-slim-trixie scripts/check-python313.sh
#   scripts/check-python313.sh --ca /etc/ssl/certs/ca-certificates.crt   # pip trusts these CAs (intercepting proxy)
#   LINT=0 scripts/check-python313.sh    # skip run-tests.sh's ruff steps (lint does not depend on the Python version)
#
# BASE (default edge-node-base:trixie, made by docker/build-base.sh when missing) must be Debian 13 with
# python3 3.13 and its venv module. The committed tree (git archive HEAD; REF=<commit> for another) is copied into
# the container, never mounted: the host's .venv and caches are left alone, and edits not committed yet (in a
# shared checkout, someone's half-done work) do not count. WORKTREE=1 copies the files as they are on disk instead.
# apt's and pip's downloads are kept in the volumes edge-py313-apt and edge-py313-pip for the next run
# (docker volume rm edge-py313-apt edge-py313-pip frees them). Needs docker; exits with pytest's code.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${BASE:-edge-node-base:trixie}"
ca_options=()
if [ "${1:-}" = --ca ]; then  # mounted read-only; pip, requests and Python's ssl module trust it
  [ -f "${2:-}" ] || { echo "error: no CA file ${2:-}" >&2; exit 2; }
  ca_options=(-v "$(realpath "$2"):/etc/edge-check-ca.pem:ro" -e PIP_CERT=/etc/edge-check-ca.pem
              -e SSL_CERT_FILE=/etc/edge-check-ca.pem -e REQUESTS_CA_BUNDLE=/etc/edge-check-ca.pem)
  shift 2
fi
docker image inspect "$BASE" >/dev/null 2>&1 || docker/build-base.sh "$BASE" >&2
name="edge-py313-check-$$"
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT

checkout_tar() {  # the tree to test, as a tar stream
  if [ -n "${WORKTREE:-}" ]; then  # tracked files and new ones git does not ignore, as they are on disk
    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
      [ -f "$path" ] && printf '%s\0' "$path"
    done | tar --null -T - -c
  else
    git archive --format=tar "${REF:-HEAD}"
  fi
}
tested="$( [ -n "${WORKTREE:-}" ] && echo "the working tree" || echo "commit $(git rev-parse --short "${REF:-HEAD}")")"

# shellcheck disable=SC2016  # expanded inside the container
inside='set -euo pipefail
mkdir -p /src && tar -x -C /src && cd /src
python3 -c "import sys; sys.exit(sys.version_info[:2] != (3, 13))" || { echo "error: $(python3 -V) is not 3.13" >&2; exit 2; }
echo "check-python313: $(python3 -V) on $(. /etc/os-release && echo "$PRETTY_NAME"), $(uname -m), $TESTED"
export DEBIAN_FRONTEND=noninteractive
rm -f /etc/apt/apt.conf.d/docker-clean   # keep downloaded packages in the cache volume
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends git procps >/dev/null   # ps and git, which some tests call
[ -d .git ] || { git init -q && git add -A && git -c user.name=check -c user.email=check@localhost commit -q -m "$TESTED"; }  # build.sh labels the commit
[ "${LINT:-1}" = 1 ] || sed -i "/ruff\" /d" scripts/run-tests.sh   # in this copy only
exec scripts/run-tests.sh "$@"'

checkout_tar | docker run --rm -i --name "$name" --shm-size 1g -e TESTED="$tested" -e LINT="${LINT:-1}" \
  -v edge-py313-apt:/var/cache/apt/archives -v edge-py313-pip:/root/.cache/pip ${ca_options[@]+"${ca_options[@]}"} \
  "$BASE" bash -c "$inside" check-python313 "$@"
