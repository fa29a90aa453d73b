"""Tutorial business plugin: count inputs and say hello every ``EVERY`` inputs.

Copy this file next to it (any name ending in ``.py`` under ``plugins/``), change ``SIGNATURE`` and the
logic in ``process()``, and restart the node: the engine imports every module in ``plugins/`` and
``extensions/`` at startup and registers each ``BusinessPlugin`` subclass that has a ``SIGNATURE``. A pipeline
then uses it with ``{"SIGNATURE": "TUTORIAL_HELLO", "INSTANCES": [{"INSTANCE_ID": "hello-1", "EVERY": 5}]}``.
See ``docs/plugins.md`` for the whole plugin guide.
"""

from __future__ import annotations

# Type hints only; nothing here costs memory at import time.
from typing import Any, ClassVar

# Plugins import ONLY from edge_engine.api (plus third-party libraries). Never reach into the engine.
from edge_engine.api import BusinessPlugin, Input, Key

# Heavy libraries (cv2, numpy, torch...) must NOT be imported here at module level: the engine imports every
# plugin module at startup, even unused ones, and an idle node has a small memory budget. Import them inside
# the methods that need them (Python caches the import, so the second call is free).


class HelloCounter(BusinessPlugin):
    """Counts the inputs it receives and returns a small payload every ``EVERY`` inputs."""

    # The name pipelines use to pick this plugin (matched case-insensitively). It must be unique on the node.
    SIGNATURE = "TUTORIAL_HELLO"
    VERSION = "0.1.0"
    DESCRIPTION = "tutorial: counts inputs and says hello every EVERY inputs"

    # Declared config keys with their defaults. The effective config an instance sees in self.config is
    #   these defaults  <-  the pipeline's instance config  <-  live updates sent while it runs
    # (later ones win). Keys are UPPER_SNAKE. A plain value infers the type (10 -> int); Key(...) adds
    # bounds and a doc line that the `plugins` listing and config errors show.
    CONFIG: ClassVar[dict[str, Any]] = {
        "EVERY": Key(10, type=int, min=1, doc="send a payload every EVERY inputs"),
        "MESSAGE": "hello",
    }

    def on_init(self) -> None:
        """Called once, before the first input, in the instance's own thread. Raise here to refuse to start."""
        # Keep state on self: one object per instance, and all its methods run in one thread, so no locks.
        self.seen = 0
        self.log.info("hello counter ready, reporting every %d inputs", self.config["EVERY"])

    def process(self, inp: Input | None) -> dict[str, Any] | None:
        """Called once per input. Return a payload dict to send it, or None to send nothing.

        ``inp.image`` is a numpy BGR image (height x width x 3) or None, ``inp.data`` a dict for structured
        sources or None, ``inp.metadata`` what the source knows (frame index, file...), ``inp.seq`` the input's
        number in the pipeline and ``inp.timestamp`` its capture time. ``inp`` itself is None only when the
        instance sets ``ALLOW_EMPTY_INPUTS`` and nothing arrived.
        """
        if inp is None:
            return None
        self.seen += 1
        if self.seen % self.config["EVERY"] != 0:
            return None  # nothing to say this time
        payload: dict[str, Any] = {"MESSAGE": self.config["MESSAGE"], "SEEN": self.seen}
        if inp.image is not None:
            # The image is a numpy array, so its own methods work without importing numpy here.
            payload["MEAN_BRIGHTNESS"] = round(float(inp.image.mean()), 2)
        # Payloads must be JSON-able (str, numbers, bools, None, lists, dicts). To attach a picture, call
        # self.emit(payload, image=some_bgr_array) instead of returning, and return None.
        return payload

    def on_config(self, changed: dict[str, Any]) -> None:
        """Called after a live config update; self.config already holds the new values."""
        if "EVERY" in changed:
            self.log.info("now reporting every %d inputs", changed["EVERY"])

    def on_command(self, command: Any, **params: Any) -> Any:
        """Called when an owner sends an instance command; the return value is reported back."""
        if str(command).strip().upper() == "RESET":
            self.seen = 0
            return {"reset": True}
        return {"error": f"unknown command {command!r}; try RESET"}

    def on_close(self) -> None:
        """Called once when the instance stops: release files, sockets, models here."""
        self.log.info("hello counter closing after %d inputs", self.seen)
