"""The one place that decides when a failed part (capture source, instance, model server) restarts.

Parts report failures and recoveries; the supervisor answers with a delay from a capped exponential
backoff with jitter and counts restarts per part. Waiting uses the caller's stop event, so a stopping
node never waits for a backoff to run out.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff: ``initial * factor**(n-1)`` seconds, capped at ``cap``, ± ``jitter`` (fraction)."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2

    def delay(self, consecutive_failures: int, rng: random.Random | None = None) -> float:
        try:
            base = min(self.cap, self.initial * self.factor ** max(0, consecutive_failures - 1))
        except OverflowError:  # a part failing for days: factor**n no longer fits a float
            base = self.cap
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))


@dataclass
class PartState:
    """What the supervisor knows about one part."""

    restarts: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_failure: float | None = None


class Supervisor:
    """Restart bookkeeping for every part of the node, keyed by a part name such as ``pipe/SIG/inst``."""

    def __init__(self, policy: RestartPolicy | None = None, rng: random.Random | None = None):
        self.policy = policy or RestartPolicy()
        self._rng = rng or random.Random()
        self._parts: dict[str, PartState] = {}
        self._lock = threading.Lock()

    def state(self, part: str) -> PartState:
        with self._lock:
            return self._parts.setdefault(part, PartState())

    def failed(self, part: str, error: BaseException | str, cap: float | None = None) -> float:
        """Record a failure; returns the delay before the next attempt (at most ``cap`` when given)."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        with self._lock:
            state = self._parts.setdefault(part, PartState())
            state.consecutive_failures += 1
            state.restarts += 1
            state.last_error = text
            state.last_failure = time.time()
            delay = self.policy.delay(state.consecutive_failures, self._rng)
            if cap is not None:
                delay = min(delay, cap)
        log.warning("%s failed (%s); restart #%d in %.1f s", part, text, state.restarts, delay)
        return delay

    def recovered(self, part: str) -> None:
        """The part runs again: the next failure starts the backoff from the beginning."""
        with self._lock:
            state = self._parts.get(part)
            if state is not None:
                state.consecutive_failures = 0

    def wait_restart(
        self, part: str, error: BaseException | str, stop: threading.Event, cap: float | None = None
    ) -> bool:
        """Record a failure and wait the backoff (at most ``cap``); False when ``stop`` was set meanwhile."""
        delay = self.failed(part, error, cap)
        return not stop.wait(delay)

    def forget(self, part: str) -> None:
        """Drop a part's state (it was removed)."""
        with self._lock:
            self._parts.pop(part, None)
