"""``VIDEO_FILE`` capture plugin: decode a local video file frame by frame, optionally looping.

Frames are decoded with OpenCV (FFmpeg backend) and handed on as BGR images with their frame index,
the file's fps, the source path and the loop count. By default the file is read as fast as the
pipeline consumes it (the engine's back-pressure applies, since ``LIVE_FEED`` is false); set the
generic ``CAP_RESOLUTION`` (e.g. 25) to cap the rate, or ``REALTIME`` to play at the file's own fps.
At the end of the file the plugin raises ``EndOfStream``, or starts again from the first frame when
``LOOP`` is true. ``cv2`` is imported lazily so that loading this module stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edge_engine.api import CapturePlugin, EndOfStream, Input, Key, PluginContext

# Behind the real-time schedule by more than this (consumers blocked us), restart the schedule
# instead of bursting frames to catch up.
_MAX_LAG_S = 1.0


class VideoFile(CapturePlugin):
    """Read a video file; see the module docstring."""

    SIGNATURE = "VIDEO_FILE"
    ALIASES = ("VideoFile",)
    VERSION = "1.0.0"
    DESCRIPTION = (
        "Decodes a local video file (any format OpenCV/FFmpeg reads). Ends the pipeline's stream at the end "
        "of the file unless LOOP is set. Pace with CAP_RESOLUTION (inputs/s) or REALTIME (the file's fps)."
    )
    CONFIG: ClassVar[dict[str, Any]] = {
        "URL": Key(
            required=True, type=str, doc="path to the video file; relative paths resolve against the current dir"
        ),
        "LOOP": Key(False, type=bool, doc="restart from the first frame at the end instead of ending the stream"),
        "REALTIME": Key(False, type=bool, doc="play at the file's own fps (otherwise as fast as consumed)"),
        "LIVE_FEED": Key(False, type=bool, doc="drop the oldest input when consumers lag (off: wait for them)"),
        "DECODE_THREADS": Key(
            0, type=int, min=0, max=64, doc="FFmpeg decoding threads (0: OpenCV's choice; 1 saves memory per camera)"
        ),
    }

    def __init__(self, config: Mapping[str, Any], context: PluginContext):
        super().__init__(config, context)
        self._cap: Any = None
        self._path: Path | None = None
        self._source = ""
        self._fps = 0.0
        self._index = 0
        self._loops = 0
        self._loop = False
        self._realtime = False
        self._t0 = 0.0  # monotonic time of the first frame of the current real-time schedule
        self._scheduled = 0  # frames emitted since _t0
        self._read_config()

    # --- configuration --------------------------------------------------------------------------------
    def _read_config(self) -> None:
        self._loop = bool(self.config.get("LOOP", False))
        realtime = bool(self.config.get("REALTIME", False))
        if realtime != self._realtime:
            self._scheduled = 0
        self._realtime = realtime

    def on_config(self, changed: dict[str, Any]) -> None:
        """Apply LOOP / REALTIME changes at once; a new URL takes effect at the next connect."""
        self._read_config()

    # --- lifecycle ------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the file; FileNotFoundError if it does not exist, RuntimeError if OpenCV cannot read it."""
        path = Path(str(self.config["URL"])).expanduser()
        if not path.is_file():
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            raise FileNotFoundError(f"video file not found: {path}{where}")
        self._path = path
        self._source = str(path)
        self._cap = self._open(path, int(self.config.get("DECODE_THREADS") or 0))
        fps = float(self._cap.get(_cv2().CAP_PROP_FPS) or 0.0)
        self._fps = fps if fps > 0 and fps == fps else 0.0  # NaN/negative → unknown
        self._index = 0
        self._loops = 0
        self._scheduled = 0
        if self._realtime and not self._fps:
            self.log.warning("REALTIME ignored: %s does not declare its fps", path)

    def read(self) -> Input | None:
        """Decode the next frame; rewind at the end when looping, else raise EndOfStream.

        With ``REALTIME`` the wait for the frame's slot comes before decoding it: a camera that waits holds no
        decoded frame (0.9 MB at 640x480, for most of its time at 5 fps).
        """
        if self._realtime and self._fps and self._pace():
            return None  # stopping
        ok, frame = self._cap.read()
        if not ok:
            if not self._loop:
                raise EndOfStream(f"end of video file {self._source} after {self._index} frames")
            frame = self._rewind()
        index = self._index
        self._index = index + 1
        return Input(
            image=frame, metadata={"frame_index": index, "fps": self._fps, "source": self._source, "loop": self._loops}
        )

    def release(self) -> None:
        """Close the file."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    # --- helpers --------------------------------------------------------------------------------------
    @staticmethod
    def _open(path: Path, threads: int = 0) -> Any:
        cv2 = _cv2()
        key = getattr(cv2, "CAP_PROP_N_THREADS", None)
        if threads > 0 and key is not None:  # many cameras: a decoder thread per core each costs threads and memory
            cap = cv2.VideoCapture(str(path), cv2.CAP_ANY, [key, threads])
        else:
            cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            cap.release()
            raise RuntimeError(f"cannot open video file {path}")
        return cap

    def _rewind(self) -> Any:
        """Go back to the first frame (seek, or reopen when seeking fails) and return it."""
        self._loops += 1
        self._index = 0
        cv2 = _cv2()
        ok = bool(self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0))
        frame = None
        if ok:
            ok, frame = self._cap.read()
        if not ok:
            self._cap.release()
            self._cap = None
            assert self._path is not None
            self._cap = self._open(self._path, int(self.config.get("DECODE_THREADS") or 0))
            ok, frame = self._cap.read()
        if not ok:
            raise RuntimeError(f"video file {self._source} has no readable frame")
        return frame

    def _pace(self) -> bool:
        """Wait until this frame's slot on the real-time schedule; True when the node is stopping."""
        now = time.monotonic()
        if self._scheduled == 0:
            self._t0 = now
            self._scheduled = 1
            return False
        due = self._t0 + self._scheduled / self._fps
        delay = due - now
        if delay < -_MAX_LAG_S:  # far behind (blocked downstream): start a new schedule from now
            self._t0 = now
            self._scheduled = 1
            return False
        self._scheduled += 1
        if delay > 0:
            return self.context.stop_event.wait(delay)
        return False


def _cv2() -> Any:
    import cv2

    return cv2
