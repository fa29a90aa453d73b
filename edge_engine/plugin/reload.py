"""Hot reload in development mode: a plugin file that changes is imported again and only its users restart.

With ``DEV_MODE: true`` in the startup config, ``EE_DEV=1`` or ``device.py --dev``, the node starts a
:class:`PluginReloader`. It polls the plugin folders once a second with ``os.scandir`` (one ``stat`` per
plugin file: nothing measurable when idle). When a plugin file is edited or added:

1. the file is imported again under its module name. If it no longer imports, or its classes no longer
   register (no ``SIGNATURE``, a duplicate), the previous version stays registered and running, and the
   reason is logged, raised as an error notification, and listed in ``local_info.json`` (``plugins.failed``);
2. otherwise its classes replace the old ones in the registry and only their users restart: the business
   instances that use a reloaded business plugin (the rest of their pipeline keeps running), or the whole
   pipeline whose capture plugin was reloaded. A pipeline that no longer validates against the new class
   (say a key it sets was removed) keeps running the previous version, and the reason is reported;
3. stored pipelines that were invalid, for instance because they named a plugin that did not exist yet,
   are validated again and started when they now pass.

A deleted file's classes are unregistered: new pipelines can no longer use them, running ones keep the old
code until they restart. Serving plugins are swapped in the registry; the serving stage picks them up when
it next creates them.

The reloader sees the node through :class:`edge_engine.node.seams.PipelineHost`: it holds the pipelines still
while it swaps classes (``pipelines_locked``), restarts users through ``replace_pipeline`` and the runners'
``restart_instances``, and asks ``start_now_valid`` for stored pipelines that validate now.
"""

from __future__ import annotations

import importlib.util
import linecache
import logging
import os
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_engine.config.pipelines import validate_pipeline
from edge_engine.constants import KIND_BUSINESS, KIND_CAPTURE, PLUGIN_KINDS
from edge_engine.plugin.discovery import (
    SKIPPED_FILES,
    PluginLoader,
    _describe,
    display_name,
    import_file,
    module_name_for,
)
from edge_engine.plugin.registry import LoadFailure, PluginRecord

if TYPE_CHECKING:
    from edge_engine.node.seams import PipelineHost

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
SETTLE_SECONDS = 0.05  # a file still being written is looked at again at the next poll
KEEPS_RUNNING = "the previous version keeps running"

Stamp = tuple[int, int]  # (mtime_ns, size)


@dataclass
class ReloadReport:
    """What one reload did."""

    path: str
    ok: bool
    reloaded: list[str] = field(default_factory=list)  # "kind:SIGNATURE" now registered from the file
    restarted: list[str] = field(default_factory=list)  # "pipeline/SIGNATURE/instance" or "pipeline"
    started: list[str] = field(default_factory=list)  # stored pipelines that now validate and were started
    error: str | None = None


def scan_plugin_files(folders: list[Path]) -> dict[Path, tuple[Path, Stamp]]:
    """Every plugin file under ``folders``' kind subfolders: ``{path: (root folder, (mtime_ns, size))}``."""
    found: dict[Path, tuple[Path, Stamp]] = {}
    for root in folders:
        for kind in PLUGIN_KINDS:
            _walk(root / kind, root, found)
    return found


def _walk(folder: Path, root: Path, found: dict[Path, tuple[Path, Stamp]]) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name == "__pycache__":
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                _walk(Path(entry.path), root, found)
            elif name.endswith(".py") and not SKIPPED_FILES.match(name):
                st = entry.stat()
                found[Path(entry.path)] = (root, (st.st_mtime_ns, st.st_size))
        except OSError:  # removed while we looked
            continue


def _drop_bytecode(path: Path) -> None:
    """Remove the cached bytecode: an edit within the same second and of the same size would reuse it."""
    try:
        Path(importlib.util.cache_from_source(str(path))).unlink(missing_ok=True)
    except (OSError, NotImplementedError, ValueError):
        pass
    linecache.checkcache(str(path))


