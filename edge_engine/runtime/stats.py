"""Counters every stage keeps: what it received, produced, dropped and how long it took.

Each counter object is written by one thread (the stage's own) and read by the snapshot writer; plain
integer updates under the GIL are enough, readers tolerate a value one update old.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edge_engine.messages import utc_iso


@dataclass
class StageStats:
    """Counters of one stage (a capture loop or a business instance)."""

    inputs: int = 0
    outputs: int = 0
    dropped: int = 0
    errors: int = 0
    restarts: int = 0
    busy_seconds: float = 0.0
    busy_count: int = 0
    busy_max: float = 0.0
    last_error: str | None = None
    last_error_time: float | None = None
    _rate_mark: tuple[float, int] = field(default=(0.0, 0), repr=False)
    rate: float = 0.0

    def timed(self, seconds: float) -> None:
        """Record the duration of one unit of work."""
        self.busy_seconds += seconds
        self.busy_count += 1
        if seconds > self.busy_max:
            self.busy_max = seconds

    def error(self, text: str) -> None:
        """Record an error with its time."""
        self.errors += 1
        self.last_error = text
        self.last_error_time = time.time()

    def update_rate(self, now: float | None = None) -> float:
        """Inputs per second since the previous call (called by the snapshot writer only)."""
        now = time.monotonic() if now is None else now
        then, count = self._rate_mark
        if then:
            elapsed = now - then
            if elapsed > 0:
                self.rate = (self.inputs - count) / elapsed
        self._rate_mark = (now, self.inputs)
        return self.rate

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
