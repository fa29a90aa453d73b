"""Messages that leave business instances: payloads and notifications.

They are plain data: the engine builds them, hook implementations (local output, comms) send them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def utc_iso(ts: float | None = None) -> str:
    """UTC ISO-8601 time with milliseconds, e.g. ``2026-11-23T15:00:00.123Z``."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Payload:
    """A payload emitted by a business instance.

    ``path`` is Ratio1's ``EE_PAYLOAD_PATH``: ``[alias, pipeline, signature, instance_id]``.
    ``image_jpeg`` holds the witness image encoded once, for every sink to reuse; ``image_path`` and
    ``image_url`` say where it is kept (see :mod:`edge_engine.storage`).
    """

    path: list[str | None]
    data: dict[str, Any]
    seq: int
    created: float = field(default_factory=time.time)
    image_jpeg: bytes | None = None
    input_seq: int | None = None
    image_path: str | None = None  # the witness image's file, relative to the cache (set by storage)
    image_url: str | None = None  # its object URL when object storage is configured (set by storage)

    @property
    def pipeline(self) -> str | None:
        return self.path[1]

    @property
    def instance_id(self) -> str | None:
        return self.path[3]


@dataclass
class Notification:
    """A notification: something an owner should know (``level``: info, warning, error)."""

    level: str
    message: str
    path: list[str | None]
    fields: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": utc_iso(self.created),
            "level": self.level,
            "message": self.message,
            "path": self.path,
            **self.fields,
        }
