"""One model server: its worker processes, its fair batching queue, its watchdog and its restarts.

The node-side half runs on one scheduler thread per server. It takes requests from every pipeline that
uses the model (:mod:`~edge_engine.serving.batcher` decides when a batch leaves), sends each batch to a
free worker process over its pipe, and routes every result back to the ticket it came from. It waits on
the workers' pipes, their process sentinels and a wake-up pipe at once, so a result, a crash or a new
request each wake it without polling.

Each worker gets its next batch while it still runs the current one (:data:`WORKER_DEPTH` batches in its
pipe), so it never waits for the node between two batches.

Failures never stall a pipeline silently:

* a worker that dies (crash, ``kill -9``) or runs a batch longer than ``INFERENCE_TIMEOUT`` (it is killed)
  fails its batches' inputs with a :class:`~edge_engine.errors.ServingError` (``crashed`` / ``timeout``) and
  is restarted after the :class:`~edge_engine.runtime.supervisor.Supervisor`'s backoff;
* a model that does not load fails inputs at once with ``load_failed`` (and is retried with backoff);
* while every worker waits for its restart, inputs wait too, at most ``INFERENCE_TIMEOUT``, then fail with
  ``unavailable``.

Processes start when the first pipeline needs the model and stop after ``IDLE_STOP_SECONDS`` without
inputs; the next input starts them again. A model named by ``MODEL_URL`` is fetched first (on a thread of
its own, see :mod:`~edge_engine.serving.model_fetch`): meanwhile the server is ``downloading`` and inputs
sent to it wait, at most ``INFERENCE_TIMEOUT`` (then ``unavailable``); a download that fails (wrong hash,
404, too big) makes it ``failed`` with ``load_failed`` answers; an unreachable server is tried again and
again (backoff up to :data:`FETCH_RETRY_MAX`). A pipeline updated to a new model keeps its
old one until the new server is :attr:`ModelServer.ready` (the serving stage sees to that).
"""

from __future__ import annotations

import itertools
import logging
import math
import multiprocessing
import os
import pickle
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

from edge_engine.errors import ServingError
from edge_engine.runtime.supervisor import Supervisor
from edge_engine.serving import batcher
from edge_engine.serving.instance_models import EngineSpec, ServerSettings
from edge_engine.serving.model_fetch import ModelFetcher, ModelFetchError, fetched_path
from edge_engine.serving.server_stats import ModelStats
from edge_engine.serving.tickets import ModelClient, Request
from edge_engine.serving.worker import (
    BatchDone,
    BatchFailed,
    FromWorker,
    LoadFailed,
    Loading,
    Ready,
    RunBatch,
    StopWorker,
    WorkerSpec,
    run_worker,
)

log = logging.getLogger(__name__)

LOAD_TIMEOUT = 120.0  # a worker still loading after this long is killed and counted as a failed load
STOP_GRACE = 1.0  # seconds a worker gets to exit after "stop" before it is killed
QUANTUM = 2  # a batch takes up to this many consecutive inputs of one pipeline (fewer wake-ups, same shares)
WORKER_DEPTH = 2  # batches a worker holds: the one it runs and the next, already in its pipe
DIRECT_SEND = True  # a pipeline's thread sends a ready batch itself (False: always through the scheduler thread)
FETCH_RETRY_MAX = 60.0  # seconds between two downloads of a model whose server cannot be reached, at most
Notify = Callable[[str, str, dict[str, Any]], None]
Job = tuple["WorkerHandle", int, list[Request]]  # a batch planned for a worker: (worker, batch id, requests)


class WorkerState(str, Enum):
    """Where one worker process is (``local_info.json`` shows the value)."""

    STOPPED = "stopped"  # no process (never started, idle-stopped, or the server stopped)
    STARTING = "starting"  # spawned, loading its model
    READY = "ready"  # loaded, no batch
    BUSY = "busy"  # running a batch (and maybe holding the next)
    BACKOFF = "backoff"  # died: restarted after the supervisor's backoff
    FAILED = "failed"  # its model did not load: retried after the backoff
    FLAPPING = "flapping"  # failed too often: never restarted by this server

    def __str__(self) -> str:
        return self.value


class ServerState(str, Enum):
    """What a model server is doing, as ``local_info.json`` shows it."""

    DOWNLOADING = "downloading"
    RUNNING = "running"
    STARTING = "starting"
    FLAPPING = "flapping"
    FAILED = "failed"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    IDLE = "idle"

    def __str__(self) -> str:
        return self.value


