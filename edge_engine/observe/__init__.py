"""Look at the node: a local status page, Prometheus ``/metrics`` and the history charts.

:func:`make_observe` is called by :meth:`edge_engine.node.core.Node.start` (the server is one of the node's
services); it reads ``EE_STATUS_*`` and ``EE_METRICS_*`` (see :mod:`edge_engine.observe.observe_settings`), and
its start binds stdlib HTTP listeners on daemon threads. A failure to bind is logged and the node keeps running.
"""

from __future__ import annotations

from edge_engine.observe.http_listeners import ObserveServer, make_observe, start_observe
from edge_engine.observe.observe_settings import ObserveSettings, load_observe_settings

__all__ = ["ObserveServer", "ObserveSettings", "load_observe_settings", "make_observe", "start_observe"]
