"""What every runner of a node shares: identity names, cache paths, hooks, supervisor, and plugin creation.

Runners receive this object instead of reaching for globals; tests build one with their own hooks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_engine.local.cache import CacheLayout
from edge_engine.messages import Notification
from edge_engine.plugin.hooks import Hooks
from edge_engine.plugin.kinds import PluginBase, PluginContext
from edge_engine.plugin.registry import PluginRecord
from edge_engine.runtime.supervisor import Supervisor

PLUGIN_LOG_PREFIX = "edge.plugin"
FLAPPING_NOTIFICATION_TYPE = "ABNORMAL FUNCTIONING"  # Ratio1's type for a part that misbehaves


@dataclass
class RuntimeEnv:
    """Shared services for pipeline, capture and instance runners."""

    alias: str
    layout: CacheLayout
    hooks: Hooks
    supervisor: Supervisor
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("edge_engine.runtime"))
    serving: Any = None  # the node's ServingManager (None: inputs needing models get a ServingError)
    storage: Any = None  # the node's StorageService (None: plugin files stay local, see PluginContext.save_file)
    wake_watchdog: Callable[[], None] | None = None  # look at the runners now (a source just went away)
    # a running pipeline's persisted config (the node's): the instance stage copies its routing fields into
    # every payload's intent (empty without a node: tests, the sandbox)
    pipeline_config: Callable[[str], Mapping[str, Any]] = lambda _name: {}

    def plugin_logger(self, pipeline: str, signature: str, instance_id: str | None) -> logging.Logger:
        name = f"{PLUGIN_LOG_PREFIX}.{pipeline}.{signature}" + (f".{instance_id}" if instance_id else "")
        return logging.getLogger(name)

    def make_context(
        self,
        pipeline: str,
        record: PluginRecord,
        instance_id: str | None,
        stop_event: threading.Event,
        emit_fn: Callable[..., None] | None = None,
    ) -> PluginContext:
        """The context handed to one plugin object."""
        output_dir = self.layout.output / pipeline
        if instance_id:
            output_dir = output_dir / f"{record.signature}_{instance_id}"
        path: list[str | None] = [self.alias, pipeline, record.signature, instance_id]

        def notify(message: str, level: str, fields: dict[str, Any]) -> None:
            self.notify(level, message, path, **fields)

        return PluginContext(
            node_alias=self.alias,
            pipeline=pipeline,
            signature=record.signature,
            instance_id=instance_id,
            log=self.plugin_logger(pipeline, record.signature, instance_id),
            output_dir=output_dir,
            models_dir=self.layout.models,
            stop_event=stop_event,
            emit_fn=emit_fn or (lambda *a, **k: None),
            notify_fn=notify,
            save_file_fn=self._save_file_fn(output_dir),
        )

    def _save_file_fn(self, folder: Path) -> Callable[[str, bytes | str], str] | None:
        """``PluginContext.save_file`` through the node's storage (None: the context writes locally)."""
        storage = self.storage
        if storage is None:
            return None
        return lambda name, data: storage.save_file(folder, name, data)

    def create(self, record: PluginRecord, config: dict[str, Any], context: PluginContext) -> PluginBase:
        """Instantiate a plugin class with its effective config."""
        return record.cls(dict(config), context)

    def notify(self, level: str, message: str, path: list[str | None], **fields: Any) -> None:
        """Raise a notification through the hooks (logged by the local output writer)."""
        self.hooks.notification(Notification(level, message, list(path), fields, time.time()))

    def report_flapping(self, part: str, what: str, path: list[str | None]) -> dict[str, Any]:
        """Notify (level error) that ``part`` is flapping and stopped; returns the status fields to show."""
        info = self.supervisor.flap_fields(part)
        message = (
            f"{what} is flapping: {info['failures']} failures within {info['window_seconds']:g} s; stopped until "
            f"its config is updated or the node restarts. Last error: {info['reason']}"
        )
        self.notify(
            "error",
            message,
            path,
            NOTIFICATION_TYPE=FLAPPING_NOTIFICATION_TYPE,
            STATUS="flapping",
            REASON=info["reason"],
            FAILURES=info["failures"],
            WINDOW_SECONDS=info["window_seconds"],
            FLAPPING_SINCE=info["since"],
            PART=part,
        )
        return info


def call_safe_mode(plugin: PluginBase, reason: str | None, stats: Any, log: logging.Logger, where: str) -> None:
    """``on_safe_mode(reason)`` or, with None, ``on_resume()``; an exception is counted in ``stats`` and logged."""
    name = "on_resume" if reason is None else "on_safe_mode"
    try:
        if reason is None:
            plugin.on_resume()
        else:
            plugin.on_safe_mode(reason)
    except Exception as exc:
        stats.error(f"{name}: {type(exc).__name__}: {exc}")
        log.exception("%s: %s raised", where, name)


class ErrorLogLimiter:
    """Logs a plugin's repeated errors with a traceback the first time, then at most every ``interval`` s."""

    def __init__(self, interval: float = 30.0):
        self.interval = interval
        self._last_text: str | None = None
        self._last_time = 0.0
        self.suppressed = 0

    def should_log(self, text: str) -> bool:
        now = time.monotonic()
        if text != self._last_text or now - self._last_time >= self.interval:
            self._last_text = text
            self._last_time = now
            return True
        self.suppressed += 1
        return False
