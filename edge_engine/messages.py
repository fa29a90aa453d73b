"""Messages that leave business instances: payloads and notifications.

They are plain data: the instance stage builds a payload with its intent (routing, encryption target, image
name) once; the node's payload flow hands it to the sinks (storage, the outbox, local output) and the hooks.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any


def utc_iso(ts: float | None = None) -> str:
    """UTC ISO-8601 time with milliseconds, e.g. ``2026-11-23T15:00:00.123Z``."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# who deployed the pipeline: copied from its config into every payload's envelope (clear even when encrypted)
ROUTING_FIELDS = ("SESSION_ID", "INITIATOR_ID", "INITIATOR_ADDR", "MODIFIED_BY_ID", "MODIFIED_BY_ADDR")
NO_ROUTING: Mapping[str, Any] = MappingProxyType({})


def image_file_name(path: Sequence[str | None], created: float, seq: int) -> str:
    """A witness image's file relative to ``_output/``: ``<pipeline>/<SIG>_<INST>/images/<UTC time>_<seq>.jpg``.

    The creation time (UTC, to the millisecond) keeps names unique across restarts, where payload numbers
    start again at 1: a newer image never overwrites an older one that a sent payload points to.
    """
    _, pipeline, signature, instance = path
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(created)) + f".{int(created * 1000) % 1000:03d}"
    return f"{pipeline}/{signature}_{instance}/images/{stamp}Z_{seq:08d}.jpg"


@dataclass(frozen=True)
class PayloadIntent:
    """What the instance stage decided for one payload, once, before any sink sees it.

    The sinks (storage, the outbox, the local output writer, plugins' ``edge_payload``) read it and look
    nothing up again, so none of them depends on another having run first.
    """

    routing: Mapping[str, Any] = field(default_factory=lambda: NO_ROUTING)  # the pipeline's ROUTING_FIELDS (envelope)
    encrypt: bool = False  # the instance has ENCRYPT_PAYLOAD: sent encrypted to ``encrypt_to``, or not at all
    encrypt_to: str | None = None  # EE_DEST: the initiator, else the last modifier; None: nobody to encrypt to
    image_name: str | None = None  # the witness image's file under ``_output/`` (None: no image)

    @classmethod
    def decide(
        cls,
        path: Sequence[str | None],
        created: float,
        seq: int,
        has_image: bool,
        instance_config: Mapping[str, Any],
        pipeline_config: Mapping[str, Any],
    ) -> PayloadIntent:
        """The intent of a payload of an instance with ``instance_config`` in a pipeline with ``pipeline_config``
        (its persisted JSON: only the routing fields are read)."""
        routing = tuple([(key, value) for key in ROUTING_FIELDS if (value := pipeline_config.get(key)) is not None])
        encrypt = bool(instance_config.get("ENCRYPT_PAYLOAD"))
        try:
            shared = _shared_intent(routing, encrypt)  # the same for every payload until a config changes
        except TypeError:  # a routing value that is not hashable (a list, say): not shared
            shared = _intent(routing, encrypt)
        return replace(shared, image_name=image_file_name(path, created, seq)) if has_image else shared


def _intent(routing: tuple[tuple[str, Any], ...], encrypt: bool) -> PayloadIntent:
    fields = dict(routing)
    dest = (fields.get("INITIATOR_ADDR") or fields.get("MODIFIED_BY_ADDR")) if encrypt else None
    return PayloadIntent(MappingProxyType(fields) if fields else NO_ROUTING, encrypt, str(dest) if dest else None)


_shared_intent = functools.lru_cache(maxsize=1024)(_intent)


NO_INTENT = PayloadIntent()


@dataclass(frozen=True)
class Payload:
    """A payload emitted by a business instance: frozen, shared by every sink.

    ``path`` is Ratio1's ``EE_PAYLOAD_PATH``: ``[alias, pipeline, signature, instance_id]``.
    ``image_jpeg`` holds the witness image encoded once, for every sink to reuse. ``intent`` is what the
    instance stage decided for it (routing, encryption target, image name). ``image_path`` and ``image_url``
    say where the image is kept; the node's payload flow sets them (a copy, see
    :meth:`edge_engine.storage.service.StorageService.place_image`) before the outbox and the hooks see it.
    """

    path: list[str | None]
    data: dict[str, Any]
    seq: int
    created: float = field(default_factory=time.time)
    image_jpeg: bytes | None = None
    input_seq: int | None = None
    image_path: str | None = None  # the witness image's file, relative to the cache (placed by storage)
    image_url: str | None = None  # its object URL when object storage is configured (placed by storage)
    intent: PayloadIntent = NO_INTENT

    def __post_init__(self) -> None:
        if self.image_jpeg is not None and self.intent.image_name is None:  # built without the instance stage
            name = image_file_name(self.path, self.created, self.seq)
            object.__setattr__(self, "intent", replace(self.intent, image_name=name))

    @property
    def pipeline(self) -> str | None:
        return self.path[1]

    @property
    def instance_id(self) -> str | None:
        return self.path[3]


@dataclass(frozen=True)
class Delivery:
    """What the node's sinks did with a payload: the payload as they completed it (where its image is kept) and,
    when the outbox refused it, why (an error of the emitting instance)."""

    payload: Payload
    refused: str | None = None


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
