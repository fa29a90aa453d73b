"""``VOID`` capture plugin: a pipeline without data, for business plugins that work on their own.

Ratio1 calls this pipeline type ``Void``: it carries no inputs at all. Its business instances run on
a timer instead, which they ask for with ``ALLOW_EMPTY_INPUTS: true`` (``process(None)`` is then
called every ``PROCESS_DELAY`` seconds): monitors, schedulers, API pollers, chat bots. ``read()``
only waits, for at most a second and returning at once when the node stops, then reports "nothing".
"""

from __future__ import annotations

from typing import Any, ClassVar

from edge_engine.api import CapturePlugin

_WAIT_S = 1.0


class Void(CapturePlugin):
    """Produce no inputs; see the module docstring."""

    SIGNATURE = "VOID"
    ALIASES = ("Void",)
    VERSION = "1.0.0"
    DESCRIPTION = (
        "A pipeline without data. Its business instances should set ALLOW_EMPTY_INPUTS: true so that "
        "process(None) is called every PROCESS_DELAY seconds."
    )
    CONFIG: ClassVar[dict[str, Any]] = {}

    def read(self) -> None:
        """Wait (up to 1 s, less when stopping) and return None: there is never anything to read."""
        self.context.stop_event.wait(_WAIT_S)
        return None
