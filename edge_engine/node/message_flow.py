"""The way of a payload or a notification out of the node: its own sinks, in an order fixed here.

A payload leaves its instance with its intent decided (:class:`edge_engine.messages.PayloadIntent`: routing,
encryption target, image name). :meth:`MessageFlow.payload` then calls, in this order:

1. storage: places the witness image (its file under ``_output/``, its object URL when S3 is configured) on a
   copy of the payload; comms needs the URL to send ``IMG_URL`` instead of the inline image;
2. the outbox (comms): numbers, encodes and stores the message before it returns;
3. the local output writer: so a payload that reached ``_output/`` is already in the outbox (decision 38).

None of these is a hook implementation: :class:`edge_engine.plugin.hooks.Hooks` calls the flow first and the
plugins' ``edge_payload`` / ``edge_notification`` after it, with the completed payload, so no hook order
(``tryfirst``, ``trylast``) plays a part. Notifications go the same way without step 1.
"""

from __future__ import annotations

from typing import Protocol

from edge_engine.messages import Delivery, Notification, Payload


class ImagePlacer(Protocol):
    """Decides where a payload's witness image is kept (:class:`edge_engine.storage.service.StorageService`)."""

    def place_image(self, payload: Payload) -> Payload: ...


class OutboxSink(Protocol):
    """Stores messages for the broker before returning (:class:`edge_engine.comms.service.CommsService`)."""

    def accept_payload(self, payload: Payload) -> str | None: ...
    def accept_notification(self, notification: Notification) -> None: ...


class LocalSink(Protocol):
    """Writes messages under ``_output/`` (:class:`edge_engine.node.local_output.LocalOutput`)."""

    def write_payload(self, payload: Payload) -> None: ...
    def write_notification(self, notification: Notification) -> None: ...


class MessageFlow:
    """The node's sinks for payloads and notifications (see the module docstring); set as services start."""

    def __init__(self, output: LocalSink):
        self.output = output
        self.storage: ImagePlacer | None = None  # None until the storage service starts
        self.outbox: OutboxSink | None = None  # None with comms off (``EE_COMMS=0``) or not started yet

    def payload(self, payload: Payload) -> Delivery:
        """Storage, then the outbox, then the local output. An outbox that raises stops the flow here: nothing
        reaches ``_output/`` that the outbox lacks."""
        if self.storage is not None and payload.image_jpeg is not None:
            payload = self.storage.place_image(payload)
        refused = self.outbox.accept_payload(payload) if self.outbox is not None else None
        self.output.write_payload(payload)
        return Delivery(payload, refused)

    def notification(self, notification: Notification) -> None:
        """The outbox, then the local output (which also logs it)."""
        if self.outbox is not None:
            self.outbox.accept_notification(notification)
        self.output.write_notification(notification)
