"""Vision building blocks shared by every plugin: the one detection format (decision 34), and the tools that
read it (tracking, zones and lines). Plugins reach them through :mod:`edge_engine.api`."""
