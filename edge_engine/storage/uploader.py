"""The S3 side: a ``minio`` client (imported only when storage is configured), object URLs, and the upload loop.

URLs are computed locally, without asking the server (the region is set), so a payload can carry its object's
URL before the upload is done, even during an S3 outage: ``plain`` is ``{scheme}://{endpoint}/{bucket}/{key}``
(for buckets readable by consumers), ``presigned`` a signed GET URL valid ``URL_EXPIRY_SECONDS`` from the
payload's making (at most 7 days). The loop uploads the queue's oldest entry; a failure is reported to the
node's supervisor, which answers with the capped exponential backoff (with jitter) before the next attempt.
Every entry is checked first (a HEAD request, ``stat_object``): one already in the bucket with its size (sent
before a crash or a lost reply, or the same bytes produced again after a restart, when the queue no longer
remembers them) is not sent again, so no object is PUT twice.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from edge_engine.messages import utc_iso
from edge_engine.redact import redact_text
from edge_engine.runtime.supervisor import Supervisor
from edge_engine.storage.queue import Entry, UploadQueue
from edge_engine.storage.storage_settings import StorageSettings, split_endpoint

log = logging.getLogger(__name__)
PART = "storage/uploads"  # the uploader's name at the supervisor
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0


def content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class S3Store:
    """One bucket on one S3 endpoint, through the ``minio`` client."""

    def __init__(self, settings: StorageSettings):
        import certifi
        import urllib3
        from minio import Minio

        self.settings = settings
        assert settings.endpoint and settings.bucket
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
            maxsize=2,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=False,  # retries are ours (backoff from the supervisor), not hidden in the client
        )
        access, secret = settings.access_key or None, settings.secret_key or None
        self.client = Minio(
            settings.endpoint,
            access_key=access,
            secret_key=secret,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )
        public, public_secure = split_endpoint(settings.public_endpoint or settings.endpoint, settings.secure)
        self.public_base = f"{'https' if public_secure else 'http'}://{public}"
        self.url_client = self.client
        if (public, public_secure) != (settings.endpoint, settings.secure):
            self.url_client = Minio(
                public, access_key=access, secret_key=secret, secure=public_secure, region=settings.region
            )
        self.presign = settings.url_mode == "presigned" and bool(settings.access_key)
        self.bucket_ready = False

    def url(self, key: str) -> str:
        """The URL a consumer fetches ``key`` from (made locally; valid before the object exists)."""
        bucket = self.settings.bucket
        assert bucket
        if self.presign:
            expires = timedelta(seconds=self.settings.url_expiry_seconds)
            return self.url_client.presigned_get_object(bucket, key, expires=expires)
        return f"{self.public_base}/{bucket}/{quote(key)}"

    def ensure_bucket(self) -> None:
        """Create the bucket when it is missing (``CREATE_BUCKET``), once per connection."""
        if self.bucket_ready:
            return
        bucket = self.settings.bucket
        assert bucket
        from minio.error import S3Error

        try:
            exists = self.client.bucket_exists(bucket)
        except S3Error as exc:
            if exc.code != "AccessDenied":
                raise
            exists = True  # a key allowed to write objects only: the PUT will tell
        if not exists:
            if not self.settings.create_bucket:
                raise RuntimeError(f"bucket {bucket!r} does not exist (CREATE_BUCKET is off)")
            self.client.make_bucket(bucket, location=self.settings.region)
            log.info("storage: bucket %r created on %s", bucket, self.settings.endpoint)
        self.bucket_ready = True

    def has(self, key: str, size: int) -> bool:
        """Whether ``key`` is already in the bucket with ``size`` bytes."""
        from minio.error import S3Error

        try:
            stat = self.client.stat_object(self.settings.bucket or "", key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound", "NotFound", "AccessDenied"):
                return False  # (AccessDenied: a write-only key; sending again makes no second copy)
            raise
        return stat.size == size

    def put(self, entry: Entry) -> None:
        with open(entry.path, "rb") as handle:
            self.client.put_object(
                self.settings.bucket or "", entry.key, handle, entry.size, content_type=content_type(entry.key)
            )


class Uploader:
    """The thread that empties the queue into the bucket, never on a producer's thread."""

    def __init__(
        self, store: S3Store, queue: UploadQueue, supervisor: Supervisor, notify: Callable[..., None] | None = None
    ):
        self.store = store
        self.queue = queue
        self.supervisor = supervisor
        self.notify = notify or (lambda *a, **k: None)  # (level, message, **fields): an owner's notification
        self.unreachable = False
        self.stop_event = threading.Event()
        self.uploaded = 0
        self.uploaded_bytes = 0
        self.already_there = 0
        self.failed_attempts = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.last_upload_at: str | None = None
        self.seconds_total = 0.0
        self._thread = threading.Thread(target=self._run, name="storage:uploader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop between two uploads; an upload in flight is abandoned (its entry stays queued)."""
        self.stop_event.set()
        self.queue.close()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            entry = self.queue.peek()
            if entry is None:
                return
            try:
                self._upload(entry)
            except Exception as exc:  # any failure: retried after the supervisor's backoff, nothing dropped
                entry.attempts += 1
                self.failed_attempts += 1
                self.last_error = redact_text(f"{type(exc).__name__}: {exc}")[:500]
                self.last_error_at = utc_iso()
                if "NoSuchBucket" in self.last_error:
                    self.store.bucket_ready = False
                if self.stop_event.wait(self._backoff(f"{entry.key}: {self.last_error}")):
                    return
                continue
            if self.unreachable:
                self.unreachable = False
                self.notify(
                    "info",
                    f"object storage {self.store.settings.endpoint} reachable again: uploads resumed",
                    PART=PART,
                    PENDING=len(self.queue),
                )
            if self.supervisor.is_flapping(PART):
                self.supervisor.forget(PART)
            else:
                self.supervisor.recovered(PART, clear_window=True)

    def _backoff(self, error: str) -> float:
        """The supervisor's delay before the next attempt. Uploads are never given up: where the flapping
        policy would stop a part, the uploader keeps retrying at the backoff's cap."""
        verdict = self.supervisor.record(PART, error)
        if not verdict.flapping:
            return verdict.delay
        if not self.unreachable:  # once per streak: the owner learns that images wait on the node
            self.unreachable = True
            self.notify(
                "warning",
                f"object storage {self.store.settings.endpoint} unreachable: {verdict.failures} "
                f"failed uploads in a row; {len(self.queue)} object(s) wait on disk and are retried "
                f"(last error: {error})",
                PART=PART,
                PENDING=len(self.queue),
            )
        return self.supervisor.policy.delay(self.supervisor.state(PART).consecutive_failures)

    def _upload(self, entry: Entry) -> None:
        started = time.monotonic()
        self.store.ensure_bucket()
        if self.store.has(entry.key, entry.size):
            self.already_there += 1  # sent before (a crash, a lost reply, the same bytes before a restart)
        else:
            self.store.put(entry)
            self.uploaded += 1
            self.uploaded_bytes += entry.size
        self.seconds_total += time.monotonic() - started
        self.last_upload_at = utc_iso()
        self.queue.done(entry)

    def stats(self) -> dict[str, Any]:
        return {
            "pending": len(self.queue),
            "pending_bytes": self.queue.pending_bytes,
            "uploaded": self.uploaded,
            "uploaded_bytes": self.uploaded_bytes,
            "already_in_bucket": self.already_there,
            "deduplicated": self.queue.deduplicated,
            "rejected_queue_full": self.queue.rejected,
            "recovered_at_start": self.queue.recovered,
            "failed_attempts": self.failed_attempts,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_upload_at": self.last_upload_at,
            "upload_seconds_total": round(self.seconds_total, 3),
        }
