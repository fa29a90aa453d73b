"""A pipeline runtime without a node, for ``edge-node dry-run`` and the plugin authors' test harness.

It runs the real :class:`~edge_engine.runtime.pipeline.PipelineRunner` in a :class:`RuntimeEnv` whose hooks
hand payloads and notifications to callbacks, with a cache layout in a folder the caller chooses (a
temporary one), and no identity, no broker, no local output writer and no node loop. Model servers are
the node's own (:class:`~edge_engine.serving.manager.ServingManager`), started only for instances that name
an ``AI_ENGINE``, with models read from ``models_dir``.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from edge_engine.config.pipelines import PipelineSpec, validate_pipeline
from edge_engine.errors import ConfigError
from edge_engine.local.cache import CacheLayout
from edge_engine.messages import Notification, Payload
from edge_engine.plugin.discovery import PluginLoader
from edge_engine.plugin.hooks import Hooks, get_plugin_manager
from edge_engine.plugin.hookspecs import hookimpl
from edge_engine.plugin.registry import LoadFailure, PluginRegistry
from edge_engine.runtime.environment import RuntimeEnv
from edge_engine.runtime.pipeline import PipelineRunner
from edge_engine.runtime.supervisor import RestartPolicy, Supervisor
from edge_engine.serving.manager import ServingManager

_ids = itertools.count(1)


@dataclass
class Catalog:
    """Plugins loaded from folders (and entry points) without a node."""

    registry: PluginRegistry
    pm: pluggy.PluginManager
    loader: PluginLoader
    seconds: float


def load_catalog(
    folders: Iterable[Path],
    disabled: Iterable[str] = (),
    entry_points: bool = False,
    pm: pluggy.PluginManager | None = None,
) -> Catalog:
    """Load every plugin of ``folders`` (then installed entry points) as the node does; failures are recorded."""
    started = time.perf_counter()
    pm = pm or get_plugin_manager()
    registry = PluginRegistry()
    loader = PluginLoader(registry, pm, disabled)
    for folder in folders:
        if folder.is_dir():
            loader.load_folder(folder)
    if entry_points:
        loader.load_entry_points()
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        registry.failures.append(LoadFailure(str(getattr(exc, "plugin", "hooks")), "hooks", str(exc)))
    return Catalog(registry, pm, loader, time.perf_counter() - started)


class _Sink:
    """Hook implementations that forward payloads and notifications to callbacks."""

    def __init__(self, on_payload: Callable[[Payload], None], on_notification: Callable[[Notification], None]):
        self.on_payload = on_payload
        self.on_notification = on_notification

    @hookimpl
    def edge_payload(self, payload: Payload) -> None:
        self.on_payload(payload)

    @hookimpl
    def edge_notification(self, notification: Notification) -> None:
        self.on_notification(notification)


class Sandbox:
    """Validates pipelines against a registry and runs them with the real runtime, reporting to callbacks."""

    def __init__(
        self,
        registry: PluginRegistry,
        root: Path,
        *,
        on_payload: Callable[[Payload], None] = lambda p: None,
        on_notification: Callable[[Notification], None] = lambda n: None,
        pm: pluggy.PluginManager | None = None,
        alias: str = "sandbox",
        restart_cap: float = 2.0,
        models_dir: Path | None = None,
    ):
        self.registry = registry
        self.pm = pm or get_plugin_manager()
        self._sink_name = f"edge_engine.runtime.sandbox.sink.{next(_ids)}"
        self.pm.register(_Sink(on_payload, on_notification), name=self._sink_name)
        self.layout = CacheLayout(root)
        supervisor = Supervisor(RestartPolicy(initial=0.1, cap=restart_cap))
        # model servers start only when an instance names an AI_ENGINE (see edge_engine.serving)
        self.serving = ServingManager(registry, supervisor, models_dir or self.layout.models, self._model_notification)
        self.env = RuntimeEnv(alias, self.layout, Hooks(self.pm), supervisor, serving=self.serving)
        self.runners: list[PipelineRunner] = []

    def _model_notification(self, level: str, message: str, fields: dict[str, Any]) -> None:
        self.env.notify(level, message, [self.env.alias, None, None, None], **fields)

    def build(self, raw: dict[str, Any], file: str | None = None) -> PipelineSpec:
        """Validate a pipeline dict; raises :class:`ConfigError` with every issue."""
        spec, issues = validate_pipeline(raw, self.registry, file)
        if spec is None:
            raise ConfigError(issues)
        return spec

    def start(self, spec: PipelineSpec) -> PipelineRunner:
        """Start a pipeline's threads (capture, dispatcher, instances)."""
        runner = PipelineRunner(self.env, spec)
        self.runners.append(runner)
        runner.start()
        return runner

    def stop(self, timeout: float = 3.0) -> list[str]:
        """Stop every pipeline started here; returns the threads still running after ``timeout``."""
        deadline = time.monotonic() + timeout
        left: list[str] = []
        for runner in self.runners:
            runner.stop()
        for runner in self.runners:
            left.extend(runner.join(deadline))
        self.runners.clear()
        return left

    def close(self) -> None:
        self.stop()
        self.serving.stop(time.monotonic() + 2.0)
        if self.pm.get_plugin(self._sink_name) is not None:
            self.pm.unregister(name=self._sink_name)


def with_classes(
    spec: PipelineSpec,
    capture: type | None = None,
    business: dict[str, type] | None = None,
    capture_config: dict[str, Any] | None = None,
) -> PipelineSpec:
    """A copy of ``spec`` whose capture and/or business classes (by upper-case signature) are replaced.

    The replacements are subclasses that instrument the originals (a limit on inputs, counters); the
    config was validated against the originals.
    """
    changes: dict[str, Any] = {}
    if capture is not None:
        changes["capture"] = dataclasses.replace(spec.capture, cls=capture)
    if capture_config is not None:
        changes["capture_config"] = capture_config
    if business:
        changes["instances"] = tuple(
            dataclasses.replace(i, record=dataclasses.replace(i.record, cls=business[i.signature.upper()]))
            if i.signature.upper() in business
            else i
            for i in spec.instances
        )
    return dataclasses.replace(spec, **changes)


def same_name(new: type, original: type) -> type:
    """Give an instrumenting subclass the original's name, so logs and listings read the same."""
    new.__name__ = original.__name__
    new.__qualname__ = original.__qualname__
    new.__module__ = original.__module__
    return new
