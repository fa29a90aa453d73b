"""A real RTSP server for tests and benchmarks: GStreamer's RTSP server serving a live H.264 test pattern.

It runs under the system Python (``/usr/bin/python3``), which has PyGObject and the GStreamer RTSP server
bindings (Debian: ``python3-gi``, ``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-ugly`` for x264enc);
the project's virtualenv does not need them. :mod:`stream_servers` starts it as a separate process::

    /usr/bin/python3 tests/rtsp_server.py --port 18554 --path /live --fps 12

and it serves ``rtsp://127.0.0.1:<port>/<path>`` until it is killed: a moving ball, 320x240, ``--fps`` frames
per second, a key frame every second (``--gop`` frames), like a camera. It prints ``READY <url>`` once the
server is attached. It imports nothing from the project.
"""

from __future__ import annotations

import argparse
import sys


def launch_line(width: int, height: int, fps: int, gop: int) -> str:
    """The GStreamer pipeline each client session shares: live test pattern → H.264 → RTP."""
    return (
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=500 "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/live")
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--gop", type=int, default=0, help="frames between key frames (default: --fps)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args(argv)

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.width, args.height, args.fps, args.gop or args.fps))
    factory.set_shared(True)
    path = args.path if args.path.startswith("/") else "/" + args.path
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    print(f"READY rtsp://127.0.0.1:{args.port}{path}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
