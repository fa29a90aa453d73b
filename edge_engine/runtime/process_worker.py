"""The child side of a pipeline that runs in a worker process (pipeline key ``PROCESS: "worker"``).

A spawned process loads the node's plugins from the same folders, validates the pipeline's JSON again with them,
and runs the real :class:`~edge_engine.runtime.pipeline.PipelineRunner` (capture, instances, serving) in its own
interpreter, so a CPU-bound pure-Python plugin has a GIL, and a core, of its own. Frames never leave the child:
they are read and processed here. What crosses the pipe to the node is small: payloads and notifications (which
go into the node's message flow, so storage, the outbox and local output stay in the node), log records (into
the node's loggers), a snapshot of the pipeline's counters every ``SNAPSHOT_SECONDS``, answers to instance
commands, and at the end ``finished`` or ``stopped``. The node sends ``stop`` (with the seconds it allows),
``keep_alive`` and ``command``. When the node's end of the pipe closes (the node died), the child stops too: a
worker never outlives its node. A stopped worker leaves with ``os._exit`` (no interpreter teardown).

The parent side is :mod:`edge_engine.runtime.process_group`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edge_engine.messages import NO_ROUTING, Payload

SNAPSHOT_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerPlan:
    """What a worker process needs to rebuild its pipeline without the node (picklable)."""

    alias: str
    cache_root: str
    models_dir: str
    plugin_folders: tuple[str, ...]
    disabled_plugins: tuple[str, ...]
    entry_points: bool
    raw: dict[str, Any]
    restart_cap: float
    flap_max_failures: int
    flap_window: float
    log_level: int = logging.WARNING
    stop_seconds: float = 3.5  # the time a stop allows (the node's SHUTDOWN_SECONDS less its margins)


class _Channel:
    """The child's end of the pipe; sends from several threads (one per instance) are serialised."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._lock = threading.Lock()
        self.broken = False

    def send(self, message: tuple[Any, ...]) -> None:
        if self.broken:
            return
        try:
            with self._lock:
                self.conn.send(message)
        except (OSError, EOFError, BrokenPipeError):
            self.broken = True  # the node is gone: the main loop sees EOF and stops


class _LogForwarder(logging.Handler):
    """Sends the worker's log records to the node, which hands them to its own loggers (same names)."""

    def __init__(self, channel: _Channel):
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            fields = dict(record.__dict__, msg=message, args=None, exc_info=None, exc_text=None, stack_info=None)
            self.channel.send(("log", fields))
            if self.channel.broken:  # the node is gone: stderr (the container's log) is all that is left
                sys.stderr.write(f"worker[{os.getpid()}] {record.levelname} {record.name}: {message}\n")
        except Exception:  # a record the pipe cannot carry: say so on stderr, never raise into the plugin
            self.handleError(record)


def to_wire(payload: Payload) -> Payload:
    """A payload the pipe can carry: its intent's routing as a plain dict (a read-only mapping does not pickle)."""
    return replace(payload, intent=replace(payload.intent, routing=dict(payload.intent.routing)))


def from_wire(payload: Payload) -> Payload:
    """The node's side of :func:`to_wire`: the routing read-only again.

    Set in place (a fifth of the cost of two ``dataclasses.replace`` calls, once per payload from every worker): the
    payload was just unpickled, nothing else holds it yet."""
    routing = payload.intent.routing
    object.__setattr__(payload.intent, "routing", MappingProxyType(dict(routing)) if routing else NO_ROUTING)
    return payload


def worker_main(conn: Connection, plan: WorkerPlan) -> None:
    """The worker process's entry point: run one pipeline until told to stop, it finishes, or the node is gone."""
    channel = _Channel(conn)
    root = logging.getLogger()
    root.setLevel(plan.log_level)
    root.addHandler(_LogForwarder(channel))  # into the node's logging: its handlers, its _logs/ file
    code = 0
    try:
        _run(channel, plan)
    except Exception as exc:  # start failed: the node sees a failure with this reason and applies its backoff
        logging.getLogger(__name__).exception("worker for pipeline %r failed", plan.raw.get("NAME"))
        channel.send(("error", f"{type(exc).__name__}: {exc}"))
        code = 3
    conn.close()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):  # what plugins printed
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    # the pipeline is stopped and everything is sent: skip the interpreter's teardown of the plugins' imports
    # (0.7 s here under load with OpenCV and NumPy loaded), which would count against the node's stop deadline
    os._exit(code)


