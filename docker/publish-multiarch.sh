#!/usr/bin/env bash
# Publish the node's amd64 and arm64 images behind one tag: a multi-arch manifest list in a registry, so that
# `docker pull REGISTRY/edge-node:mainnet` gives an x86 server the amd64 image and a Raspberry Pi the arm64 one.
#
#   docker/publish-multiarch.sh                              # localhost:5000/edge-node:mainnet
#   docker/publish-multiarch.sh --registry registry.lan:5000 --network devnet
#   docker/publish-multiarch.sh --build                      # rebuild both images first (docker/build.sh)
#
# The per-architecture images are the local edge-node:NETWORK (this host's architecture) and
# edge-node:NETWORK-arm64 (or -amd64 on an arm64 host), built by docker/build.sh [--platform linux/ARCH] when
# missing (AMD64_IMAGE=... / ARM64_IMAGE=... name other local images). They are pushed as
# REGISTRY/edge-node:NETWORK-amd64 and -arm64, then joined by `docker manifest`
# into REGISTRY/edge-node:NETWORK, which is pulled back for each platform to check the architecture.
# The GPU image is amd64 only and is not part of the list.
#
# With the default registry (localhost:5000) and none answering there, a local one is started: Debian's
# docker-registry package (apt-get install docker-registry), storage in /var/lib/edge-node-registry, bound to
# 127.0.0.1, left running (its PID is printed). A plain-HTTP registry other than localhost must be listed in
# the daemon's insecure-registries. IMAGE_NAME (default edge-node) names the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
REGISTRY="localhost:5000" network=mainnet rebuild=""
IMAGE_NAME="${IMAGE_NAME:-edge-node}"
ARCHES=(amd64 arm64)
while [ $# -gt 0 ]; do
  case "$1" in
    --registry) REGISTRY="$2"; shift 2 ;;
    --network) network="$2"; shift 2 ;;
    --build) rebuild=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
HOST_ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
export DOCKER_CLI_HINTS=false
started=$(date +%s)

registry_answers() { python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://{sys.argv[1]}/v2/", timeout=3)
except Exception as exc:  # a 401 still means a registry answers
    sys.exit(0 if getattr(exc, "code", None) == 401 else 1)
EOF
}
start_local_registry() {
  command -v docker-registry >/dev/null || { echo "error: no registry on $REGISTRY and no docker-registry (apt-get install docker-registry)" >&2; exit 1; }
  local dir=/var/lib/edge-node-registry
  mkdir -p "$dir/data"
  printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n' "$dir" >"$dir/config.yml"
  nohup docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  local pid=$! tries=0
  until registry_answers "$REGISTRY"; do
    tries=$((tries + 1)); [ $tries -lt 60 ] || { echo "error: the registry did not answer (log: $dir/registry.log)" >&2; exit 1; }
    sleep 0.5
  done
  echo "started a local registry on 127.0.0.1:5000 (PID $pid, data in $dir/data; stop it with kill $pid)"
}
local_image() {  # local_image ARCH: AMD64_IMAGE / ARM64_IMAGE, else the local tag docker/build.sh gives it
  local chosen; chosen="$(printenv "$(echo "$1" | tr '[:lower:]' '[:upper:]')_IMAGE" || true)"
  if [ -n "$chosen" ]; then echo "$chosen"
  elif [ "$1" = "$HOST_ARCH" ]; then echo "$IMAGE_NAME:$network"; else echo "$IMAGE_NAME:$network-$1"; fi
}
size_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }

if ! registry_answers "$REGISTRY"; then
  case "$REGISTRY" in localhost:5000|127.0.0.1:5000) start_local_registry ;;
    *) echo "error: no registry answers on $REGISTRY" >&2; exit 1 ;; esac
fi
list="$REGISTRY/$IMAGE_NAME:$network"
members=()
for arch in "${ARCHES[@]}"; do
  image="$(local_image "$arch")"
  if [ -n "$rebuild" ] || ! docker image inspect "$image" >/dev/null 2>&1; then   # (--build ignores *_IMAGE)
    image="$(IMAGE_NAME="$IMAGE_NAME" docker/build.sh --network "$network" --platform "linux/$arch" | tail -1)"
  fi
  actual="$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$image")"
  [ "$actual" = "linux/$arch" ] || { echo "error: $image is $actual, not linux/$arch" >&2; exit 1; }
  remote="$list-$arch"
  docker tag "$image" "$remote"
  echo "pushing $image ($actual, $(size_mb "$image")) as $remote"
  docker push -q "$remote" >/dev/null
  members+=("$remote")
done
docker manifest rm "$list" >/dev/null 2>&1 || true   # a list made by an earlier run, in the client's store
docker manifest create --insecure "$list" "${members[@]}" >/dev/null
for i in "${!ARCHES[@]}"; do
  docker manifest annotate --os linux --arch "${ARCHES[$i]}" "$list" "${members[$i]}"
done
digest="$(docker manifest push --insecure --purge "$list")"
echo "pushed the manifest list $list ($digest)"

# check: the list names both platforms, and a pull for each platform gives that architecture
docker manifest inspect --insecure "$list" | python3 -c '
import json, sys
platforms = sorted("%s/%s" % (m["platform"]["os"], m["platform"]["architecture"]) for m in json.load(sys.stdin)["manifests"])
print("manifest list platforms: " + ", ".join(platforms))
sys.exit(platforms != sorted("linux/" + arch for arch in sys.argv[1:]))' "${ARCHES[@]}"
for arch in "${ARCHES[@]}"; do
  docker pull -q --platform "linux/$arch" "$list" >/dev/null
  actual="$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$list")"
  [ "$actual" = "linux/$arch" ] || { echo "error: docker pull --platform linux/$arch $list gave $actual" >&2; exit 1; }
  echo "docker pull --platform linux/$arch $list: $actual, $(size_mb "$list")"
done
docker pull -q "$list" >/dev/null   # last: the tag stays on this host's own architecture
echo "docker pull $list (no --platform) on this $HOST_ARCH host: $(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$list")"
echo "published $list for ${ARCHES[*]} in $(( $(date +%s) - started )) s"
