"""The replay guard: a command whose ``EE_HASH`` was already accepted is refused.

Accepted hashes are remembered for the whole time window commands are valid in (so an old command
cannot come back once forgotten: it would be outside the window), bounded in number, and persisted
(compact JSON, written atomically at most once a second) so a restart does not reopen the door.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

from edge_engine.errors import CacheError
from edge_engine.local.cache import atomic_write_json, read_json

MAX_ENTRIES = 100_000
SAVE_INTERVAL = 1.0


class ReplayGuard:
    """Remembers accepted command hashes for ``window`` seconds."""

    def __init__(self, path: Path | None, window: float, max_entries: int = MAX_ENTRIES):
        self.path = path
        self.window = window
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._dirty = False
        self._last_save = 0.0
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = read_json(self.path)
        except CacheError:
            return
        now = time.time()
        for digest, seen_at in sorted(dict(data).items(), key=lambda kv: kv[1]):
            if isinstance(seen_at, (int, float)) and now - seen_at <= self.window:
                self._seen[digest] = float(seen_at)

    def check_and_remember(self, digest: str) -> bool:
        """True if ``digest`` is new (and now remembered); False if it is a replay."""
        now = time.time()
        with self._lock:
            self._expire(now)
            if digest in self._seen:
                return False
            self._seen[digest] = now
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            self._dirty = True
            if now - self._last_save >= SAVE_INTERVAL:
                self._save(now)
        return True

    def _expire(self, now: float) -> None:
        while self._seen:
            _digest, seen_at = next(iter(self._seen.items()))
            if now - seen_at <= self.window:
                break
            self._seen.popitem(last=False)

    def _save(self, now: float) -> None:
        if self.path is None:
            return
        atomic_write_json(self.path, dict(self._seen), indent=None)
        self._dirty = False
        self._last_save = now

    def flush(self) -> None:
        """Persist pending entries (called at stop)."""
        with self._lock:
            if self._dirty:
                self._save(time.time())

    def __len__(self) -> int:
        return len(self._seen)
