"""Test tooling for plugin authors: this module is the pytest plugin (registered through the ``pytest11`` entry point
of the engine package), :mod:`edge_engine.testing.harness` the harness behind it.

Fixtures:

* ``plugin_harness`` – build a pipeline around one plugin and run it on the inputs a test gives::

      def test_hello(plugin_harness):
          result = plugin_harness.run("TUTORIAL_HELLO", config={"EVERY": 2}, inputs=[frame] * 4)
          assert len(result.payloads) == 2

  ``plugin_harness.start(...)`` returns a session for live config updates and commands;
  ``plugin_harness.run_capture(...)`` runs a capture plugin. See :mod:`edge_engine.testing.harness`.
* ``edge_plugin_registry`` – the plugins of the project's plugin folders, loaded once per test session.
* ``edge_pm`` – a fresh plugin manager with the engine's hookspecs, to test node-level hook implementations.

Settings (``pytest.ini`` / ``pyproject.toml`` ``[tool.pytest.ini_options]``): ``edge_plugin_folders``
(default ``extensions plugins``, relative to the rootdir) and ``edge_load_entry_points`` (default false).

This module is imported by every pytest run in an environment where the engine is installed, so it
imports nothing heavy: the harness and the engine are imported when a fixture is first used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import pluggy

    from edge_engine.plugin.registry import PluginRegistry
    from edge_engine.testing.harness import PluginHarness

DEFAULT_FOLDERS = ("extensions", "plugins")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "edge_plugin_folders",
        type="args",
        default=list(DEFAULT_FOLDERS),
        help="plugin folders the plugin_harness fixture loads (relative to the rootdir)",
    )
    parser.addini(
        "edge_load_entry_points",
        type="bool",
        default=False,
        help="also load plugins from installed packages' entry points in plugin_harness",
    )


@pytest.fixture(scope="session")
def edge_plugin_registry(pytestconfig: pytest.Config) -> PluginRegistry:
    """The plugins of the configured folders (and entry points), loaded once; failures in ``.failures``."""
    from edge_engine.runtime.sandbox import load_catalog

    root = Path(pytestconfig.rootpath)
    folders = [Path(f) if Path(f).is_absolute() else root / f for f in pytestconfig.getini("edge_plugin_folders")]
    entry_points = bool(pytestconfig.getini("edge_load_entry_points"))
    return load_catalog(folders, entry_points=entry_points).registry


@pytest.fixture
def plugin_harness(edge_plugin_registry: PluginRegistry, tmp_path: Path) -> Iterator[PluginHarness]:
    """Run one plugin in a real pipeline on given inputs; see :mod:`edge_engine.testing.harness`."""
    from edge_engine.testing.harness import PluginHarness

    harness = PluginHarness(edge_plugin_registry, tmp_path / "edge_harness")
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def edge_pm() -> pluggy.PluginManager:
    """A fresh plugin manager with the engine's node-level hookspecs (no module-level singleton)."""
    from edge_engine.plugin.hooks import get_plugin_manager

    return get_plugin_manager()
