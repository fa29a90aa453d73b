"""The one place that decides when a failed part (capture source, instance, model server) restarts.

Parts report failures and recoveries; the supervisor answers with a delay from a capped exponential
backoff with jitter and counts restarts per part. Waiting uses the caller's stop event, so a stopping
node never waits for a backoff to run out.

The flapping policy lives here too: a part that fails ``flap_max_failures`` times within
``flap_window`` seconds (defaults 4 and 60; ``EE_FLAP_MAX_FAILURES``, ``EE_FLAP_WINDOW_SECONDS``) is
marked *flapping*: :meth:`Supervisor.record` says so, the caller stops restarting it and raises a
notification carrying :meth:`Supervisor.flap_fields`. A flapping part stays stopped until it is started
afresh (a config update of its instance or pipeline, or a node restart), which calls :meth:`forget`.

Away is not flapping (decision 32): a source that cannot be reached is reported with :meth:`Supervisor.away`,
which gives the delay before the next probe (the same backoff, capped by the caller: at most a second or two)
and never counts towards flapping, however long the source stays away. Flapping is for parts that start and
then fail again and again: instances, model servers, a source that opens and crashes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_engine.messages import utc_iso
from edge_engine.redact import redact_text

log = logging.getLogger(__name__)

DEFAULT_FLAP_MAX_FAILURES = 4
DEFAULT_FLAP_WINDOW_SECONDS = 60.0
FLAPPING = "flapping"


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff: ``initial * factor**(n-1)`` seconds, capped at ``cap``, ± ``jitter`` (fraction).

    Flapping: ``flap_max_failures`` failures within ``flap_window`` seconds (0 failures: never flapping).
    """

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2
    flap_max_failures: int = DEFAULT_FLAP_MAX_FAILURES
    flap_window: float = DEFAULT_FLAP_WINDOW_SECONDS

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
    failures: deque[float] = field(default_factory=deque, repr=False)  # clock times within the flap window
    flapping: bool = False
    flapping_since: float | None = None  # wall-clock time


@dataclass(frozen=True)
class Verdict:
    """The supervisor's answer to a failure: wait ``delay`` seconds and restart, unless ``flapping``."""

    delay: float
    flapping: bool
    failures: int  # failures within the flap window, this one included


class Supervisor:
    """Restart bookkeeping for every part of the node, keyed by a part name such as ``pipe/SIG/inst``."""

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.policy = policy or RestartPolicy()
        self._rng = rng or random.Random()
        self._clock = clock
        self._parts: dict[str, PartState] = {}
        self._lock = threading.Lock()

    def state(self, part: str) -> PartState:
        with self._lock:
            return self._parts.setdefault(part, PartState())

    def record(self, part: str, error: BaseException | str, cap: float | None = None, flap: bool = True) -> Verdict:
        """Record a failure: the delay before the next attempt (at most ``cap``), and whether the part flaps.

        ``flap=False`` exempts the part from the flapping policy (the comms transport: the broker may be away for
        hours, and the outbox keeps what is sent meanwhile).
        """
        text = redact_text(error if isinstance(error, str) else f"{type(error).__name__}: {error}")
        policy = self.policy
        now = self._clock()
        with self._lock:
            state = self._parts.setdefault(part, PartState())
            state.consecutive_failures += 1
            state.last_error = text
            state.last_failure = time.time()
            state.failures.append(now)
            while state.failures and (
                now - state.failures[0] > policy.flap_window or len(state.failures) > max(1, policy.flap_max_failures)
            ):
                state.failures.popleft()  # only the last N failures matter (bounded memory at any failure rate)
            count = len(state.failures)
            newly = flap and not state.flapping and 0 < policy.flap_max_failures <= count
            if newly:
                state.flapping = True
                state.flapping_since = time.time()
            if state.flapping:
                return self._flapping(part, state, text, count, newly)
            state.restarts += 1
            delay = policy.delay(state.consecutive_failures, self._rng)
            if cap is not None:
                delay = min(delay, cap)
            restarts = state.restarts
        log.warning("%s failed (%s); restart #%d in %.1f s", part, text, restarts, delay)
        return Verdict(delay, False, count)

    def away(self, part: str, error: BaseException | str, cap: float) -> float:
        """A source that cannot be reached: the delay (at most ``cap``) before probing it again.

        Counted as a restart and in the backoff, never in the flapping window: an away source is probed for as
        long as it is away. Nothing is logged here (a source away for hours is probed thousands of times); the
        caller logs the absence once and reports it as lost and back (:mod:`edge_engine.runtime.presence`).
        """
        text = redact_text(error if isinstance(error, str) else f"{type(error).__name__}: {error}")
        with self._lock:
            state = self._parts.setdefault(part, PartState())
            state.consecutive_failures += 1
            state.last_error = text
            state.last_failure = time.time()
            state.restarts += 1
            delay = self.policy.delay(state.consecutive_failures, self._rng)
        return max(0.0, min(delay, cap))

    def _flapping(self, part: str, state: PartState, text: str, count: int, newly: bool) -> Verdict:
        if newly:
            log.error(
                "%s is flapping: %d failures within %g s (last: %s); it is stopped until its config is "
                "updated or the node restarts",
                part,
                count,
                self.policy.flap_window,
                text,
            )
        return Verdict(0.0, True, count)

    def failed(self, part: str, error: BaseException | str, cap: float | None = None, flap: bool = True) -> float:
        """Record a failure; returns the delay before the next attempt (see :meth:`record` for flapping)."""
        return self.record(part, error, cap, flap).delay

    def recovered(self, part: str, clear_window: bool = False) -> None:
        """The part runs again: the next failure starts the backoff from the beginning.

        ``clear_window`` also forgets the failures counted for flapping (a business instance's successful
        ``process()`` call ends its run of failures).
        """
        with self._lock:
            state = self._parts.get(part)
            if state is not None and not state.flapping:
                state.consecutive_failures = 0
                if clear_window:
                    state.failures.clear()

    def wait_restart(
        self, part: str, error: BaseException | str, stop: threading.Event, cap: float | None = None, flap: bool = True
    ) -> bool:
        """Record a failure and wait the backoff (at most ``cap``); False when ``stop`` was set meanwhile or the
        part is flapping (tell them apart with :meth:`is_flapping`)."""
        verdict = self.record(part, error, cap, flap)
        if verdict.flapping:
            return False
        return not stop.wait(verdict.delay)

    def is_flapping(self, part: str) -> bool:
        with self._lock:
            state = self._parts.get(part)
            return state is not None and state.flapping

    def flap_fields(self, part: str) -> dict[str, Any]:
        """What a notification and the status show about a flapping part: reason, failures, window, since."""
        with self._lock:
            state = self._parts.get(part) or PartState()
            return {
                "reason": state.last_error,
                "failures": len(state.failures),
                "window_seconds": self.policy.flap_window,
                "since": utc_iso(state.flapping_since) if state.flapping_since else None,
            }

    def forget(self, part: str) -> None:
        """Drop a part's state (it was removed, or is started afresh: a flapping part may run again)."""
        with self._lock:
            self._parts.pop(part, None)

    def forget_prefix(self, prefix: str) -> None:
        """Drop the state of every part whose name starts with ``prefix`` (a pipeline started afresh)."""
        with self._lock:
            for part in [p for p in self._parts if p.startswith(prefix)]:
                del self._parts[part]
