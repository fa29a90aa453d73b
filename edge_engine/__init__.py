"""edge_engine: the runtime of the edge node (plugins, pipelines, local cache, supervision).

Plugin authors import from :mod:`edge_engine.api`; the node is started by ``device.py``.
"""

__version__ = "0.1.0"
