"""The upload queue on disk: one file per object waiting to go to S3, in ``_local_cache/_data/uploads/pending/``.

Each entry is the object's bytes in a file named after its object key (URL-quoted), written atomically (temp
file, fsync, rename): after a crash, even ``kill -9``, an entry is either whole or absent, and leftover temp
files are removed at start. Entries leave the folder only once uploaded, so an S3 outage or a restart loses
nothing. Keys are content-addressed, so the same bytes queued twice are one entry. The queue is bounded in
bytes; a full queue refuses new entries (the caller falls back to inline data) and counts them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from edge_engine.local.cache import atomic_write_bytes

log = logging.getLogger(__name__)
REMEMBER_UPLOADED = 4096  # recently uploaded keys: identical bytes produced again are not queued again


@dataclass
class Entry:
    """One object waiting: its key, its file, its size, and whether it was found at start (maybe sent)."""

    key: str
    path: Path
    size: int
    recovered: bool = False
    attempts: int = 0


class UploadQueue:
    """A durable FIFO of objects to upload, safe for many producers and one consumer."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = folder / "pending"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._cond = threading.Condition()
        self._order: deque[str] = deque()
        self._entries: dict[str, Entry] = {}
        self._reserved: set[str] = set()
        self._uploaded: OrderedDict[str, None] = OrderedDict()
        self._closed = False
        self.pending_bytes = 0
        self.deduplicated = 0
        self.rejected = 0
        self.recovered = self._recover()

    def _recover(self) -> int:
        """Load entries left by an earlier run (oldest first); drop torn temporary files."""
        found: list[tuple[float, Entry]] = []
        for path in self.folder.iterdir():
            if path.name.startswith("."):
                path.unlink(missing_ok=True)  # a temp file of a write that did not finish
                continue
            stat = path.stat()
            found.append((stat.st_mtime, Entry(unquote(path.name), path, stat.st_size, recovered=True)))
        for _, entry in sorted(found, key=lambda item: item[0]):
            self._order.append(entry.key)
            self._entries[entry.key] = entry
            self.pending_bytes += entry.size
        if found:
            log.info("upload queue: %d object(s) (%d bytes) waiting from before", len(found), self.pending_bytes)
        return len(found)

    def __len__(self) -> int:
        return len(self._order)

    def put(self, key: str, data: bytes) -> bool:
        """Queue ``data`` under ``key``; True when it is (or already was) queued or uploaded, False when refused."""
        with self._cond:
            if key in self._entries or key in self._reserved or key in self._uploaded:
                self.deduplicated += 1
                return True
            if self.pending_bytes + len(data) > self.max_bytes:
                self.rejected += 1
                return False
            self._reserved.add(key)
            self.pending_bytes += len(data)
        path = self.folder / quote(key, safe="")
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            with self._cond:
                self._reserved.discard(key)
                self.pending_bytes -= len(data)
                self.rejected += 1
            log.error("upload queue: %s could not be written: %s", key, exc)
            return False
        with self._cond:
            self._reserved.discard(key)
            self._entries[key] = Entry(key, path, len(data))
            self._order.append(key)
            self._cond.notify_all()
        return True

    def peek(self, timeout: float | None = None) -> Entry | None:
        """The oldest entry (it stays queued until :meth:`done`); None when closed or after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._order:
                remaining = None if deadline is None else deadline - time.monotonic()
                if self._closed or (remaining is not None and remaining <= 0):
                    return None
                self._cond.wait(remaining)
            return None if self._closed else self._entries[self._order[0]]

    def done(self, entry: Entry) -> None:
        """The entry is in the bucket: forget it (and remember its key for a while)."""
        with self._cond:
            if self._entries.pop(entry.key, None) is None:
                return
            self._order.remove(entry.key)
            self.pending_bytes -= entry.size
            self._uploaded[entry.key] = None
            while len(self._uploaded) > REMEMBER_UPLOADED:
                self._uploaded.popitem(last=False)
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Wake the consumer; entries stay on disk for the next start."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
