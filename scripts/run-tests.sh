#!/usr/bin/env bash
# Set up a virtual environment with the test tools (first time only), lint, type-check, and run the whole test suite.
# Usage: scripts/run-tests.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=1 source scripts/_venv.sh
# Ratio1's SDK for the real-SDK tests, in a virtual environment of its own (tests/sdk_env.py)
"$VENV/bin/python" tests/sdk_env.py >/dev/null
"$VENV/bin/python" tests/openvino_env.py >/dev/null || echo "no OpenVINO venv: its test says why" >&2  # tests/openvino_env.py
# Debian packages the integration tests run for real (a broker, a headless browser), as package:binary pairs;
# installed when the binary is missing and installing is possible.
apt_install() {
  echo "installing Debian package(s) $* for the integration tests" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q "$@" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
  else sudo apt-get install -y -q "$@" >/dev/null; fi
}
for entry in mosquitto:mosquitto chromium:chromium chromium-driver:chromedriver ffmpeg:ffmpeg; do
  pkg="${entry%%:*}" bin="${entry#*:}"
  if ! command -v "$bin" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$bin" ] && ! [ -x "/usr/bin/$bin" ]; then
    apt_install "$pkg"
  fi
done
# GStreamer's RTSP server under the system Python, for the camera away/back tests (tests/stream_servers.py)
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstRtspServer; Gst.init(None); assert Gst.ElementFactory.find('x264enc')" >/dev/null 2>&1; then
  apt_install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
fi
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"  # the engine package, settings in pyproject.toml [tool.mypy]
# pytest-xdist spreads the test files over EE_TEST_WORKERS processes (default 2: CI's cores; EE_TEST_WORKERS=1 runs
# everything in this one process, as before). A file's tests all run in one worker (--dist loadfile: module fixtures
# are made once, a file's tests never run beside each other). The tests marked serial (their wall-clock budgets or
# rates would suffer from another file running beside them; the list is in tests/conftest.py) run after that, alone.
workers="${EE_TEST_WORKERS:-2}"
if [ "$workers" = 1 ]; then
  exec "$VENV/bin/python" -m pytest "$@"
fi
if [ $# -gt 0 ]; then  # the files or tests asked for, spread the same way
  exec "$VENV/bin/python" -m pytest -n "$workers" --dist loadfile "$@"
fi
status=0
"$VENV/bin/python" -m pytest -n "$workers" --dist loadfile -m "not docker and not serial" --durations=20 || status=$?
serial=0
"$VENV/bin/python" -m pytest -m "serial and not docker" || serial=$?
[ "$serial" = 5 ] && serial=0  # 5: no test is marked serial
[ "$status" != 0 ] || status=$serial
exit "$status"
