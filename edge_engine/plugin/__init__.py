"""The plugin contract and its machinery: the three plugin kinds, declared config keys, node-level hooks, finding
plugins (folders and entry points), the registry of what loaded and what failed, and hot reload in development.

Plugin authors import from :mod:`edge_engine.api`, never from here; the engine uses these modules directly.
"""