class PluginReloader:
    """Watches a node's plugin folders and reloads changed files (see the module docstring); a node service
    (:class:`edge_engine.node.seams.Service`)."""

    name = "reloader"

    def __init__(self, node: PipelineHost, interval: float = POLL_SECONDS, settle: float = SETTLE_SECONDS):
        self.node = node
        self.interval = interval
        self.settle = settle
        self.folders = [f for f in node.settings.plugin_folders() if f.is_dir()]
        self.reports: deque[ReloadReport] = deque(maxlen=100)
        self._stamps = scan_plugin_files(self.folders)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- thread -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="plugin-reloader", daemon=True)
        self._thread.start()
        log.info("development mode: watching %s for plugin changes", ", ".join(str(f) for f in self.folders))

    def stop(self, deadline: float | None = None) -> list[str]:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
            if thread.is_alive():
                return [thread.name]
        return []

    def snapshot(self) -> list[dict[str, Any]]:
        """The last reloads, newest last."""
        return [vars(report) for report in self.reports]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll_once()
            except Exception:  # the watcher must outlive any surprise
                log.exception("plugin reload failed")

    # --- one poll -----------------------------------------------------------------------------------------
    def poll_once(self) -> list[ReloadReport]:
        """Look for changed, added and deleted plugin files and handle them; returns what was done."""
        with self._lock:
            current = scan_plugin_files(self.folders)
            changed = [p for p, (_, stamp) in current.items() if self._stamps.get(p, (None, None))[1] != stamp]
            deleted = [p for p in self._stamps if p not in current]
            if changed and self.settle > 0 and not self._stop.wait(self.settle):
                again = scan_plugin_files(self.folders)
                still_moving = [p for p in changed if again.get(p) != current[p]]
                for path in still_moving:  # keep the old stamp: it is looked at again at the next poll
                    changed.remove(path)
                    if path in self._stamps:
                        current[path] = self._stamps[path]
                    else:
                        current.pop(path)
            self._stamps = current
            reports = [self.reload_file(path, current[path][0]) for path in changed]
            reports.extend(self.forget_file(path) for path in deleted)
        done = [r for r in reports if r is not None]
        self.reports.extend(done)
        return done

    def reload_file(self, path: Path, root: Path) -> ReloadReport | None:
        """Import ``path`` again; swap its classes in the registry and restart their users, or keep the old."""
        node = self.node
        loader = PluginLoader(node.registry, node.pm, node.settings.disabled_plugins)
        if path.stem.lower() in loader.disabled:
            return None
        source = str(path)
        module_name = module_name_for(path, root)
        registry = node.registry
        _drop_bytecode(path)
        with node.pipelines_locked():
            old_records = [r for r in registry.records() if r.source == source]
            previous = [f for f in registry.failures if f.source == source]
            registry.failures[:] = [f for f in registry.failures if f.source != source]
            old_module = sys.modules.get(module_name)
            try:
                module = import_file(path, module_name)
            except BaseException as exc:  # user code: anything, including SystemExit
                if isinstance(exc, KeyboardInterrupt):
                    raise
                kept = [f for f in previous if not f.reason.startswith("import failed")]
                registry.failures.extend(kept)
                return self._failed(path, root, f"import failed: {_describe(exc, path)}", bool(old_records))
            registry.remove_source(source)
            mark = len(registry.failures)
            loader.register_module(module, module_name, source)
            new_failures = registry.failures[mark:]
            if new_failures:
                del registry.failures[mark:]
                registry.remove_source(source)
                self._restore(loader, old_module, module_name, source)
                reason = "; ".join(f"{f.name}: {f.reason}" for f in new_failures)
                return self._failed(path, root, reason, bool(old_records))
            new_records = [r for r in registry.records() if r.source == source]
            report = ReloadReport(source, True, reloaded=[f"{r.kind}:{r.signature}" for r in new_records])
            self._restart_users(old_records + new_records, report)
            report.started.extend(node.start_now_valid())
        started = f"; started {', '.join(report.started)}" if report.started else ""
        log.info(
            "reloaded %s: %s; restarted %s%s",
            path,
            ", ".join(report.reloaded) or "no plugin classes",
            ", ".join(report.restarted) or "nothing",
            started,
        )
        node.notify(
            "info",
            f"plugin file reloaded: {path.name}",
            [node.alias, None, None, None],
            file=display_name(path, root),
            plugins=report.reloaded,
            restarted=report.restarted,
            started=report.started,
        )
        return report

    def forget_file(self, path: Path) -> ReloadReport:
        """A plugin file was deleted: unregister its classes and hooks; running users keep the old code."""
        node = self.node
        source = str(path)
        with node.pipelines_locked():
            removed = node.registry.remove_source(source)
            node.registry.failures[:] = [f for f in node.registry.failures if f.source != source]
            for name, plugin in list(node.pm.list_name_plugin()):
                if getattr(plugin, "__file__", None) == source:
                    node.pm.unregister(name=name)
        names = [f"{r.kind}:{r.signature}" for r in removed]
        log.warning(
            "plugin file %s deleted: %s unregistered; running instances keep the old code until they restart",
            path,
            ", ".join(names) or "nothing",
        )
        return ReloadReport(source, True, reloaded=[], error=None if removed else "no plugin classes")

    # --- helpers ------------------------------------------------------------------------------------------
    def _restore(self, loader: PluginLoader, old_module: Any, module_name: str, source: str) -> None:
        """Register the previous version again (after its replacement failed to register)."""
        if old_module is not None:
            sys.modules[module_name] = old_module
            loader.register_module(old_module, module_name, source)
            return
        sys.modules.pop(module_name, None)
        if self.node.pm.get_plugin(module_name) is not None:
            self.node.pm.unregister(name=module_name)

    def _failed(self, path: Path, root: Path, reason: str, had_previous: bool) -> ReloadReport:
        node = self.node
        text = f"{reason}; {KEEPS_RUNNING}" if had_previous else reason
        node.registry.failures.append(LoadFailure(str(path), path.name, text))
        log.error("plugin reload failed: %s › %s", path, text)
        name = display_name(path, root)  # the wire names the file by its plugin folder, never the node's path
        node.notify(
            "error",
            f"plugin reload failed: {path.name}: {text}",
            [node.alias, None, None, None],
            file=name,
            reason=reason,
        )
        return ReloadReport(str(path), False, error=text)

    def _restart_users(self, records: list[PluginRecord], report: ReloadReport) -> None:
        """Restart the instances (business) or pipelines (capture) that use the reloaded signatures."""
        node = self.node
        business = {r.signature.upper() for r in records if r.kind == KIND_BUSINESS}
        capture = {r.signature.upper() for r in records if r.kind == KIND_CAPTURE}
        for runner in node.running_pipelines():
            name, spec = runner.name, runner.spec
            whole = spec.capture.signature.upper() in capture
            if not whole and not any(i.signature.upper() in business for i in spec.instances):
                continue
            new_spec, issues = validate_pipeline(spec.raw, node.registry, spec.source)
            if new_spec is None:
                text = "; ".join(str(i) for i in issues)
                log.error("pipeline %r does not validate with the reloaded plugin, %s: %s", name, KEEPS_RUNNING, text)
                node.notify(
                    "error",
                    f"pipeline does not validate with the reloaded plugin; {KEEPS_RUNNING}: {text}",
                    [node.alias, name, None, None],
                )
                continue
            if whole:
                node.replace_pipeline(runner, new_spec, "reloaded")
                report.restarted.append(name)
            else:
                report.restarted.extend(f"{name}/{key}" for key in runner.restart_instances(new_spec, business))
