"""Shared fixtures and builders: a node built in a temporary folder, with the repository's built-in plugins.

``node_factory(plugins={"business/x.py": source}, pipelines=[...], startup={...})`` writes the files,
starts a :class:`~edge_engine.node.core.Node` in-process with its cache under ``tmp_path`` and returns it;
every node made is stopped at teardown. ``comms_node(node_factory, broker, ...)`` is the same node talking to a
broker, returned once connected. ``start_snapshot(base, cache)`` is what a node start made of a project folder
and a cache. ``wait_for(predicate)`` waits on a condition (tests never sleep for a fixed time to let something
happen). ``load_module(path)`` imports a plugin module (or a script) from its file as the engine does;
``plugin_class(node, kind, signature)`` is the class a node loaded. The small test plugins and SYNTHETIC
pipelines are built by :mod:`plugins_src`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mqtt_broker import clients, mosquitto, mosquitto_factory  # noqa: F401  (fixtures: a real broker on a free port)
from s3_server import s3_factory, s3_server  # noqa: F401  (fixtures: a real S3 server, SeaweedFS, on free ports)

from edge_engine.config.node_settings import load_settings
from edge_engine.local.identity import Identity
from edge_engine.node.core import Node
from edge_engine.plugin.hookspecs import hookimpl
from edge_engine.remote.node_client import load_client_identity

REPO = Path(__file__).resolve().parent.parent
# what an in-process test node runs without: comms, the status page, installed packages' plugins
QUIET_ENV = {"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0", "EE_STATUS_PORT": "0"}
# Nodes started by tests (in-process or as subprocesses) keep the status page off unless a test picks a port.
os.environ.setdefault("EE_STATUS_PORT", "0")


# Tests whose wall-clock budget or rate another test file running beside them (pytest-xdist, scripts/run-tests.sh)
# could break, with why: marked serial, they run after the parallel run, alone. "file.py::test" (any parameters).
SERIAL = {
    # compares a pipeline's input rate in two 1 s windows
    "test_supervision.py::test_instance_raising_on_every_frame_flaps_while_other_pipelines_keep_their_rate",
    # a keep-alive every 0.15 s must hold off a 0.6 s deadline 12 times in a row
    "test_supervision.py::test_keep_alive_lapse_enters_safe_mode_and_resume_leaves_it",
    "test_capture_plugins.py::test_video_file_realtime_pacing",  # 5 frames at 12 fps within 1.5 s
    "test_capture_plugins.py::test_void_returns_none_promptly_on_stop",  # wakes within 0.6 s, returns within 50 ms
    "test_capture_plugins.py::test_tutorial_counter",  # 5 messages at 50/s within 1 s
    "test_runtime.py::test_stop_meets_the_deadline_with_a_blocked_plugin",  # within 1 s, 0.5 s to spare
    # two worker processes stopped within 4 s, 0.5 s to spare
    "test_process_pipelines.py::test_node_stop_ends_stuck_workers_within_the_stop_deadline",
    # a node and its worker process end within 5 s of SIGTERM
    "test_process_pipelines.py::test_a_real_node_process_runs_a_worker_pipeline_and_sigterm_ends_both",
}


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.rsplit("/", 1)[-1].split("[", 1)[0] in SERIAL:
            item.add_marker(pytest.mark.serial)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def load_module(path: Path | str, name: str | None = None) -> ModuleType:
    """Import a module from its file, as the engine imports a plugin (plugin folders and scripts are not packages).

    ``path`` is absolute or relative to the repository; the module is loaded once a test session, under ``name``
    (default ``_test_<stem>``) in ``sys.modules``.
    """
    path = Path(path) if Path(path).is_absolute() else REPO / path
    name = name or f"_test_{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def plugin_class(node: Any, kind: str, signature: str) -> Any:
    """The class of plugin ``signature`` (of ``kind``) that ``node`` loaded; its class attributes are how test
    plugins report what they saw."""
    record = node.registry.get(kind, signature)
    assert record is not None, f"{node} has no {kind} plugin {signature}"
    return record.cls


def instance_state(node: Any, pipeline: str) -> Any:
    """What the single instance of ``pipeline`` recorded in its plugin class's ``BY_PIPELINE`` (test plugins)."""
    (runner,) = node.pipelines[pipeline].instances.values()
    return runner.spec.record.cls.BY_PIPELINE.get(pipeline)


def pipeline_finished(node: Any, pipeline: str) -> bool:
    """The pipeline's capture reached its end and every instance thread has ended."""
    runner = node.pipelines[pipeline]
    return runner.capture.status == "finished" and not any(r.thread.is_alive() for r in runner.instances.values())


def write_plugin(folder: Path, relative: str, source: str) -> Path:
    """Write a plugin module (dedented) at ``folder/relative``."""
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


@pytest.fixture
def me(tmp_path: Path) -> Identity:
    """The client's identity (its key created in tmp_path, as ``edge-client`` does in ~/.edge_client)."""
    return load_client_identity(tmp_path / "client" / "client.pem")


@pytest.fixture
def stranger(tmp_path: Path) -> Identity:
    """A second client identity, not allowed on any node unless a test allows it."""
    return load_client_identity(tmp_path / "stranger" / "client.pem")


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def make(
        plugins: dict[str, str] | None = None,
        pipelines: list[dict[str, Any]] | None = None,
        startup: dict[str, Any] | None = None,
        environ: dict[str, str] | None = None,
        start: bool = True,
    ) -> Node:
        base = tmp_path / "node"
        user_plugins = base / "plugins"
        user_plugins.mkdir(parents=True, exist_ok=True)
        for relative, source in (plugins or {}).items():
            write_plugin(user_plugins, relative, source)
        config = {
            "PLUGIN_FOLDERS": [str(REPO / "extensions"), str(user_plugins)],
            "DEMO_PIPELINE": False,
            "SECONDS_LOCAL_INFO": 0.5,
            "PIPELINES": pipelines or [],
            **(startup or {}),
        }
        (base / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
        env = {**QUIET_ENV, **(environ or {})}
        settings = load_settings(base, base / "_local_cache", env)
        node = Node(settings)
        if start:
            node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        if node.status == "running":
            node.stop("test teardown")


def start_snapshot(base: Path, cache: Path, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """What a node start makes of the project folder ``base`` and the cache ``cache``: a node is started there
    (``QUIET_ENV`` and ``environ``), its snapshot taken, and the node stopped."""
    node = Node(load_settings(base, cache, {**QUIET_ENV, **(environ or {})}))
    node.start()
    try:
        return node.snapshot()
    finally:
        node.stop("test")


def comms_node(
    node_factory: Callable[..., Node],
    broker: Any,
    environ: dict[str, str] | None = None,
    **kw: Any,
) -> Node:
    """A node from ``node_factory`` (``kw``: plugins, pipelines, startup, ...) with comms on ``broker`` (a
    :class:`~mqtt_broker.Mosquitto`), returned once connected."""
    node = node_factory(environ={**broker.env, **(environ or {})}, **kw)
    assert node.comms is not None and node.comms.transport is not None
    wait_for(node.comms.transport.connected.is_set, timeout=10)
    return node


class EmitTap:
    """A hook implementation that keeps every payload and notification a node emits (register it on ``node.pm``)."""

    def __init__(self) -> None:
        self.payloads: list[Any] = []
        self.notifications: list[Any] = []

    @hookimpl
    def edge_payload(self, payload: Any) -> None:
        self.payloads.append(payload)

    @hookimpl
    def edge_notification(self, notification: Any) -> None:
        self.notifications.append(notification)