class WorkerHandle:
    """One worker process as the scheduler sees it."""

    def __init__(self, index: int, part: str):
        self.index = index
        self.part = part
        self.process: Any = None
        self.conn: Any = None
        self.state = WorkerState.STOPPED
        self.queued: deque[tuple[int, list[Request]]] = deque()  # (batch id, requests), the running one first
        self.since = 0.0  # monotonic: when it started loading (starting) or began its current batch (busy)
        self.restart_at = 0.0
        self.pid: int | None = None
        self.batches = 0
        self.proven = False  # finished a batch since it last started
        self.send_lock = threading.Lock()  # the scheduler and the pipelines' threads send on its pipe

    @property
    def alive(self) -> bool:
        return self.process is not None

    def take_all(self) -> list[Request]:
        """Every request it holds (its batches are lost: it died or the server stops)."""
        requests = [r for _, batch in self.queued for r in batch]
        self.queued.clear()
        return requests

    def snapshot(self) -> dict[str, Any]:
        return {"index": self.index, "pid": self.pid, "state": self.state.value, "batches": self.batches}


class ModelServer:
    """Serve one (serving plugin, config) to every pipeline that needs it."""

    def __init__(
        self,
        engine: EngineSpec,
        supervisor: Supervisor,
        models_dir: Path,
        notify: Notify,
        on_idle_closed: Callable[[ModelServer], bool] | None = None,
        fetcher: ModelFetcher | None = None,
    ):
        self.engine = engine
        self.key = engine.key
        self.signature = engine.signature
        self.model = engine.model
        self.settings = ServerSettings.from_engine(engine, models_dir)
        self.supervisor = supervisor
        self.models_dir = models_dir
        self.notify = notify
        self.on_idle_closed = on_idle_closed
        self.stats = ModelStats()
        self.info: dict[str, Any] = {}
        self.load_error: str | None = None
        self.closed = False
        self.fetcher = fetcher
        self.source = _model_source(engine)
        self.downloading = False  # fetching MODEL_URL: no process starts until the file is here
        self.fetch_error: str | None = None
        self._fetch_stop = threading.Event()
        self._clients: dict[int, ModelClient] = {}
        self._queue = batcher.FairQueue()
        self._lock = threading.Lock()
        self._stop = False
        self._sleeping = False
        self._woken = False
        self._sleep_until = math.inf  # monotonic: when the sleeping scheduler wakes by itself
        self._warm = False
        self._idle_slots = True  # when the scheduler last looked, some worker could take a batch (or start)
        self.suggested_window = self._window_for(0)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._batch_ids = itertools.count(1)
        self._next_worker = 0
        self._poller = select.poll()
        self._poll_fds: list[int] = []
        self._last_activity = time.monotonic()
        self._notified: set[str] = set()
        name = f"serving/{self.signature}/{self.key.short}"
        self.part = name
        self._workers = [WorkerHandle(i, f"{name}/worker{i}") for i in range(self.settings.workers)]
        self.flapping: dict[str, Any] | None = None  # set when a worker flaps (reason, failures, since)
        supervisor.forget_prefix(f"{name}/")  # a new server starts afresh, even after a flapping one
        self._ctx = multiprocessing.get_context("spawn")
        self._thread = threading.Thread(target=self._run, name=f"serving:{self.signature}", daemon=True)

    # --- pipelines' side (any thread) -------------------------------------------------------------------------
    def start(self) -> None:
        source = self.source
        if source is not None and self.fetcher is not None and not fetched_path(self.models_dir, source).is_file():
            self.downloading = True
            threading.Thread(target=self._fetch, name=f"fetch:{self.signature}", daemon=True).start()
        self._thread.start()

    @property
    def ready(self) -> bool:
        """Some process has the model loaded (and warmed up) and takes batches."""
        return any(w.state in (WorkerState.READY, WorkerState.BUSY) for w in self._workers)

    def _fetch(self) -> None:
        """Fetch thread: download ``MODEL_URL`` into ``_models/fetched/``, then let the processes start."""
        assert self.fetcher is not None and self.source is not None
        max_bytes = int(self.engine.config.get("MODEL_MAX_MB") or 2048) * (1 << 20)
        delay = 1.0
        while True:
            try:
                self.fetcher.ensure(self.source, max_bytes, self._fetch_stop)
                error = None
                break
            except ModelFetchError as exc:
                error = str(exc)
                if not exc.retryable or self._fetch_stop.is_set():
                    break
            self._notify_once("warning", f"{error}; trying again (every {FETCH_RETRY_MAX:g} s at most)")
            if self._fetch_stop.wait(delay):
                break
            delay = min(FETCH_RETRY_MAX, delay * 2)  # an unreachable server: keep trying, the node may be early
        with self._lock:
            self.downloading = False
            self.fetch_error = error
            self._wake_locked()
        if error is not None and not self._fetch_stop.is_set():
            self._notify_once("error", f"{error}; a pipeline updated to it keeps its previous model")

    def add_client(self, pipeline: str, window: int) -> ModelClient:
        client = ModelClient(self, pipeline, window)
        with self._lock:
            self._clients[id(client)] = client
            self.suggested_window = self._window_for(len(self._clients))
            self._warm = True  # a pipeline will need the model: load it now rather than at its first input
            self._wake_locked()
        return client

    def remove_client(self, client: ModelClient) -> None:
        with self._lock:
            self._clients.pop(id(client), None)
            self.suggested_window = self._window_for(len(self._clients))
            dropped = self._queue.drop(id(client))
            client.outstanding -= len(dropped)
            self._wake_locked()
        error = self.error("stopping", f"pipeline {client.pipeline!r} stopped using the model")
        for request in dropped:
            request.resolve(error)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def _window_for(self, pipelines: int) -> int:
        """Inputs each pipeline should keep in flight: together, enough to fill every worker's batches one and a
        half times over; more would only wait in the queue (latency)."""
        needed = 1.5 * self.settings.workers * WORKER_DEPTH * self.settings.max_batch
        return max(2, math.ceil(needed / max(1, pipelines)))

    def submit(self, request: Request) -> None:
        client = request.client
        jobs: list[Job] = []
        with self._lock:
            if self.closed or client.closed:
                refused = True
            else:
                refused = False
                self._queue.push(id(client), request)
                client.outstanding += 1
                client.last_submit = request.submitted
                self.stats.requests += 1
                if self._idle_slots:  # else the next result wakes the scheduler, which plans then
                    jobs = self._plan_direct(request)
        if refused:
            request.resolve(self.error("stopping", "the model server is stopping"))
        elif jobs:
            for worker, batch_id, batch in jobs:
                self._send(worker, batch_id, batch)

    def submit_many(self, requests: list[Request]) -> None:
        """Queue several requests of one client at once (a frame's cascade crops): one lock, one wake-up, so the
        scheduler plans their batches once they are all queued."""
        if not requests:
            return
        client = requests[0].client
        jobs: list[Job] = []
        with self._lock:
            refused = self.closed or client.closed
            if not refused:
                for request in requests:
                    self._queue.push(id(client), request)
                client.outstanding += len(requests)
                client.last_submit = requests[-1].submitted
                self.stats.requests += len(requests)
                if self._idle_slots:
                    jobs = self._plan_direct(requests[0])
        if refused:
            error = self.error("stopping", "the model server is stopping")
            for request in requests:
                request.resolve(error)
        for worker, batch_id, batch in jobs:
            self._send(worker, batch_id, batch)

    def error(self, kind: str, message: str) -> ServingError:
        return ServingError(self.signature, kind, message, self.model)

    def stop(self) -> None:
        """Ask the scheduler to stop its workers and end (see :meth:`join`)."""
        self._fetch_stop.set()
        with self._lock:
            self._stop = True
            self.closed = True
            self._wake_locked()

    def join(self, deadline: float) -> bool:
        if self._thread.ident is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def _plan_direct(self, request: Request) -> list[Job]:
        """Under the lock, on the submitting thread: the batches ready for free workers now, which that thread sends
        itself (no hop through the scheduler thread: a round trip is one thread hand-off shorter). When none is
        ready, or frames travel through pipes (a send could wait for the worker), the scheduler is woken instead:
        it waits for a batch to fill, starts workers, or fails inputs."""
        jobs = []
        if DIRECT_SEND and not self._stop and isinstance(request.item[0][0], str):  # a shared-memory frame
            jobs = self._plan(time.monotonic())
        if not jobs:
            self._wake_locked()
        elif min(worker.since for worker, _, _ in jobs) + self.settings.inference_timeout < self._sleep_until:
            self._wake_locked()  # the scheduler sleeps past this batch's watchdog deadline (rare: see _next_timeout)
        return jobs

    def _wake_locked(self) -> None:
        if self._sleeping and not self._woken:
            self._woken = True
            try:
                os.write(self._wake_w, b"!")
            except OSError:
                pass

    # --- scheduler thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("%s: scheduler failed", self.part)
        finally:
            self._shutdown()

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            with self._lock:
                if self._stop:
                    return
                to_start, failed, fail_error = self._maintain(now)
                jobs = self._plan(now)
                timeout = None if jobs else self._next_timeout(now)
                self._sleeping = not jobs and not to_start and not failed
                self._sleep_until = math.inf if timeout is None else now + timeout
                self._idle_slots = any(
                    w.state in (WorkerState.READY, WorkerState.STOPPED)
                    or (w.state == WorkerState.BUSY and len(w.queued) < WORKER_DEPTH)
                    for w in self._workers
                )
            for request in failed:
                self._answer(request, fail_error, ok=False)
            for worker in to_start:
                self._spawn(worker)
            for worker, batch_id, batch in jobs:
                self._send(worker, batch_id, batch)
            if jobs or to_start or failed:
                continue
            if self._idle_stop_due(now) and self._stop_idle():
                return
            ready = self._poll(timeout)
            with self._lock:
                self._sleeping = False
                self._woken = False
            self._handle(ready)

    def _maintain(self, now: float) -> tuple[list[WorkerHandle], list[Request], ServingError | None]:
        """Under the lock: workers to (re)start now, and requests to fail because nothing can serve them."""
        to_start: list[WorkerHandle] = []
        if self.downloading or self.fetch_error is not None:  # no model file (yet): nothing to start
            if not self._queue.size:
                return to_start, [], None
            if self.fetch_error is not None:
                return to_start, self._queue.drain(), self.error("load_failed", self.fetch_error)
            expired = self._queue.expire(now - self.settings.inference_timeout)  # inputs wait, as for a restart
            text = f"model {self.model} is still downloading after {self.settings.inference_timeout:g} s"
            return to_start, expired, self.error("unavailable", text)
        wanted = bool(self._clients) or self._queue.size > 0
        demand = self._queue.size > 0 or self._warm
        self._warm = False
        for worker in self._workers:
            if worker.state in (WorkerState.BACKOFF, WorkerState.FAILED) and now >= worker.restart_at and wanted:
                to_start.append(worker)
            elif worker.state == WorkerState.STOPPED and demand:
                to_start.append(worker)  # on demand: a pipeline started, or an input came after an idle stop
        for worker in to_start:
            worker.state = WorkerState.STARTING
            worker.since = now
        if self._queue.size == 0 or any(
            w.state in (WorkerState.STARTING, WorkerState.READY, WorkerState.BUSY) for w in self._workers
        ):
            return to_start, [], None
        if all(w.state == WorkerState.FLAPPING for w in self._workers):
            reason = (self.flapping or {}).get("reason")
            return to_start, self._queue.drain(), self.error("flapping", f"the model server is flapping: {reason}")
        if self.load_error is not None:  # the model does not load: no point waiting
            return to_start, self._queue.drain(), self.error("load_failed", self.load_error)
        # restarting after a crash: inputs wait for it, but no longer than INFERENCE_TIMEOUT
        expired = self._queue.expire(now - self.settings.inference_timeout)
        retry = max(0.0, min((w.restart_at for w in self._workers), default=now) - now)
        text = f"no model server process for {self.settings.inference_timeout:g} s (restarting in {retry:.1f} s)"
        return to_start, expired, self.error("unavailable", text)

    def _plan(self, now: float) -> list[Job]:
        """Under the lock: the batches to send now (see :mod:`edge_engine.serving.batcher`)."""
        if self._queue.size == 0:
            return []
        count = len(self._workers)
        rotated = [self._workers[(self._next_worker + i) % count] for i in range(count)]  # spread the load
        free = [w for w in rotated if w.state == WorkerState.READY]
        free += [w for w in rotated if w.state == WorkerState.BUSY and len(w.queued) < WORKER_DEPTH]
        if not free:
            return []
        settings = self.settings
        clients = self._clients.values()
        capacity = batcher.active_load(clients, now, self.suggested_window)
        serving = sum(1 for w in self._workers if w.state in (WorkerState.READY, WorkerState.BUSY))
        target = batcher.batch_target(capacity, serving, settings.max_batch)
        outstanding = sum(c.outstanding for c in clients)
        jobs: list[Job] = []
        for worker in free:
            pending = self._queue.size
            oldest = self._queue.oldest()
            if not pending or oldest is None:
                break
            if not batcher.batch_ready(pending, target, now - oldest, settings.max_wait, outstanding, capacity):
                break
            batch = self._queue.take(settings.max_batch, QUANTUM)
            batch_id = next(self._batch_ids)
            if worker.state == WorkerState.READY:
                worker.state = WorkerState.BUSY
                worker.since = now
            worker.queued.append((batch_id, batch))
            jobs.append((worker, batch_id, batch))
            self._next_worker = (worker.index + 1) % count
        return jobs

    def _next_timeout(self, now: float) -> float | None:
        """Under the lock: seconds until something is due (a batch's wait, a watchdog, a restart, idle stop)."""
        deadlines: list[float] = []
        if self._queue.size and not any(
            w.state in (WorkerState.STARTING, WorkerState.READY, WorkerState.BUSY) for w in self._workers
        ):
            oldest = self._queue.oldest()
            if oldest is not None:
                deadlines.append(oldest + self.settings.inference_timeout)  # held inputs expire
        if self._queue.size and any(
            w.state in (WorkerState.READY, WorkerState.BUSY) and len(w.queued) < WORKER_DEPTH for w in self._workers
        ):
            oldest = self._queue.oldest()
            if oldest is not None:
                deadlines.append(oldest + self.settings.max_wait)
        if any(
            w.state == WorkerState.READY or (w.state == WorkerState.BUSY and len(w.queued) < WORKER_DEPTH)
            for w in self._workers
        ):
            # a pipeline's thread may send a batch any time (see _plan_direct): its watchdog deadline is then
            # later than this one, so this sleep needs no wake-up for it
            deadlines.append(now + self.settings.inference_timeout)
        for worker in self._workers:
            if worker.state == WorkerState.BUSY:
                deadlines.append(worker.since + self.settings.inference_timeout)
            elif worker.state == WorkerState.STARTING:
                deadlines.append(worker.since + LOAD_TIMEOUT)
            elif worker.state in (WorkerState.BACKOFF, WorkerState.FAILED) and self._clients:
                deadlines.append(worker.restart_at)
        alive = any(w.alive for w in self._workers)
        working = self._queue.size or any(w.state in (WorkerState.BUSY, WorkerState.STARTING) for w in self._workers)
        if alive and not working and (self.settings.idle_stop > 0 or not self._clients):
            deadlines.append(self._last_activity + self.settings.idle_stop)
        if not self._clients and not alive:
            deadlines.append(now + 1.0)  # nobody uses it and nothing runs: re-check for closing
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _poll(self, timeout: float | None) -> set[int]:
        """Wait until a worker's pipe or sentinel, or the wake-up pipe, is readable; the ready descriptors."""
        fds = [self._wake_r]
        for worker in self._workers:
            if worker.conn is not None:
                fds.append(worker.conn.fileno())
            if worker.process is not None:
                fds.append(worker.process.sentinel)
        if fds != self._poll_fds:  # a worker started or ended: register the new set once
            self._poller = select.poll()
            for fd in fds:
                self._poller.register(fd, select.POLLIN)
            self._poll_fds = fds
        events = self._poller.poll(None if timeout is None else math.ceil(timeout * 1000))
        return {fd for fd, _ in events}

    def _handle(self, ready: set[int]) -> None:
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except (BlockingIOError, OSError):
                pass
        for worker in self._workers:
            if worker.conn is not None and worker.conn.fileno() in ready:
                self._receive(worker)
        for worker in self._workers:
            if worker.process is not None and worker.process.sentinel in ready:
                self._receive(worker)  # what it said before it died
                self._died(worker, "crashed", f"server process exited (code {worker.process.exitcode})")
        self._watchdog(time.monotonic())

    # --- workers ------------------------------------------------------------------------------------------------
    def _spawn(self, worker: WorkerHandle) -> None:
        spec = WorkerSpec.for_class(self.engine.record.cls, self.engine.config, self.models_dir, worker.index)
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=run_worker, args=(spec, child), name=f"model-server:{self.signature}#{worker.index}", daemon=True
        )
        try:
            process.start()
        except Exception as exc:
            parent.close()
            child.close()
            self._backoff(worker, f"cannot start a server process: {type(exc).__name__}: {exc}", WorkerState.FAILED)
            return
        child.close()
        worker.process, worker.conn, worker.pid = process, parent, process.pid
        worker.proven = False
        log.info("%s: started server process %s for model %s", worker.part, process.pid, self.model)

    def _send(self, worker: WorkerHandle, batch_id: int, batch: list[Request]) -> None:
        # plain pickle: what Connection.send does with multiprocessing's own pickler (a Python subclass, slower),
        # which only matters for sockets and connections, never in a batch; the worker's recv() reads either
        data = pickle.dumps(RunBatch(batch_id, [r.item for r in batch]), pickle.HIGHEST_PROTOCOL)
        try:
            with worker.send_lock:
                worker.conn.send_bytes(data)
        except (OSError, ValueError, AttributeError) as exc:
            log.debug("%s: send failed (%s); the process sentinel reports the death", worker.part, exc)

    def _receive(self, worker: WorkerHandle) -> None:
        conn = worker.conn
        if conn is None:
            return
        try:
            while worker.conn is conn and _readable(conn):
                self._on_message(worker, conn.recv())
        except (EOFError, OSError):
            # the process is exiting: stop watching its pipe, its sentinel tells the death
            if worker.conn is conn:
                worker.conn = None
                conn.close()

    def _on_message(self, worker: WorkerHandle, message: FromWorker) -> None:
        if isinstance(message, BatchDone):
            self._on_result(worker, message.batch_id, message.results, message.seconds, message.lost)
        elif isinstance(message, BatchFailed):
            self._on_batch_error(worker, message.batch_id, message.text)
        elif isinstance(message, Loading):  # a co-located cascade's model loads within the batch: give it the time
            with self._lock:
                if worker.state == WorkerState.BUSY:
                    extra = LOAD_TIMEOUT - self.settings.inference_timeout if message.started else 0.0
                    worker.since = time.monotonic() + max(0.0, extra)
        elif isinstance(message, Ready):
            worker.state = WorkerState.READY
            worker.since = time.monotonic()
            self.info = message.info
            self.load_error = None
            log.info("%s: model %s loaded (%s)", worker.part, self.model, ", ".join(self.info.get("providers", [])))
        elif isinstance(message, LoadFailed):
            self.load_error = message.text
            self._notify_once("error", f"model {self.model} failed to load: {self.load_error}")
            self._stop_process(worker, grace=STOP_GRACE)
            self._backoff(worker, f"load failed: {self.load_error}", WorkerState.FAILED)

    def _take_batch(self, worker: WorkerHandle, batch_id: int) -> list[Request]:
        """The requests of the batch a worker answered (the first it holds, unless two threads' sends crossed); the
        next one starts now."""
        with self._lock:
            position = next((i for i, (queued, _) in enumerate(worker.queued) if queued == batch_id), None)
            if position is None:
                return []
            batch = worker.queued[position][1]
            del worker.queued[position]
            now = time.monotonic()
            if worker.state == WorkerState.BUSY:
                worker.since = now
                if not worker.queued:
                    worker.state = WorkerState.READY
            worker.batches += 1
            self._last_activity = now
        return batch

    def _on_result(
        self, worker: WorkerHandle, batch_id: int, results: list[Any], seconds: float, lost: dict[int, str]
    ) -> None:
        batch = self._take_batch(worker, batch_id)
        if not batch:
            return
        if len(batch) > len(lost):
            self.stats.batch_done(len(batch) - len(lost), seconds)
        if not worker.proven:
            worker.proven = True
            self.supervisor.recovered(worker.part)
        for index, (request, result) in enumerate(zip(batch, results, strict=False)):
            if index in lost:  # its frame was gone: that input alone fails, and it is no fault of the model
                self._cancel(request, self.error("stopping", f"pipeline {request.client.pipeline!r}: {lost[index]}"))
            else:
                self._answer(request, result, ok=True)

    def _on_batch_error(self, worker: WorkerHandle, batch_id: int, text: str) -> None:
        batch = self._take_batch(worker, batch_id)
        self.stats.error(text)
        if text not in self._notified:
            log.error("%s: batch of %d failed: %s", worker.part, len(batch), text)
        self._notify_once("error", f"model {self.model}: inference failed: {text}")
        error = self.error("inference_error", text)
        for request in batch:
            self._answer(request, error, ok=False)

    def _answer(self, request: Request, value: Any, ok: bool) -> None:
        client = request.client
        with self._lock:
            client.outstanding -= 1
        self.stats.answered(time.monotonic() - request.submitted, ok)
        request.resolve(value)

    def _cancel(self, request: Request, error: ServingError) -> None:
        """Answer a request that was not the model's to fail (not counted in its results or errors)."""
        with self._lock:
            request.client.outstanding -= 1
        request.resolve(error)

    def _watchdog(self, now: float) -> None:
        for worker in self._workers:
            if worker.state == WorkerState.BUSY and now - worker.since > self.settings.inference_timeout:
                text = f"a batch ran longer than INFERENCE_TIMEOUT ({self.settings.inference_timeout:g} s)"
                self._kill(worker)
                self._died(worker, "timeout", text)
            elif worker.state == WorkerState.STARTING and now - worker.since > LOAD_TIMEOUT:
                self._kill(worker)
                self.load_error = f"the model did not load within {LOAD_TIMEOUT:g} s"
                self._died(worker, "load_failed", self.load_error)

    def _died(self, worker: WorkerHandle, kind: str, text: str) -> None:
        if worker.process is None:
            return
        with self._lock:  # no pipeline's thread sends it a batch from now on
            batch = worker.take_all()
            was_failed = worker.state == WorkerState.FAILED
            if not was_failed:
                worker.state = WorkerState.BACKOFF
        self._reap(worker)
        if was_failed:
            return  # a load error already scheduled the retry
        self.stats.error(text)
        self._notify_once("warning", f"model {self.model}: server process {worker.index} {kind}: {text}")
        log.error("%s: %s (%d input(s) affected)", worker.part, text, len(batch))
        error = self.error(kind, text)
        for request in batch:
            self._answer(request, error, ok=False)
        self._backoff(worker, text, WorkerState.BACKOFF)

    def _backoff(self, worker: WorkerHandle, text: str, state: WorkerState) -> None:
        verdict = self.supervisor.record(worker.part, text)
        if verdict.flapping:
            worker.state = WorkerState.FLAPPING  # never restarted: a new server (pipelines updated, node restarted) is
            self.flapping = self.supervisor.flap_fields(worker.part)
            info = self.flapping
            message = (
                f"model {self.model}: server process {worker.index} is flapping: {info['failures']} failures "
                f"within {info['window_seconds']:g} s; stopped until its pipelines are updated or the node "
                f"restarts. Last error: {info['reason']}"
            )
            try:
                self.notify(
                    "error",
                    message,
                    {
                        "signature": self.signature,
                        "model": self.model,
                        "STATUS": "flapping",
                        "NOTIFICATION_TYPE": "ABNORMAL FUNCTIONING",
                        "REASON": info["reason"],
                        "FAILURES": info["failures"],
                        "PART": worker.part,
                    },
                )
            except Exception:
                log.exception("%s: notification failed", self.part)
            return
        self.stats.restarts += 1
        worker.state = state
        worker.restart_at = time.monotonic() + verdict.delay

    def _kill(self, worker: WorkerHandle) -> None:
        if worker.process is not None:
            try:
                worker.process.kill()
            except (OSError, ValueError):
                pass

    def _reap(self, worker: WorkerHandle, grace: float = STOP_GRACE) -> None:
        """Forget a worker's process: wait ``grace`` seconds for it to exit, then kill it."""
        process, conn = worker.process, worker.conn
        worker.process = worker.conn = None
        worker.pid = None
        if conn is not None:
            conn.close()
        if process is not None:
            process.join(grace)
            if process.is_alive():
                process.kill()
                process.join(STOP_GRACE)
            if process.is_alive():  # killed but not reaped yet (a crowded machine): multiprocessing reaps it later
                log.warning("%s: process %s still exiting after SIGKILL", worker.part, process.pid)
            else:
                process.close()

    def _stop_process(self, worker: WorkerHandle, grace: float) -> None:
        """Ask a worker to exit, then kill it if it does not within ``grace`` seconds."""
        if worker.conn is not None:
            try:
                worker.conn.send(StopWorker())
            except (OSError, ValueError):
                pass
        if worker.process is not None:
            worker.process.join(grace)
        self._reap(worker)

    def _idle_stop_due(self, now: float) -> bool:
        with self._lock:
            busy = self._queue.size or any(w.state in (WorkerState.BUSY, WorkerState.STARTING) for w in self._workers)
            alive = any(w.alive for w in self._workers)
            if busy:
                return False
            if not alive:
                return not self._clients
            if self._clients and self.settings.idle_stop <= 0:
                return False  # 0: keep running while pipelines use the model
            return now - self._last_activity >= self.settings.idle_stop

    def _stop_idle(self) -> bool:
        """Stop the processes after the idle time; True when the server closed for good (no pipeline uses it)."""
        if any(w.alive for w in self._workers):
            with self._lock:  # an input may have come since the idle check: then keep serving
                if self._queue.size or any(w.queued for w in self._workers):
                    return False
                for worker in self._workers:  # no pipeline's thread sends them a batch from now on
                    if worker.state != WorkerState.FLAPPING:
                        worker.state = WorkerState.STOPPED
            log.info("%s: idle for %.0f s: stopping its server processes", self.part, self.settings.idle_stop)
            for worker in self._workers:
                self._stop_process(worker, STOP_GRACE)
        self._last_activity = time.monotonic()
        return self.on_idle_closed is not None and self.on_idle_closed(self)

    def _shutdown(self) -> None:
        for worker in self._workers:
            if worker.conn is not None:
                try:
                    worker.conn.send(StopWorker())
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + STOP_GRACE
        for worker in self._workers:
            if worker.process is not None:
                worker.process.join(max(0.0, deadline - time.monotonic()))
        error = self.error("stopping", "the model server stopped")
        with self._lock:
            self.closed = True
            leftovers = self._queue.drain()
            for worker in self._workers:
                leftovers.extend(worker.take_all())
        for worker in self._workers:
            self._reap(worker, grace=0.0)  # the shared grace above is over
            worker.state = WorkerState.STOPPED
        for request in leftovers:
            self._answer(request, error, ok=False)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _notify_once(self, level: str, message: str) -> None:
        if message in self._notified:
            return
        self._notified.add(message)
        if len(self._notified) > 100:
            self._notified.clear()
        try:
            self.notify(level, message, {"signature": self.signature, "model": self.model})
        except Exception:
            log.exception("%s: notification failed", self.part)

    # --- reporting --------------------------------------------------------------------------------------------
    @property
    def state(self) -> ServerState:
        if self.downloading:
            return ServerState.DOWNLOADING
        if self.fetch_error is not None:
            return ServerState.FAILED
        states = {w.state for w in self._workers}
        if WorkerState.BUSY in states or WorkerState.READY in states:
            return ServerState.RUNNING
        if WorkerState.STARTING in states:
            return ServerState.STARTING
        if states == {WorkerState.FLAPPING}:
            return ServerState.FLAPPING
        if WorkerState.FAILED in states:
            return ServerState.FAILED
        if WorkerState.BACKOFF in states:
            return ServerState.RESTARTING
        return ServerState.STOPPED if self.closed else ServerState.IDLE

    def _source_info(self) -> dict[str, Any]:
        """Where the model comes from, and how its download goes (``downloading 1.5 of 3.0 MB (50 %)``)."""
        assert self.source is not None
        progress = self.fetcher.progress_text(self.source.sha256) if self.fetcher is not None else None
        return {"source": self.source.shown, "sha256": self.source.sha256, "download": progress or "cached"}

    def pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.pid is not None]

    def snapshot(self) -> dict[str, Any]:
        self.stats.update_rate()
        settings = self.settings
        clients = sorted({c.pipeline for c in list(self._clients.values())})
        return {
            "signature": self.signature,
            "model": self.model,
            "config_id": self.key.short,
            "state": self.state.value,
            "providers": list(self.info.get("providers", [])),
            "model_info": {k: v for k, v in self.info.items() if k not in ("providers", "pid")},
            "workers": [w.snapshot() for w in self._workers],
            "max_batch_size": settings.max_batch,
            "max_wait_ms": round(settings.max_wait * 1000, 3),
            "pipelines": clients,
            "load_error": self.fetch_error or self.load_error,
            **(self._source_info() if self.source is not None else {}),
            **({"flapping": dict(self.flapping)} if self.flapping else {}),
            **self.stats.snapshot(),
        }


def _readable(conn: Any) -> bool:
    """Whether ``conn`` has data (or its end closed) now: ``Connection.poll()`` without building a selector for
    each message (it cost ~10 % of the node's CPU under load in the scheduler thread's profile)."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _model_source(engine: EngineSpec) -> Any:
    """The engine's ``MODEL_URL`` source, if its plugin class fetches models (None otherwise)."""
    reader = getattr(engine.record.cls, "model_source", None)
    if reader is None:
        return None
    try:
        return reader(engine.config)
    except ValueError:
        return None  # refused by the config check before a server is made
