"""The storage service: where witness images and plugin files end up, and what a payload says about them.

The node's payload flow (:mod:`edge_engine.node.message_flow`) calls :meth:`StorageService.place_image` first,
before the outbox and the local output: every payload with a witness image gets, on a copy, ``image_path`` (its
file under ``_output/``, named by the instance stage and written by the local output writer) and, when object
storage is configured, ``image_url``: the image is queued on disk for upload and its URL (content-addressed
key ``{PREFIX}{sha256}.jpg``) is known at once. Comms then sends ``IMG_URL`` instead of the inline ``IMG``.
Plugins save their own files with ``save_file`` (same path, same queue). ``minio`` is imported only when
object storage is configured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from edge_engine import constants as C
from edge_engine.local.cache import CacheLayout, atomic_write_bytes
from edge_engine.messages import Payload
from edge_engine.runtime.supervisor import Supervisor
from edge_engine.storage.names import object_key, safe_file_name
from edge_engine.storage.storage_settings import StorageSettings

log = logging.getLogger(__name__)


STOP_SECONDS = 1.0  # the uploader's share of the node's stop


class StorageService:
    """Witness images and plugin files: local paths always, object URLs and uploads when S3 is configured.

    A node service (:class:`edge_engine.node.seams.Service`): started and stopped by the node in order.
    """

    name = "storage"

    def __init__(
        self,
        layout: CacheLayout,
        settings: StorageSettings,
        supervisor: Supervisor,
        notify: Callable[..., None] | None = None,
    ):
        self.layout = layout
        self.settings = settings
        self.uploader: Any = None
        self.store: Any = None
        self.errors = 0
        self.inline_fallbacks = 0
        self.outputs_paused: Callable[[], bool] = lambda: False  # the node's disk guard, once it runs
        if settings.configured:
            from edge_engine.storage.queue import UploadQueue
            from edge_engine.storage.uploader import S3Store, Uploader

            self.store = S3Store(settings)
            queue = UploadQueue(layout.data / C.UPLOADS_DIR, settings.max_queue_mb * 1024 * 1024)
            self.uploader = Uploader(self.store, queue, supervisor, notify)

    @property
    def configured(self) -> bool:
        return self.uploader is not None

    def start(self) -> None:
        if self.uploader is not None:
            self.uploader.start()
            log.info(
                "storage: uploads to %s bucket %r (%s URLs)",
                self.settings.endpoint,
                self.settings.bucket,
                "presigned" if self.store.presign else "plain",
            )

    def stop(self, deadline: float | None = None) -> list[str]:
        """Stop the uploader within ``STOP_SECONDS`` (less when the node's ``deadline`` is nearer, at least 0.1 s)."""
        if self.uploader is not None:
            timeout = STOP_SECONDS if deadline is None else min(STOP_SECONDS, deadline - time.monotonic())
            self.uploader.stop(max(0.1, timeout))
        return []

    def upload(self, data: bytes, suffix: str) -> str | None:
        """Queue ``data`` for upload; its URL, or None when not configured or the queue refused it."""
        if self.uploader is None:
            return None
        key = object_key(self.settings.prefix, data, suffix)
        if not self.uploader.queue.put(key, data):
            self.inline_fallbacks += 1
            return None
        return str(self.store.url(key))

    def place_image(self, payload: Payload) -> Payload:
        """``payload`` with ``image_path`` (its file under ``_output/``, as the instance stage named it) and, when
        object storage takes it, ``image_url``; the payload itself when it has no image."""
        if payload.image_jpeg is None or payload.intent.image_name is None:
            return payload
        image_path = None
        if not self.outputs_paused():  # a full disk: the local writer skips the image, so no path to it
            image_path = f"{C.CACHE_OUTPUT}/{payload.intent.image_name}"
        image_url = None
        try:
            image_url = self.upload(payload.image_jpeg, ".jpg")
        except Exception:  # never break the other sinks: the image then goes inline
            self.errors += 1
            log.exception("storage: witness image of %s not queued for upload", payload.path)
        return replace(payload, image_path=image_path, image_url=image_url)

    def save_file(self, folder: Path, name: str, data: bytes | str) -> str:
        """Write a plugin's file under ``folder/files/`` and queue its upload: its URL, else its local path.

        The object's content type follows the name's extension, which the key keeps.
        """
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        clean = safe_file_name(name)
        path = folder / "files" / clean
        atomic_write_bytes(path, payload)
        url = self.upload(payload, PurePosixPath(clean).suffix)
        if url is not None:
            return url
        try:
            return path.relative_to(self.layout.root).as_posix()
        except ValueError:
            return str(path)

    def snapshot(self) -> dict[str, Any]:
        """For local_info.json, heartbeats and /metrics: settings without credentials, and queue counters."""
        result = self.settings.describe()
        result["configured"] = self.configured
        if self.uploader is not None:
            result.update(self.uploader.stats())
        result["inline_fallbacks"] = self.inline_fallbacks
        result["errors"] = self.errors
        return result
