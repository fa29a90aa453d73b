"""Real live-video servers for the away/back tests and benchmark: FFmpeg over TCP, and GStreamer's RTSP server.

Each server is a separate process on 127.0.0.1 that a test starts, kills (as a camera that reboots or drops
off the network) and starts again on the same port. :meth:`StreamServer.start` returns the monotonic time at
which the server was seen *listening* (its socket in ``/proc/net/tcp`` in LISTEN state, found without
connecting, since FFmpeg's TCP listener serves only the first client): the moment the source is back.

- :class:`FfmpegTcpServer`: ``ffmpeg -re -stream_loop -1 -i samples/demo.mp4 -c:v mpeg2video -f mpegts
  tcp://127.0.0.1:PORT?listen=1`` (the command of issue 14 item 1).
- :class:`RtspServer`: ``tests/rtsp_server.py`` under the system Python (``/usr/bin/python3`` with
  ``python3-gi`` and ``gir1.2-gst-rtsp-server-1.0``), a live H.264 test pattern at ``rtsp://127.0.0.1:PORT/live``.

A missing ffmpeg or GStreamer RTSP server fails the test with how to install it: these tests are not optional.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DEMO_VIDEO = TESTS.parent / "samples" / "demo.mp4"
SYSTEM_PYTHON = os.environ.get("EE_TEST_SYSTEM_PYTHON", "/usr/bin/python3")
RTSP_HINT = (
    "the RTSP tests run GStreamer's RTSP server under the system Python: install it with "
    "`sudo apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly` (or point EE_TEST_SYSTEM_PYTHON at a Python that has them)"
)
FFMPEG_HINT = "the stream tests need the ffmpeg binary: `sudo apt-get install ffmpeg`"


def listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (read from /proc/net/tcp*, without connecting to it)."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(suffix) and fields[3] == "0A":  # 0A: TCP_LISTEN
                return True
    return False


class StreamServer:
    """A server process on one port, started, killed and started again by the test."""

    kind = ""

    def __init__(self, port: int, log_dir: Path):
        self.port = port
        self.log_path = log_dir / f"{self.kind}-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> float:
        """Start the server; returns the monotonic time at which it was first seen listening."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        deadline = time.monotonic() + timeout
        while listening(self.port):  # the previous process is still releasing the port
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {self.port} is still taken")
            time.sleep(0.01)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while not listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.kind} did not listen on {self.port} within {timeout} s:\n{self.log()}")
            time.sleep(0.002)
        return time.monotonic()

    def kill(self) -> None:
        """Kill the server (SIGKILL: a crash, no goodbye to the client)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


class FfmpegTcpServer(StreamServer):
    """The demo video, looped in real time, as MPEG-2 in MPEG-TS over one TCP connection."""

    kind = "ffmpeg"

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        binary = shutil.which("ffmpeg")
        if binary is None:
            pytest.fail(FFMPEG_HINT)
        return [binary, "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(DEMO_VIDEO),
                "-c:v", "mpeg2video", "-f", "mpegts", f"{self.url}?listen=1"]  # fmt: skip


class RtspServer(StreamServer):
    """GStreamer's RTSP server (tests/rtsp_server.py) serving a live H.264 test pattern, 12 fps."""

    kind = "rtsp"

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def command(self) -> list[str]:
        if not rtsp_available():
            pytest.fail(RTSP_HINT)
        return [SYSTEM_PYTHON, str(TESTS / "rtsp_server.py"), "--port", str(self.port), "--fps", "12"]


def rtsp_available() -> bool:
    """Whether the system Python has GStreamer's RTSP server and an H.264 encoder."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
             "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
             "raise SystemExit(0 if Gst.ElementFactory.find('x264enc') else 1)")  # fmt: skip
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


SERVERS: dict[str, type[StreamServer]] = {"ffmpeg-tcp": FfmpegTcpServer, "rtsp": RtspServer}
