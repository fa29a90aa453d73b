"""The capture loop of one pipeline: connect, read, pace, and hand inputs to the pipeline's mailbox.

It runs on its own daemon thread, so a read blocked in a dead network source cannot hold up the node's
shutdown. Failures are reported to the supervisor, which decides the backoff before reconnecting, and
stops a source that flaps (too many failures within its window; see :mod:`edge_engine.supervisor`).

A source that is connected but gives no input for ``SILENT_SOURCE_SECONDS`` counts as failed. The capture
thread notices it itself when ``read()`` keeps returning None; when ``read()`` blocks, the node's watchdog
(:meth:`CaptureRunner.watch`) notices it instead: it abandons the blocked thread (which exits, releasing
its plugin object, whenever ``read()`` returns) and starts a new one with a new plugin object after the
backoff. A file source at its end raises ``EndOfStream``, which is not silence.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

from edge_engine.errors import EndOfStream
from edge_engine.plugin_types import CapturePlugin, Input
from edge_engine.runtime.environment import ErrorLogLimiter, RuntimeEnv, call_safe_mode
from edge_engine.runtime.mailbox import Mailbox
from edge_engine.runtime.stats import StageStats

NOT_RECONNECTABLE = ("NO", "FALSE", "0")


class SilentSource(Exception):
    """A connected source gave no input for ``SILENT_SOURCE_SECONDS``."""


def as_input(item: Any) -> Input:
    """Wrap what ``read()`` returned into an :class:`Input`."""
    if isinstance(item, Input):
        return item
    if isinstance(item, dict):
        return Input(data=item)
    return Input(image=item)


class CaptureRunner:
    """Runs one capture plugin on a thread and feeds ``out``."""

    def __init__(self, env: RuntimeEnv, pipeline: str, record: Any, config: dict[str, Any], out: Mailbox):
        self.env = env
        self.pipeline = pipeline
        self.record = record
        self.config = config
        self.out = out
        self.stats = StageStats()
        self.status = "starting"
        self.live = bool(config.get("LIVE_FEED", False))
        self.silent_seconds = float(config.get("SILENT_SOURCE_SECONDS") or 0.0)
        self.stop_event = threading.Event()
        self.part = f"{pipeline}/capture"
        self.flapping: dict[str, Any] | None = None
        self.silent_failures = 0
        self._errors = ErrorLogLimiter()
        self._seq = 0
        self._generation = 0  # a thread whose generation is no longer current was abandoned by the watchdog
        self._lock = threading.Lock()
        self._awaiting_since: float | None = None  # monotonic: connected and waiting for an input since then
        self._reading_since: float | None = None  # monotonic: the current read() call started then
        self._safe_wanted: str | None = None  # keep-alive safe mode asked by the pipeline (reason)
        self._safe_applied: str | None = None
        self.thread = self._new_thread(0, 0.0)

    def _new_thread(self, generation: int, delay: float) -> threading.Thread:
        return threading.Thread(target=self._run, args=(generation, delay), name=f"capture:{self.pipeline}",
                                daemon=True)  # fmt: skip

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.out.close()

    def set_safe_mode(self, reason: str | None) -> None:
        """Ask for ``on_safe_mode(reason)`` (None: ``on_resume()``), called by the capture thread between reads."""
        self._safe_wanted = reason

    def _reconnectable(self) -> bool:
        value = self.config.get("RECONNECTABLE", True)
        if isinstance(value, str):
            return value.strip().upper() not in NOT_RECONNECTABLE
        return bool(value)

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self.stop_event.is_set()

    def _run(self, generation: int, delay: float) -> None:
        log = self.env.log
        context = self.env.make_context(self.pipeline, self.record, None, self.stop_event)
        plugin: CapturePlugin | None = None
        try:
            while self._current(generation):
                if delay and self.stop_event.wait(delay):
                    break
                delay = 0.0
                try:
                    if plugin is None:
                        plugin = self.env.create(self.record, self.config, context)  # type: ignore[assignment]
                        plugin.on_init()
                        self._safe_applied = None
                    plugin.connect()
                    if not self._current(generation):
                        break
                    self.live = plugin.is_live()
                    self.status = "running"
                    self.env.supervisor.recovered(self.part)
                    self._read_loop(plugin, generation)
                    break  # stopped, abandoned, or the pipeline closed its mailbox
                except EndOfStream:
                    self.status = "finished"
                    log.info("pipeline %r: source finished after %d inputs", self.pipeline, self.stats.inputs)
                    break
                except Exception as exc:
                    if not self._current(generation):
                        break
                    self._awaiting_since = self._reading_since = None
                    text = f"{type(exc).__name__}: {exc}"
                    self.stats.error(text)
                    if self._errors.should_log(text):
                        log.error("pipeline %r: capture failed: %s\n%s", self.pipeline, text, traceback.format_exc())
                    _release(plugin, log)
                    if not self._reconnectable():
                        self.status = "failed"
                        self.env.notify("error", f"capture failed: {text}", [self.env.alias, self.pipeline, None, None])
                        break
                    verdict = self.env.supervisor.record(self.part, exc)
                    if verdict.flapping:
                        self._flap()
                        break
                    self.status = "reconnecting"
                    self.stats.restarts += 1
                    delay = verdict.delay
        finally:
            _release(plugin, log)
            if plugin is not None:
                try:
                    plugin.on_close()
                except Exception:
                    log.exception("pipeline %r: capture on_close raised", self.pipeline)
            if generation == self._generation:
                if self.status not in ("finished", "failed", "flapping"):
                    self.status = "stopped"
                self.out.close()

    def _flap(self) -> None:
        self.status = "flapping"
        self.flapping = self.env.report_flapping(
            self.part, f"capture source of pipeline {self.pipeline!r}", [self.env.alias, self.pipeline, None, None]
        )

    def _read_loop(self, plugin: CapturePlugin, generation: int) -> None:
        stop = self.stop_event
        out = self.out
        stats = self.stats
        rate = float(self.config.get("CAP_RESOLUTION") or 0.0)
        interval = 1.0 / rate if rate > 0 else 0.0
        live = self.live
        silent = self.silent_seconds
        next_due = time.monotonic()
        perf = time.perf_counter
        monotonic = time.monotonic
        wall = time.time
        self._awaiting_since = monotonic()
        while not stop.is_set():
            if self._safe_wanted != self._safe_applied:
                self._apply_safe_mode(plugin)
            if interval and not live:
                wait = next_due - monotonic()
                if wait > 0 and stop.wait(wait):
                    return
                next_due = max(next_due + interval, monotonic() - interval)
            started = perf()
            self._reading_since = monotonic()
            item = plugin.read()
            if generation != self._generation:
                return  # the watchdog gave up on this thread while read() blocked (the new one owns the fields)
            self._reading_since = None
            if item is None:
                if silent and self._awaiting_since is not None and monotonic() - self._awaiting_since > silent:
                    self.silent_failures += 1
                    raise SilentSource(f"no input for {silent:g} s while connected (SILENT_SOURCE_SECONDS)")
                if perf() - started < 0.001:
                    stop.wait(0.001)  # a plugin that returns None at once must not spin a core
                continue
            if interval and live:
                now = monotonic()
                self._awaiting_since = now
                if now < next_due:
                    continue  # live source read faster than CAP_RESOLUTION: keep only due frames
                next_due = max(next_due + interval, now)
            inp = as_input(item)
            self._seq += 1
            inp.seq = self._seq
            if not inp.timestamp:
                inp.timestamp = wall()
            stats.inputs += 1
            stats.timed(perf() - started)
            before = out.dropped
            self._awaiting_since = None  # waiting for room (back-pressure) is not silence
            if not out.put(inp):
                return
            self._awaiting_since = monotonic()
            if out.dropped != before:
                stats.dropped += out.dropped - before

    def _apply_safe_mode(self, plugin: CapturePlugin) -> None:
        self._safe_applied = self._safe_wanted
        call_safe_mode(plugin, self._safe_applied, self.stats, self.env.log, f"pipeline {self.pipeline!r}: capture")

    def watch(self, now: float) -> float | None:
        """Called by the node's watchdog: abandon a thread whose ``read()`` blocked past ``SILENT_SOURCE_SECONDS``.

        Returns the monotonic time at which to look again (None: nothing to watch now).
        """
        silent = self.silent_seconds
        if silent <= 0 or self.status != "running" or self.stop_event.is_set():
            return None if silent <= 0 else now + silent
        awaiting, reading = self._awaiting_since, self._reading_since
        if awaiting is None:
            return now + silent  # waiting for room, or reconnecting
        if reading is None or now - reading <= silent or now - awaiting <= silent:
            return max(awaiting, reading or awaiting) + silent + 0.05
        self._abandon_blocked(now - awaiting)
        return now + silent

    def _abandon_blocked(self, seconds: float) -> None:
        with self._lock:
            if self.stop_event.is_set() or self.status != "running":
                return
            self._generation += 1
            generation = self._generation
            self._awaiting_since = self._reading_since = None
        self.silent_failures += 1
        text = f"SilentSource: no input for {seconds:.1f} s while connected; read() is blocked"
        self.stats.error(text)
        self.env.log.error("pipeline %r: capture failed: %s (its thread is abandoned)", self.pipeline, text)
        if not self._reconnectable():
            self.status = "failed"
            self.env.notify("error", f"capture failed: {text}", [self.env.alias, self.pipeline, None, None])
            self.out.close()
            return
        verdict = self.env.supervisor.record(self.part, text)
        if verdict.flapping:
            self._flap()
            self.out.close()
            return
        self.status = "reconnecting"
        self.stats.restarts += 1
        self.thread = self._new_thread(generation, verdict.delay)
        self.thread.start()


def _release(plugin: CapturePlugin | None, log: Any) -> None:
    if plugin is None:
        return
    try:
        plugin.release()
    except Exception:
        log.exception("capture release raised")
