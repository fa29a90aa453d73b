"""Finding plugins: folder modules, installed packages' entry points, in a fixed order.

1. Folders, in the order configured (``extensions/`` first, then ``plugins/``): every ``*.py`` under
   their ``data/``, ``serving/`` and ``business/`` subfolders, at any depth, is imported under a unique
   module name; the plugin classes it defines are registered. Files starting with ``_`` or ``test_``
   and ``conftest.py`` are skipped.
2. Entry points of the ``edge_engine.plugins`` group: each loaded object is registered with the plugin
   manager and its ``edge_register_plugins`` hook is called.

A module that fails to import, a class without a signature, or a duplicate signature is recorded in
``registry.failures`` with its file and name; everything else still loads. A ``*.py`` file in a plugin folder
but outside its kind subfolders (mounted one level too deep, a misspelt kind folder, a file at the top) is not
loaded: each one is logged with the reason and listed in ``registry.skipped`` by its folder-relative name.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from edge_engine.constants import ENTRY_POINT_GROUP, PLUGIN_KINDS
from edge_engine.errors import PluginLoadError
from edge_engine.plugin.kinds import PluginBase
from edge_engine.plugin.registry import LoadFailure, PluginRegistry

log = logging.getLogger(__name__)

SKIPPED_FILES = re.compile(r"^(_.*|test_.*|.*_test|conftest)\.py$")
STRAY_SCAN_DEPTH = 4  # folders below a plugin folder searched for misplaced plugin files
STRAY_SCAN_ENTRIES = 5000  # at most this many entries looked at per plugin folder (a whole project mounted by mistake)
STRAY_LOG_LINES = 20  # misplaced files logged one by one per folder; the rest are counted in one line
NOT_SCANNED_DIRS = frozenset({"__pycache__", "site-packages", "node_modules", "venv"})


def plugin_files(folder: Path) -> list[Path]:
    """The plugin module files under ``folder``'s kind subfolders, sorted for a stable load order."""
    files: list[Path] = []
    for kind in PLUGIN_KINDS:
        base = folder / kind
        if base.is_dir():
            files.extend(
                p
                for p in sorted(base.rglob("*.py"))
                if not SKIPPED_FILES.match(p.name) and "__pycache__" not in p.parts
            )
    return files


def display_name(path: Path, root: Path) -> str:
    """A plugin file's name for logs, listings and the wire: relative to its plugin folder's parent
    (``plugins/business/x.py``), never the node's absolute path."""
    try:
        return f"{root.name}/{path.relative_to(root).as_posix()}"
    except ValueError:
        return path.name


def stray_files(folder: Path) -> list[tuple[str, str, bool]]:
    """Python files under ``folder`` that are not loaded because they sit outside its kind subfolders:
    ``(folder-relative name, why, looks like a mistake)``, in a stable order."""
    found: list[tuple[str, str, bool]] = []
    budget = STRAY_SCAN_ENTRIES
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        depth = len(here.relative_to(folder).parts)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in NOT_SCANNED_DIRS
            and not (depth == 0 and d in PLUGIN_KINDS)
            and depth < STRAY_SCAN_DEPTH
        )
        budget -= len(dirs) + len(files)
        for name in sorted(files):
            if name.endswith(".py") and not SKIPPED_FILES.match(name):
                path = here / name
                reason, mistake = _stray_reason(path.relative_to(folder), folder)
                found.append((display_name(path, folder), reason, mistake))
        if budget <= 0:
            break
    return found


def _stray_reason(relative: Path, folder: Path) -> tuple[str, bool]:
    """Why a file at ``relative`` (under plugin folder ``folder``) is not loaded and where it belongs; and whether
    it looks like a mistake (a plugin meant to load) rather than a helper kept beside the plugins."""
    kinds = ", ".join(f"{k}/" for k in PLUGIN_KINDS)
    if folder.name in PLUGIN_KINDS:
        return f"{folder.name}/ is itself a kind folder: list its parent folder as the plugin folder", True
    inner = next((i for i, part in enumerate(relative.parts[:-1]) if part in PLUGIN_KINDS), None)
    if inner is not None:
        should = "/".join((folder.name, *relative.parts[inner:]))
        return f"mounted too deep: expected at {should} (plugin files go in {kinds} of the plugin folder)", True
    if len(relative.parts) == 1:
        return f"not inside a kind folder: move it to {folder.name}/business/ (or data/, serving/)", True
    top = relative.parts[0]
    near = difflib.get_close_matches(top.lower(), PLUGIN_KINDS, n=1, cutoff=0.6)
    if near:
        return f"{top}/ is not a kind folder ({kinds}); did you mean {near[0]}/?", True
    return f"{top}/ is not a kind folder ({kinds})", False


def module_name_for(path: Path, root: Path) -> str:
    """A unique, importable module name for a plugin file (``edge_plugins.plugins.business.x``)."""
    rel = path.relative_to(root.parent).with_suffix("")
    parts = [re.sub(r"\W", "_", p) for p in rel.parts]
    return "edge_plugins." + ".".join(parts)


