"""The durable outbox: payloads and notifications wait on disk until the broker has acknowledged them.

Behind the :class:`~edge_engine.comms.outbox.Outbox` interface. ``put`` stores before it returns: it encodes
the message (``encode``) on the caller's thread and appends it with one ``write()`` to a segment file under
``_data/outbox/`` (one log per channel, ``payloads`` and ``notif``). So a message whose ``put`` returned survives a
``kill -9``, and the node's other sinks (the local output writer runs after comms) only ever hold what the outbox
holds too (decision 38). The node's outbox (``unsigned=True``) stores each message's text to sign (envelope and
sequence number included) and the publisher signs it on the way out (:func:`~edge_engine.comms.signing.seal`:
deterministic, so a restart sends the same bytes), which keeps the ECDSA signature off the producer's thread; the
items it hands out say so (``unsigned``). The publisher ``get``s records in order and ``ack``s each one when the
broker's PUBACK arrives. Heartbeats (``ctrl``) and replies on a requester's topic (``targeted``) stay in memory:
stale, they are useless after a restart.

Files. A segment ``<channel>-<id>.seg`` starts with a magic line (``EEOUTBOX2``: texts to sign; ``EEOUTBOX1``:
wire bytes, as written before; both are read), then records ``[len u32][crc32 u32][seq u64][bytes]`` (the CRC
covers length, seq and bytes). ``<channel>.ack`` holds the ack point (segment id and offset of the first record
not yet acknowledged) in two alternating CRC-checked slots, so a torn write leaves the previous value. On start a
torn or corrupt tail is detected (length past the end or CRC mismatch), cut off and counted; delivery resumes at
the persisted ack point; the next append goes to a new segment.

Durability. Appends are one ``write()`` per message; a second thread fsyncs them, with the ack point, at most
every ``fsync_seconds`` (group commit; a slow fsync never holds up appends or sending). A killed process loses
nothing whose ``put`` returned; a power loss can lose the last ``fsync_seconds`` of appends. Acknowledgements
persisted late only cause duplicates (same ``EE_MESSAGE_SEQ`` and ``EE_MESSAGE_ID``), never loss.

Last stored number. ``previous_last_seq`` tells, per channel, the highest ``EE_MESSAGE_SEQ`` stored before this
start (the newest record found in the segment files, or ``last_seq.json`` written at each start and stop when
acknowledged segments were deleted; 0 for a channel never used; None when unknown: no such file, as after the
folder was removed). Comms puts it on the first message of the run (``EE_MESSAGE_SEQ_PREV``): the numbers
between it and that message's were never used.

Bound. Segment files together stay under ``max_bytes``: when an append would exceed it, fully acknowledged
segments go first, then the oldest payload segment (its records are counted in ``dropped``), notifications
only when no payload is left. ``on_drop`` is called once when dropping starts (again after the outbox drained).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edge_engine.comms.outbox import OutboxItem
from edge_engine.errors import CacheError
from edge_engine.local.cache import atomic_write_json, read_json

log = logging.getLogger(__name__)

MAGIC = b"EEOUTBOX1\n"  # records hold the wire bytes
MAGIC_UNSIGNED = b"EEOUTBOX2\n"  # records hold the text to sign (``unsigned=True``): signed when sent
RECORD = struct.Struct("<IIQ")  # length of the wire bytes, crc32, EE_MESSAGE_SEQ
ACK_SLOT = struct.Struct("<QQQI4x")  # generation, segment id, offset, crc32 of the first 24 bytes
LANES = ("notif", "payloads")  # delivery priority after heartbeats; order is kept within each
DROP_ORDER = ("payloads", "notif")  # what goes first when the bound is hit
LAST_SEQ_FILE = "last_seq.json"  # per channel, the highest number stored (written at start and at stop)
BURST_GAP = 0.0005  # puts closer than this are a burst: the publisher lingers to batch them
LINGER = 0.001  # how long (seconds, at most once per batch) the publisher lets a burst accumulate
CTRL_MAX = 4  # heartbeats and targeted replies kept in memory while the broker is away (the newest)
CACHE_BYTES = 8 * 1024 * 1024  # wire bytes kept in memory after the append, so the publisher rarely reads back
ACK_WRITE_SECONDS = 0.05  # ack point written (not fsynced) at most this often while acks come in

Encoder = Callable[[OutboxItem], "bytes | None"]


def _crc(length: int, seq: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(struct.pack("<IQ", length, seq)))


def encode_record(seq: int, data: bytes) -> bytes:
    """One record as stored in a segment."""
    return RECORD.pack(len(data), _crc(len(data), seq, data), seq) + data


def parse_records(blob: bytes, start: int) -> tuple[list[tuple[int, int]], int]:
    """``([(offset, seq), ...], end)``: the valid records of a segment's bytes from ``start``; ``end`` is where the
    valid part stops (``len(blob)`` unless the tail is torn or corrupt)."""
    records = []
    offset = start
    size = len(blob)
    while offset + RECORD.size <= size:
        length, crc, seq = RECORD.unpack_from(blob, offset)
        end = offset + RECORD.size + length
        if end > size or _crc(length, seq, blob[offset + RECORD.size : end]) != crc:
            break
        records.append((offset, seq))
        offset = end
    return records, offset


class _Segment:
    """One segment file and the index of its records not yet acknowledged at load time."""

    def __init__(self, lane: str, sid: int, path: Path, fd: int, size: int, writable: bool, unsigned: bool = False):
        self.lane = lane
        self.unsigned = unsigned  # records hold the text to sign (MAGIC_UNSIGNED)
        self.sid = sid
        self.path = path
        self.fd = fd
        self.size = size  # bytes on disk
        self.writable = writable
        self.offsets = array("Q")  # start of each indexed record
        self.seqs = array("Q")
        self.acked = bytearray()
        self.low = 0  # records [0, low) are all acknowledged
        self.unacked = 0
        self.cache: dict[int, bytes] = {}
        self.dirty = False  # appended since the last fsync

    def end_of(self, idx: int) -> int:
        return self.offsets[idx + 1] if idx + 1 < len(self.offsets) else self.size

    @property
    def ack_offset(self) -> int:
        return self.offsets[self.low] if self.low < len(self.offsets) else self.size

    @property
    def finished(self) -> bool:
        return not self.writable and self.low == len(self.offsets)


class _Lane:
    """The log of one channel: segments oldest first, a read cursor, and records handed back (requeued)."""

    def __init__(self, name: str):
        self.name = name
        self.segments: deque[_Segment] = deque()
        self.by_sid: dict[int, _Segment] = {}
        self.read_seg: _Segment | None = None
        self.read_idx = 0
        self.redo: list[tuple[int, int]] = []
        self.unsent = 0
        self.pending = 0  # records not yet acknowledged
        self.next_sid = 1
        self.last_seq = 0  # the highest EE_MESSAGE_SEQ stored (this run, or found at start)
        self.ack_gen = 0
        self.ack_written: tuple[int, int] | None = None

    @property
    def active(self) -> _Segment | None:
        seg = self.segments[-1] if self.segments else None
        return seg if seg is not None and seg.writable else None

    def ack_point(self) -> tuple[int, int]:
        for seg in self.segments:
            if not seg.finished:
                return seg.sid, seg.ack_offset
        return self.next_sid, 0


class DiskOutbox:
    """Segmented, CRC-checked, bounded outbox on disk (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        encode: Encoder | None = None,
        max_bytes: int = 256 * 1024 * 1024,
        fsync_seconds: float = 1.0,
        on_drop: Callable[[int], None] | None = None,
        unsigned: bool = False,
    ):
        self.folder = Path(folder)
        self.unsigned = unsigned  # ``encode`` gives the text to sign; the items handed out say so (``unsigned``)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.encode: Encoder = encode or (lambda item: item.wire)
        self.max_bytes = max(int(max_bytes), 64 * 1024)
        self.segment_bytes = min(max(self.max_bytes // 16, 16 * 1024), 8 * 1024 * 1024)
        self.fsync_seconds = fsync_seconds
        self.on_drop = on_drop
        self.dropped = 0
        self.stale_heartbeats = 0
        self.recovered = 0
        self.corrupt = 0  # torn or corrupt tails cut off at start
        self.refused = 0  # items the encoder refused (too large, not encodable)
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._notice_cond = threading.Condition()
        self._sync_cond = threading.Condition()
        self._count_lock = threading.Lock()
        self._storing = 0  # puts encoding or appending right now
        self._last_put = 0.0  # when the last payload or notification was put
        self._put_gap = 1.0  # seconds between the last two puts
        self._ctrl: deque[OutboxItem] = deque()
        self._lanes = {name: _Lane(name) for name in LANES}
        self._cached = 0
        self._disk = 0  # bytes of the segment files (the sum of their sizes, kept as they change)
        self._dropping = False
        self._drop_notice = False
        self._unsynced = False
        self._new_files = False
        self._last_sync = time.monotonic()
        self._last_ack_write = 0.0
        self._closed = False
        self._dir_fd = os.open(self.folder, os.O_RDONLY)
        self.previous_last_seq: dict[str, int | None] = self._recover_all()
        self._thread = threading.Thread(target=self._notice_loop, name="comms:outbox", daemon=True)
        self._thread.start()
        self._syncer = threading.Thread(target=self._sync_loop, name="comms:outbox-sync", daemon=True)
        self._syncer.start()

    # --- interface ----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Messages not yet delivered: being stored, on disk and not acknowledged, heartbeats."""
        return self._storing + len(self._ctrl) + sum(lane.pending for lane in self._lanes.values())

    def put(self, item: OutboxItem) -> None:
        """Payloads and notifications: encoded and appended to their segment before this returns (callers put one
        channel's messages in ``seq`` order, one at a time). Heartbeats and targeted replies: kept in memory."""
        if item.channel not in self._lanes:
            with self._ready:
                self._ctrl.append(item)
                if len(self._ctrl) > CTRL_MAX:
                    self._ctrl.popleft()
                    self.stale_heartbeats += 1
                self._ready.notify()
            return
        if self._closed:
            log.warning("outbox: a %s message put after the outbox closed is not stored", item.channel)
            return
        with self._count_lock:
            self._storing += 1
            now = time.monotonic()
            self._put_gap, self._last_put = now - self._last_put, now
        try:
            self._append(item)
        except Exception:
            log.exception("outbox: a %s message could not be stored", item.channel)
        finally:
            with self._count_lock:
                self._storing -= 1

    def get(self, timeout: float | None = None) -> OutboxItem | None:
        """The next message: heartbeats first, then notifications, then payloads (None after ``timeout``).

        While producers put in a burst (puts less than ``BURST_GAP`` apart), a call that may wait (``timeout``
        not 0: the first of a publisher's batch) first lets them run for ``LINGER`` seconds, so that the batch
        holds more than one message: otherwise publisher and producer trade the GIL at every message."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if timeout != 0 and time.monotonic() - self._last_put < BURST_GAP and self._put_gap < BURST_GAP:
            time.sleep(LINGER)
        with self._ready:
            while True:
                if self._closed:
                    return None
                if self._ctrl:
                    return self._ctrl.popleft()
                for lane in self._lanes.values():
                    item = self._take(lane)
                    if item is not None:
                        return item
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._ready.wait(remaining)

    def get_batch(self, limit: int, timeout: float | None = None) -> list[OutboxItem]:
        """Up to ``limit`` messages in :meth:`get`'s order: the first as ``get(timeout)`` (empty list when none
        came), the rest only what already waits, taken under one lock."""
        first = self.get(timeout)
        if first is None:
            return []
        batch = [first]
        with self._ready:
            while len(batch) < limit and not self._closed:
                if self._ctrl:
                    batch.append(self._ctrl.popleft())
                    continue
                item = next((i for lane in self._lanes.values() if (i := self._take(lane)) is not None), None)
                if item is None:
                    break
                batch.append(item)
        return batch

    def ack(self, item: OutboxItem) -> None:
        """Delivered (the broker's PUBACK for QoS 1): the record may go."""
        self.ack_many((item,))

    def ack_many(self, items: Iterable[OutboxItem]) -> None:
        """:meth:`ack` of each of ``items``, under one lock."""
        with self._lock:
            acked = False
            for item in items:
                if item.ref is not None:
                    acked = self._ack_locked(item.ref) or acked
            if not acked:
                return
            if self._dropping and not self._pending_locked():
                self._dropping = False  # drained: the next drop raises a new notification
            now = time.monotonic()
            if now - self._last_ack_write >= ACK_WRITE_SECONDS:
                self._last_ack_write = now
                self._write_ack_points()
            wake, self._unsynced = not self._unsynced, True
        if wake:  # the ack point is written and synced within fsync_seconds
            self._wake_syncer()

    def _ack_locked(self, ref: tuple[str, int, int]) -> bool:
        """Mark one record acknowledged (lock held); False when it was dropped meanwhile or already acknowledged."""
        lane_name, sid, idx = ref
        lane = self._lanes[lane_name]
        seg = lane.by_sid.get(sid)
        if seg is None or seg.acked[idx]:
            return False
        seg.acked[idx] = 1
        seg.unacked -= 1
        lane.pending -= 1
        while seg.low < len(seg.offsets) and seg.acked[seg.low]:
            seg.low += 1
        return True

    def requeue(self, item: OutboxItem) -> None:
        """Hand ``item`` out again before anything newer of its channel."""
        with self._ready:
            if item.ref is None:
                self._ctrl.appendleft(item)
            else:
                lane_name, sid, idx = item.ref
                lane = self._lanes[lane_name]
                if sid in lane.by_sid and not lane.by_sid[sid].acked[idx]:
                    lane.redo.append((sid, idx))
                    lane.redo.sort()
                    lane.unsent += 1
            self._ready.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Persist the ack point and the last stored numbers, fsync and close the files (a put still storing gets
        ``timeout`` seconds to finish)."""
        with self._notice_cond:
            if self._closed:
                return
            self._closed = True
            self._notice_cond.notify()
        deadline = time.monotonic() + timeout
        while self._storing and time.monotonic() < deadline:
            time.sleep(0.005)
        self._thread.join(timeout)
        self._wake_syncer()
        self._syncer.join(timeout)
        with self._ready:
            self._ready.notify_all()
        try:
            self._sync(everything=True)
            self._write_last_seqs()
        except OSError:
            log.exception("outbox: final sync failed (a restart sends again what it cannot tell was sent)")
        with self._lock:
            for lane in self._lanes.values():
                for seg in lane.segments:
                    os.close(seg.fd)
                lane.segments.clear()
                lane.by_sid.clear()
            self._disk = 0
            os.close(self._dir_fd)

    # --- figures ------------------------------------------------------------------------------------------------
    @property
    def disk_bytes(self) -> int:
        return self._disk

    def stats(self) -> dict[str, Any]:
        """Figures for local_info.json, heartbeats and /metrics."""
        with self._lock:
            lanes = {name: lane.pending for name, lane in self._lanes.items()}
            segments = sum(len(lane.segments) for lane in self._lanes.values())
            disk = self.disk_bytes
        return {
            "kind": "disk",
            "pending": len(self),
            "pending_by_channel": lanes,
            "bytes": disk,
            "max_bytes": self.max_bytes,
            "segments": segments,
            "dropped": self.dropped,
            "recovered": self.recovered,
            "corrupt_tails": self.corrupt,
            "refused": self.refused,
            "stale_heartbeats": self.stale_heartbeats,
        }

    # --- reading ------------------------------------------------------------------------------------------------
    def _take(self, lane: _Lane) -> OutboxItem | None:
        """The next record of ``lane`` not handed out yet (lock held)."""
        if lane.redo:
            sid, idx = lane.redo.pop(0)
            lane.unsent -= 1
            return self._item(lane, lane.by_sid[sid], idx)
        seg = lane.read_seg
        while seg is not None and lane.read_idx >= len(seg.offsets):
            later = [s for s in lane.segments if s.sid > seg.sid]
            if not later:
                return None
            seg = lane.read_seg = later[0]
            lane.read_idx = 0
        if seg is None:
            return None
        idx = lane.read_idx
        lane.read_idx += 1
        lane.unsent -= 1
        return self._item(lane, seg, idx)

    def _item(self, lane: _Lane, seg: _Segment, idx: int) -> OutboxItem:
        data = seg.cache.pop(idx, None)
        if data is not None:
            self._cached -= len(data)
        else:
            start = seg.offsets[idx] + RECORD.size
            data = os.pread(seg.fd, seg.end_of(idx) - start, start)
        ref = (lane.name, seg.sid, idx)
        return OutboxItem(lane.name, {}, [], seq=seg.seqs[idx], wire=data, ref=ref, unsigned=seg.unsigned)

    # --- drop notices -------------------------------------------------------------------------------------------
    def _notice_loop(self) -> None:
        """Calls ``on_drop`` off the producer's thread (it puts a notification, which must not nest in a put)."""
        while True:
            with self._notice_cond:
                while not self._closed and not self._drop_notice:
                    self._notice_cond.wait()
                if self._closed:
                    return
            self._notify_drop()

    def _sync_loop(self) -> None:
        """Group commit, on its own thread so that a slow fsync never holds up appends or sending."""
        while True:
            with self._sync_cond:
                while not self._unsynced and not self._closed:
                    self._sync_cond.wait()
                if self._closed:
                    return
                due = self.fsync_seconds - (time.monotonic() - self._last_sync)
                if due > 0:
                    self._sync_cond.wait(due)
                    if self._closed:
                        return
            try:
                self._sync()
            except OSError:
                log.exception("outbox: sync failed")
            self._last_sync = time.monotonic()

    def _wake_syncer(self) -> None:
        with self._sync_cond:
            self._sync_cond.notify()

    def _append(self, item: OutboxItem) -> None:
        data = self.encode(item)
        if data is None:
            self.refused += 1
            return
        blob = encode_record(item.seq, data)
        with self._ready:
            self._append_record(self._lanes[item.channel], item.seq, data, blob)
            wake, self._unsynced = not self._unsynced, True
            self._ready.notify()
        if wake:
            self._wake_syncer()
        if self._drop_notice:
            with self._notice_cond:
                self._notice_cond.notify()

    def _append_record(self, lane: _Lane, seq: int, data: bytes, blob: bytes) -> None:
        """Write one record (``blob``: ``data`` with its header) to ``lane`` with one ``write()`` (lock held)."""
        seg = lane.active
        if seg is None or (seg.offsets and seg.size >= self.segment_bytes):
            seg = self._new_segment(lane)
        if self.disk_bytes + len(blob) > self.max_bytes:  # else compaction waits for the group commit
            self._make_room(len(blob), keep=seg)
            if seg.sid not in lane.by_sid:  # dropped to make room: a fresh segment
                seg = self._new_segment(lane)
        try:
            _write_all(seg.fd, blob)
        except OSError as exc:
            os.ftruncate(seg.fd, seg.size)
            self._count_drop(1)
            log.error("outbox: a message dropped, the disk refused it (%s)", exc)
            return
        lane.last_seq = max(lane.last_seq, seq)
        idx = len(seg.offsets)
        seg.offsets.append(seg.size)
        seg.seqs.append(seq)
        seg.acked.append(0)
        if self._cached + len(data) <= CACHE_BYTES:
            seg.cache[idx] = data
            self._cached += len(data)
        seg.size += len(blob)
        self._disk += len(blob)
        seg.unacked += 1
        seg.dirty = True
        lane.pending += 1
        lane.unsent += 1
        if lane.read_seg is None:
            lane.read_seg, lane.read_idx = seg, 0

    def _new_segment(self, lane: _Lane) -> _Segment:
        if lane.active is not None:
            lane.active.writable = False
        sid = lane.next_sid
        lane.next_sid += 1
        path = self.folder / f"{lane.name}-{sid:012d}.seg"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        os.ftruncate(fd, 0)
        magic = MAGIC_UNSIGNED if self.unsigned else MAGIC
        _write_all(fd, magic)
        seg = _Segment(lane.name, sid, path, fd, len(magic), writable=True, unsigned=self.unsigned)
        self._disk += seg.size
        lane.segments.append(seg)
        lane.by_sid[sid] = seg
        self._new_files = True
        return seg

    # --- bound and compaction -----------------------------------------------------------------------------------
    def _make_room(self, size: int, keep: _Segment) -> None:
        """Drop segments until ``size`` more bytes fit under the bound (lock held)."""
        self._compact()
        while self.disk_bytes + size > self.max_bytes:
            victim = self._victim(keep)
            if victim is None:
                return  # nothing left to drop: the bound is exceeded by this one batch
            self._count_drop(victim.unacked)
            log.warning("outbox full (%d bytes): %d oldest %s dropped", self.max_bytes, victim.unacked, victim.lane)
            self._remove(victim)

    def _victim(self, keep: _Segment) -> _Segment | None:
        """The oldest segment of the first channel in ``DROP_ORDER`` that has one; ``keep`` (being appended to)
        only when it holds records (it is then sealed, and the batch goes to a new segment)."""
        for name in DROP_ORDER:
            for seg in self._lanes[name].segments:
                if seg is keep and not seg.offsets:
                    continue
                seg.writable = False
                return seg
        return None

    def _compact(self) -> None:
        """Delete segments whose every record was acknowledged (lock held)."""
        for lane in self._lanes.values():
            for seg in [s for s in lane.segments if s.finished]:
                self._remove(seg)

    def _remove(self, seg: _Segment) -> None:
        lane = self._lanes[seg.lane]
        lane.segments.remove(seg)
        self._disk -= seg.size
        del lane.by_sid[seg.sid]
        lane.pending -= seg.unacked
        if lane.read_seg is seg:
            lane.unsent -= len(seg.offsets) - lane.read_idx
            later = [s for s in lane.segments if s.sid > seg.sid]
            lane.read_seg, lane.read_idx = (later[0] if later else None), 0
        elif lane.read_seg is None or lane.read_seg.sid < seg.sid:
            lane.unsent -= len(seg.offsets)  # not reached yet by the cursor
        kept = [(sid, idx) for sid, idx in lane.redo if sid != seg.sid]
        lane.unsent -= len(lane.redo) - len(kept)
        lane.redo = kept
        for data in seg.cache.values():
            self._cached -= len(data)
        os.close(seg.fd)
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass
        self._new_files = True

    def _count_drop(self, count: int) -> None:
        self.dropped += count
        if count and not self._dropping:
            self._dropping = True
            self._drop_notice = True

    def _notify_drop(self) -> None:
        if self._drop_notice and self.on_drop is not None:
            self._drop_notice = False
            try:
                self.on_drop(self.dropped)
            except Exception:
                log.exception("outbox: drop notification failed")
        self._drop_notice = False

    def _pending_locked(self) -> int:
        return sum(lane.pending for lane in self._lanes.values())

    # --- persistence --------------------------------------------------------------------------------------------
    def _write_ack_points(self) -> None:
        """Write each lane's ack point in its alternate slot when it moved (lock held; no fsync)."""
        for lane in self._lanes.values():
            point = lane.ack_point()
            if point == lane.ack_written:
                continue
            lane.ack_gen += 1
            head = struct.pack("<QQQ", lane.ack_gen, *point)
            slot = ACK_SLOT.pack(lane.ack_gen, point[0], point[1], zlib.crc32(head))
            path = self.folder / f"{lane.name}.ack"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, slot, (lane.ack_gen % 2) * ACK_SLOT.size)
            finally:
                os.close(fd)
            lane.ack_written = point

    def _sync(self, everything: bool = False) -> None:
        """Group commit: compact, write the ack points, then fsync (without the lock: appends and sends go on)
        the segments appended to since the last sync, the ack files and the folder."""
        with self._lock:
            self._unsynced = False
            self._compact()
            self._write_ack_points()
            fds = []
            for lane in self._lanes.values():
                for seg in lane.segments:
                    if seg.dirty or everything:
                        fds.append(os.dup(seg.fd))  # the segment may be deleted meanwhile: its own descriptor
                        seg.dirty = False
            new_files, self._new_files = self._new_files, False
        try:
            for fd in fds:
                os.fsync(fd)
            for name in self._lanes:
                path = self.folder / f"{name}.ack"
                if path.exists():
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            if new_files:
                os.fsync(self._dir_fd)
        finally:
            for fd in fds:
                os.close(fd)

    # --- recovery -----------------------------------------------------------------------------------------------
    def _recover_all(self) -> dict[str, int | None]:
        """Load every lane; persist, before any file is deleted, the highest number each one had stored; return
        those numbers (None: not known)."""
        recorded = read_last_seqs(self.folder / LAST_SEQ_FILE)
        previous: dict[str, int | None] = {}
        doomed: list[Path] = []
        for lane in self._lanes.values():
            found = self._recover(lane, doomed)
            known = [v for v in (found, recorded.get(lane.name)) if v is not None]
            previous[lane.name] = max(known) if known else None
            lane.last_seq = previous[lane.name] or 0
        self._write_last_seqs()
        for path in doomed:
            path.unlink(missing_ok=True)
        return previous

    def _write_last_seqs(self) -> None:
        """``last_seq.json``: per channel the highest number stored so far (atomic, fsynced)."""
        values = {name: lane.last_seq for name, lane in self._lanes.items() if lane.last_seq}
        atomic_write_json(self.folder / LAST_SEQ_FILE, values, indent=None)

    def _recover(self, lane: _Lane, doomed: list[Path]) -> int | None:
        """Load ``lane`` from disk: segments from the ack point, torn tails cut off, the next append in a new file.
        Files to delete go to ``doomed``; returns the highest number found in the segments (None: none)."""
        ack_sid, ack_offset, lane.ack_gen = read_ack_point(self.folder / f"{lane.name}.ack")
        lane.ack_written = (ack_sid, ack_offset) if lane.ack_gen else None
        found = sorted(segment_files(self.folder, lane.name))
        lane.next_sid = max([ack_sid] + [sid for sid, _ in found]) + 1
        highest: int | None = None
        for _sid, path in reversed(found):  # newest first: the highest number is in the newest readable segment
            blob = path.read_bytes()
            if _magic(blob):
                records, _ = parse_records(blob, len(MAGIC))
                if records:
                    highest = records[-1][1]
                    break
        for sid, path in found:
            if sid < ack_sid:
                doomed.append(path)  # fully acknowledged before the last stop
                continue
            blob = path.read_bytes()
            if not _magic(blob):
                log.warning("outbox: %s has no header (torn at creation); removed", path.name)
                self.corrupt += 1 if blob else 0
                doomed.append(path)
                continue
            start = max(ack_offset, len(MAGIC)) if sid == ack_sid else len(MAGIC)
            records, end = parse_records(blob, min(start, len(blob)))
            if end < len(blob) and start <= len(blob):
                self.corrupt += 1
                log.warning("outbox: %s: %d bytes of a torn or corrupt tail discarded", path.name, len(blob) - end)
                os.truncate(path, end)
            if not records:
                doomed.append(path)
                continue
            fd = os.open(path, os.O_RDONLY)
            seg = _Segment(lane.name, sid, path, fd, end, writable=False, unsigned=blob.startswith(MAGIC_UNSIGNED))
            for offset, seq in records:
                seg.offsets.append(offset)
                seg.seqs.append(seq)
                seg.acked.append(0)
            seg.unacked = len(records)
            self._disk += seg.size
            lane.segments.append(seg)
            lane.by_sid[sid] = seg
            lane.pending += len(records)
            lane.unsent += len(records)
            self.recovered += len(records)
        lane.read_seg = lane.segments[0] if lane.segments else None
        if lane.pending:
            log.info("outbox: %d %s messages from before the restart will be sent", lane.pending, lane.name)
        return highest


def _magic(blob: bytes) -> bool:
    """Whether a segment's bytes start with a header (either kind of record: both headers have one length)."""
    return blob.startswith(MAGIC) or blob.startswith(MAGIC_UNSIGNED)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_ack_point(path: Path) -> tuple[int, int, int]:
    """``(segment id, offset, generation)`` of the newest valid slot of an ack file; ``(0, 0, 0)`` without one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, 0, 0
    best = (0, 0, 0)
    for start in (0, ACK_SLOT.size):
        if len(data) < start + ACK_SLOT.size:
            continue
        gen, sid, offset, crc = ACK_SLOT.unpack_from(data, start)
        if zlib.crc32(struct.pack("<QQQ", gen, sid, offset)) == crc and gen > best[2]:
            best = (sid, offset, gen)
    return best


def read_last_seqs(path: Path) -> dict[str, int]:
    """``last_seq.json`` as ``{channel: number}``; empty when missing or unreadable."""
    try:
        stored = read_json(path)
    except CacheError:
        return {}
    if not isinstance(stored, dict):
        return {}
    return {str(k): v for k, v in stored.items() if isinstance(v, int) and not isinstance(v, bool)}


def segment_files(folder: Path, lane: str) -> list[tuple[int, Path]]:
    """``(id, path)`` of the segment files of ``lane``."""
    found = []
    for path in folder.glob(f"{lane}-*.seg"):
        try:
            found.append((int(path.stem.rsplit("-", 1)[1]), path))
        except ValueError:
            continue
    return found


def inspect_outbox(folder: Path) -> dict[str, Any]:
    """What a restart would find, without changing anything: per channel the pending records (seq list) and the
    number of segments with a torn or corrupt tail."""
    report: dict[str, Any] = {}
    for lane in LANES:
        ack_sid, ack_offset, _ = read_ack_point(folder / f"{lane}.ack")
        seqs: list[int] = []
        torn = 0
        for sid, path in sorted(segment_files(folder, lane)):
            if sid < ack_sid:
                continue
            blob = path.read_bytes()
            if not _magic(blob):
                torn += 1 if blob else 0
                continue
            start = max(ack_offset, len(MAGIC)) if sid == ack_sid else len(MAGIC)
            records, end = parse_records(blob, min(start, len(blob)))
            torn += end < len(blob)
            seqs.extend(seq for _, seq in records)
        report[lane] = {"pending": len(seqs), "seqs": seqs, "torn": torn}
    return report
