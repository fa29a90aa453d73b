"""Dynamic batching: a fair queue across pipelines and the rule that says when a batch is ready.

Requests wait in one queue per pipeline. A batch takes up to two consecutive requests from each pipeline in
turn, starting after the pipeline served last (round-robin), so a fast pipeline cannot starve a slow one, and
a pipeline whose inputs finish together is woken once for both. A batch leaves
when a server process is free and one of these holds:

* it is full enough: the pipelines that use the model can have ``capacity`` inputs in flight (the sum of
  their ``MAX_IN_FLIGHT``); spread over ``workers`` processes, a batch of ``capacity / workers`` (at most
  ``MAX_BATCH_SIZE``) keeps them all busy, and waiting for more would only idle a process;
* its oldest request has waited ``MAX_WAIT_MS``;
* nothing more can come: every active pipeline already has all its inputs queued or running.

A pipeline counts as active while it has inputs outstanding or sent one in the last :data:`ACTIVE_SECONDS`,
so a finished or paused pipeline does not hold batches back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_engine.serving.tickets import ModelClient, Request

ACTIVE_SECONDS = 0.25


class FairQueue:
    """Per-pipeline FIFO queues served round-robin."""

    def __init__(self) -> None:
        self._queues: dict[int, deque[Request]] = {}
        self._order: list[int] = []
        self._next = 0
        self.size = 0

    def push(self, client_id: int, request: Request) -> None:
        queue = self._queues.get(client_id)
        if queue is None:
            queue = self._queues[client_id] = deque()
            self._order.append(client_id)
        queue.append(request)
        self.size += 1

    def drop(self, client_id: int) -> list[Request]:
        """Remove a pipeline's queue; returns the requests it held."""
        queue = self._queues.pop(client_id, None)
        if queue is None:
            return []
        index = self._order.index(client_id)
        self._order.pop(index)
        if index < self._next:
            self._next -= 1
        if self._order:
            self._next %= len(self._order)
        else:
            self._next = 0
        self.size -= len(queue)
        return list(queue)

    def drain(self) -> list[Request]:
        """Remove and return every queued request."""
        taken = [r for queue in self._queues.values() for r in queue]
        for queue in self._queues.values():
            queue.clear()
        self.size = 0
        return taken

    def expire(self, cutoff: float) -> list[Request]:
        """Remove and return the requests submitted before ``cutoff`` (monotonic)."""
        expired: list[Request] = []
        for queue in self._queues.values():
            while queue and queue[0].submitted < cutoff:
                expired.append(queue.popleft())
        self.size -= len(expired)
        return expired

    def oldest(self) -> float | None:
        """Submission time (monotonic) of the longest-waiting request."""
        heads = [q[0].submitted for q in self._queues.values() if q]
        return min(heads) if heads else None

    def take(self, limit: int, quantum: int = 1) -> list[Request]:
        """Up to ``limit`` requests: up to ``quantum`` from each pipeline in turn, continuing where the last
        batch stopped."""
        batch: list[Request] = []
        order = self._order
        count = len(order)
        index = self._next
        misses = 0
        while len(batch) < limit and self.size and misses < count:
            queue = self._queues[order[index % count]]
            index += 1
            if queue:
                taken = min(quantum, len(queue), limit - len(batch))
                batch.extend(queue.popleft() for _ in range(taken))
                self.size -= taken
                misses = 0
            else:
                misses += 1
        if count:
            self._next = index % count
        return batch


def active_load(clients: Iterable[ModelClient], now: float, limit: int = 1 << 30) -> int:
    """How many inputs the active pipelines can have in flight together (the sum of their windows, each at most
    ``limit``: the server's suggested window)."""
    return sum(min(c.window, limit) for c in clients if c.outstanding > 0 or now - c.last_submit < ACTIVE_SECONDS)


def batch_target(capacity: int, workers: int, max_batch: int) -> int:
    """The batch size that keeps every worker busy without waiting for inputs that cannot come."""
    if workers <= 0:
        return max_batch
    return max(1, min(max_batch, -(-capacity // workers)))


def batch_ready(pending: int, target: int, waited: float, max_wait: float, outstanding: int, capacity: int) -> bool:
    """Whether a free worker should take a batch now (see the module docstring)."""
    return pending >= target or waited >= max_wait or outstanding >= capacity
