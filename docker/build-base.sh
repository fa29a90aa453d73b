#!/usr/bin/env bash
# Build a Debian bookworm base image with Python 3.11 offline-from-Docker-Hub, for hosts that cannot pull
# python:3.11-slim: debootstrap from the Debian package mirror, then `docker import`.
#
#   docker/build-base.sh [IMAGE]          # default edge-node-base:bookworm; needs root, debootstrap, docker
#   MIRROR=http://deb.debian.org/debian docker/build-base.sh
#
# Then build the node on it:  docker build --build-arg BASE_IMAGE=edge-node-base:bookworm -f docker/Dockerfile .
# The image holds python3 (3.11), python3-venv, ca-certificates and, so that the broker image of the
# compose override can be built from the same base, apt's sources pointing at the same mirror.
set -euo pipefail
IMAGE="${1:-${BASE_IMAGE:-edge-node-base:bookworm}}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ -z "${FORCE:-}" ]; then
  echo "$IMAGE exists (FORCE=1 rebuilds it)"; exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is needed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "error: debootstrap needs root" >&2; exit 1; }
ROOT="$(mktemp -d /tmp/edge-node-base.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
started=$(date +%s)
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 \
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
tar -C "$ROOT" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --message "debootstrap --variant=minbase $SUITE + python3, python3-venv, ca-certificates" - "$IMAGE" >/dev/null
echo "built $IMAGE in $(( $(date +%s) - started )) s: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
