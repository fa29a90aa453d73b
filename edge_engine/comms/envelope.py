"""Ratio1's message envelope: the routing and identity fields every outgoing message carries.

Ratio1 wire fields keep Ratio1's formats (``EE_TIMESTAMP`` as ``%Y-%m-%d %H:%M:%S.%f`` local time,
``EE_TIMEZONE`` as ``UTC+2``); the payload path is ``[alias, pipeline, signature, instance]``.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

from edge_engine import __version__

EVENT_PAYLOAD = "PAYLOAD"
EVENT_NOTIFICATION = "NOTIFICATION"
EVENT_HEARTBEAT = "HEARTBEAT"
# empty: the SDK decodes with its default formatter; it drops messages naming a formatter it has no plugin for
FORMATTER = ""


def ratio1_timestamp(ts: float | None = None) -> str:
    """Local time in Ratio1's format: ``2026-11-23 14:35:21.477674``."""
    return datetime.fromtimestamp(time.time() if ts is None else ts).strftime("%Y-%m-%d %H:%M:%S.%f")


def utc_offset_label() -> tuple[str, str]:
    """``("UTC+2", "EET")``-style labels of the local time zone."""
    local = datetime.now().astimezone()
    offset = local.utcoffset()
    hours = int(offset.total_seconds() // 3600) if offset is not None else 0
    minutes = int(abs(offset.total_seconds()) % 3600 // 60) if offset is not None else 0
    label = f"UTC{hours:+d}" + (f":{minutes:02d}" if minutes else "")
    return label, local.tzname() or label


class EnvelopeBuilder:
    """Adds the envelope to message bodies; one per node."""

    def __init__(self, alias: str, address: str):
        self.alias = alias
        self.address = address
        self.timezone, self.tz_name = utc_offset_label()
        self.total = 0

    def wrap(
        self, body: dict[str, Any], event_type: str, path: list[Any], seq: int, created: float | None = None
    ) -> dict[str, Any]:
        """Return ``body`` with the envelope fields set (``body`` is modified and returned)."""
        self.total += 1
        body["EE_ID"] = self.alias
        body["EE_ADDR"] = self.address
        body["EE_EVENT_TYPE"] = event_type
        body["EE_VERSION"] = __version__
        body["EE_TIMESTAMP"] = ratio1_timestamp(created)
        body["EE_TIMEZONE"] = self.timezone
        body["EE_TZ"] = self.tz_name
        body["EE_MESSAGE_SEQ"] = seq
        body["EE_MESSAGE_ID"] = str(uuid.uuid4())
        body["EE_TOTAL_MESSAGES"] = self.total
        body["EE_FORMATTER"] = FORMATTER
        body["EE_PAYLOAD_PATH"] = [self.alias, *path[1:4]] if len(path) >= 4 else [self.alias, None, None, None]
        body.setdefault("EE_IS_ENCRYPTED", False)
        return body
