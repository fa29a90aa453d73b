"""The outbox: messages wait here between the instance that made them and the broker.

Callers ``put`` a message body with its channel; the publisher thread ``get``s, signs (unless the item
already carries its ``wire`` bytes) and publishes, then ``ack``s once delivered (the broker's PUBACK at QoS 1)
or ``requeue``s. This in-memory implementation is bounded; when full, the oldest payload is dropped and
counted (heartbeats and notifications are kept ahead of payloads). The node's default is the durable
:class:`~edge_engine.comms.disk_outbox.DiskOutbox`; this one serves ``EE_OUTBOX_MAX_MB=0`` and unit tests.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class OutboxItem:
    """One message waiting to be sent."""

    channel: str
    body: dict[str, Any]
    path: list[Any]
    seq: int = 0
    created: float = field(default_factory=time.time)
    source: Any = None  # a Payload whose body is built off the producer's thread
    wire: bytes | None = None  # the encoded message, when the outbox stored it so (sent as is, never re-signed)
    ref: Any = None  # where a durable outbox keeps it (for ack / requeue)
    topic: str | None = None  # an explicit topic (``targeted`` items: a reply on its requester's own topic)
    unsigned: bool = False  # ``wire`` is the message's text to sign: the publisher signs it (``signing.seal``)


class Outbox(Protocol):
    """What the publisher and the producers rely on."""

    dropped: int

    def put(self, item: OutboxItem) -> None: ...

    def get(self, timeout: float | None = None) -> OutboxItem | None: ...

    def get_batch(self, limit: int, timeout: float | None = None) -> list[OutboxItem]: ...

    def ack(self, item: OutboxItem) -> None: ...

    def ack_many(self, items: Iterable[OutboxItem]) -> None: ...

    def requeue(self, item: OutboxItem) -> None: ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class MemoryOutbox:
    """A bounded in-memory outbox: priority channels (ctrl, notif) first, then payloads in order."""

    PRIORITY = ("ctrl", "targeted", "notif")

    def __init__(self, max_items: int = 10_000):
        self.max_items = max_items
        self.dropped = 0
        self._priority: deque[OutboxItem] = deque()
        self._normal: deque[OutboxItem] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._priority) + len(self._normal)

    def put(self, item: OutboxItem) -> None:
        with self._cond:
            queue = self._priority if item.channel in self.PRIORITY else self._normal
            if len(self) >= self.max_items:
                victim = self._normal if self._normal else self._priority
                victim.popleft()
                self.dropped += 1
            queue.append(item)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> OutboxItem | None:
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._priority and not self._normal:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._priority.popleft() if self._priority else self._normal.popleft()

    def get_batch(self, limit: int, timeout: float | None = None) -> list[OutboxItem]:
        """Up to ``limit`` messages: the first as ``get(timeout)`` (empty list when none came), the rest only what
        already waits."""
        first = self.get(timeout)
        if first is None:
            return []
        batch = [first]
        with self._cond:
            while len(batch) < limit and (self._priority or self._normal):
                batch.append(self._priority.popleft() if self._priority else self._normal.popleft())
        return batch

    def ack(self, item: OutboxItem) -> None:
        """Delivered: nothing to keep in memory."""

    def ack_many(self, items: Iterable[OutboxItem]) -> None:
        """Delivered: nothing to keep in memory."""

    def requeue(self, item: OutboxItem) -> None:
        with self._cond:
            queue = self._priority if item.channel in self.PRIORITY else self._normal
            queue.appendleft(item)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        return {"kind": "memory", "pending": len(self), "dropped": self.dropped}
