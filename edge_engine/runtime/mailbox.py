"""A bounded mailbox between two stages, with control messages that are never dropped.

Inputs follow a policy: ``block`` (the producer waits for room: files lose no frame) or ``drop_oldest``
(the oldest waiting input is discarded and counted: live streams stay fresh). Control messages (config
updates, commands, stop) jump ahead of inputs and are never dropped. Closing wakes every waiter, and
:meth:`Mailbox.wake` wakes a waiting :meth:`~Mailbox.get` with no message (it returns None, as on a timeout): the
serving stage uses it to tell the dispatcher that the results it waits for are in.
"""

from __future__ import annotations

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


class Mailbox:
    """Bounded inputs plus unbounded control messages, guarded by one condition variable."""

    def __init__(self, maxsize: int, policy: str = BLOCK):
        if policy not in (BLOCK, DROP_OLDEST):
            raise ValueError(f"unknown mailbox policy {policy!r}")
        self.maxsize = max(1, int(maxsize))
        self.policy = policy
        self.dropped = 0
        self._inputs: deque[Any] = deque()
        self._controls: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._woken = False  # wake() was called: the next get() returns None once

    def __len__(self) -> int:
        return len(self._inputs)

    @property
    def closed(self) -> bool:
        return self._closed

    def set_policy(self, policy: str, maxsize: int | None = None) -> None:
        """Change the policy and bound (for a live config update)."""
        with self._cond:
            self.policy = policy
            if maxsize is not None:
                self.maxsize = max(1, int(maxsize))
            self._cond.notify_all()

    def put(self, item: Any, timeout: float | None = None) -> bool:
        """Add an input. Returns False if the mailbox is closed (or, with ``timeout``, still full)."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            # the policy is read again after each wake-up: set_policy(DROP_OLDEST) releases a waiting producer
            while self.policy == BLOCK and len(self._inputs) >= self.maxsize and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            if self._closed:
                return False
            while len(self._inputs) >= self.maxsize:  # a loop: the bound may have shrunk (set_policy)
                self._inputs.popleft()
                self.dropped += 1
            self._inputs.append(item)
            self._cond.notify_all()
            return True

    def put_control(self, item: Any) -> None:
        """Add a control message; it is delivered before any waiting input."""
        with self._cond:
            self._controls.append(item)
            self._cond.notify_all()

    def wake(self) -> None:
        """Make the waiting (or the next) :meth:`get` return None at once, whatever is queued."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None, inputs: bool = True) -> tuple[str, Any] | None:
        """The next ``(CONTROL, msg)`` or ``(INPUT, item)``; None on timeout or after :meth:`wake`.

        With ``inputs=False`` only control messages are returned (inputs stay queued).
        Raises :class:`Closed` once the mailbox is closed and (for inputs) drained.
        """
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if self._woken:
                    self._woken = False
                    return None
                if self._controls:
                    return CONTROL, self._controls.popleft()
                if inputs and self._inputs:
                    item = self._inputs.popleft()
                    self._cond.notify_all()
                    return INPUT, item
                if self._closed:
                    raise Closed
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def close(self) -> None:
        """Refuse further inputs and wake every waiter; queued items can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def clear(self) -> int:
        """Discard waiting inputs; returns how many."""
        with self._cond:
            count = len(self._inputs)
            self._inputs.clear()
            self._cond.notify_all()
            return count
