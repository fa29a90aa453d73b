"""``python -m edge_engine.cli COMMAND ...``: the same as the ``edge-node`` console script."""

import sys

from edge_engine.cli import main

sys.exit(main())
