"""Logging for the node: readable lines on stderr and a size-rotated file in ``_logs/``, secrets removed."""

from __future__ import annotations

import errno
import logging
import logging.handlers
import sys
from pathlib import Path

from edge_engine.redact import RedactingFilter

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class QuietFullDiskHandler(logging.handlers.RotatingFileHandler):
    """The rotating log file; while the disk is full its lines are dropped and counted, not a traceback each."""

    dropped = 0

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            type(self).dropped += 1
            return
        super().handleError(record)


def configure_logging(level: str, log_dir: Path | None, max_bytes: int, backups: int) -> None:
    """Set up the root logger once (idempotent: earlier handlers of ours are replaced)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_edge_engine", False):
            root.removeHandler(handler)
            handler.close()
    formatter = logging.Formatter(FORMAT)
    formatter.converter = __import__("time").gmtime
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(
            QuietFullDiskHandler(log_dir / "node.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        )
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RedactingFilter())
        handler._edge_engine = True  # type: ignore[attr-defined]  # our mark on the handler, found again with getattr
        root.addHandler(handler)
    root.setLevel(level.upper())
