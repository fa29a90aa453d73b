"""``VIDEO_STREAM`` capture plugin: a live video source (RTSP/HTTP/TCP camera, or a local camera device).

The stream is opened with OpenCV, with bounded open and read timeouts when the OpenCV build supports
them, so that a dead camera fails quickly instead of hanging the capture thread. A stream that cannot be
opened, or a failed read, raises ``ConnectionError``: the source is *away*, and the engine probes it again
(at most ``AWAY_PROBE_MAX_SECONDS`` apart, for as long as it is away) and reports it lost after
``STREAM_LOST_SECONDS`` and back with its first frame (decision 32).

A returning stream gives its first frame sooner when FFmpeg probes it briefly: ``FFMPEG_OPTIONS`` (OpenCV's
``OPENCV_FFMPEG_CAPTURE_OPTIONS`` format, ``key;value|key;value``) defaults to half a second of analysis
(FFmpeg's default, 5 s, made opening a stream take 2.1 to 2.5 s here) and to RTSP over TCP when the server
allows it. Set the key, or the environment variable, to change it. The options are process-wide in OpenCV:
pipelines of one node that set different ``FFMPEG_OPTIONS`` open one at a time, and one opening meanwhile
with the common options may get the other's. FFmpeg's own messages (one per refused
probe) are silenced unless ``OPENCV_FFMPEG_LOGLEVEL`` is set; the plugin reports every failure itself.

The source is live by default (``LIVE_FEED``: slow consumers get the newest frames, old ones are
dropped). Credentials in the URL (``rtsp://user:pass@host``) never appear in errors, logs or
metadata: they are shown as ``***@``. A URL made only of digits is a camera device index.
``cv2`` is imported lazily so that loading this module stays cheap.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from edge_engine.api import CapturePlugin, Input, Key, PluginContext

_CREDENTIALS = re.compile(r"(://)[^/\s]*@")
OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # read by OpenCV's FFmpeg backend at each open
DEFAULT_FFMPEG_OPTIONS = "rtsp_flags;prefer_tcp|analyzeduration;500000"
_USER_OPTIONS = os.environ.get(OPTIONS_ENV)  # set by the user before the node started: it wins over the default
_OPEN_LOCK = threading.Lock()  # an open that must change OPENCV_FFMPEG_CAPTURE_OPTIONS holds it
# FFmpeg logs each refused connection on stderr: thousands of lines while a camera is away for hours. OpenCV
# reads this once, when its FFmpeg backend starts (this module loads before any pipeline opens a video).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL


def redact_url(url: Any) -> str:
    """``url`` as text with any ``user:pass@`` of a ``scheme://`` URL replaced by ``***@``."""
    return _CREDENTIALS.sub(r"\1***@", str(url))


class VideoStream(CapturePlugin):
    """Read a network stream or a camera; see the module docstring."""

    SIGNATURE = "VIDEO_STREAM"
    ALIASES = ("VideoStream",)
    VERSION = "1.0.0"
    DESCRIPTION = (
        "Live video from an RTSP/HTTP/TCP URL or a camera device index, with open/read timeouts. A stream that "
        "cannot be opened or read is away: probed again about every second for as long as it takes, reported "
        "lost after STREAM_LOST_SECONDS and back with its first frame. Credentials in the URL are redacted "
        "everywhere."
    )
    CONFIG: ClassVar[dict[str, Any]] = {
        "URL": Key(required=True, type=(str, int), doc="RTSP/HTTP URL, or a camera device index"),
        "LIVE_FEED": Key(True, type=bool, doc="drop the oldest input when consumers lag"),
        "OPEN_TIMEOUT_MS": Key(5000, type=int, min=100, doc="give up opening the stream after this long"),
        "READ_TIMEOUT_MS": Key(3000, type=int, min=100, doc="a frame not received within this long is a failure"),
        "FFMPEG_OPTIONS": Key(
            DEFAULT_FFMPEG_OPTIONS,
            type=str,
            doc="FFmpeg demuxer options, 'key;value|key;value' (as OPENCV_FFMPEG_CAPTURE_OPTIONS, which wins when "
            "set and this key is left at its default); the default probes for 0.5 s so a returning stream "
            "gives frames sooner",
        ),
        "SILENT_SOURCE_SECONDS": Key(
            30.0, min=0, doc="a connected stream giving no frame for this long is away (reconnect); 0 = off"
        ),
    }

    def __init__(self, config: Mapping[str, Any], context: PluginContext):
        super().__init__(config, context)
        self._cap: Any = None
        self._source = ""
        self._fps = 0.0
        self._index = 0

    def connect(self) -> None:
        """Open the stream; ConnectionError (URL redacted) when it cannot be opened."""
        import cv2

        url = self.config["URL"]
        target: str | int = int(url) if _is_index(url) else str(url)
        self._source = redact_url(target)
        open_ms = int(self.config.get("OPEN_TIMEOUT_MS", 5000))
        read_ms = int(self.config.get("READ_TIMEOUT_MS", 3000))
        options = self._ffmpeg_options() if isinstance(target, str) else None
        if options is None or os.environ.get(OPTIONS_ENV, "") == options:
            cap = _open(cv2, target, open_ms, read_ms)  # the usual case: every stream uses the same options
        else:
            with _OPEN_LOCK:  # pipelines with other options wait for each other (not for the usual case)
                _use_ffmpeg_options(options)
                cap = _open(cv2, target, open_ms, read_ms)
        if not cap.isOpened():
            cap.release()
            raise ConnectionError(f"cannot open video stream {self._source}")
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if 0 < fps < 1000 else 0.0  # NaN, 0, or bogus values (some cameras report 90000)
        self._index = 0
        self.log.info("opened video stream %s (%s)", self._source, cap.getBackendName())

    def _ffmpeg_options(self) -> str:
        options = str(self.config.get("FFMPEG_OPTIONS") or "")
        if options == DEFAULT_FFMPEG_OPTIONS and _USER_OPTIONS is not None:
            return _USER_OPTIONS
        return options

    def read(self) -> Input:
        """Return the next frame; ConnectionError when the stream fails or times out."""
        ok, frame = self._cap.read()
        if not ok:
            raise ConnectionError(f"no frame from video stream {self._source} (ended, failed or timed out)")
        index = self._index
        self._index = index + 1
        metadata: dict[str, Any] = {"frame_index": index, "source": self._source}
        if self._fps:
            metadata["fps"] = self._fps
        return Input(image=frame, metadata=metadata)

    def release(self) -> None:
        """Close the stream."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _open(cv2: Any, target: str | int, open_ms: int, read_ms: int) -> Any:
    """A ``cv2.VideoCapture`` with open/read timeouts where this OpenCV has them."""
    open_key = getattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC", None)
    read_key = getattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC", None)
    if open_key is not None and read_key is not None:
        try:
            return cv2.VideoCapture(target, cv2.CAP_ANY, [open_key, open_ms, read_key, read_ms])
        except (TypeError, cv2.error):  # an OpenCV without the params overload
            pass
    return cv2.VideoCapture(target)


def _use_ffmpeg_options(options: str) -> None:
    """Make OpenCV's next FFmpeg open use ``options`` (the environment is changed only when they differ)."""
    current = os.environ.get(OPTIONS_ENV)
    if options and current != options:
        os.environ[OPTIONS_ENV] = options
    elif not options and current is not None:
        del os.environ[OPTIONS_ENV]


def _is_index(url: Any) -> bool:
    if isinstance(url, bool):
        return False
    if isinstance(url, int):
        return True
    return isinstance(url, str) and url.strip().isdigit()
