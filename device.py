"""Entry point of the edge node: load ``.env``, build settings, run the node until SIGTERM or SIGINT.

    python device.py          # python device.py --dev: development mode, plugin files reload when they change

With no configuration at all it seeds the demo pipeline (a sample video through a motion detector) into
``./_local_cache`` and prints its payloads; see README.md.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from dotenv import load_dotenv

from edge_engine import constants as C
from edge_engine.config.node_settings import load_settings
from edge_engine.errors import CacheError, ConfigError
from edge_engine.node.core import Node
from edge_engine.node.disk_bounds import load_disk_settings, log_file_bytes
from edge_engine.node.logs import configure_logging

log = logging.getLogger("device")


def main() -> int:
    base_dir = Path.cwd()
    load_dotenv(base_dir / C.DOTENV_FILE, override=False)
    if "--dev" in sys.argv[1:]:
        os.environ[C.ENV_DEV] = "1"
    configure_logging("INFO", None, C.DEFAULT_LOG_MAX_BYTES, C.DEFAULT_LOG_BACKUPS)
    try:
        settings = load_settings(base_dir)
        disk = load_disk_settings(settings.env)
    except ConfigError as exc:
        for issue in exc.issues:
            log.error("config: %s", issue)
        log.error("the node cannot start: fix the startup or app config above")
        return 2
    except CacheError as exc:
        log.error("local cache: %s", exc)
        return 2
    startup = settings.startup
    log_bytes = log_file_bytes(disk.logs_max_bytes, startup["LOG_BACKUPS"], startup["LOG_MAX_BYTES"])
    configure_logging(startup["LOG_LEVEL"], settings.layout.logs, log_bytes, startup["LOG_BACKUPS"])
    node = Node(settings)

    def on_signal(signum: int, _frame: object) -> None:
        node.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        node.start()
    except CacheError as exc:
        log.error("local cache: %s", exc)
        return 2
    node.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
