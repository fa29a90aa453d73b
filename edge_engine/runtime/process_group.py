"""The node's side of a pipeline that runs in a worker process (pipeline key ``PROCESS: "worker"``; default
``"node"``: in the node's process, as before).

All business plugins of the node otherwise share one interpreter and one GIL, so a CPU-bound pure-Python plugin
on 8 pipelines gets one core. A worker pipeline runs whole (capture, serving stage, instances) in a spawned
process (:mod:`edge_engine.runtime.process_worker`): frames are read and processed there and never cross; what
comes back through a pipe are payloads and notifications, handed to the node's hooks (its message flow: storage,
then the outbox, which numbers them, then local output), and the pipeline's snapshot.

:class:`ProcessPipelineRunner` offers the surface the node uses of a
:class:`~edge_engine.runtime.pipeline.PipelineRunner` (start, stop, join, snapshot, status, keep_alive, watch).
A monitor thread owns the process: a worker that dies (a crash, SIGKILL, the OOM killer) is a failure of the part
``<pipeline>/process`` reported to the node's :class:`~edge_engine.runtime.supervisor.Supervisor`, restarted after
its backoff, and stopped as flapping (with the usual notification) when it fails too often. Stopping sends
``stop`` at once with the node's stop budget (every worker stops in parallel); a worker still alive half a second
before the node's deadline is killed. Any config change restarts the worker with the new config (no live update
across the pipe); instance commands cross the pipe and their futures are answered by the worker (a result must
pickle); a plugin reload restarts the workers running a reloaded signature. Only the monitor thread reaps the
process (two threads waiting for one child race).
"""

from __future__ import annotations

import copy
import itertools
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import SimpleNamespace
from typing import Any, cast

from edge_engine.config.pipelines import InstanceSpec, PipelineSpec
from edge_engine.errors import PipelineError
from edge_engine.messages import Notification, Payload, utc_iso
from edge_engine.runtime.environment import RuntimeEnv
from edge_engine.runtime.pipeline import PipelineRunner
from edge_engine.runtime.process_worker import WorkerPlan, from_wire, worker_main
from edge_engine.runtime.status import Status

log = logging.getLogger(__name__)

PROCESS_KEY = "PROCESS"
IN_NODE = "node"
WORKER = "worker"
PROCESS_MODES = (IN_NODE, WORKER)
KILL_MARGIN = 0.5  # seconds before the node's stop deadline at which a worker still running is killed


def runs_in_worker(spec: PipelineSpec) -> bool:
    """Whether the pipeline's config asks for a worker process."""
    return spec.capture_config.get(PROCESS_KEY, IN_NODE) == WORKER


def make_runner(env: RuntimeEnv, spec: PipelineSpec, plan: WorkerPlan) -> PipelineRunner:
    """A worker pipeline's runner where the config asks for one, else the in-process runner.

    Typed as :class:`PipelineRunner` for the node's maps: :class:`ProcessPipelineRunner` answers every method the
    node calls on a runner (checked by tests/test_process_pipelines.py)."""
    if runs_in_worker(spec):
        return cast(PipelineRunner, ProcessPipelineRunner(env, spec, plan))
    return PipelineRunner(env, spec)


