"""Event clips: the seconds before and after an alert as a short MP4, encoded off the plugin's thread.

:class:`ClipRecorder` keeps a bounded ring of recent frames (downscaled to ``max_width``, at most
``pre_seconds`` of them and at most ``max_ring_bytes``). :meth:`ClipRecorder.trigger` hands the pre-roll to
one encoder thread at once, and the frames that follow are streamed to it through a bounded queue until
``post_seconds`` after the trigger (a trigger during a clip extends it, up to ``max_seconds``): the clip is
encoded while it is recorded, memory stays bounded (ring + queue), and when the encoder falls behind it skips
clip frames (counted), never camera frames. At most ``max_queued`` clips wait for the encoder; more are
dropped and counted. The encoder runs ``ENCODER_NICE`` below the node (on Linux, where priority is per
thread: under CPU pressure the cameras and plugins come first) and writes an MP4 (``mp4v``). The plugin
collects finished clips with :meth:`ClipRecorder.finished` on its own thread and keeps them with
``save_file`` (local file, bounded by the node's ``_output`` limit, and the S3 upload queue).

A frame already at most ``max_width`` wide (and even-sized) is kept as it is, not copied: every input has its
own array and plugins never draw on it (they draw on copies). Wider frames are downscaled (a new, smaller
array). The plugin thread's cost per frame is that resize at most.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
ENCODER_NICE = 10  # the encoder thread runs this much below the node: cameras and plugins come first


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority (Linux: per thread; elsewhere nothing happens)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
    except (AttributeError, OSError):
        pass


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
    skipped: int = 0  # frames left out because the encoder fell behind


class _Job:
    """One clip: its pre-roll, then its post-roll frames streamed to the encoder through a bounded queue."""

    def __init__(
        self,
        name: str,
        pre: list[tuple[float, Any]],
        fps: float,
        until: float,
        hard_stop: float,
        tags: dict[str, Any],
        backlog: int,
    ):
        self.name, self.pre, self.fps, self.until, self.hard_stop, self.tags = name, pre, fps, until, hard_stop, tags
        self.frames: queue.Queue[tuple[float, Any] | None] = queue.Queue(maxsize=backlog)
        self.skipped = 0  # post-roll frames the encoder was too slow to take

    def end(self) -> None:
        """No more frames: the encoder finishes the file (blocks only if the queue is full, at most 1 s)."""
        try:
            self.frames.put(None, timeout=1.0)
        except queue.Full:
            pass


class ClipRecorder:
    """Pre-roll ring, post-roll streaming and a background MP4 encoder (one per plugin instance)."""

    def __init__(
        self,
        pre_seconds: float = 5.0,
        post_seconds: float = 5.0,
        max_width: int = 640,
        max_seconds: float = 30.0,
        max_ring_bytes: int = 64 * 2**20,
        max_queued: int = 2,
    ):
        self.pre_seconds, self.post_seconds, self.max_seconds = pre_seconds, post_seconds, max_seconds
        self.max_width, self.max_ring_bytes = max_width, max_ring_bytes
        self._ring: deque[tuple[float, Any]] = deque()
        self._ring_bytes = 0
        self._current: _Job | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queued)
        self._done: queue.Queue[Clip] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.dropped = 0
        self.encoded = 0

    # --- frames (plugin thread) -------------------------------------------------------------------------------
    def add(self, frame: Any, timestamp: float) -> None:
        """Keep ``frame`` (downscaled to ``max_width``) in the ring, and hand it to the clip being recorded."""
        import cv2

        height, width = frame.shape[:2]
        scale = min(1.0, self.max_width / width)
        # even sizes: most MP4 encoders refuse odd ones
        size = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
        # kept as is when small enough: every input has its own array, and plugins never draw on it
        small = frame if size == (width, height) else cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        self._ring.append((timestamp, small))
        self._ring_bytes += small.nbytes
        while self._ring and (
            timestamp - self._ring[0][0] > self.pre_seconds or self._ring_bytes > self.max_ring_bytes
        ):
            self._ring_bytes -= self._ring.popleft()[1].nbytes
        job = self._current
        if job is None:
            return
        if timestamp > job.until or timestamp > job.hard_stop:
            job.end()
            self._current = None
            return
        try:
            job.frames.put_nowait((timestamp, small))
        except queue.Full:
            job.skipped += 1

    def trigger(self, name: str, timestamp: float, **tags: Any) -> bool:
        """Start a clip (pre-roll from the ring) or extend the one being recorded; False when extended or when
        the encoder is still busy with ``max_queued`` clips (this one is then dropped and counted)."""
        if self._current is not None:
            self._current.until = min(self._current.hard_stop, timestamp + self.post_seconds)
            return False
        pre = [item for item in self._ring if item[0] >= timestamp - self.pre_seconds]
        start = pre[0][0] if pre else timestamp
        frame_bytes = max(1, self._ring[-1][1].nbytes) if self._ring else 1
        backlog = max(16, self.max_ring_bytes // frame_bytes)
        job = _Job(name, pre, self._fps(), timestamp + self.post_seconds, start + self.max_seconds, tags, backlog)
        if self._thread is None:
            self._thread = threading.Thread(target=self._encode_loop, name="clip-encoder", daemon=True)
            self._thread.start()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            log.warning("clip %s dropped: the encoder is still busy with earlier clips", name)
            return False
        self._current = job
        return True

    def _fps(self) -> float:
        """The recent frame rate, from the ring's timestamps (10 when it cannot tell)."""
        if len(self._ring) < 2:
            return 10.0
        span = self._ring[-1][0] - self._ring[0][0]
        return max(1.0, min(60.0, (len(self._ring) - 1) / span)) if span > 0 else 10.0

    @property
    def recording(self) -> str | None:
        """The name of the clip being recorded, if any."""
        return self._current.name if self._current is not None else None

    def flush(self) -> None:
        """End the clip being recorded now, with what it has (the stream ended or the plugin stops)."""
        if self._current is not None:
            self._current.end()
            self._current = None

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
    def _encode_loop(self) -> None:
        _lower_priority(ENCODER_NICE)
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

    def _frames(self, job: _Job) -> Iterator[tuple[float, Any]]:
        """The pre-roll, then the post-roll as it arrives, until the job ends or the recorder stops."""
        for item in job.pre:
            if self._stop.is_set():
                return
            yield item
        while not self._stop.is_set():
            try:
                queued = job.frames.get(timeout=0.2)
            except queue.Empty:
                continue
            if queued is None:
                return
            yield queued

    def _encode(self, job: _Job) -> Clip | None:
        import cv2

        handle, path = tempfile.mkstemp(suffix=".mp4", prefix="clip_")
        os.close(handle)
        writer: Any = None
        times: list[float] = []
        try:
            for timestamp, frame in self._frames(job):
                if writer is None:
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), job.fps, (width, height))
                    if not writer.isOpened():
                        return Clip(job.name, b"", 0, 0.0, timestamp, job.tags, error="no MP4 encoder in OpenCV")
                if frame.shape[:2] != (height, width):
                    frame = cv2.resize(frame, (width, height))
                writer.write(frame)
                times.append(timestamp)
            if self._stop.is_set():
                log.warning("clip %s not finished: its instance stopped while it was encoded", job.name)
                return None
            if writer is None or len(times) < 2:
                return Clip(job.name, b"", 0, 0.0, times[0] if times else 0.0, job.tags, error="no frames")
            writer.release()
            writer = None
            with open(path, "rb") as handle_in:
                data = handle_in.read()
            self.encoded += 1
            if job.skipped:
                log.warning("clip %s: %d frames skipped (the encoder fell behind)", job.name, job.skipped)
            seconds = round(times[-1] - times[0], 3)
            return Clip(job.name, data, len(times), seconds, times[0], job.tags, skipped=job.skipped)
        except Exception as exc:  # an encoder failure loses the clip, never the plugin
            log.warning("clip %s not encoded: %s", job.name, exc)
            return Clip(job.name, b"", 0, 0.0, times[0] if times else 0.0, job.tags, error=str(exc))
        finally:
            if writer is not None:
                writer.release()
            try:
                os.unlink(path)
            except OSError:
                pass
