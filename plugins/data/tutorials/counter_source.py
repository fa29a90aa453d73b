"""Tutorial: the smallest useful data (capture) plugin, ``TUTORIAL_COUNTER``; copy it to start your own.

It emits structured messages ``{"count": n}`` at ``RATE`` messages per second and ends the stream after
``LIMIT`` messages (0 = never). Every line is commented: it shows the class attributes the engine
looks for, how config is declared and read, what ``read()`` may return, how to wait correctly (on the
node's stop event, never ``time.sleep``) and how to end a finite source. Try it with a pipeline such
as ``{"NAME": "count", "TYPE": "TUTORIAL_COUNTER", "RATE": 2, "LIMIT": 10, "PLUGINS": [...]}``.
"""

# Postponed annotations: type hints are not evaluated at import, which keeps importing the module cheap.
from __future__ import annotations

# Standard library only. If your plugin needs a heavy library (cv2, numpy, torch...), import it INSIDE
# the method that uses it, not here: the engine imports every plugin module at startup, and an idle node
# must stay small.
import time
from collections.abc import Mapping
from typing import Any, ClassVar

# Everything a plugin needs comes from edge_engine.api, and only from there.
from edge_engine.api import CapturePlugin, EndOfStream, Key, PluginContext


# Subclassing CapturePlugin and setting SIGNATURE is all it takes: the engine finds the class when it
# imports this file (anything under extensions/ or plugins/) and registers it under its SIGNATURE.
class CounterSource(CapturePlugin):
    """Emit ``{"count": n}`` messages at a fixed rate, up to an optional limit."""

    # The name pipelines use in "TYPE" (matched case-insensitively). It must be unique on the node.
    SIGNATURE = "TUTORIAL_COUNTER"
    # Shown by the plugin listing.
    VERSION = "1.0.0"
    DESCRIPTION = "Tutorial: emits {'count': n} messages at RATE per second; ends after LIMIT (0 = never)."

    # Declared config keys. A plain value gives a default (its type is inferred); Key(...) adds checks.
    # The engine validates pipeline configs against this before the plugin is ever created, so read()
    # can trust the values. Keys of CapturePlugin (LIVE_FEED, CAP_RESOLUTION...) are inherited.
    CONFIG: ClassVar[dict[str, Any]] = {
        "RATE": Key(1.0, min=0.01, max=1000, doc="messages per second"),
        "LIMIT": Key(0, type=int, min=0, doc="messages before the stream ends; 0 = endless"),
        "START": Key(0, type=int, doc="first value of the counter"),
    }

    # One object is created per pipeline, and all its methods are called from the same thread, so
    # plain attributes are safe. Always pass config and context on to the base class.
    def __init__(self, config: Mapping[str, Any], context: PluginContext):
        super().__init__(config, context)
        self._sent = 0  # messages emitted so far
        self._next_due = 0.0  # time.monotonic() at which the next message is due

    # connect() opens the source. Raising here makes the engine retry later, with backoff.
    # A counter has nothing to open, so we only (re)start the schedule.
    def connect(self) -> None:
        self._next_due = time.monotonic()
        # self.log is a logging.Logger already tagged with the pipeline; use it rather than print().
        self.log.info("counter starts at %d, %.2f messages/s", self.config["START"], self.config["RATE"])

    # read() is called in a loop on the pipeline's capture thread. It may return:
    #   * a dict           -> a structured message (Input.data); this is what we do here,
    #   * a numpy image    -> a frame (H x W x 3, BGR, as OpenCV decodes),
    #   * an Input         -> when you also want to attach metadata (Input(image=..., metadata={...})),
    #   * None             -> nothing right now; the engine waits briefly and calls again.
    # Raise EndOfStream when a finite source is exhausted. Any other exception means "the source failed":
    # the engine calls release(), backs off and calls connect() again.
    def read(self) -> dict[str, Any] | None:
        limit = self.config["LIMIT"]  # self.config is read-only and always holds every declared key
        if limit and self._sent >= limit:
            raise EndOfStream(f"counted to the limit of {limit}")

        # Pace to RATE. Wait on the node's stop event, NEVER time.sleep(): stop_event.wait() returns at
        # once (True) when the node or pipeline stops, so shutdown is never delayed by our wait.
        # (Most sources should not pace at all: the generic CAP_RESOLUTION key already caps any source's
        # rate. We pace here because producing at a given rate *is* this source's job.)
        period = 1.0 / self.config["RATE"]
        delay = self._next_due - time.monotonic()
        if delay > 0:
            if self.context.stop_event.wait(delay):
                return None  # stopping: nothing more to emit
        elif delay < -period:
            # We fell behind by more than a message (consumers were slow): restart the schedule from now
            # rather than emit a burst of messages to catch up.
            self._next_due = time.monotonic()
        # Schedule against the clock (due += period), not "now + period", so waits do not accumulate drift.
        self._next_due += period

        count = self.config["START"] + self._sent
        self._sent += 1
        return {"count": count}

    # release() closes whatever connect() opened. It is called after a failure, at end of stream and at
    # stop, so it must be safe to call more than once. Nothing to close for a counter.
    def release(self) -> None:
        pass

    # Optional: react to a live config change (the new values are already in self.config).
    def on_config(self, changed: dict[str, Any]) -> None:
        if "RATE" in changed:
            self._next_due = time.monotonic()  # apply the new rate from now on