class ProcessPipelineRunner:
    """One pipeline in a worker process, watched, restarted and stopped by a monitor thread of the node."""

    def __init__(self, env: RuntimeEnv, spec: PipelineSpec, plan: WorkerPlan):
        self.env = env
        self.spec = spec
        self.plan = plan
        self.started_at = time.time()
        self.part = f"{spec.name}/process"
        env.supervisor.forget_prefix(f"{spec.name}/")  # started afresh: a flapping worker may run again
        self.stopping = False
        self.finished = False
        self.flapping: dict[str, Any] | None = None
        self.instances: dict[tuple[str, str], Any] = {}  # none in this process (see instance())
        self.capture = RemoteCapture(self)  # what the node's history samples (the capture's rate)
        self._stop = threading.Event()
        self._respawn = threading.Event()  # the worker is stopping to be started again at once
        self._running = threading.Event()  # a worker process is started and not yet reaped (by the monitor thread)
        self._send_lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._snapshot: dict[str, Any] | None = None
        self._commands: dict[int, Future[Any]] = {}  # instance commands sent, waiting for the worker's answer
        self._command_ids = itertools.count(1)
        self.pid: int | None = None
        self.starts = 0
        self.payloads = 0
        self.refused = 0
        self.last_exit: int | None = None
        self.last_error: str | None = None
        self.thread = threading.Thread(target=self._monitor, name=f"process:{spec.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.spec.name

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the worker to stop within the node's stop budget (returns at once, so that every worker of the node
        stops at the same time; :meth:`join` waits and kills a worker still there at the deadline)."""
        self.stopping = True
        self._stop.set()
        self._send(("stop", self.plan.stop_seconds))

    def join(self, deadline: float) -> list[str]:
        """Wait for the worker until shortly before ``deadline``, kill it if it is still there; names still running.

        Only the monitor thread waits for (reaps) the process: two threads waiting for one child race, and the
        loser sees a live process that is gone."""
        self._send(("stop", max(0.1, deadline - time.monotonic() - 2 * KILL_MARGIN)))  # sooner, if this is sooner
        self.thread.join(max(0.0, deadline - time.monotonic() - KILL_MARGIN))
        process = self._process
        if self._running.is_set() and process is not None:
            log.warning("pipeline %r: worker process %s did not stop in time; killed", self.name, process.pid)
            process.kill()
            self.thread.join(max(0.05, deadline - time.monotonic()))
        left = [self.thread.name] if self.thread.is_alive() else []
        if self._running.is_set() and process is not None:
            left.append(f"worker process {process.pid}")
        return left

    def _send(self, message: tuple[Any, ...]) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            with self._send_lock:
                conn.send(message)
            return True
        except (OSError, EOFError, ValueError):
            return False

    # --- the monitor thread ------------------------------------------------------------------------------------
    def _monitor(self) -> None:
        while not self._stop.is_set():
            process, conn = self._spawn()
            self._read(conn)
            process.join()
            self.last_exit = process.exitcode
            self._running.clear()
            log.info("pipeline %r: worker process %s exited with code %s", self.name, process.pid, process.exitcode)
            self._fail_commands()
            with self._send_lock:
                self._conn = None
            conn.close()
            if self._stop.is_set() or self.finished:
                break
            if self._respawn.is_set():  # asked for (plugin classes reloaded): not a failure
                self._respawn.clear()
                continue
            reason = self.last_error or f"worker process exited with code {process.exitcode}"
            self.last_error = None
            verdict = self.env.supervisor.record(self.part, reason)
            if verdict.flapping:
                self.flapping = self.env.report_flapping(
                    self.part, f"pipeline {self.name!r}: its worker process", [self.env.alias, self.name, None, None]
                )
                break
            log.warning(
                "pipeline %r: worker process %s ended (%s); restart in %.1f s",
                self.name,
                process.pid,
                reason,
                verdict.delay,
            )
            self._stop.wait(verdict.delay)

    def _spawn(self) -> tuple[BaseProcess, Connection]:
        context = multiprocessing.get_context("spawn")  # never fork a node with threads
        parent, child = context.Pipe(duplex=True)
        process = context.Process(target=worker_main, args=(child, self.plan), name=f"worker:{self.name}")
        process.start()
        self._running.set()
        child.close()
        self._process, self.pid = process, process.pid
        self.starts += 1
        with self._send_lock:
            self._conn = parent
        if self._stop.is_set():  # stop() came while spawning: it may have found no pipe to send on
            self._send(("stop", self.plan.stop_seconds))
        log.info("pipeline %r runs in worker process %s", self.name, process.pid)
        return process, parent

    def _read(self, conn: Connection) -> None:
        """Hand what the worker sends to the node until the pipe closes (the worker ended)."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            except Exception:  # a message that does not unpickle here; the next one starts at its own boundary
                log.exception("pipeline %r: a message from the worker could not be read", self.name)
                continue
            try:
                self._handle(message)
            except Exception:  # never lose the monitor thread (it owns the worker) to one bad message
                log.exception("pipeline %r: handling %r from the worker failed", self.name, message[0])

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "payload":
            payload: Payload = from_wire(message[1])
            self.payloads += 1
            if self.env.hooks.payload(payload) is not None:
                self.refused += 1
        elif kind == "notification":
            notification: Notification = message[1]
            self.env.hooks.notification(notification)
        elif kind == "snapshot":
            self._snapshot = message[1]
        elif kind == "ready":
            self.env.supervisor.recovered(self.part)
        elif kind == "finished":
            self.finished = True
        elif kind == "error":
            self.last_error = str(message[1])
        elif kind == "command_result":
            self._command_done(*message[1:])
        elif kind == "log":
            record = logging.makeLogRecord(message[1])
            logging.getLogger(record.name).handle(record)  # the node's levels and handlers (its _logs/ file)

    # --- what the node asks of a runner ------------------------------------------------------------------------
    def can_update_live(self, new: PipelineSpec) -> bool:
        return False  # the node stops this worker and starts one with the new config

    def update_live(self, new: PipelineSpec) -> dict[str, list[str]]:
        raise NotImplementedError("a worker pipeline is restarted on update")

    def restart_instances(self, new: PipelineSpec, signatures: set[str]) -> list[str]:
        """Plugin classes were reloaded (development mode): a worker running any of ``signatures`` (upper case) is
        stopped and started again with ``new``, and loads the changed files afresh. Returns the instances concerned."""
        restarted = ["/".join(i.key) for i in new.instances if i.key[0] in signatures]
        if restarted and not self.stopping:
            self.spec = new
            self.plan = replace(self.plan, raw=copy.deepcopy(new.raw))
            self._respawn.set()
            self._send(("stop", self.plan.stop_seconds))
        return restarted

    def instance(self, signature: str, instance_id: str) -> RemoteInstance | None:
        """The instance's spec (for config updates, which restart the worker) and its commands, sent to the worker."""
        key = (signature.upper(), instance_id)
        spec = next((i for i in self.spec.instances if i.key == key), None)
        return RemoteInstance(self, spec) if spec is not None else None

    def _command(self, spec: InstanceSpec, command: Any, params: dict[str, Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._send_lock:
            ident = next(self._command_ids)
            self._commands[ident] = future
        if not self._send(("command", ident, spec.signature, spec.instance_id, command, params)):
            self._commands.pop(ident, None)
            future.set_exception(PipelineError(self.name, "its worker process is not running; try again"))
        return future

    def _command_done(self, ident: int, error: str | None, result: Any) -> None:
        future = self._commands.pop(ident, None)
        if future is None:
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(PipelineError(self.name, f"command failed in its worker process: {error}"))

    def _fail_commands(self) -> None:
        for ident in list(self._commands):
            future = self._commands.pop(ident, None)
            if future is not None and not future.done():
                future.set_exception(PipelineError(self.name, "its worker process ended before answering"))

    def keep_alive(self) -> bool:
        self._send(("keep_alive",))
        return False

    def watch(self, now: float) -> float | None:
        return None  # the worker runs its own watchdog (keep-alive, blocked reads)

    def status(self) -> Status:
        if self.stopping:
            return Status.STOPPED
        if self.flapping is not None:
            return Status.FLAPPING
        if self.finished:
            return Status.FINISHED
        shown = self._snapshot.get("status") if self._snapshot else None
        return Status(shown) if shown else Status.STARTING

    def snapshot(self) -> dict[str, Any]:
        """The worker's last pipeline snapshot (or an empty one before its first), with a ``process`` section."""
        snap = dict(self._snapshot) if self._snapshot else self._empty_snapshot()
        snap["status"] = self.status()
        snap["started_at"] = utc_iso(self.started_at)
        state = self.env.supervisor.state(self.part)
        snap["process"] = {
            "mode": WORKER,
            "pid": self.pid,
            "alive": self._running.is_set(),
            "starts": self.starts,
            "restarts": state.restarts,
            "last_error": state.last_error,
            "last_exit_code": self.last_exit,
            "payloads": self.payloads,
            "refused": self.refused,
            **({"flapping": dict(self.flapping)} if self.flapping is not None else {}),
        }
        return snap

    def _empty_snapshot(self) -> dict[str, Any]:
        from edge_engine.runtime.presence import Presence
        from edge_engine.runtime.stage_stats import StageStats

        config = self.spec.capture_config
        lost, probe = float(config.get("STREAM_LOST_SECONDS") or 0), float(config.get("AWAY_PROBE_MAX_SECONDS") or 1)
        presence = Presence(lost, probe)
        return {
            "name": self.name,
            "type": self.spec.capture.signature,
            "capture": {
                "status": Status.STARTING,
                "queue": 0,
                **StageStats().snapshot(),
                "stream": presence.snapshot(),
            },
            "instances": [],
        }


class RemoteCapture:
    """The worker's capture as the node reads it: ``status`` and ``stats`` (``rate``, ``inputs``, ...) from the
    worker's last snapshot."""

    def __init__(self, runner: ProcessPipelineRunner):
        self._runner = runner

    def _fields(self) -> dict[str, Any]:
        snapshot = self._runner._snapshot or self._runner._empty_snapshot()
        return dict(snapshot["capture"])

    @property
    def status(self) -> Status:
        return Status(self._fields()["status"])

    @property
    def stats(self) -> SimpleNamespace:
        return SimpleNamespace(**self._fields())


class RemoteInstance:
    """What the node asks of an instance of a worker pipeline: its spec, and commands (answered by the worker)."""

    def __init__(self, runner: ProcessPipelineRunner, spec: InstanceSpec):
        self.spec = spec
        self._runner = runner

    def command(self, command: Any, params: dict[str, Any] | None = None) -> Future[Any]:
        """Send a command to the instance's ``on_command`` in the worker; the future holds its result."""
        return self._runner._command(self.spec, command, params or {})


def plan_for(settings: Any, alias: str, raw: dict[str, Any]) -> WorkerPlan:
    """The worker plan of a node's pipeline: the node's plugin folders, cache, restart policy and log level."""
    startup = settings.startup
    layout = settings.layout
    return WorkerPlan(
        alias=alias,
        cache_root=os.fspath(layout.root),
        models_dir=os.fspath(layout.models),
        plugin_folders=tuple(os.fspath(f) for f in settings.plugin_folders()),
        disabled_plugins=tuple(settings.disabled_plugins),
        entry_points=bool(settings.load_entry_points),
        raw=raw,
        restart_cap=float(startup["RESTART_BACKOFF_MAX"]),
        flap_max_failures=int(startup["FLAP_MAX_FAILURES"]),
        flap_window=float(startup["FLAP_WINDOW_SECONDS"]),
        log_level=logging.getLogger("edge_engine").getEffectiveLevel(),
        stop_seconds=max(0.2, float(startup["SHUTDOWN_SECONDS"]) - 0.5 - 2 * KILL_MARGIN),
    )
