"""Remote control of edge nodes over MQTT: :class:`~edge_engine.remote.node_client.EdgeClient` for Python and the
``edge-client`` command built on it (see ``docs/remote-control.md``).
"""
