"""Models delivered remotely (decision 36): ``MODEL_URL`` + ``MODEL_SHA256`` in a serving config.

``MODEL_URL`` is an ``http(s)://`` URL, or an object in S3 reached through the node's storage settings
(``FILE_UPLOAD`` / ``EE_MINIO_*``: endpoint and keys): ``s3://BUCKET/KEY``, or ``s3:KEY`` for the configured
bucket. The file lands in ``_models/fetched/<sha256><suffix>``: content-addressed, so a model already there
is not fetched again, and two configs naming the same file share it. The download:

* goes to ``<sha256>.part`` and *resumes* from its size (an HTTP ``Range`` request, an S3 ranged GET) after a
  cut, within a call (a few attempts with backoff) and across node restarts;
* is *bounded*: a model larger than ``MODEL_MAX_MB`` is refused before (by its announced size) or while it
  downloads;
* is *verified*: the SHA-256 of the whole file must be ``MODEL_SHA256``; a mismatch deletes the part and is
  an error naming the model and both hashes;
* is written *atomically*: the part is fsynced and renamed into place only once verified, so a file under
  its final name is always complete and right.

Progress (bytes, total, state, error) is kept per download for ``local_info.json`` and the status page;
URLs are shown without credentials or query strings. At most :data:`KEEP_UNUSED` fetched models that no
server uses are kept (oldest out), so a fleet rolling versions does not fill the disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

FETCHED_DIR = "fetched"
CHUNK = 1 << 20
ATTEMPTS = 5  # tries per download; each resumes where the last one stopped
BACKOFF_MAX = 5.0  # seconds between two tries, at most
TIMEOUT = 30.0  # seconds without a byte before a try gives up
KEEP_UNUSED = 2  # fetched models kept that no server uses (the newest)
HISTORY = 20  # finished downloads kept in the progress list
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelFetchError(Exception):
    """A model could not be fetched; the message names the model and says why (no credentials, no paths).
    ``retryable``: the server could not be reached or failed (trying later may work), unlike a 404, a wrong
    hash or a model too big."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class _Retry(Exception):
    """A try failed in a way another try may fix (connection cut, timeout, server error)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from and what it must hash to."""

    url: str
    sha256: str
    scheme: str  # http, https or s3
    bucket: str = ""  # s3: empty = the storage settings' bucket
    key: str = ""  # s3: the object key

    @property
    def name(self) -> str:
        """The file name the URL ends with (``yolov8n.onnx``), for messages and ``model_name``."""
        path = self.key if self.scheme == "s3" else urlsplit(self.url).path
        return PurePosixPath(path).name or "model"

    @property
    def suffix(self) -> str:
        suffix = PurePosixPath(self.name).suffix.lower()
        return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ".onnx"

    @property
    def shown(self) -> str:
        """The URL as it may be shown: no credentials, no query string (a presigned URL's signature)."""
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.key}" if self.bucket else f"s3:{self.key}"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def parse_source(url: str, sha256: str) -> ModelSource:
    """A :class:`ModelSource` from the config's values; ValueError with a sentence when they are wrong."""
    url, sha = str(url or "").strip(), str(sha256 or "").strip().lower()
    if not _SHA256.match(sha):
        raise ValueError(f"MODEL_SHA256 must be the model file's SHA-256, 64 hex digits (got {sha256!r:.80})")
    lowered = url.lower()
    if lowered.startswith(("http://", "https://")):
        parts = urlsplit(url)
        if not parts.hostname or not parts.path.strip("/"):
            raise ValueError("MODEL_URL must name a file: http(s)://host/path/model.onnx")
        return ModelSource(url, sha, parts.scheme.lower())
    if lowered.startswith("s3://"):
        bucket, _, key = url[5:].partition("/")
        if not key.strip("/"):
            raise ValueError("MODEL_URL must name an object: s3://BUCKET/KEY, or s3:KEY in the storage bucket")
        return ModelSource(url, sha, "s3", bucket, key.lstrip("/"))
    if lowered.startswith("s3:") and url[3:].strip("/"):
        return ModelSource(url, sha, "s3", "", url[3:].lstrip("/"))
    raise ValueError("MODEL_URL must start with http://, https://, s3://BUCKET/ or s3: (an S3 key)")


def source_of(config: Mapping[str, Any]) -> ModelSource | None:
    """The config's model source, or None when it names no ``MODEL_URL`` (ValueError when it is wrong)."""
    if not str(config.get("MODEL_URL") or "").strip():
        if str(config.get("MODEL_SHA256") or "").strip():
            raise ValueError("MODEL_SHA256 is set but MODEL_URL is not")
        return None
    return parse_source(config["MODEL_URL"], config.get("MODEL_SHA256") or "")


def fetched_path(models_dir: Path, source: ModelSource) -> Path:
    """Where a fetched model lives: ``_models/fetched/<sha256><suffix>``."""
    return models_dir / FETCHED_DIR / f"{source.sha256}{source.suffix}"


