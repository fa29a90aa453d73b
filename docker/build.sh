#!/usr/bin/env bash
# Build the edge node image from the repository (see docker/Dockerfile and docs/deployment.md).
#
#   docker/build.sh                          # edge-node:mainnet
#   docker/build.sh --network devnet         # edge-node:devnet (EE_EVM_NET=devnet)
#   docker/build.sh --gpu                    # edge-node:mainnet-gpu (onnxruntime-gpu)
#   docker/build.sh --wheelhouse             # install only from docker/wheelhouse/ (no network in the build)
#   docker/build.sh --ca /etc/ssl/certs/ca-certificates.crt   # trust the host's CAs (intercepting proxy)
#   docker/build.sh --base python:3.12-slim  # another base; default: python:3.11-slim if it is present or
#                                            # can be pulled, else the offline base made by docker/build-base.sh
#   docker/build.sh -- --no-cache            # anything after -- goes to docker build
#
# Prints the tag built on the last line. IMAGE_NAME (default edge-node) names the repository; REVISION
# (e.g. a commit id) fills the OCI revision label.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE_NAME="${IMAGE_NAME:-edge-node}"
OFFLINE_BASE="${OFFLINE_BASE:-edge-node-base:bookworm}"
DEFAULT_BASE="python:3.11-slim"
network=mainnet variant=cpu base="${BASE_IMAGE:-}" source=index tag="" cas=() extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --network) network="$2"; shift 2 ;;
    --gpu) variant=gpu; shift ;;
    --base) base="$2"; shift 2 ;;
    --wheelhouse) source=wheelhouse; shift ;;
    --ca) cas+=("$2"); shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$network" in mainnet|testnet|devnet) ;; *) echo "error: --network must be mainnet, testnet or devnet" >&2; exit 2 ;; esac
suffix=""
[ "$variant" = cpu ] || suffix="-$variant"
tag="${tag:-$IMAGE_NAME:$network$suffix}"

if [ -z "$base" ]; then
  if docker image inspect "$DEFAULT_BASE" >/dev/null 2>&1 || timeout 60 docker pull -q "$DEFAULT_BASE" >/dev/null 2>&1; then
    base="$DEFAULT_BASE"
  else
    echo "$DEFAULT_BASE cannot be pulled: using the offline base $OFFLINE_BASE (docker/build-base.sh)" >&2
    docker/build-base.sh "$OFFLINE_BASE" >&2
    base="$OFFLINE_BASE"
  fi
fi
if [ "$source" = wheelhouse ] && ! ls docker/wheelhouse/*.whl >/dev/null 2>&1; then
  docker/make-wheelhouse.sh ${suffix:+--gpu} >&2
fi
copied=()
cleanup() { [ ${#copied[@]} -eq 0 ] || rm -f "${copied[@]}"; }
trap cleanup EXIT
for i in "${!cas[@]}"; do
  [ -f "${cas[$i]}" ] || { echo "error: no CA file ${cas[$i]}" >&2; exit 2; }
  cp "${cas[$i]}" "docker/ca/build-$$-$i.crt"; copied+=("docker/ca/build-$$-$i.crt")
done
# The classic builder when BuildKit's buildx plugin is missing (the Dockerfile needs no BuildKit feature).
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' edge_engine/__init__.py)"
echo "building $tag (base $base, network $network, variant $variant, packages from $source)" >&2
docker build -f docker/Dockerfile -t "$tag" \
  --build-arg BASE_IMAGE="$base" --build-arg NETWORK="$network" --build-arg VARIANT="$variant" \
  --build-arg PIP_SOURCE="$source" --build-arg VERSION="$version" --build-arg REVISION="${REVISION:-unknown}" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  ${PIP_INDEX_URL:+--build-arg PIP_INDEX_URL="$PIP_INDEX_URL"} \
  ${PIP_EXTRA_INDEX_URL:+--build-arg PIP_EXTRA_INDEX_URL="$PIP_EXTRA_INDEX_URL"} \
  ${extra[@]+"${extra[@]}"} . >&2
echo "$tag"
