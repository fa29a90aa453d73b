"""A bounded mailbox between two stages, with control messages that are never dropped.

Inputs follow a policy: ``block`` (the producer waits for room: files lose no frame) or ``drop_oldest``
(the oldest waiting input is discarded and counted: live streams stay fresh). Control messages (config
updates, commands, stop) jump ahead of inputs and are never dropped. Closing wakes every waiter, and
:meth:`Mailbox.wake` wakes a waiting :meth:`~Mailbox.get` with no message (it returns None, as on a timeout): the
serving stage uses it to tell the dispatcher that the results it waits for are in.

Every frame of a pipeline crosses a mailbox, so a hand-off must be cheap: a waiting thread blocks in C (a
``SimpleQueue.get``) instead of :class:`threading.Condition`, whose ``wait()`` makes a new lock and runs Python
code each time (it cost twice as much CPU per frame, see docs/performance.md); and a producer blocked on a full
mailbox is woken once the consumer has taken half of it (*batch hand-off*), not after every input.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Any

BLOCK = "block"
DROP_OLDEST = "drop_oldest"

INPUT = "input"
CONTROL = "control"


class Closed(Exception):
    """The mailbox was closed and holds nothing more."""


_tokens = threading.local()  # each thread's wake-up queue, reused for every wait of that thread


def _token() -> queue.SimpleQueue[None]:
    token: queue.SimpleQueue[None] | None = getattr(_tokens, "queue", None)
    if token is None:
        token = _tokens.queue = queue.SimpleQueue()
    return token


class _Waiters:
    """Threads parked until the mailbox changes; every method is called with the mailbox's lock held.

    Each parked thread waits on its own token queue (made once per thread), so a wake reaches every thread that
    was parked at that moment and no other; a thread whose wait timed out just as it was woken takes that token
    back, so no stale token ends a later wait for nothing.
    """

    __slots__ = ("_parked",)

    def __init__(self) -> None:
        self._parked: list[queue.SimpleQueue[None]] = []

    @property
    def count(self) -> int:
        """Threads parked now."""
        return len(self._parked)

    def wait(self, lock: threading.Lock, timeout: float | None) -> None:
        """Release ``lock``, park until woken or ``timeout``, take ``lock`` again."""
        token = _token()
        self._parked.append(token)
        lock.release()
        woken = True
        try:
            token.get(timeout=timeout)
        except queue.Empty:
            woken = False
        finally:
            lock.acquire()
        if woken:
            return
        try:
            self._parked.remove(token)  # timed out, not woken
        except ValueError:  # woken as the wait timed out: the token is there, take it back
            token.get_nowait()

    def wake_all(self) -> None:
        for token in self._parked:
            token.put(None)
        self._parked.clear()


class Mailbox:
    """Bounded inputs plus unbounded control messages, guarded by one lock."""

    def __init__(self, maxsize: int, policy: str = BLOCK):
        if policy not in (BLOCK, DROP_OLDEST):
            raise ValueError(f"unknown mailbox policy {policy!r}")
        self.maxsize = max(1, int(maxsize))
        self.policy = policy
        self.dropped = 0
        self._inputs: deque[Any] = deque()
        self._controls: deque[Any] = deque()
        self._lock = threading.Lock()
        self._getters = _Waiters()  # consumers waiting for a message
        self._putters = _Waiters()  # producers waiting for room (BLOCK)
        self._closed = False
        self._woken = False  # wake() was called: the next get() returns None once

    def __len__(self) -> int:
        return len(self._inputs)

    @property
    def closed(self) -> bool:
        return self._closed

    def set_policy(self, policy: str, maxsize: int | None = None) -> None:
        """Change the policy and bound (for a live config update)."""
        with self._lock:
            self.policy = policy
            if maxsize is not None:
                self.maxsize = max(1, int(maxsize))
            self._putters.wake_all()

    def put(self, item: Any, timeout: float | None = None) -> bool:
        """Add an input. Returns False if the mailbox is closed (or, with ``timeout``, still full)."""
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            # the policy is read again after each wake-up: set_policy(DROP_OLDEST) releases a waiting producer
            while self.policy == BLOCK and len(self._inputs) >= self.maxsize and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._putters.wait(self._lock, remaining)
            if self._closed:
                return False
            while len(self._inputs) >= self.maxsize:  # a loop: the bound may have shrunk (set_policy)
                self._inputs.popleft()
                self.dropped += 1
            self._inputs.append(item)
            if self._getters.count:
                self._getters.wake_all()
            return True

    def put_control(self, item: Any) -> None:
        """Add a control message; it is delivered before any waiting input."""
        with self._lock:
            self._controls.append(item)
            self._getters.wake_all()

    def wake(self) -> None:
        """Make the waiting (or the next) :meth:`get` return None at once, whatever is queued."""
        with self._lock:
            self._woken = True
            self._getters.wake_all()

    def get(self, timeout: float | None = None, inputs: bool = True) -> tuple[str, Any] | None:
        """The next ``(CONTROL, msg)`` or ``(INPUT, item)``; None on timeout or after :meth:`wake`.

        With ``inputs=False`` only control messages are returned (inputs stay queued).
        Raises :class:`Closed` once the mailbox is closed and (for inputs) drained.
        """
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if self._woken:
                    self._woken = False
                    return None
                if self._controls:
                    return CONTROL, self._controls.popleft()
                if inputs and self._inputs:
                    item = self._inputs.popleft()
                    # batch hand-off: a producer waiting for room is woken once half the mailbox is free
                    if self._putters.count and len(self._inputs) <= self.maxsize // 2:
                        self._putters.wake_all()
                    return INPUT, item
                if self._closed:
                    raise Closed
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._getters.wait(self._lock, remaining)

    def close(self) -> None:
        """Refuse further inputs and wake every waiter; queued items can still be taken."""
        with self._lock:
            self._closed = True
            self._getters.wake_all()
            self._putters.wake_all()

    def clear(self) -> int:
        """Discard waiting inputs; returns how many."""
        with self._lock:
            count = len(self._inputs)
            self._inputs.clear()
            self._putters.wake_all()
            return count