def import_file(path: Path, module_name: str) -> ModuleType:
    """Import one file as ``module_name`` (replacing an earlier import of it)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is not None:
            sys.modules[module_name] = previous
        else:
            sys.modules.pop(module_name, None)
        raise
    return module


def plugin_classes(module: ModuleType) -> list[type[PluginBase]]:
    """Concrete plugin classes defined in ``module`` itself (not imported into it)."""
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, PluginBase)
        and obj.__module__ == module.__name__
        and not vars(obj).get("ABSTRACT", False)
    ]


class PluginLoader:
    """Loads plugins into a registry and a plugin manager, recording every failure."""

    def __init__(self, registry: PluginRegistry, pm: pluggy.PluginManager, disabled: Iterable[str] = ()):
        self.registry = registry
        self.pm = pm
        self.disabled = {d.strip().lower() for d in disabled if d.strip()}
        self.modules: dict[str, ModuleType] = {}

    def _fail(self, source: str, name: str, reason: str, signature: str = "") -> None:
        failure = LoadFailure(source, name, reason, signature)
        self.registry.failures.append(failure)
        log.error("plugin load failed: %s", failure)

    def load_folder(self, folder: Path) -> int:
        """Load every plugin module under ``folder``; returns the number of classes registered."""
        count = 0
        for path in plugin_files(folder):
            count += self.load_file(path, folder)
        self.report_strays(folder)
        return count

    def report_strays(self, folder: Path) -> None:
        """Log (and list in ``registry.skipped``) the files in ``folder`` that are not loaded, with why."""
        strays = stray_files(folder)
        for name, reason, mistake in strays[:STRAY_LOG_LINES]:
            log.log(logging.WARNING if mistake else logging.INFO, "plugin file %s skipped: %s", name, reason)
        if len(strays) > STRAY_LOG_LINES:
            log.warning(
                "%d more .py files in %s/ outside its kind folders skipped (see edge-node plugins)",
                len(strays) - STRAY_LOG_LINES,
                folder.name,
            )
        self.registry.skipped.extend((name, reason) for name, reason, _ in strays)

    def load_file(self, path: Path, root: Path) -> int:
        """Import one plugin file and register its classes; failures are recorded, not raised."""
        source = str(path)
        if path.stem.lower() in self.disabled:
            log.info("plugin module %s disabled by EE_DISABLED_PLUGINS", path)
            return 0
        module_name = module_name_for(path, root)
        try:
            module = import_file(path, module_name)
        except BaseException as exc:  # any error in user code, including SystemExit
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._fail(source, path.name, f"import failed: {_describe(exc, path)}")
            return 0
        self.modules[source] = module
        return self.register_module(module, module_name, source)

    def register_module(self, module: ModuleType, module_name: str, source: str) -> int:
        """Register an imported module's plugin classes and hook implementations; returns the classes added."""
        count = 0
        for cls in plugin_classes(module):
            count += self.register_class(cls, source)
        count += self._register_hooks(module, module_name, source)
        return count

    def register_class(self, cls: type, source: str) -> int:
        """Register one class, honouring the disabled list; returns 1 when registered."""
        try:
            signature = str(getattr(cls, "SIGNATURE", "") or "")
        except Exception:  # a class attribute that raises: registry.add reports the class
            signature = ""
        if signature.lower() in self.disabled:
            log.info("plugin %s disabled by EE_DISABLED_PLUGINS", signature)
            return 0
        try:
            self.registry.add(cls, source)
        except PluginLoadError as exc:
            self._fail(exc.source, exc.name, exc.reason, signature)
            return 0
        except Exception as exc:  # a class that breaks the checks themselves (a property that raises, ...)
            self._fail(
                source, getattr(cls, "__qualname__", repr(cls)), f"class cannot be checked: {_describe(exc)}", signature
            )
            return 0
        return 1

    def _register_hooks(self, plugin: Any, name: str, source: str) -> int:
        """Register a module or object's hook implementations and call its registration hook."""
        try:
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            self.pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            self._fail(source, name, f"invalid hook implementation: {exc}")
            return 0
        unknown = self._unknown_hooks(plugin)
        if unknown:  # pm.check_pending() would raise for the whole node: this module's hooks are refused instead
            self.pm.unregister(name=name)
            self._fail(source, name, "; ".join(unknown))
            return 0
        count = 0
        for impl in self.pm.hook.edge_register_plugins.get_hookimpls():
            if impl.plugin_name != name:
                continue
            registered: list[int] = []

            def register(cls: type, _registered: list[int] = registered) -> None:
                _registered.append(self.register_class(cls, source))

            try:
                impl.function(register=register)
            except Exception as exc:
                self._fail(source, name, f"edge_register_plugins raised: {_describe(exc)}")
            count += sum(registered)
        return count

    def _unknown_hooks(self, plugin: Any) -> list[str]:
        """Hook implementations of ``plugin`` that no hookspec declares (a misspelt name), each with a hint."""
        known = [n for n in vars(self.pm.hook) if not n.startswith("_") and getattr(self.pm.hook, n).has_spec()]
        problems = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.has_spec() or all(i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin):
                continue
            near = difflib.get_close_matches(caller.name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else " (see edge_engine.plugin.hookspecs)"
            problems.append(f"unknown hook {caller.name!r}{hint}")
        return problems

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> int:
        """Load installed packages that declare an entry point in ``group``."""
        count = 0
        for ep in entry_points(group=group):
            source = f"entry point {ep.name} ({ep.value})"
            if ep.name.lower() in self.disabled:
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                self._fail(source, ep.name, f"import failed: {_describe(exc)}")
                continue
            if inspect.isclass(obj) and issubclass(obj, PluginBase):
                count += self.register_class(obj, source)
                continue
            if inspect.ismodule(obj):
                for cls in plugin_classes(obj):
                    count += self.register_class(cls, source)
            count += self._register_hooks(obj, f"ep:{ep.name}", source)
        return count


def _describe(exc: BaseException, path: Path | None = None) -> str:
    """``Type: message`` plus the line in the plugin file where it happened, when known."""
    text = f"{type(exc).__name__}: {exc}"
    if path is not None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        if frames:
            text += f" (line {frames[-1].lineno})"
        elif isinstance(exc, SyntaxError) and exc.lineno:
            text = f"SyntaxError: {exc.msg} (line {exc.lineno})"
    return text
