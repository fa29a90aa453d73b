"""Ratio1's message envelope: the routing and identity fields every outgoing message carries.

Ratio1 wire fields keep Ratio1's formats (``EE_TIMESTAMP`` as ``%Y-%m-%d %H:%M:%S.%f`` local time,
``EE_TIMEZONE`` as ``UTC+2``); the payload path is ``[alias, pipeline, signature, instance]``.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from typing import Any

from edge_engine import __version__

EVENT_PAYLOAD = "PAYLOAD"
EVENT_NOTIFICATION = "NOTIFICATION"
EVENT_HEARTBEAT = "HEARTBEAT"
# empty: the SDK decodes with its default formatter; it drops messages naming a formatter it has no plugin for
FORMATTER = ""


_ID_BATCH = 256  # message ids drawn per os.urandom call
_VARIANT = "89ab89ab89ab89ab"  # RFC 4122 variant nibble for each value of a random nibble


def ratio1_timestamp(ts: float | None = None) -> str:
    """Local time in Ratio1's format: ``2026-11-23 14:35:21.477674``."""
    return datetime.fromtimestamp(time.time() if ts is None else ts).strftime("%Y-%m-%d %H:%M:%S.%f")


class _SecondLabels:
    """:func:`ratio1_timestamp` with the date and time of day formatted once per second (the rest: microseconds).

    Same text as ``datetime.fromtimestamp(ts).strftime(...)``: the microseconds are rounded as ``datetime`` rounds
    them (half to even), carrying into the next second."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")  # one attribute: threads read a second and its label together

    def __call__(self, ts: float | None) -> str:
        if ts is None:
            ts = time.time()
        second = int(ts // 1)
        micro = round((ts - second) * 1e6)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, datetime.fromtimestamp(second).strftime("%Y-%m-%d %H:%M:%S"))
        return f"{cached[1]}.{micro:06d}"


class MessageIds:
    """Random (version 4) UUID texts for ``EE_MESSAGE_ID``, 16 random bytes each from one ``os.urandom`` call per
    ``_ID_BATCH`` ids (``uuid.uuid4()`` makes one system call per id: a tenth of the encode step on a busy box)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hex = ""
        self._pos = 0

    def __call__(self) -> str:
        with self._lock:
            pos = self._pos
            if pos >= len(self._hex):
                self._hex, pos = os.urandom(16 * _ID_BATCH).hex(), 0
            self._pos = pos + 32
            h = self._hex[pos : pos + 32]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:]}"


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
        self._timestamp = _SecondLabels()
        self._message_id = MessageIds()

    def wrap(
        self, body: dict[str, Any], event_type: str, path: list[Any], seq: int, created: float | None = None
    ) -> dict[str, Any]:
        """Return ``body`` with the envelope fields set (``body`` is modified and returned)."""
        self.total += 1
        body["EE_ID"] = self.alias
        body["EE_ADDR"] = self.address
        body["EE_EVENT_TYPE"] = event_type
        body["EE_VERSION"] = __version__
        body["EE_TIMESTAMP"] = self._timestamp(created)
        body["EE_TIMEZONE"] = self.timezone
        body["EE_TZ"] = self.tz_name
        body["EE_MESSAGE_SEQ"] = seq
        body["EE_MESSAGE_ID"] = self._message_id()
        body["EE_TOTAL_MESSAGES"] = self.total
        body["EE_FORMATTER"] = FORMATTER
        body["EE_PAYLOAD_PATH"] = [self.alias, *path[1:4]] if len(path) >= 4 else [self.alias, None, None, None]
        body.setdefault("EE_IS_ENCRYPTED", False)
        return body
