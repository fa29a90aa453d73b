"""The node core: :class:`~edge_engine.node.core.Node` (identity, plugins, pipelines, services and the housekeeping
loop), and what only it runs: the resource history, disk bounds, local output, logging and local deploys. Its seams
(:mod:`~edge_engine.node.seams`) say what the node asks of a service and what each service may ask of the node;
:mod:`~edge_engine.node.message_flow` hands payloads and notifications to the node's sinks in a fixed order.

``Node`` is exported lazily, so the lower layers that import ``edge_engine.node.logs`` do not pull in the whole node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_engine.node.core import Node

__all__ = ["Node"]


def __getattr__(name: str) -> object:
    if name == "Node":
        from edge_engine.node.core import Node

        return Node
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