class ModelFetcher:
    """Downloads models into ``_models/fetched/``, one download per file at a time, and reports progress."""

    def __init__(
        self,
        models_dir: Path,
        storage: Callable[[], Any] | None = None,
        in_use: Callable[[], Iterable[Path]] | None = None,
        attempts: int = ATTEMPTS,
        timeout: float = TIMEOUT,
    ):
        self.models_dir = models_dir
        self.storage = storage or (lambda: None)
        self.in_use = in_use or (lambda: ())
        self.attempts = max(1, attempts)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._file_locks: dict[str, threading.Lock] = {}
        self._progress: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []

    # --- the one entry point -----------------------------------------------------------------------------------
    def ensure(self, source: ModelSource, max_bytes: int, stop: threading.Event | None = None) -> Path:
        """The local file of ``source``, downloading it first when it is not there; ModelFetchError otherwise."""
        target = fetched_path(self.models_dir, source)
        with self._file_lock(source.sha256):
            if target.is_file():
                os.utime(target)  # most recently used: kept longest
                return target
            progress = self._start(source)
            try:
                self._download(source, target, max_bytes, progress, stop or threading.Event())
            except ModelFetchError as exc:
                self._finish(progress, "failed", str(exc))
                raise
            except Exception as exc:  # never an unexplained failure
                error = ModelFetchError(f"model {source.name!r} from {source.shown}: {type(exc).__name__}: {exc}")
                self._finish(progress, "failed", str(error))
                raise error from exc
            self._finish(progress, "ready", None)
        self._prune(keep=target)
        return target

    def _file_lock(self, sha: str) -> threading.Lock:
        with self._lock:
            return self._file_locks.setdefault(sha, threading.Lock())

    # --- download ------------------------------------------------------------------------------------------------
    def _download(
        self, source: ModelSource, target: Path, max_bytes: int, progress: dict[str, Any], stop: threading.Event
    ) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f"{source.sha256}.part")
        what = f"model {source.name!r} from {source.shown}"
        for attempt in range(1, self.attempts + 1):
            progress["attempts"] = attempt
            try:
                self._fetch_into(source, part, max_bytes, progress, stop)
                break
            except _Retry as exc:
                progress["error"] = str(exc)
                if attempt == self.attempts:
                    text = f"{what}: {exc} (after {attempt} tries; the next try resumes)"
                    raise ModelFetchError(text, retryable=True) from exc
                log.warning("%s: %s; resuming (try %d of %d)", what, exc, attempt + 1, self.attempts)
                if stop.wait(min(BACKOFF_MAX, 0.5 * 2 ** (attempt - 1))):
                    raise ModelFetchError(f"{what}: stopped") from exc
        progress.update(state="verifying", error=None)
        digest = _sha256_of(part)
        if digest != source.sha256:
            part.unlink(missing_ok=True)
            raise ModelFetchError(f"{what}: SHA-256 mismatch: MODEL_SHA256 is {source.sha256} but the file is {digest}")
        with open(part, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(part, target)
        _fsync_dir(target.parent)
        log.info("%s: fetched and verified (%d bytes)", what, target.stat().st_size)

    def _fetch_into(
        self, source: ModelSource, part: Path, max_bytes: int, progress: dict[str, Any], stop: threading.Event
    ) -> None:
        offset = part.stat().st_size if part.is_file() else 0
        if offset > max_bytes:
            part.unlink()
            offset = 0
        stream = self._s3_stream if source.scheme == "s3" else self._http_stream
        offset, total, chunks = stream(source, offset)  # the offset the stream starts at (0: from the top)
        if total is not None:
            progress["total"] = total
            if total > max_bytes:
                raise ModelFetchError(
                    f"model {source.name!r} from {source.shown}: {total} bytes is over MODEL_MAX_MB "
                    f"({max_bytes // (1 << 20)} MB)"
                )
        if total is not None and offset >= total:
            progress["bytes"] = offset
            return  # complete already (a crash came between the last byte and the rename)
        received = offset
        progress.update(bytes=received, resumed_from=offset or None)
        with open(part, "ab" if offset else "wb") as handle:
            try:
                for chunk in chunks:
                    if stop.is_set():
                        raise ModelFetchError(f"model {source.name!r}: the download was stopped")
                    received += len(chunk)
                    if received > max_bytes:
                        raise ModelFetchError(
                            f"model {source.name!r} from {source.shown}: larger than MODEL_MAX_MB "
                            f"({max_bytes // (1 << 20)} MB)"
                        )
                    handle.write(chunk)
                    progress["bytes"] = received
            except ModelFetchError:
                raise
            except Exception as exc:
                raise _Retry(f"the connection broke after {received} bytes ({type(exc).__name__})") from exc
        if total is not None and received < total:
            raise _Retry(f"the connection closed after {received} of {total} bytes")

    def _http_stream(self, source: ModelSource, offset: int) -> tuple[int, int | None, Iterator[bytes]]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(source.url, headers={"Range": f"bytes={offset}-"} if offset else {})
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)  # http(s) only: parse_source checked
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                return offset, offset, iter(())  # the part is whole already
            text = f"model {source.name!r} from {source.shown}: HTTP {exc.code} {exc.reason}"
            if exc.code >= 500 or exc.code in (408, 429):
                raise _Retry(text) from exc
            raise ModelFetchError(text) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retry(f"cannot reach {source.shown}: {reason}") from exc
        length = response.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else None
        if offset and response.status != 206:  # the server ignored the range and sends the whole file
            offset = 0
        total = None if size is None else size + offset
        return offset, total, _read_all(response)

    def _s3_stream(self, source: ModelSource, offset: int) -> tuple[int, int | None, Iterator[bytes]]:
        settings = self.storage()
        if settings is None or not getattr(settings, "endpoint", None):
            raise ModelFetchError(
                f"model {source.name!r}: MODEL_URL {source.shown} needs object storage settings "
                "(FILE_UPLOAD in .config_app.json or EE_MINIO_*), and none are configured"
            )
        bucket = source.bucket or settings.bucket
        if not bucket:
            raise ModelFetchError(
                f"model {source.name!r}: MODEL_URL {source.shown} names no bucket, nor do the settings"
            )
        from minio.error import S3Error

        from edge_engine.storage.uploader import S3Store

        client = S3Store(settings).client
        try:
            size = int(client.stat_object(bucket, source.key).size or 0)
            if offset >= size:
                return offset, size, iter(())
            response = client.get_object(bucket, source.key, offset=offset)
        except S3Error as exc:
            text = f"model {source.name!r} from {source.shown}: S3 {exc.code}"
            if exc.code in ("NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise ModelFetchError(text) from exc
            raise _Retry(text) from exc
        except Exception as exc:  # connection refused, timeouts: urllib3 errors
            raise _Retry(f"cannot reach the object storage for {source.shown}: {type(exc).__name__}") from exc
        return offset, size, _read_all(response)

    # --- progress -------------------------------------------------------------------------------------------------
    def _start(self, source: ModelSource) -> dict[str, Any]:
        entry = {
            "model": source.name,
            "source": source.shown,
            "sha256": source.sha256,
            "state": "downloading",
            "bytes": 0,
            "total": None,
            "attempts": 0,
            "error": None,
            "resumed_from": None,
            "started": time.time(),
            "finished": None,
        }
        with self._lock:
            self._progress[source.sha256] = entry
            if source.sha256 in self._order:
                self._order.remove(source.sha256)
            self._order.append(source.sha256)
            while len(self._order) > HISTORY:
                self._progress.pop(self._order.pop(0), None)
        log.info("model %r: downloading from %s", source.name, source.shown)
        return entry

    def _finish(self, entry: dict[str, Any], state: str, error: str | None) -> None:
        entry.update(state=state, error=error, finished=time.time())
        if error:
            log.error("%s", error)

    def progress_text(self, sha256: str) -> str | None:
        """One line on the download of ``sha256`` for the status page (``downloading 1.5 of 3.0 MB (50 %)``)."""
        with self._lock:
            entry = dict(self._progress.get(sha256) or {})
        if not entry:
            return None
        done, total = (entry.get("bytes") or 0) / (1 << 20), entry.get("total")
        if entry["state"] == "downloading":
            size = (
                f"{done:.1f} of {total / (1 << 20):.1f} MB ({100 * done * (1 << 20) / total:.0f} %)"
                if total
                else f"{done:.1f} MB"
            )
            return f"downloading {size}" + (f", try {entry['attempts']}" if entry.get("attempts", 0) > 1 else "")
        return str(entry["state"])

    def snapshot(self) -> list[dict[str, Any]]:
        """Downloads in progress and the last ones finished, oldest first (for ``local_info.json``)."""
        with self._lock:
            entries = [dict(self._progress[sha]) for sha in self._order]
        for entry in entries:
            total, done = entry.get("total"), entry.get("bytes") or 0
            entry["percent"] = round(100.0 * done / total, 1) if total else None
        return entries

    # --- bounded cache ---------------------------------------------------------------------------------------------
    def _prune(self, keep: Path) -> None:
        """Delete fetched models no server uses, beyond the :data:`KEEP_UNUSED` most recently used."""
        folder = self.models_dir / FETCHED_DIR
        try:
            used = {Path(p).resolve() for p in self.in_use()} | {keep.resolve()}
            files = [p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".part")]
        except OSError:
            return
        unused = sorted((p for p in files if p.resolve() not in used), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in unused[KEEP_UNUSED:]:
            try:
                old.unlink()
                log.info("fetched model %s removed (not used; %d newer kept)", old.name, KEEP_UNUSED)
            except OSError:
                pass


def _read_all(response: Any) -> Iterator[bytes]:
    try:
        while True:
            chunk = response.read(CHUNK)
            if not chunk:
                return
            yield chunk
    finally:
        response.close()
        release = getattr(response, "release_conn", None)
        if release is not None:
            release()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
