#!/usr/bin/env bash
# The test suite under Python 3.13 on Debian 13 (trixie), in a container: the check CI cannot make (CI runs this
# machine's Python). It runs the README's test command, scripts/run-tests.sh, so .venv is made by scripts/_venv.sh
# with the container's python3 and every requirement is installed for 3.13 (ruff, then pytest).
#
#   scripts/check-python313.sh                          # the whole suite
#   scripts/check-python313.sh tests/test_serving.py -x # pytest arguments, as for scripts/run-tests.sh
#   BASE=python:3.13-slim-trixie scripts/check-python313.sh
#
# BASE (default edge-node-base:trixie, made by docker/build-base.sh when missing) must be Debian 13 with
# python3 3.13 and its venv module. The checkout's files as they are on disk (tracked ones and new ones not
# ignored by git) are copied into the container, never mounted: the host's .venv and caches are left alone.
# apt's and pip's downloads are kept in the volumes edge-py313-apt and edge-py313-pip for the next run
# (docker volume rm edge-py313-apt edge-py313-pip frees them). Needs docker; exits with pytest's code.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${BASE:-edge-node-base:trixie}"
docker image inspect "$BASE" >/dev/null 2>&1 || docker/build-base.sh "$BASE" >&2
name="edge-py313-check-$$"
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT

checkout_files() {  # NUL-separated paths of the files git would see, that exist on disk
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
    [ -f "$path" ] && printf '%s\0' "$path"
  done
}

# shellcheck disable=SC2016  # expanded inside the container
inside='set -euo pipefail
mkdir -p /src && tar -x -C /src && cd /src
python3 -c "import sys; sys.exit(sys.version_info[:2] != (3, 13))" || { echo "error: $(python3 -V) is not 3.13" >&2; exit 2; }
echo "check-python313: $(python3 -V) on $(. /etc/os-release && echo "$PRETTY_NAME"), $(uname -m)"
export DEBIAN_FRONTEND=noninteractive
rm -f /etc/apt/apt.conf.d/docker-clean   # keep downloaded packages in the cache volume
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends git procps >/dev/null   # ps and git, which some tests call
exec scripts/run-tests.sh "$@"'

checkout_files | tar --null -T - -c | docker run --rm -i --name "$name" --shm-size 1g \
  -v edge-py313-apt:/var/cache/apt/archives -v edge-py313-pip:/root/.cache/pip \
  "$BASE" bash -c "$inside" check-python313 "$@"
