"""Message sequence numbers: per channel, strictly increasing across restarts, persisted cheaply.

Numbers are reserved in blocks: the upper bound of the current block is written (atomically) before any
number in it is used, so after a crash the node restarts above every number it may have sent. A gap after
a restart is expected; a repeated or decreasing number never happens.
"""

from __future__ import annotations

import threading
from pathlib import Path

from edge_engine.cache import atomic_write_json, read_json
from edge_engine.errors import CacheError

BLOCK = 1000


class SequenceStore:
    """Hands out ``EE_MESSAGE_SEQ`` values per channel."""

    def __init__(self, path: Path, block: int = BLOCK):
        self.path = path
        self.block = block
        self._lock = threading.Lock()
        try:
            stored = read_json(path) if path.exists() else {}
        except CacheError:
            stored = {}
        self._reserved: dict[str, int] = {k: int(v) for k, v in dict(stored).items() if isinstance(v, int)}
        self._next: dict[str, int] = {k: v + 1 for k, v in self._reserved.items()}

    def next(self, channel: str) -> int:
        """The next number for ``channel`` (starting at 1)."""
        with self._lock:
            value = self._next.get(channel, 1)
            if value > self._reserved.get(channel, 0):
                self._reserved[channel] = value + self.block - 1
                atomic_write_json(self.path, self._reserved, indent=None)
            self._next[channel] = value + 1
            return value