def _run(channel: _Channel, plan: WorkerPlan) -> None:
    # imported here: the spawned child pays for the engine's imports once, after the pipe is up
    from edge_engine.config.pipelines import validate_pipeline
    from edge_engine.errors import ConfigError
    from edge_engine.local.cache import CacheLayout
    from edge_engine.plugin.hooks import Hooks, get_plugin_manager
    from edge_engine.runtime.environment import RuntimeEnv
    from edge_engine.runtime.pipeline import PipelineRunner
    from edge_engine.runtime.sandbox import _Sink, load_catalog
    from edge_engine.runtime.status import Status
    from edge_engine.runtime.supervisor import RestartPolicy, Supervisor
    from edge_engine.runtime.watchdog import Watchdog
    from edge_engine.serving.manager import ServingManager

    pm = get_plugin_manager()
    catalog = load_catalog([Path(f) for f in plan.plugin_folders], plan.disabled_plugins, plan.entry_points, pm)
    pm.register(_Sink(lambda p: channel.send(("payload", to_wire(p))), lambda n: channel.send(("notification", n))))
    layout = CacheLayout(Path(plan.cache_root))
    spec, issues = validate_pipeline(plan.raw, catalog.registry, "worker", Path(plan.models_dir))
    if spec is None:
        raise ConfigError(issues)
    policy = RestartPolicy(cap=plan.restart_cap, flap_max_failures=plan.flap_max_failures, flap_window=plan.flap_window)
    supervisor = Supervisor(policy)
    env = RuntimeEnv(plan.alias, layout, Hooks(pm), supervisor, pipeline_config=lambda _name: spec.raw)

    def model_notification(level: str, message: str, fields: dict[str, Any]) -> None:
        env.notify(level, message, [plan.alias, None, None, None], **fields)

    env.serving = ServingManager(catalog.registry, supervisor, Path(plan.models_dir), model_notification)
    runner = PipelineRunner(env, spec)
    watchdog = Watchdog(lambda: [runner])  # keep-alive deadlines and blocked reads, as the node's watchdog does
    env.wake_watchdog = watchdog.poke
    runner.start()
    watchdog.start()
    channel.send(("ready", os.getpid()))
    stop_seconds = _serve(channel, runner, Status)
    asked = time.monotonic()
    deadline = asked + max(0.2, stop_seconds)
    runner.stop()
    left = runner.join(deadline)
    watchdog.stop()
    env.serving.stop(max(deadline, time.monotonic() + 0.2))
    channel.send(("snapshot", runner.snapshot()))
    channel.send(("stopped", left))
    log = logging.getLogger(__name__)
    log.info("pipeline %r stopped in %.2f s%s", spec.name, time.monotonic() - asked, f"; left {left}" if left else "")


def _serve(channel: _Channel, runner: Any, status: Any) -> float:
    """Answer the node's messages and send snapshots until a stop (the seconds it allows), the end of the source,
    or the node's end of the pipe closing."""
    next_snapshot = 0.0
    while True:
        now = time.monotonic()
        if now >= next_snapshot:
            snapshot = runner.snapshot()
            channel.send(("snapshot", snapshot))
            if snapshot["status"] == status.FINISHED:
                channel.send(("finished",))
                return 1.0
            next_snapshot = now + SNAPSHOT_SECONDS
        if channel.broken:
            return 1.0
        try:
            if not channel.conn.poll(max(0.0, next_snapshot - time.monotonic())):
                continue
            message = channel.conn.recv()
        except (EOFError, OSError):
            return 1.0  # the node is gone
        if message[0] == "stop":
            return float(message[1])
        if message[0] == "keep_alive":
            runner.keep_alive()
        elif message[0] == "command":
            _command(channel, runner, *message[1:])


def _command(
    channel: _Channel, runner: Any, ident: int, signature: str, instance_id: str, command: Any, params: dict[str, Any]
) -> None:
    """Deliver an instance command; its result (or the error's text) goes back when the instance has run it."""
    instance = runner.instance(signature, instance_id)
    if instance is None:
        channel.send(("command_result", ident, f"no instance {signature}/{instance_id}", None))
        return

    def done(future: Any) -> None:
        error = future.exception()
        if error is not None:
            channel.send(("command_result", ident, f"{type(error).__name__}: {error}", None))
            return
        try:
            channel.send(("command_result", ident, None, future.result()))
        except Exception as exc:  # a result the pipe cannot carry (pickle)
            channel.send(("command_result", ident, f"the result cannot be sent from the worker: {exc}", None))

    instance.command(command, params).add_done_callback(done)
