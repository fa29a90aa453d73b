"""The capture loop of one pipeline: connect, read, pace, and hand inputs to the pipeline's mailbox.

It runs on its own daemon thread, so a read blocked in a dead network source cannot hold up the node's
shutdown. Failures are reported to the supervisor, which decides the backoff before reconnecting.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

from edge_engine.errors import EndOfStream
from edge_engine.plugin_types import CapturePlugin, Input
from edge_engine.runtime.environment import ErrorLogLimiter, RuntimeEnv
from edge_engine.runtime.mailbox import Mailbox
from edge_engine.runtime.stats import StageStats

NOT_RECONNECTABLE = ("NO", "FALSE", "0")


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
        self.stop_event = threading.Event()
        self.part = f"{pipeline}/capture"
        self._errors = ErrorLogLimiter()
        self._seq = 0
        self.thread = threading.Thread(target=self._run, name=f"capture:{pipeline}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.out.close()

    def _reconnectable(self) -> bool:
        value = self.config.get("RECONNECTABLE", True)
        if isinstance(value, str):
            return value.strip().upper() not in NOT_RECONNECTABLE
        return bool(value)

    def _run(self) -> None:
        log = self.env.log
        context = self.env.make_context(self.pipeline, self.record, None, self.stop_event)
        plugin: CapturePlugin | None = None
        try:
            while not self.stop_event.is_set():
                try:
                    if plugin is None:
                        plugin = self.env.create(self.record, self.config, context)  # type: ignore[assignment]
                        plugin.on_init()
                    plugin.connect()
                    self.live = plugin.is_live()
                    self.status = "running"
                    self.env.supervisor.recovered(self.part)
                    self._read_loop(plugin)
                    break  # stopped, or the pipeline closed its mailbox
                except EndOfStream:
                    self.status = "finished"
                    log.info("pipeline %r: source finished after %d inputs", self.pipeline, self.stats.inputs)
                    break
                except Exception as exc:
                    text = f"{type(exc).__name__}: {exc}"
                    self.stats.error(text)
                    if self._errors.should_log(text):
                        log.error("pipeline %r: capture failed: %s\n%s", self.pipeline, text, traceback.format_exc())
                    _release(plugin, log)
                    if not self._reconnectable():
                        self.status = "failed"
                        self.env.notify("error", f"capture failed: {text}", [self.env.alias, self.pipeline, None, None])
                        break
                    self.status = "reconnecting"
                    if not self.env.supervisor.wait_restart(self.part, exc, self.stop_event):
                        break
                    self.stats.restarts += 1
        finally:
            _release(plugin, log)
            if plugin is not None:
                try:
                    plugin.on_close()
                except Exception:
                    log.exception("pipeline %r: capture on_close raised", self.pipeline)
            if self.status not in ("finished", "failed"):
                self.status = "stopped"
            self.out.close()

    def _read_loop(self, plugin: CapturePlugin) -> None:
        stop = self.stop_event
        out = self.out
        stats = self.stats
        rate = float(self.config.get("CAP_RESOLUTION") or 0.0)
        interval = 1.0 / rate if rate > 0 else 0.0
        live = self.live
        next_due = time.monotonic()
        perf = time.perf_counter
        monotonic = time.monotonic
        wall = time.time
        while not stop.is_set():
            if interval and not live:
                wait = next_due - monotonic()
                if wait > 0 and stop.wait(wait):
                    return
                next_due = max(next_due + interval, monotonic() - interval)
            started = perf()
            item = plugin.read()
            if item is None:
                if perf() - started < 0.001:
                    stop.wait(0.001)  # a plugin that returns None at once must not spin a core
                continue
            if interval and live:
                now = monotonic()
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
            if not out.put(inp):
                return
            if out.dropped != before:
                stats.dropped += out.dropped - before


def _release(plugin: CapturePlugin | None, log: Any) -> None:
    if plugin is None:
        return
    try:
        plugin.release()
    except Exception:
        log.exception("capture release raised")
