"""The capture loop of one pipeline: connect, read, pace, and hand inputs to the pipeline's mailbox.

It runs on its own daemon thread, so a read blocked in a dead network source cannot hold up the node's
shutdown. Failures are reported to the supervisor, which decides the backoff before reconnecting.

Two kinds of failure are told apart (decision 32). A source that cannot be reached or read (a connection
error, see :func:`~edge_engine.runtime.presence.is_away_error`) is *away*: it is probed again at most
``AWAY_PROBE_MAX_SECONDS`` apart for as long as it stays away, reported once *lost* after
``STREAM_LOST_SECONDS`` and once *back* with its next input (:mod:`edge_engine.runtime.presence`). Any other
failure (the plugin raised something else: it opened and crashed) is restarted with the supervisor's backoff
and stops the source as *flapping* when it happens too often (see :mod:`edge_engine.runtime.supervisor`).

A source that is connected but gives no input for ``SILENT_SOURCE_SECONDS`` is away too: the capture thread
notices it itself when ``read()`` keeps returning None. When ``read()`` blocks instead, the node's watchdog
(:meth:`CaptureRunner.watch`) notices it: it abandons the blocked thread (which exits, releasing its plugin
object, whenever ``read()`` returns) and starts a new one with a new plugin object after the backoff. A
``read()`` that ignores its own timeouts is the plugin's failure, not the source's: it counts towards
flapping, so blocked threads cannot pile up. A file source at its end raises ``EndOfStream``, which is not
silence.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol, cast

from edge_engine.errors import EndOfStream
from edge_engine.messages import utc_iso
from edge_engine.plugin.kinds import CapturePlugin, Input
from edge_engine.redact import redact_text
from edge_engine.runtime.environment import ErrorLogLimiter, RuntimeEnv, call_safe_mode
from edge_engine.runtime.presence import (
    DEFAULT_AWAY_PROBE_MAX_SECONDS,
    DEFAULT_STREAM_LOST_SECONDS,
    Absence,
    Presence,
    is_away_error,
)
from edge_engine.runtime.stage_stats import StageStats
from edge_engine.runtime.status import CAPTURE_ENDED, CONNECTED, Status

NOT_RECONNECTABLE = ("NO", "FALSE", "0")
STREAM_LOST = "stream_lost"  # STATUS of the warning sent when a source has been away for STREAM_LOST_SECONDS
STREAM_BACK = "stream_back"  # STATUS of the info sent when it gives inputs again
AWAY_LOG_INTERVAL = 300.0  # seconds: the same error of an away source is logged at most this often


class InputSink(Protocol):
    """Where a capture hands its inputs: a :class:`~edge_engine.runtime.mailbox.Mailbox`, or the pipeline's inlet."""

    @property
    def dropped(self) -> int: ...

    def put(self, inp: Input) -> bool: ...

    def close(self) -> None: ...


class SilentSource(TimeoutError):
    """A connected source gave no input for ``SILENT_SOURCE_SECONDS`` (the source is away)."""


def as_input(item: Any) -> Input:
    """Wrap what ``read()`` returned into an :class:`Input`."""
    if isinstance(item, Input):
        return item
    if isinstance(item, dict):
        return Input(data=item)
    return Input(image=item)


