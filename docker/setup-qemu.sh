#!/usr/bin/env bash
# Let this x86 host run arm64 binaries (the arm64 base, the arm64 image's smoke): qemu 10's user-mode emulator,
# registered with the kernel's binfmt_misc with the F flag (the kernel opens the emulator once, at registration,
# so it works inside containers, which do not have it in their file system).
#
#   docker/setup-qemu.sh            # as root; idempotent: does nothing when a qemu-aarch64 10+ handler is enabled
#   FORCE=1 docker/setup-qemu.sh    # replace the handler whatever its version
#   MIRROR=http://deb.debian.org/debian docker/setup-qemu.sh
#
# Why not `apt-get install qemu-user-static binfmt-support`: on Debian 12 that is qemu 7.2, which runs Python, numpy
# and OpenCV for aarch64 but crashes (segmentation fault) in `import onnxruntime` (1.32, aarch64). Debian 13's
# `qemu-user` (10.x; its emulators are static binaries) runs it. On a Debian 12 host this script downloads that one
# package from the Debian 13 suite with a private apt configuration (the host's sources are not changed and
# nothing is installed through dpkg), extracts `qemu-aarch64` to $QEMU (default /usr/local/bin/qemu-aarch64-static)
# and registers it. On a host whose own qemu-aarch64 is 10 or newer, that one is registered instead.
# Needs root, apt-get, dpkg-deb and Debian's archive keyring (debian-archive-keyring has the trixie keys).
set -euo pipefail
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SUITE="${SUITE:-trixie}"
QEMU="${QEMU:-/usr/local/bin/qemu-aarch64-static}"
MIN_MAJOR=10
BINFMT=/proc/sys/fs/binfmt_misc
HANDLER="$BINFMT/qemu-aarch64"
[ "$(id -u)" = 0 ] || { echo "error: needs root (binfmt_misc registration)" >&2; exit 1; }
case "$(uname -m)" in aarch64|arm64) echo "this host is arm64: nothing to emulate"; exit 0 ;; esac

qemu_major() {  # qemu_major BINARY: the major version it reports, 0 when it does not run
  "$1" --version 2>/dev/null | sed -n 's/^qemu-aarch64 version \([0-9]*\)\..*/\1/p' | head -1 | grep . || echo 0
}

# 1. binfmt_misc mounted (a container or a minimal host may not have it)
if [ ! -e "$BINFMT/register" ]; then
  mount -t binfmt_misc binfmt_misc "$BINFMT"
  echo "mounted binfmt_misc on $BINFMT"
fi

# 2. already done?
if [ -z "${FORCE:-}" ] && [ -f "$HANDLER" ] && grep -qx enabled "$HANDLER"; then
  current="$(sed -n 's/^interpreter //p' "$HANDLER")"
  if [ "$(qemu_major "$current")" -ge "$MIN_MAJOR" ] && grep -q '^flags: .*F' "$HANDLER"; then
    echo "qemu-aarch64 handler enabled: $("$current" --version | head -1) ($current, flags $(sed -n 's/^flags: //p' "$HANDLER"))"
    exit 0
  fi
fi

# 3. an emulator of version 10 or newer: the host's own, one extracted earlier, or Debian 13's qemu-user
emulator=""
for candidate in "$QEMU" "$(command -v qemu-aarch64 || true)" "$(command -v qemu-aarch64-static || true)"; do
  [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$(qemu_major "$candidate")" -ge "$MIN_MAJOR" ] && { emulator="$candidate"; break; }
done
if [ -z "$emulator" ]; then
  work="$(mktemp -d /tmp/setup-qemu.XXXXXX)"; trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/deb"
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$work/sources.list"
  apt_private=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
               -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work" -o Dir::Cache::archives="$work/archives"
               -o APT::Architectures::=amd64 -o Debug::NoLocking=1 -q)
  echo "downloading qemu-user from Debian $SUITE ($MIRROR)"
  apt-get "${apt_private[@]}" update >"$work/apt.log" 2>&1 || { tail -5 "$work/apt.log" >&2; exit 1; }
  (cd "$work/deb" && apt-get "${apt_private[@]}" download qemu-user >>"$work/apt.log" 2>&1) \
    || { tail -5 "$work/apt.log" >&2; exit 1; }
  dpkg-deb -x "$work"/deb/qemu-user_*.deb "$work/root"
  install -D -m 0755 "$work/root/usr/bin/qemu-aarch64" "$QEMU"
  emulator="$QEMU"
  [ "$(qemu_major "$emulator")" -ge "$MIN_MAJOR" ] || { echo "error: $emulator is not qemu $MIN_MAJOR+: $("$emulator" --version | head -1)" >&2; exit 1; }
fi

# 4. (re)register: the aarch64 ELF magic and mask of qemu's own binfmt configuration, flag F (fix binary)
[ ! -f "$HANDLER" ] || echo -1 >"$HANDLER"
printf '%s' ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:$emulator:F" \
  >"$BINFMT/register"
grep -qx enabled "$HANDLER" || { echo "error: the qemu-aarch64 handler is not enabled" >&2; exit 1; }
echo "registered $emulator ($("$emulator" --version | head -1)) for aarch64 binaries, flags $(sed -n 's/^flags: //p' "$HANDLER")"
