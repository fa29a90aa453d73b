"""The node's watchdog thread: keep-alive deadlines and capture reads blocked past ``SILENT_SOURCE_SECONDS``.

It asks each pipeline runner (:meth:`~edge_engine.runtime.pipeline.PipelineRunner.watch`) when it next needs
a look and sleeps until the earliest of those times, or until :meth:`Watchdog.poke` (a pipeline started).
A node whose pipelines use neither setting wakes it once a minute only. It also hands the memory of stopped
pipelines back to the system (:mod:`edge_engine.runtime.allocator`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from edge_engine.runtime.allocator import release_if_requested

log = logging.getLogger(__name__)
MIN_SLEEP = 0.05  # seconds: never spin, even if a runner asks to be looked at again at once
MAX_SLEEP = 60.0  # seconds: look now and then even when nothing is due (cheap)


class Watchdog:
    """Runs ``watch(now)`` of every runner ``runners()`` returns, when it is due."""

    def __init__(self, runners: Callable[[], Iterable[Any]]):
        self._runners = runners
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """Look again now (a pipeline started or changed)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(2.0)

    def check(self, now: float | None = None) -> float | None:
        """Watch every runner once; returns the earliest time one wants to be looked at again."""
        now = time.monotonic() if now is None else now
        due: list[float] = []
        for runner in list(self._runners()):
            try:
                when = runner.watch(now)
            except Exception:  # a bug in one runner's watch must not end the watchdog
                log.exception("watchdog: checking %r failed", getattr(runner, "name", runner))
                continue
            if when is not None:
                due.append(when)
        return min(due) if due else None

    def _run(self) -> None:
        while not self._stop.is_set():
            next_due = self.check()
            release_if_requested()  # a pipeline stopped: its memory back to the system (once for a burst)
            timeout = MAX_SLEEP if next_due is None else min(MAX_SLEEP, next_due - time.monotonic())
            self._wake.wait(max(MIN_SLEEP, timeout))
            self._wake.clear()
