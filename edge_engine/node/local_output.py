"""The local output writer: payloads as JSON lines and witness images under ``_output/``, one log line each.

The node's message flow (:mod:`edge_engine.node.message_flow`) calls :meth:`LocalOutput.write_payload` and
:meth:`LocalOutput.write_notification` after the outbox has stored the message, so what ``_output/`` holds was
also queued for the broker (decision 38); it is not a hook implementation for them, so no hook order decides
that. Layout:
``_output/<pipeline>/<SIGNATURE>_<INSTANCE>/payloads.jsonl`` and ``.../images/<seq>.jpg``;
notifications go to ``_output/notifications.jsonl``. A pipeline's files are closed when it stops, and at most
``MAX_OPEN_FILES`` stay open at once, so generated pipeline names cannot exhaust the node's descriptors.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from edge_engine.messages import Notification, Payload, image_file_name, utc_iso
from edge_engine.plugin.hookspecs import hookimpl

log = logging.getLogger("edge_engine.payloads")
SUMMARY_CHARS = 160
ROTATE_BYTES = 16 * 1024 * 1024
MAX_OPEN_FILES = 256  # JSON-lines files kept open at once; the least recently written is closed past it


def to_jsonable(value: Any) -> Any:
    """``json.dumps`` default: numpy arrays and scalars become lists and numbers, the rest text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def summarize(data: dict[str, Any]) -> str:
    """A short ``KEY=value`` summary of a payload for the log."""
    parts = []
    for key, value in data.items():
        text = json.dumps(value, default=to_jsonable, ensure_ascii=False)
        parts.append(f"{key}={text if len(text) <= 40 else text[:37] + '...'}")
    summary = " ".join(parts)
    return summary if len(summary) <= SUMMARY_CHARS else summary[: SUMMARY_CHARS - 3] + "..."


def image_relpath(payload: Payload) -> str:
    """A witness image's file relative to ``_output/`` (see :func:`edge_engine.messages.image_file_name`): the name
    the instance stage decided (its intent), else the one its path, time and number give."""
    return payload.intent.image_name or image_file_name(payload.path, payload.created, payload.seq)


