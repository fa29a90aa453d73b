"""The serving stage between capture and business instances.

For now it passes inputs through unchanged (``Input.inferences`` stays empty); the model-serving work
replaces :meth:`ServingStage.run` with requests to shared model servers, without changing its callers.
"""

from __future__ import annotations

from edge_engine.plugin_types import Input


class ServingStage:
    """Runs the serving plugins a pipeline's instances need on each input (pass-through today)."""

    def __init__(self, engines: frozenset[str] = frozenset()):
        self.engines = engines

    def run(self, inp: Input) -> Input:
        """Return the input with its inferences filled in."""
        return inp
