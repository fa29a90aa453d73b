"""The local output writer: payloads as JSON lines and witness images under ``_output/``, one log line each.

It is an ordinary hook implementation (``edge_payload``, ``edge_notification``) registered by the node,
so comms and storage can sit beside it without touching the runtime. Layout:
``_output/<pipeline>/<SIGNATURE>_<INSTANCE>/payloads.jsonl`` and ``.../images/<seq>.jpg``;
notifications go to ``_output/notifications.jsonl``.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import IO, Any

from edge_engine.hookspecs import hookimpl
from edge_engine.messages import Notification, Payload, utc_iso

log = logging.getLogger("edge_engine.payloads")
SUMMARY_CHARS = 160


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


class LocalOutput:
    """Writes payloads and notifications to the cache's ``_output`` folder."""

    def __init__(self, output_dir: Path, log_payloads: bool = True):
        self.output_dir = output_dir
        self.log_payloads = log_payloads
        self._files: dict[tuple[Any, ...], IO[str]] = {}
        self._lock = threading.Lock()
        self.written = 0

    def _folder(self, payload: Payload) -> Path:
        _, pipeline, signature, instance = payload.path
        return self.output_dir / str(pipeline) / f"{signature}_{instance}"

    def _handle(self, key: tuple[Any, ...], path: Path) -> IO[str]:
        handle = self._files.get(key)
        if handle is None:
            with self._lock:
                handle = self._files.get(key)
                if handle is None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    handle = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - kept open
                    self._files[key] = handle
        return handle

    @hookimpl
    def edge_payload(self, payload: Payload) -> None:
        folder = self._folder(payload)
        image_path = None
        if payload.image_jpeg is not None:
            image_file = folder / "images" / f"{payload.seq:08d}.jpg"
            image_file.parent.mkdir(parents=True, exist_ok=True)
            image_file.write_bytes(payload.image_jpeg)
            image_path = str(image_file.relative_to(self.output_dir))
        record = {
            "time": utc_iso(payload.created),
            "path": payload.path,
            "seq": payload.seq,
            "input_seq": payload.input_seq,
            "image": image_path,
            "data": payload.data,
        }
        line = json.dumps(record, default=to_jsonable, ensure_ascii=False)
        self._handle(tuple(payload.path), folder / "payloads.jsonl").write(line + "\n")
        self.written += 1
        if self.log_payloads:
            _, pipeline, signature, instance = payload.path
            log.info(
                "payload %s › %s › %s #%d: %s%s", pipeline, signature, instance, payload.seq,
                summarize(payload.data), f" (+image {image_path})" if image_path else "",
            )  # fmt: skip

    @hookimpl
    def edge_notification(self, notification: Notification) -> None:
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(notification.level, logging.INFO)
        where = " › ".join(str(p) for p in notification.path[1:] if p)
        log.log(level, "notification [%s] %s: %s", notification.level, where or "node", notification.message)
        line = json.dumps(notification.to_dict(), default=to_jsonable, ensure_ascii=False)
        with self._lock:
            handle = self._files.get(("notifications",))
            if handle is None:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                handle = open(self.output_dir / "notifications.jsonl", "a", encoding="utf-8", buffering=1)  # noqa: SIM115
                self._files[("notifications",)] = handle
            handle.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                try:
                    handle.close()
                except OSError:
                    pass
            self._files.clear()
