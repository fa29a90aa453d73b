"""Event clips: the seconds before and after an alert as a short MP4, encoded off the plugin's thread.

:class:`ClipRecorder` keeps a bounded ring of recent frames (downscaled to ``max_width``, at most
``pre_seconds`` of them and at most ``max_ring_bytes``); :meth:`ClipRecorder.trigger` freezes that pre-roll
and goes on collecting frames until ``post_seconds`` after the trigger (a trigger during a clip extends it,
up to ``max_seconds``). The finished frame list goes to one encoder thread (a bounded queue: when it is full
the clip is dropped and counted, never the frames of the camera), which writes an MP4 (``mp4v``) and hands
back its bytes. The plugin collects finished clips with :meth:`ClipRecorder.finished` on its own thread and
keeps them with ``save_file`` (local file, bounded by the node's ``_output`` limit, and the S3 upload queue).

The frames added are copies made by the resize, so the capture's buffers are never held.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Clip:
    """A finished clip: its MP4 bytes (empty when encoding failed) and what triggered it."""

    name: str
    data: bytes
    frames: int
    seconds: float
    start: float
    tags: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass
class _Pending:
    name: str
    frames: list[tuple[float, Any]]
    until: float
    hard_stop: float
    tags: dict[str, Any]


class ClipRecorder:
    """Pre-roll ring, post-roll collection and a background MP4 encoder (one per plugin instance)."""

    def __init__(self, pre_seconds: float = 5.0, post_seconds: float = 5.0, max_width: int = 640,
                 max_seconds: float = 30.0, max_ring_bytes: int = 64 * 2**20, max_queued: int = 2):  # fmt: skip
        self.pre_seconds, self.post_seconds, self.max_seconds = pre_seconds, post_seconds, max_seconds
        self.max_width, self.max_ring_bytes = max_width, max_ring_bytes
        self._ring: deque[tuple[float, Any]] = deque()
        self._ring_bytes = 0
        self._pending: _Pending | None = None
        self._jobs: queue.Queue[_Pending | None] = queue.Queue(maxsize=max_queued)
        self._done: queue.Queue[Clip] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.dropped = 0
        self.encoded = 0

    # --- frames (plugin thread) -------------------------------------------------------------------------------
    def add(self, frame: Any, timestamp: float) -> None:
        """Keep a downscaled copy of ``frame`` in the ring (and in the clip being collected)."""
        import cv2

        height, width = frame.shape[:2]
        scale = min(1.0, self.max_width / width)
        # even sizes: most MP4 encoders refuse odd ones
        size = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
        small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        self._ring.append((timestamp, small))
        self._ring_bytes += small.nbytes
        while self._ring and (
            timestamp - self._ring[0][0] > self.pre_seconds or self._ring_bytes > self.max_ring_bytes
        ):
            self._ring_bytes -= self._ring.popleft()[1].nbytes
        pending = self._pending
        if pending is not None:
            pending.frames.append((timestamp, small))
            if timestamp >= pending.until or timestamp >= pending.hard_stop:
                self._submit(pending)
                self._pending = None

    def trigger(self, name: str, timestamp: float, **tags: Any) -> bool:
        """Start a clip (pre-roll from the ring) or extend the one being collected; False when extended."""
        if self._pending is not None:
            self._pending.until = min(self._pending.hard_stop, timestamp + self.post_seconds)
            return False
        pre = [item for item in self._ring if item[0] >= timestamp - self.pre_seconds]
        start = pre[0][0] if pre else timestamp
        self._pending = _Pending(name, list(pre), timestamp + self.post_seconds, start + self.max_seconds, tags)
        return True

    @property
    def recording(self) -> str | None:
        """The name of the clip being collected, if any."""
        return self._pending.name if self._pending is not None else None

    def flush(self) -> None:
        """Encode the clip being collected now, with what it has (the stream ended or the plugin stops)."""
        if self._pending is not None:
            self._submit(self._pending)
            self._pending = None

    def finished(self) -> list[Clip]:
        """Clips encoded since the last call."""
        clips = []
        while True:
            try:
                clips.append(self._done.get_nowait())
            except queue.Empty:
                return clips

    def close(self, timeout: float = 1.5) -> list[Clip]:
        """Flush, give the encoder ``timeout`` seconds to finish, then make it stop at the next frame (a clip
        cut short is lost and logged); returns the clips not yet taken. Bounded, so a stopping node never
        waits on an encoder, and the encoder never outlives its instance."""
        self.flush()
        thread = self._thread
        if thread is not None:
            if not self._jobs_done(timeout):
                self._stop.set()
            try:
                self._jobs.put_nowait(None)
            except queue.Full:
                pass
            thread.join(timeout)
            self._thread = None
        return self.finished()

    def _jobs_done(self, timeout: float) -> bool:
        """Wait until the encoder has taken and finished every queued clip, at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._jobs.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return self._jobs.unfinished_tasks == 0

    # --- encoding (encoder thread) ----------------------------------------------------------------------------
    def _submit(self, pending: _Pending) -> None:
        if len(pending.frames) < 2:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._encode_loop, name="clip-encoder", daemon=True)
            self._thread.start()
        try:
            self._jobs.put_nowait(pending)
        except queue.Full:
            self.dropped += 1
            log.warning("clip %s dropped: the encoder is still busy with earlier clips", pending.name)

    def _encode_loop(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                clip = self._encode(job)
                if clip is not None:
                    self._done.put(clip)
            finally:
                self._jobs.task_done()

    def _encode(self, job: _Pending) -> Clip | None:
        import cv2

        times = [t for t, _ in job.frames]
        seconds = max(1e-3, times[-1] - times[0])
        fps = max(1.0, min(60.0, (len(times) - 1) / seconds))
        height, width = job.frames[0][1].shape[:2]
        handle, path = tempfile.mkstemp(suffix=".mp4", prefix="clip_")
        os.close(handle)
        try:
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not writer.isOpened():
                return Clip(job.name, b"", 0, 0.0, times[0], job.tags, error="no MP4 encoder in this OpenCV build")
            for _, frame in job.frames:
                if self._stop.is_set():
                    writer.release()
                    log.warning("clip %s not finished: its instance stopped while it was encoded", job.name)
                    return None
                if frame.shape[:2] != (height, width):
                    frame = cv2.resize(frame, (width, height))
                writer.write(frame)
            writer.release()
            with open(path, "rb") as handle_in:
                data = handle_in.read()
            self.encoded += 1
            return Clip(job.name, data, len(job.frames), round(seconds, 3), times[0], job.tags)
        except Exception as exc:  # an encoder failure loses the clip, never the plugin
            log.warning("clip %s not encoded: %s", job.name, exc)
            return Clip(job.name, b"", 0, 0.0, times[0], job.tags, error=str(exc))
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
