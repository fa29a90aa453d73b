"""Message sequence numbers: per channel, strictly increasing across restarts, persisted cheaply.

Numbers are reserved in blocks: the upper bound of the current block is written (atomically) before any
number in it is used, so after a crash the node restarts above every number it may have sent. A gap after
a restart is expected (the comms service says on the wire where it is: ``EE_MESSAGE_SEQ_PREV``); a repeated or
decreasing number never happens.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edge_engine.errors import CacheError
from edge_engine.local.cache import atomic_write_json, read_json

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

    def used(self, channel: str) -> bool:
        """Whether ``channel`` was ever numbered (in this run or before)."""
        with self._lock:
            return channel in self._reserved

    def next(self, channel: str) -> int:
        """The next number for ``channel`` (starting at 1)."""
        with self._lock:
            value = self._next.get(channel, 1)
            if value > self._reserved.get(channel, 0):
                self._reserved[channel] = value + self.block - 1
                atomic_write_json(self.path, self._reserved, indent=None)
            self._next[channel] = value + 1
            return value


def unexplained_gaps(messages: Iterable[Mapping[str, Any]], first: int = 1) -> list[int]:
    """What a consumer checks for zero loss on one node's channel: the numbers from ``first`` to the highest
    ``EE_MESSAGE_SEQ`` seen that neither arrived nor lie in a restart's skip (a message carrying
    ``EE_MESSAGE_SEQ_PREV = p`` with ``EE_MESSAGE_SEQ = s`` says that ``p + 1 … s - 1`` were never used).

    ``messages`` are the decoded messages of one node (``EE_ADDR``) and channel, in any order, duplicates allowed.
    An empty list means nothing was lost.
    """
    seen: set[int] = set()
    skipped: list[tuple[int, int]] = []
    for message in messages:
        seq = int(message["EE_MESSAGE_SEQ"])
        seen.add(seq)
        previous = message.get("EE_MESSAGE_SEQ_PREV")
        if isinstance(previous, int) and previous < seq:
            skipped.append((previous + 1, seq))
    if not seen:
        return []
    missing = set(range(first, max(seen) + 1)) - seen
    for low, high in skipped:
        missing -= set(range(low, high))
    return sorted(missing)
