"""How frames travel from a pipeline to a model-server process: shared-memory slots, or pipes as a fallback.

Each pipeline that uses models owns a small ring of slots (``MAX_IN_FLIGHT`` of them), each its own
``multiprocessing.shared_memory`` segment, grown when a bigger frame comes. The pipeline copies a frame
into a free slot once; every server that needs it reads it in place (a numpy view) and the slot is reused
when all of them have answered. A request names the segment, the shape and the dtype: a few bytes, never
the pixels. A slot outlives its pipeline while a server still holds a request naming it: when a pipeline
stops (removed, updated, restarted) with frames in batches in flight, its segments are unlinked only as
those batches are answered, so a batch mixing its frames with other pipelines' never finds one gone. When
``/dev/shm`` is smaller than :data:`SHM_MIN_BYTES` (Docker's default is 64 MB) the node says so and falls
back to sending the frame's bytes through the server's pipe.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

log = logging.getLogger(__name__)

SHM_PATH = "/dev/shm"
SHM_MIN_BYTES = 128 * 1024 * 1024
SHM_MARGIN_BYTES = 16 * 1024 * 1024
SLOT_ROUNDING = 64 * 1024
_names = itertools.count(1)

FrameRef = tuple[Any, tuple[int, ...], str]
"""``(segment name | frame bytes | None, shape, dtype)`` as sent to a server."""


@dataclass(frozen=True)
class ShmStatus:
    """What the start-up check found."""

    usable: bool
    total_bytes: int | None
    free_bytes: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        mb = 1024 * 1024
        return {
            "transport": "shared_memory" if self.usable else "pipe",
            "shm_total_mb": None if self.total_bytes is None else round(self.total_bytes / mb),
            "shm_free_mb": None if self.free_bytes is None else round(self.free_bytes / mb),
            "reason": self.reason,
        }


def check_shm(min_bytes: int = SHM_MIN_BYTES, path: str = SHM_PATH) -> ShmStatus:
    """Whether ``/dev/shm`` is big enough for frame slots (where the OS has no such folder, assume yes)."""
    try:
        stat = os.statvfs(path)
    except (OSError, AttributeError):
        return ShmStatus(True, None, None, f"{path} not found: the OS provides shared memory another way")
    total, free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
    if total < min_bytes:
        reason = (
            f"{path} is {total // 2**20} MB, less than the {min_bytes // 2**20} MB frames need: frames go to model "
            "servers through pipes (slower). Give the container more (compose: shm_size: 1gb; k8s: a "
            "memory-backed emptyDir at /dev/shm)"
        )
        return ShmStatus(False, total, free, reason)
    return ShmStatus(True, total, free, f"{path}: {total // 2**20} MB")


def shm_free_bytes(path: str = SHM_PATH) -> int | None:
    try:
        stat = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize


class FrameSlots:
    """The pipeline side: a ring of numbered slots, each a shared-memory segment (or pipe mode: none).

    The pipeline's dispatcher acquires a slot and writes a frame into it; the slot comes back with
    :meth:`release`, which a model server's scheduler thread may call (when it answers the last request that
    names the slot), so the free list is locked. After :meth:`close` a released slot is unlinked at once.
    """

    def __init__(self, count: int, use_shm: bool, prefix: str = "ee"):
        self.use_shm = use_shm
        self._prefix = f"{prefix}{os.getpid()}_"
        self._segments: list[shared_memory.SharedMemory | None] = [None] * count
        self._views: list[Any] = [None] * count  # an ndarray over each segment, for the last frame shape
        self._names: list[str] = [""] * count
        self._free = list(range(count - 1, -1, -1))
        self._lock = threading.Lock()
        self._closed = False
        self.fallbacks = 0

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def count(self) -> int:
        return len(self._segments)

    def resize(self, count: int) -> None:
        """Grow the ring to ``count`` slots (a live update raised MAX_IN_FLIGHT)."""
        with self._lock:
            while len(self._segments) < count:
                self._add_locked()

    def _add_locked(self) -> None:
        self._segments.append(None)
        self._views.append(None)
        self._names.append("")
        self._free.insert(0, len(self._segments) - 1)

    def acquire(self) -> int:
        """A free slot number. The caller keeps at most ``count`` inputs in flight, but a slot whose input gave
        up waiting comes back only when its server answers: meanwhile the ring grows by one."""
        try:
            return self._free.pop()  # atomic: no lock on the per-frame path
        except IndexError:
            with self._lock:
                self._add_locked()
                return self._free.pop()

    def release(self, slot: int) -> None:
        """No server holds the slot's frame any more: reuse it (unlink it when the ring is closed)."""
        with self._lock:
            if self._closed:
                self._close(slot)
            self._free.append(slot)

    def put(self, slot: int, image: Any) -> FrameRef:
        """Write ``image`` into ``slot``; returns the reference a server resolves with :class:`FrameReader`."""
        if image is None:
            return (None, (), "")
        import numpy as np

        array = image if isinstance(image, np.ndarray) else np.asarray(image)
        shape, dtype = tuple(array.shape), array.dtype.str
        if self.use_shm:
            view = self._views[slot]
            if view is None or view.shape != array.shape or view.dtype != array.dtype:
                segment = self._segment(slot, array.nbytes)
                if segment is not None:
                    view = self._views[slot] = np.ndarray(array.shape, array.dtype, buffer=segment.buf)
            if view is not None:
                np.copyto(view, array, casting="no")
                return (self._names[slot], shape, dtype)
        return (np.ascontiguousarray(array).tobytes(), shape, dtype)

    def _segment(self, slot: int, nbytes: int) -> shared_memory.SharedMemory | None:
        segment = self._segments[slot]
        if segment is not None and segment.size >= nbytes:
            self._views[slot] = None
            return segment
        size = max(SLOT_ROUNDING, -(-nbytes // SLOT_ROUNDING) * SLOT_ROUNDING)
        free = shm_free_bytes()
        if free is not None and free < size + SHM_MARGIN_BYTES:
            self.fallbacks += 1
            if self.fallbacks == 1:
                log.warning("/dev/shm has %d MB free: this frame goes through a pipe", free // 2**20)
            return None
        self._close(slot)
        try:
            segment = shared_memory.SharedMemory(name=f"{self._prefix}{next(_names)}", create=True, size=size)
        except OSError as exc:
            self.fallbacks += 1
            log.warning("cannot create a shared-memory frame slot (%s): this frame goes through a pipe", exc)
            return None
        self._segments[slot] = segment
        self._names[slot] = segment.name
        return segment

    def _close(self, slot: int) -> None:
        self._views[slot] = None  # the view must go before the segment can close
        segment, self._segments[slot] = self._segments[slot], None
        if segment is None:
            return
        try:
            segment.close()
            segment.unlink()
        except (OSError, BufferError) as exc:
            log.debug("closing frame slot %s: %s", segment.name, exc)

    def close(self) -> None:
        """Unlink the free slots' segments now, and every other one when it is released (servers that still
        map one keep it until they let it go)."""
        with self._lock:
            self._closed = True
            for slot in self._free:
                self._close(slot)

    @property
    def held(self) -> int:
        """Slots in use by the pipeline, or named by a request a server has not answered yet (after
        :meth:`close`: the segments not unlinked yet)."""
        return len(self._segments) - len(self._free)


class FrameReader:
    """The server side: resolve frame references to numpy arrays, keeping recent segments mapped."""

    def __init__(self, keep: int = 64):
        self._keep = keep
        self._segments: OrderedDict[str, shared_memory.SharedMemory] = OrderedDict()

    def array(self, ref: FrameRef | tuple[Any, ...]) -> Any:
        """The array ``ref`` names; a 4th element is its byte offset in the segment (cascade crops share one)."""
        source, shape, dtype = ref[0], ref[1], ref[2]
        if source is None:
            return None
        import numpy as np

        if isinstance(source, (bytes, bytearray)):
            return np.frombuffer(source, dtype=np.dtype(dtype)).reshape(shape)
        segment = self._attach(source)
        view = np.ndarray(shape, np.dtype(dtype), buffer=segment.buf, offset=ref[3] if len(ref) > 3 else 0)
        view.flags.writeable = False
        return view

    def _attach(self, name: str) -> shared_memory.SharedMemory:
        segment = self._segments.get(name)
        if segment is not None:
            self._segments.move_to_end(name)
            return segment
        # Spawned servers share the node's resource tracker, so attaching registers nothing new and exiting
        # unlinks nothing: the pipeline that created the segment unlinks it.
        segment = shared_memory.SharedMemory(name=name)
        self._forget_unlinked()
        self._segments[name] = segment
        while len(self._segments) > self._keep:
            _, old = self._segments.popitem(last=False)
            _unmap(old)
        return segment

    def _forget_unlinked(self) -> None:
        """Unmap the segments their pipeline unlinked (it stopped, or a slot grew): mapped, they would keep their
        memory in /dev/shm until pushed out. Checked when a new segment comes, which is when old ones go."""
        if not os.path.isdir(SHM_PATH):
            return
        gone = [name for name in self._segments if not os.path.exists(os.path.join(SHM_PATH, name.lstrip("/")))]
        for name in gone:
            _unmap(self._segments.pop(name))

    @property
    def mapped(self) -> list[str]:
        return list(self._segments)

    def close(self) -> None:
        for segment in self._segments.values():
            _unmap(segment)
        self._segments.clear()


def _unmap(segment: shared_memory.SharedMemory) -> None:
    try:
        segment.close()
    except BufferError:  # a view of it is still alive somewhere: let the GC unmap it later
        pass
