"""``VIDEO_STREAM`` capture plugin: a live video source (RTSP/HTTP camera, or a local camera device).

The stream is opened with OpenCV, with bounded open and read timeouts when the OpenCV build supports
them, so that a dead camera fails quickly instead of hanging the capture thread. Any failed read
raises ``ConnectionError``: the engine releases the stream, waits with backoff and connects again.
The source is live by default (``LIVE_FEED``: slow consumers get the newest frames, old ones are
dropped). Credentials in the URL (``rtsp://user:pass@host``) never appear in errors, logs or
metadata: they are shown as ``***@``. A URL made only of digits is a camera device index.
``cv2`` is imported lazily so that loading this module stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from edge_engine.api import CapturePlugin, Input, Key, PluginContext

_CREDENTIALS = re.compile(r"(://)[^/\s]*@")


def redact_url(url: Any) -> str:
    """``url`` as text with any ``user:pass@`` of a ``scheme://`` URL replaced by ``***@``."""
    return _CREDENTIALS.sub(r"\1***@", str(url))


class VideoStream(CapturePlugin):
    """Read a network stream or a camera; see the module docstring."""

    SIGNATURE = "VIDEO_STREAM"
    ALIASES = ("VideoStream",)
    VERSION = "1.0.0"
    DESCRIPTION = (
        "Live video from an RTSP/HTTP URL or a camera device index, with open/read timeouts. A failed read "
        "makes the engine reconnect with backoff. Credentials in the URL are redacted everywhere."
    )
    CONFIG: ClassVar[dict[str, Any]] = {
        "URL": Key(required=True, type=(str, int), doc="RTSP/HTTP URL, or a camera device index"),
        "LIVE_FEED": Key(True, type=bool, doc="drop the oldest input when consumers lag"),
        "OPEN_TIMEOUT_MS": Key(5000, type=int, min=100, doc="give up opening the stream after this long"),
        "READ_TIMEOUT_MS": Key(5000, type=int, min=100, doc="a frame not received within this long is a failure"),
        "SILENT_SOURCE_SECONDS": Key(
            30.0, min=0, doc="a connected stream giving no frame for this long counts as failed (reconnect); 0 = off"
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
        read_ms = int(self.config.get("READ_TIMEOUT_MS", 5000))
        cap = None
        open_key = getattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC", None)
        read_key = getattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC", None)
        if open_key is not None and read_key is not None:
            try:
                cap = cv2.VideoCapture(target, cv2.CAP_ANY, [open_key, open_ms, read_key, read_ms])
            except (TypeError, cv2.error):  # an OpenCV without the params overload
                cap = None
        if cap is None:
            cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            raise ConnectionError(f"cannot open video stream {self._source}")
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if 0 < fps < 1000 else 0.0  # NaN, 0, or bogus values (some cameras report 90000)
        self._index = 0
        self.log.info("opened video stream %s (%s)", self._source, cap.getBackendName())

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


def _is_index(url: Any) -> bool:
    if isinstance(url, bool):
        return False
    if isinstance(url, int):
        return True
    return isinstance(url, str) and url.strip().isdigit()
