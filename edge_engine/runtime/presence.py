"""Whether a pipeline's source is there or *away*, and when to tell the owner (decision 32).

A source is *away* when it cannot be reached or read: its ``connect()`` or ``read()`` raised a connection
error (:func:`is_away_error`: ``ConnectionError``, ``TimeoutError``, a name that does not resolve, a network
that is down). An away source is not a failing part: it is probed again and again, for as long as it stays
away (hours included), at most ``AWAY_PROBE_MAX_SECONDS`` apart, and never stopped as *flapping*. The absence
starts with the first failed attempt (for a silent source, at its last input) and ends with the next
input. Once it has lasted ``STREAM_LOST_SECONDS`` the owner gets one warning (*stream lost*); when
inputs come again after that, one info (*stream back*). Shorter blips send nothing but are counted.

:class:`Presence` keeps that state for one capture; its methods are called by the capture thread (failures,
first input after an absence) and by the node's watchdog (is the warning due?), so it locks.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_engine.messages import utc_iso

DEFAULT_STREAM_LOST_SECONDS = 10.0
DEFAULT_AWAY_PROBE_MAX_SECONDS = 1.0
_NETWORK_ERRNO_NAMES = "ENETDOWN ENETUNREACH ENETRESET EHOSTDOWN EHOSTUNREACH ETIMEDOUT ECONNREFUSED ECONNRESET EPIPE"
NETWORK_ERRNOS = frozenset(getattr(errno, name) for name in _NETWORK_ERRNO_NAMES.split() if hasattr(errno, name))


def is_away_error(error: BaseException) -> bool:
    """Whether ``error`` says the source cannot be reached or read (away), rather than that the plugin broke."""
    if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    return isinstance(error, OSError) and error.errno in NETWORK_ERRNOS


@dataclass
class Absence:
    """One stretch of time during which the source was away."""

    since: float  # monotonic
    since_wall: float
    probes: int = 0  # failed attempts to reach the source during this absence
    lost_reported: bool = False
    last_error: str | None = None

    def seconds(self, now: float) -> float:
        return max(0.0, now - self.since)


class Presence:
    """The away/back state of one capture source, with the counters shown in every status view."""

    def __init__(self, lost_seconds: float, probe_max_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.lost_seconds = lost_seconds
        self.probe_max_seconds = probe_max_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.current: Absence | None = None
        self.times_away = 0  # absences, short ones included
        self.times_lost = 0  # absences reported as lost (warning sent)
        self.times_back = 0  # lost absences that ended (info sent)
        self.last_lost: float | None = None  # wall-clock time of the last warning
        self.last_back: float | None = None  # wall-clock time of the last input after a lost absence
        self.last_away_seconds: float | None = None  # length of the last absence that ended
        self.last_return: dict[str, Any] | None = None  # where the time went when the source last came back

    @property
    def away(self) -> bool:
        return self.current is not None

    def failed(self, error: str, last_seen: float | None = None) -> bool:
        """A connect or read failed with a connection error; True when this starts an absence.

        A new absence starts now, or at ``last_seen`` (monotonic) when the caller knows the source has been
        gone since then: a silent source, whose last input is that long ago.
        """
        now = self._clock()
        with self._lock:
            started = self.current is None
            if started:
                since = now if last_seen is None else min(now, last_seen)
                self.current = Absence(since=since, since_wall=time.time() - (now - since))
                self.times_away += 1
            assert self.current is not None
            self.current.probes += 1
            self.current.last_error = error
            return started

    def lost_due(self) -> Absence | None:
        """The current absence, marked as reported, when it has just reached ``lost_seconds`` (else None)."""
        now = self._clock()
        with self._lock:
            absence = self.current
            if absence is None or absence.lost_reported or self.lost_seconds <= 0:
                return None
            if absence.seconds(now) < self.lost_seconds:
                return None
            absence.lost_reported = True
            self.times_lost += 1
            self.last_lost = time.time()
            return absence

    def next_check(self) -> float | None:
        """The monotonic time at which the current absence reaches ``lost_seconds`` (None: nothing to watch)."""
        absence = self.current
        if absence is None or absence.lost_reported or self.lost_seconds <= 0:
            return None
        return absence.since + self.lost_seconds

    def returned(self, timings: dict[str, Any]) -> Absence | None:
        """An input came: ends the absence (returned, for the *back* notification) or None when there was none."""
        now = self._clock()
        with self._lock:
            absence = self.current
            if absence is None:
                return None
            self.current = None
            self.last_away_seconds = round(absence.seconds(now), 3)
            self.last_return = {"away_seconds": self.last_away_seconds, "probes": absence.probes, **timings}
            if absence.lost_reported:
                self.times_back += 1
                self.last_back = time.time()
            return absence

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able view for local_info.json, heartbeats, the status page and /metrics."""
        now = self._clock()
        absence = self.current
        return {
            "away": absence is not None,
            "away_since": utc_iso(absence.since_wall) if absence else None,
            "away_seconds": round(absence.seconds(now), 1) if absence else 0.0,
            "lost": bool(absence and absence.lost_reported),
            "probes": absence.probes if absence else 0,
            "times_away": self.times_away,
            "times_lost": self.times_lost,
            "times_back": self.times_back,
            "last_lost": utc_iso(self.last_lost) if self.last_lost else None,
            "last_back": utc_iso(self.last_back) if self.last_back else None,
            "last_away_seconds": self.last_away_seconds,
            "last_return": dict(self.last_return) if self.last_return else None,
            "lost_after_seconds": self.lost_seconds,
            "probe_max_seconds": self.probe_max_seconds,
        }
