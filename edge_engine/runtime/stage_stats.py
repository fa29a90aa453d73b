"""Counters every stage keeps: what it received, produced, dropped and how long it took.

Each counter object is written by one thread (the stage's own) and read by the snapshot writer; plain
integer updates under the GIL are enough, readers tolerate a value one update old.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edge_engine.messages import utc_iso


class RateMeter:
    """Events per second, over windows of at least ``min_window`` seconds.

    Several readers (local_info, heartbeats, the status page, /metrics) refresh it at their own pace; a
    window shorter than ``min_window`` keeps the last rate instead of restarting, so one reader calling
    right after another does not turn the rate into noise.
    """

    def __init__(self, min_window: float = 1.0):
        self.min_window = min_window
        self.rate = 0.0
        self._mark: tuple[float, int] | None = None
        self._lock = threading.Lock()

    def update(self, count: int, now: float | None = None) -> float:
        """The rate given the running ``count``; starts a new window when the current one is long enough."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._mark is None:
                self._mark = (now, count)
            else:
                then, before = self._mark
                if now - then >= self.min_window:
                    self.rate = (count - before) / (now - then)
                    self._mark = (now, count)
            return self.rate


@dataclass
class RatedStats:
    """The last error with its time and a rate over one counter: what every counter object keeps.

    A subclass names the counter the rate follows in :meth:`rated_count`.
    """

    last_error: str | None = None
    last_error_time: float | None = None
    _meter: RateMeter = field(default_factory=RateMeter, repr=False)

    def rated_count(self) -> int:
        """The running count the rate follows."""
        raise NotImplementedError

    def error(self, text: str) -> None:
        """Record the last error with its time."""
        self.last_error = text
        self.last_error_time = time.time()

    @property
    def rate(self) -> float:
        """Counted events per second over the last window (see :class:`RateMeter`)."""
        return self._meter.rate

    def update_rate(self, now: float | None = None) -> float:
        """Refresh and return the rate."""
        return self._meter.update(self.rated_count(), now)


@dataclass
class StageStats(RatedStats):
    """Counters of one stage (a capture loop or a business instance); the rate is of inputs."""

    inputs: int = 0
    outputs: int = 0
    dropped: int = 0
    errors: int = 0
    restarts: int = 0
    busy_seconds: float = 0.0
    busy_count: int = 0
    busy_max: float = 0.0

    def timed(self, seconds: float) -> None:
        """Record the duration of one unit of work."""
        self.busy_seconds += seconds
        self.busy_count += 1
        if seconds > self.busy_max:
            self.busy_max = seconds

    def error(self, text: str) -> None:
        """Count an error and record it with its time."""
        self.errors += 1
        super().error(text)

    def rated_count(self) -> int:
        """Inputs."""
        return self.inputs

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able view for local_info.json."""
        return {
            "inputs": self.inputs,
            "outputs": self.outputs,
            "dropped": self.dropped,
            "errors": self.errors,
            "restarts": self.restarts,
            "rate": round(self.rate, 2),
            "process_ms_avg": round(1000 * self.busy_seconds / self.busy_count, 3) if self.busy_count else None,
            "process_ms_max": round(1000 * self.busy_max, 3) if self.busy_count else None,
            "last_error": self.last_error,
            "last_error_time": utc_iso(self.last_error_time) if self.last_error_time else None,
        }