class CaptureRunner:
    """Runs one capture plugin on a thread and feeds ``out``."""

    def __init__(self, env: RuntimeEnv, pipeline: str, record: Any, config: dict[str, Any], out: InputSink):
        self.env = env
        self.pipeline = pipeline
        self.record = record
        self.config = config
        self.out = out
        self.stats = StageStats()
        self.status = Status.STARTING
        self.live = bool(config.get("LIVE_FEED", False))
        self.silent_seconds = float(config.get("SILENT_SOURCE_SECONDS") or 0.0)
        self.stop_event = threading.Event()
        self.part = f"{pipeline}/capture"
        self.flapping: dict[str, Any] | None = None
        self.silent_failures = 0
        self._errors = ErrorLogLimiter()
        self._away_errors = ErrorLogLimiter(interval=AWAY_LOG_INTERVAL)
        self.presence = Presence(
            _seconds(config, "STREAM_LOST_SECONDS", DEFAULT_STREAM_LOST_SECONDS),
            _seconds(config, "AWAY_PROBE_MAX_SECONDS", DEFAULT_AWAY_PROBE_MAX_SECONDS),
        )
        self._report_lock = threading.Lock()  # keeps "lost" before "back" (watchdog and capture thread)
        self._last_seen_at: float | None = None  # monotonic: the source last answered a read() (see _read_loop)
        self.last_connect: dict[str, float] = {}  # the last successful connect(): "connected" (monotonic), "connect_ms"
        self._seq = 0
        self._generation = 0  # a thread whose generation is no longer current was abandoned by the watchdog
        self._lock = threading.Lock()
        self._awaiting_since: float | None = None  # monotonic: connected and waiting for an input since then
        self._reading_since: float | None = None  # monotonic: the current read() call started then
        self._safe_wanted: str | None = None  # keep-alive safe mode asked by the pipeline (reason)
        self._safe_applied: str | None = None
        self.thread = self._new_thread(0, 0.0)

    def _new_thread(self, generation: int, delay: float) -> threading.Thread:
        return threading.Thread(
            target=self._run, args=(generation, delay), name=f"capture:{self.pipeline}", daemon=True
        )

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
                        plugin = cast(CapturePlugin, self.env.create(self.record, self.config, context))
                        plugin.on_init()
                        self._safe_applied = None
                    attempt = time.monotonic()
                    plugin.connect()
                    connected = time.monotonic()
                    self.last_connect = {"connected": connected, "connect_ms": 1000 * (connected - attempt)}
                    if not self._current(generation):
                        break
                    self.live = plugin.is_live()
                    self.status = Status.AWAY if self.presence.away else Status.RUNNING  # away until an input comes
                    self.env.supervisor.recovered(self.part)
                    self._read_loop(plugin, generation)
                    break  # stopped, abandoned, or the pipeline closed its mailbox
                except EndOfStream:
                    self.status = Status.FINISHED
                    log.info("pipeline %r: source finished after %d inputs", self.pipeline, self.stats.inputs)
                    break
                except Exception as exc:
                    if not self._current(generation):
                        break
                    self._awaiting_since = self._reading_since = None
                    _release(plugin, log)
                    verdict = self._failed(exc)
                    if verdict is None:
                        break
                    delay = verdict
        finally:
            _release(plugin, log)
            if plugin is not None:
                try:
                    plugin.on_close()
                except Exception:
                    log.exception("pipeline %r: capture on_close raised", self.pipeline)
            if generation == self._generation:
                if self.status not in CAPTURE_ENDED:
                    self.status = Status.STOPPED
                self.out.close()

    def _failed(self, exc: BaseException) -> float | None:
        """Count and log a failure; the delay before the next attempt, or None when the source is given up."""
        text = f"{type(exc).__name__}: {exc}"
        self.stats.error(text)
        if not self._reconnectable():
            self.env.log.error("pipeline %r: capture failed: %s", self.pipeline, text, exc_info=exc)
            self._give_up(text)
            return None
        self.stats.restarts += 1
        if is_away_error(exc):
            return self._away(text, exc, self._last_seen_at if isinstance(exc, SilentSource) else None)
        if self._errors.should_log(text):
            self.env.log.error("pipeline %r: capture failed: %s", self.pipeline, text, exc_info=exc)
        verdict = self.env.supervisor.record(self.part, exc)
        if verdict.flapping:
            self._flap()
            return None
        self.status = Status.RECONNECTING
        return verdict.delay

    def _away(self, text: str, error: BaseException | str, last_seen: float | None) -> float:
        """The source cannot be reached: probe it again soon, for as long as it takes (decision 32).

        ``last_seen``: when a silent source last gave an input (its absence started then); None: now.
        """
        presence = self.presence
        text = redact_text(text)
        started = presence.failed(text, last_seen)
        self.status = Status.AWAY
        if started:
            self.env.log.warning(
                "pipeline %r: source away (%s); probing it at most %g s apart",
                self.pipeline,
                text,
                presence.probe_max_seconds,
            )
            self._away_errors.should_log(text)
        elif self._away_errors.should_log(text):
            self.env.log.warning(
                "pipeline %r: source still away (%s; %d probes)",
                self.pipeline,
                text,
                presence.current.probes if presence.current else 0,
            )
        if started and self.env.wake_watchdog is not None:
            self.env.wake_watchdog()  # it sends the "lost" warning on time even while a probe blocks in connect()
        self.check_lost()
        return self.env.supervisor.away(self.part, error, presence.probe_max_seconds)

    def _give_up(self, text: str) -> None:
        self.status = Status.FAILED
        self.env.notify("error", f"capture failed: {text}", [self.env.alias, self.pipeline, None, None])

    def check_lost(self) -> None:
        """Send the *stream lost* warning when the current absence has just lasted ``STREAM_LOST_SECONDS``."""
        with self._report_lock:
            absence = self.presence.lost_due()
            if absence is not None:
                self._notify_lost(absence)

    def _notify_lost(self, absence: Absence) -> None:
        seconds = time.monotonic() - absence.since
        message = (
            f"pipeline {self.pipeline!r}: stream lost: no input from its source for {seconds:.0f} s "
            f"({absence.probes} failed attempts; last error: {absence.last_error}); still trying"
        )
        self.env.log.warning("%s", message)
        self.env.notify(
            "warning",
            message,
            [self.env.alias, self.pipeline, None, None],
            NOTIFICATION_TYPE="ABNORMAL FUNCTIONING",
            STATUS=STREAM_LOST,
            PART=self.part,
            REASON=absence.last_error,
            AWAY_SECONDS=round(seconds, 1),
            PROBES=absence.probes,
            AWAY_SINCE=utc_iso(absence.since_wall),
        )

    def _seen(self, now: float) -> None:
        """The source answered: an input, or (for a source that may be quiet) a read() that returned None."""
        self._last_seen_at = now
        if self.presence.current is not None:
            self._returned(now)

    def _returned(self, now: float) -> None:
        """The first input after an absence: end it, and say so when it had been reported as lost."""
        timing = self.last_connect
        timings = {
            "connect_ms": round(timing.get("connect_ms", 0.0), 1),
            "first_input_ms": round(1000 * (now - timing.get("connected", now)), 1),
        }
        with self._report_lock:
            absence = self.presence.returned(timings)
            if absence is None:
                return
            self.status = Status.RUNNING
            seconds = now - absence.since
            if not absence.lost_reported:
                self.env.log.info("pipeline %r: source back after %.1f s away", self.pipeline, seconds)
                return
            message = f"pipeline {self.pipeline!r}: stream back after {seconds:.1f} s away"
            self.env.log.info("%s", message)
            self.env.notify(
                "info",
                message,
                [self.env.alias, self.pipeline, None, None],
                NOTIFICATION_TYPE="NORMAL",
                STATUS=STREAM_BACK,
                PART=self.part,
                AWAY_SECONDS=round(seconds, 1),
                PROBES=absence.probes,
                AWAY_SINCE=utc_iso(absence.since_wall),
                CONNECT_MS=timings["connect_ms"],
                FIRST_INPUT_MS=timings["first_input_ms"],
            )

    def _flap(self) -> None:
        self.status = Status.FLAPPING
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
                if not silent:  # a source that may be quiet (messages) is there when read() returns
                    self._seen(monotonic())
                elif self._awaiting_since is not None and monotonic() - self._awaiting_since > silent:
                    self.silent_failures += 1
                    raise SilentSource(f"no input for {silent:g} s while connected (SILENT_SOURCE_SECONDS)")
                if perf() - started < 0.001:
                    stop.wait(0.001)  # a plugin that returns None at once must not spin a core
                continue
            self._seen(monotonic())
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
            del item, inp  # the next read() may wait for a while: the frame is the consumers' now
            self._awaiting_since = monotonic()
            if out.dropped != before:
                stats.dropped += out.dropped - before

    def _apply_safe_mode(self, plugin: CapturePlugin) -> None:
        self._safe_applied = self._safe_wanted
        call_safe_mode(plugin, self._safe_applied, self.stats, self.env.log, f"pipeline {self.pipeline!r}: capture")

    def watch(self, now: float) -> float | None:
        """Called by the node's watchdog: send the *lost* warning on time, and abandon a thread whose ``read()``
        blocked past ``SILENT_SOURCE_SECONDS``.

        Returns the monotonic time at which to look again (None: nothing to watch now).
        """
        due = [self._watch_blocked(now)]
        if self.presence.current is not None and not self.stop_event.is_set():
            self.check_lost()
            due.append(self.presence.next_check())
        times = [t for t in due if t is not None]
        return min(times) if times else None

    def _watch_blocked(self, now: float) -> float | None:
        silent = self.silent_seconds
        if silent <= 0 or self.status not in CONNECTED or self.stop_event.is_set():
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
            if self.stop_event.is_set() or self.status not in CONNECTED:
                return
            self._generation += 1
            generation = self._generation
            self._awaiting_since = self._reading_since = None
        self.silent_failures += 1
        text = f"SilentSource: no input for {seconds:.1f} s while connected; read() is blocked"
        self.stats.error(text)
        self.env.log.error("pipeline %r: capture failed: %s (its thread is abandoned)", self.pipeline, text)
        if not self._reconnectable():
            self._give_up(text)
            self.out.close()
            return
        # no input: an absence (lost/back); but a read() ignoring its timeouts is the plugin's failure and counts
        # towards flapping (abandoned threads must not pile up)
        self.presence.failed(redact_text(text), self._last_seen_at)
        self.check_lost()
        verdict = self.env.supervisor.record(self.part, text)
        if verdict.flapping:
            self._flap()
            self.out.close()
            return
        self.status = Status.RECONNECTING
        self.stats.restarts += 1
        self.thread = self._new_thread(generation, verdict.delay)
        self.thread.start()


def _seconds(config: dict[str, Any], key: str, default: float) -> float:
    """A duration from the capture config (``default`` when unset or not a number)."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return max(0.0, float(value))


def _release(plugin: CapturePlugin | None, log: Any) -> None:
    if plugin is None:
        return
    try:
        plugin.release()
    except Exception:
        log.exception("capture release raised")
