#!/usr/bin/env bash
# Build the edge node image from the repository (see docker/Dockerfile and docs/deployment.md).
#
#   docker/build.sh                          # edge-node:mainnet
#   docker/build.sh --network devnet         # edge-node:devnet (EE_EVM_NET=devnet)
#   docker/build.sh --gpu | --openvino       # edge-node:mainnet-gpu (onnxruntime-gpu) | -openvino (onnxruntime-openvino); amd64
#   docker/build.sh --platform linux/arm64   # edge-node:mainnet-arm64 on edge-node-base:trixie-arm64; on an
#                                            # x86 host pip installs the aarch64 wheels natively in the build
#                                            # stage; only the runtime stage's few steps run under qemu
#                                            # (docker/setup-qemu.sh)
#   docker/build.sh --platform linux/arm64 --base B --build-base H   # another arm64 base B; H: the same Debian and
#                                            # Python for this host's architecture (default: B itself)
#   docker/build.sh --wheelhouse             # install only from docker/wheelhouse/ (no network in the build)
#   docker/build.sh --ca /etc/ssl/certs/ca-certificates.crt   # trust the host's CAs (intercepting proxy)
#   docker/build.sh --base python:3.12-slim  # another base; default: python:3.13-slim-trixie if it is present
#                                            # or can be pulled, else the offline base made by docker/build-base.sh
#                                            # (edge-node-base:trixie, or edge-node-base:trixie-ARCH for another arch)
#   docker/build.sh --prune-stage            # legacy builder: delete the build stage image afterwards
#   docker/build.sh -- --no-cache            # anything after -- goes to docker build
#
# docker/publish-multiarch.sh puts the amd64 and arm64 images behind one tag (a manifest list) in a registry.
# Prints the tag built on the last line. IMAGE_NAME (default edge-node) names the repository. The OCI revision
# label is the checkout's commit (`git rev-parse HEAD`, "-dirty" when tracked files differ from it); REVISION
# overrides it, e.g. when building from an exported tree without .git.
# The classic builder (used when BuildKit's buildx plugin is missing) keeps the build stage as an image of its
# own (about 790 MB: compilers' output, pip's wheels). It is tagged <tag>-build so it is no anonymous <none>
# image, and it is the cache that makes the next build quick; --prune-stage deletes it (the next build then
# installs every package again).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE_NAME="${IMAGE_NAME:-edge-node}"
DEFAULT_BASE="python:3.13-slim-trixie"
HOST_ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
network=mainnet variant=cpu base="${BASE_IMAGE:-}" build_base="${BUILD_BASE_IMAGE:-}" source=index tag="" cas=() extra=() prune_stage= platform=""
while [ $# -gt 0 ]; do
  case "$1" in
    --network) network="$2"; shift 2 ;;
    --gpu) variant=gpu; shift ;;
    --openvino) variant=openvino; shift ;;  # EXECUTION_PROVIDER "openvino" (docs/serving.md)
    --base) base="$2"; shift 2 ;;
    --wheelhouse) source=wheelhouse; shift ;;
    --ca) cas+=("$2"); shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --prune-stage) prune_stage=1; shift ;;
    --platform) platform="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    --build-base) build_base="$2"; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$network" in mainnet|testnet|devnet) ;; *) echo "error: --network must be mainnet, testnet or devnet" >&2; exit 2 ;; esac
