"""Names shared across the node (env keys, cache layout, defaults).

They live in the installable engine package (``edge_engine.constants``) so that the engine, the ops
commands and the Docker image agree; this top-level module re-exports them for scripts run from the
repository root.
"""

from edge_engine.constants import *  # noqa: F403
from edge_engine.constants import ENV_VARS  # noqa: F401
