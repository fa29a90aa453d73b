#!/usr/bin/env bash
# Build a Debian base image with Python without Docker Hub, for hosts that cannot pull python:3.13-slim:
# debootstrap from the Debian package mirror, then `docker import`. Default: Debian 13 (trixie), Python 3.13,
# the host's architecture.
#
#   docker/build-base.sh [IMAGE]              # edge-node-base:trixie; needs root, debootstrap, docker
#   ARCH=arm64 docker/build-base.sh           # edge-node-base:trixie-arm64 (an arm64 root, run under emulation)
#   SUITE=bookworm docker/build-base.sh       # edge-node-base:bookworm (Debian 12, Python 3.11)
#   MIRROR=http://deb.debian.org/debian docker/build-base.sh
#   FORCE=1 ARCH=arm64 FROM_IMAGE=edge-node-base:trixie-arm64 docker/build-base.sh   # re-tag an existing base's files
#                                             # for linux/ARCH without debootstrap (a base imported as amd64)
#
# A foreign ARCH needs the host to run its binaries: apt-get install qemu-user-static binfmt-support (the
# qemu-aarch64 handler must show in /proc/sys/fs/binfmt_misc; mount binfmt_misc there first if it is empty).
# Then build the node on it:  docker/build.sh [--platform linux/arm64] (it picks this base by itself).
# The image holds python3, python3-venv, ca-certificates and, so that the broker image of the compose override
# can be built from the same base, apt's sources pointing at the same mirror. It is imported for linux/ARCH.
set -euo pipefail
SUITE="${SUITE:-trixie}"
HOST_ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
ARCH="${ARCH:-$HOST_ARCH}"
default_image="edge-node-base:$SUITE"
[ "$ARCH" = "$HOST_ARCH" ] || default_image="$default_image-$ARCH"
IMAGE="${1:-${BASE_IMAGE:-$default_image}}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
case "$ARCH" in
  amd64|arm64) ;;
  armhf|armel|i386) echo "error: ARCH=$ARCH is not supported: onnxruntime publishes no 32-bit wheels (docs/deployment.md)" >&2; exit 2 ;;
  *) echo "error: ARCH must be amd64 or arm64 (got $ARCH)" >&2; exit 2 ;;
esac
if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ -z "${FORCE:-}" ]; then
  echo "$IMAGE exists (FORCE=1 rebuilds it)"; exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is needed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "error: debootstrap needs root" >&2; exit 1; }
if [ "$ARCH" != "$HOST_ARCH" ]; then
  handler=""
  case "$ARCH" in arm64) handler=qemu-aarch64 ;; amd64) handler=qemu-x86_64 ;; esac
  grep -qs '^enabled' "/proc/sys/fs/binfmt_misc/$handler" || {
    echo "error: $ARCH binaries cannot run on this $HOST_ARCH host: no $handler handler in /proc/sys/fs/binfmt_misc" >&2
    echo "       apt-get install qemu-user-static binfmt-support (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc first if it is empty)" >&2
    exit 1; }
fi
import_rootfs() {  # import_rootfs DIR IMAGE DESCRIPTION: DIR/rootfs.tar as a one-layer image of linux/$ARCH
  # A build FROM scratch rather than `docker import --platform`, which Docker 20.10 ignores (the image would say
  # amd64 whatever it holds, and `docker pull --platform` / manifest lists would pick the wrong one).
  printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nLABEL org.opencontainers.image.description="%s"\nCMD ["python3"]\n' "$3" >"$1/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q --platform "linux/$ARCH" -t "$2" "$1" >/dev/null
}
if [ -n "${FROM_IMAGE:-}" ]; then  # re-import an existing base's file system for linux/$ARCH (no debootstrap)
  ctx="$(mktemp -d /tmp/edge-node-base.XXXXXX)"; trap 'rm -rf "$ctx"; docker rm -f "${cid:-}" >/dev/null 2>&1' EXIT
  cid="$(docker create "$FROM_IMAGE" true)"; docker export "$cid" >"$ctx/rootfs.tar"
  import_rootfs "$ctx" "$IMAGE" "$(docker image inspect -f '{{.Comment}}' "$FROM_IMAGE") (re-imported for linux/$ARCH)"
  echo "re-imported $FROM_IMAGE as $IMAGE ($(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$IMAGE"))"; exit 0
fi
ROOT="$(mktemp -d /tmp/edge-node-base.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
started=$(date +%s)
debootstrap --arch="$ARCH" --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 \
  || { tail -20 "$ROOT.log" >&2; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log"
# slim the root file system the way Debian's docker images are: no apt lists, caches or docs
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$ROOT/etc/apt/sources.list"
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' \
  >"$ROOT/etc/dpkg/dpkg.cfg.d/excludes"
ln -sf python3 "$ROOT/usr/bin/python"
chmod 0755 "$ROOT"  # mktemp made it 0700: it becomes the image's /
mkdir "$ROOT/.image"
tar -C "$ROOT" --exclude ./.image -c . >"$ROOT/.image/rootfs.tar"
import_rootfs "$ROOT/.image" "$IMAGE" "debootstrap --arch=$ARCH --variant=minbase $SUITE + python3, python3-venv, ca-certificates"
echo "built $IMAGE ($(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$IMAGE"), $(docker run --rm "$IMAGE" python3 -V)) in $(( $(date +%s) - started )) s: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