arch="$HOST_ARCH"
if [ -n "$platform" ]; then
  case "$platform" in
    linux/amd64) arch=amd64 ;;
    linux/arm64|linux/arm64/v8) arch=arm64 ;;
    linux/arm|linux/arm/*|linux/386) echo "error: $platform is not supported: onnxruntime has no 32-bit wheels (docs/deployment.md)" >&2; exit 2 ;;
    *) echo "error: --platform must be linux/amd64 or linux/arm64 (got $platform)" >&2; exit 2 ;;
  esac
fi
[ "$variant" = cpu ] || [ "$arch" = amd64 ] || { echo "error: the $([ "$variant" = gpu ] && echo GPU || echo OpenVINO) image is amd64 only (onnxruntime-$variant wheels)" >&2; exit 2; }
suffix=""
[ "$variant" = cpu ] || suffix="-$variant"
[ -z "$platform" ] || [ "$arch" = "$HOST_ARCH" ] || suffix="$suffix-$arch"
tag="${tag:-$IMAGE_NAME:$network$suffix}"
HOST_OFFLINE_BASE="${OFFLINE_BASE:-edge-node-base:trixie}"
OFFLINE_BASE="$HOST_OFFLINE_BASE"
[ "$arch" = "$HOST_ARCH" ] || OFFLINE_BASE="${OFFLINE_BASE}-$arch"
# The classic builder when BuildKit's buildx plugin is missing (the Dockerfile needs no BuildKit feature).
classic=""
docker buildx version >/dev/null 2>&1 || { export DOCKER_BUILDKIT=0; classic=1; }

local_arch() { docker image inspect -f '{{.Architecture}}' "$1" 2>/dev/null; }
if [ -z "$base" ]; then
  if [ "$(local_arch "$DEFAULT_BASE")" = "$arch" ] \
     || timeout 60 docker pull -q --platform "linux/$arch" "$DEFAULT_BASE" >/dev/null 2>&1; then
    base="$DEFAULT_BASE"
  else
    echo "$DEFAULT_BASE cannot be pulled: using the offline base $OFFLINE_BASE (docker/build-base.sh)" >&2
    ARCH="$arch" docker/build-base.sh "$OFFLINE_BASE" >&2
    base="$OFFLINE_BASE"
  fi
fi
# The build stage runs on this host's platform: its base is BASE_IMAGE's counterpart for the host's architecture
# (another architecture's wheels are installed there, see docker/Dockerfile).
if [ -z "$build_base" ]; then
  build_base="$base"
  [ "$arch" = "$HOST_ARCH" ] || [ "$base" != "$OFFLINE_BASE" ] || build_base="$HOST_OFFLINE_BASE"
fi
if [ "$arch" != "$HOST_ARCH" ] && [ "$build_base" = "$HOST_OFFLINE_BASE" ] && [ -z "$(local_arch "$build_base")" ]; then
  docker/build-base.sh "$build_base" >&2
fi
base_args=(--build-arg BASE_IMAGE="$base" --build-arg BUILD_BASE_IMAGE="$build_base")
platform_args=()
if [ "$arch" != "$HOST_ARCH" ] && [ -n "$classic" ]; then
  # The classic builder checks every stage against --platform (the build stage is the host's): no --platform; the
  # image's architecture is its base's. One multi-arch tag (python:3.13-slim-trixie) names one local image at a
  # time, so both bases are then given by image ID, each pulled for its platform.
  if [ "$base" = "$build_base" ]; then
    [ "$(local_arch "$base")" = "$arch" ] || docker pull -q --platform "linux/$arch" "$base" >/dev/null
    base_id="$(docker image inspect -f '{{.Id}}' "$base")"
    [ "$(local_arch "$build_base")" = "$HOST_ARCH" ] || docker pull -q --platform "linux/$HOST_ARCH" "$build_base" >/dev/null
    base_args=(--build-arg BASE_IMAGE="$base_id" --build-arg BUILD_BASE_IMAGE="$(docker image inspect -f '{{.Id}}' "$build_base")")
  fi
  [ "$(local_arch "${base_id:-$base}")" = "$arch" ] || { echo "error: the base $base is $(local_arch "$base"), not $arch" >&2; exit 1; }
elif [ -n "$platform" ]; then
  platform_args=(--platform "linux/$arch")
fi
if [ "$source" = wheelhouse ] && ! ls docker/wheelhouse/*.whl >/dev/null 2>&1; then
  wheel_options=(--platform "linux/$arch")
  [ "$variant" = cpu ] || wheel_options+=("--$variant")
  docker/make-wheelhouse.sh "${wheel_options[@]}" >&2
fi
copied=()
cleanup() { [ ${#copied[@]} -eq 0 ] || rm -f "${copied[@]}"; }
trap cleanup EXIT
for i in "${!cas[@]}"; do
  [ -f "${cas[$i]}" ] || { echo "error: no CA file ${cas[$i]}" >&2; exit 2; }
  cp "${cas[$i]}" "docker/ca/build-$$-$i.crt"; copied+=("docker/ca/build-$$-$i.crt")
done
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' edge_engine/__init__.py)"
git_revision() {  # the checkout's commit, "-dirty" when tracked files were changed; "unknown" without git
  local rev
  rev="$(git rev-parse HEAD 2>/dev/null)" || { echo unknown; return; }
  git diff --quiet HEAD -- 2>/dev/null || rev="$rev-dirty"
  echo "$rev"
}
revision="${REVISION:-$(git_revision)}"
args=("${base_args[@]}" --build-arg BUILD_PLATFORM="linux/$HOST_ARCH" --build-arg TARGETARCH="$arch"
      --build-arg NETWORK="$network" --build-arg VARIANT="$variant"
      --build-arg PIP_SOURCE="$source"
      ${PIP_INDEX_URL:+--build-arg PIP_INDEX_URL="$PIP_INDEX_URL"}
      ${PIP_EXTRA_INDEX_URL:+--build-arg PIP_EXTRA_INDEX_URL="$PIP_EXTRA_INDEX_URL"})
echo "building $tag (linux/$arch, base $base, build stage on linux/$HOST_ARCH from $build_base, network $network, variant $variant, packages from $source, revision $revision)" >&2
docker build -f docker/Dockerfile -t "$tag" ${platform_args[@]+"${platform_args[@]}"} "${args[@]}" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  ${extra[@]+"${extra[@]}"} . >&2
if [ -n "$classic" ]; then
  # The classic builder leaves the build stage as an anonymous <none> image (labelled edge-node.stage=build in the
  # Dockerfile): name the one this build made (the newest) and delete older ones, including the one it replaces.
  stage="$tag-build"
  previous="$(docker image inspect -f '{{.Id}}' "$stage" 2>/dev/null || true)"
  # (of this build's target architecture, a label of the stage: an amd64 and an arm64 build may run side by side)
  mapfile -t stages < <(docker images -q --no-trunc --filter dangling=true --filter label=edge-node.stage=build \
    --filter "label=edge-node.stage.target-arch=$arch")
  if [ ${#stages[@]} -gt 0 ]; then
    docker tag "${stages[0]}" "$stage"
    for old in "${stages[@]:1}" ${previous:+"$previous"}; do
      [ "$old" = "${stages[0]}" ] || docker rmi "$old" >/dev/null 2>&1 || true
    done
  fi
  if [ -n "$prune_stage" ]; then
    docker rmi "$stage" >/dev/null 2>&1 && echo "build stage image deleted (--prune-stage)" >&2
  elif docker image inspect "$stage" >/dev/null 2>&1; then
    echo "build stage kept as $stage (the cache of the next build; docker rmi $stage or --prune-stage frees it)" >&2
  fi
fi
echo "$tag"