class LocalOutput:
    """Writes payloads and notifications to the cache's ``_output`` folder."""

    def __init__(self, output_dir: Path, log_payloads: bool = True):
        self.output_dir = output_dir
        self.log_payloads = log_payloads
        self._files: dict[tuple[Any, ...], IO[str]] = {}
        self._lock = threading.Lock()
        self.written = 0
        self.write_errors = 0
        self.rotate_bytes = ROTATE_BYTES  # a JSON-lines file this big is closed and renamed (oldest first out)
        # edge_engine.node.disk_bounds.DiskManager: bounds _output, pauses writes while the disk is full
        self.disk: Any = None

    def _folder(self, payload: Payload) -> Path:
        _, pipeline, signature, instance = payload.path
        return self.output_dir / str(pipeline) / f"{signature}_{instance}"

    def _handle_locked(self, key: tuple[Any, ...], path: Path) -> IO[str]:
        """The open handle of ``key`` (opened on first use); call with ``_lock`` held."""
        handle = self._files.pop(key, None)  # taken out and put back: the dict's order is least recently used first
        if handle is None or handle.closed:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - kept open
        self._files[key] = handle
        while len(self._files) > MAX_OPEN_FILES:
            _close_quietly(self._files.pop(next(iter(self._files))))
        return handle

    def write_payload(self, payload: Payload) -> None:
        """Write the payload's JSON line and witness image (skipped, counted, while the disk is full); log it."""
        image_path = None
        if self.disk is not None and self.disk.paused:
            self.disk.skipped()
        else:
            try:
                image_path = self._write_payload(payload)
            except OSError as exc:
                self._write_failed(exc, "payload")
        if self.log_payloads:
            _, pipeline, signature, instance = payload.path
            log.info(
                "payload %s › %s › %s #%d: %s%s",
                pipeline,
                signature,
                instance,
                payload.seq,
                summarize(payload.data),
                f" (+image {image_path})" if image_path else "",
            )

    def _write_payload(self, payload: Payload) -> str | None:
        """Write the payload's image and its JSON line; returns the image's path under ``_output``."""
        folder = self._folder(payload)
        image_path = None
        if payload.image_jpeg is not None:
            image_file = self.output_dir / image_relpath(payload)
            image_file.parent.mkdir(parents=True, exist_ok=True)
            with self._bounded(image_file, len(payload.image_jpeg), "witness image") as fits:
                if fits:
                    try:
                        image_file.write_bytes(payload.image_jpeg)
                    except OSError:
                        image_file.unlink(missing_ok=True)  # no torn image left behind
                        raise
                    image_path = str(image_file.relative_to(self.output_dir))
        record = {
            "time": utc_iso(payload.created),
            "path": payload.path,
            "seq": payload.seq,
            "input_seq": payload.input_seq,
            "image": image_path,
            "image_url": payload.image_url,
            "data": payload.data,
        }
        line = json.dumps(record, default=to_jsonable, ensure_ascii=False)
        if self._append(tuple(payload.path), folder / "payloads.jsonl", line + "\n"):
            self.written += 1
        return image_path

    @contextmanager
    def _bounded(self, path: Path, nbytes: int, what: str) -> Iterator[bool]:
        """Write ``nbytes`` to ``path`` within the bound of ``_output`` (room made first, see
        :meth:`edge_engine.node.disk_bounds.DiskManager.writing`); False (logged, counted as skipped): larger than the
        bound."""
        if self.disk is None:
            yield True
            return
        with self.disk.writing(path, nbytes) as fits:
            if not fits:
                self.disk.skipped()
                log.error(
                    "a %s of %d bytes is larger than the bound of _output (EE_OUTPUT_MAX_MB): not written", what, nbytes
                )
            yield fits

    def _append(self, key: tuple[Any, ...], path: Path, text: str) -> bool:
        """Append ``text`` to the JSON-lines file of ``key``; a failed write leaves no torn line; big files rotate.
        False when the line alone is larger than the bound of ``_output`` (not written)."""
        with self._bounded(path, len(text.encode("utf-8")), "JSON line") as fits:
            if fits:
                self._append_locked(key, path, text)
            return fits

    def _append_locked(self, key: tuple[Any, ...], path: Path, text: str) -> None:
        with self._lock:
            handle = self._handle_locked(key, path)
            start = handle.tell()
            try:
                handle.write(text)
            except OSError:
                self._files.pop(key, None)
                _close_quietly(handle)
                try:
                    os.truncate(path, start)
                except OSError:
                    pass
                raise
            if handle.tell() >= self.rotate_bytes:
                self._files.pop(key, None)
                _close_quietly(handle)
                stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
                rotated = path.with_name(f"{path.stem}.{stamp}.{time.time_ns() % 10**9:09d}{path.suffix}")
                os.replace(path, rotated)
                if self.disk is not None:
                    self.disk.renamed(path, rotated)

    def _write_failed(self, exc: OSError, what: str) -> None:
        if self.disk is not None and self.disk.write_failed(exc, f"writing a {what} to {self.output_dir}"):
            self.disk.skipped()
            return
        self.write_errors += 1
        log.error("%s not written to %s: %s", what, self.output_dir, exc)

    def release(self, path: Path) -> None:
        """Close the handle open on ``path`` (before the pruner deletes it); the next write opens a new file."""
        with self._lock:
            for key, handle in list(self._files.items()):
                if handle.name == str(path):
                    self._files.pop(key)
                    _close_quietly(handle)

    @hookimpl
    def edge_pipeline_stopped(self, name: str) -> None:
        """Close the pipeline's JSON-lines files: a deleted pipeline keeps no descriptor (a restarted one reopens)."""
        with self._lock:
            for key in [k for k in self._files if len(k) == 4 and k[1] == name]:
                _close_quietly(self._files.pop(key))

    def write_notification(self, notification: Notification) -> None:
        """Log the notification and append it to ``_output/notifications.jsonl``."""
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(notification.level, logging.INFO)
        where = " › ".join(str(p) for p in notification.path[1:] if p)
        log.log(level, "notification [%s] %s: %s", notification.level, where or "node", notification.message)
        if self.disk is not None and self.disk.paused:
            self.disk.skipped()
            return
        line = json.dumps(notification.to_dict(), default=to_jsonable, ensure_ascii=False)
        try:
            self._append(("notifications",), self.output_dir / "notifications.jsonl", line + "\n")
        except OSError as exc:
            self._write_failed(exc, "notification")

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                _close_quietly(handle)
            self._files.clear()


def _close_quietly(handle: IO[str]) -> None:
    """Close a file; data that cannot be flushed (disk full) is dropped."""
    try:
        handle.close()
    except (OSError, ValueError):
        pass
