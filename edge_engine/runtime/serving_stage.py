"""The serving stage between capture and business instances: it gets each input its inferences.

A pipeline whose instances name no ``AI_ENGINE`` passes inputs straight through. Otherwise the stage holds
a :class:`~edge_engine.serving.tickets.ModelClient` per model the instances need (shared model servers,
see :mod:`edge_engine.serving`), copies each frame once into one of its shared-memory slots, and submits
it to every model at once. The pipeline's dispatcher keeps up to ``MAX_IN_FLIGHT`` inputs in flight
(:meth:`submit`) and hands them on in order as they complete (:meth:`complete`), so capture keeps
reading while models run, and a slow model delays only the pipelines that use it. A slot goes back to the
ring only when every server answered the request naming it, so a pipeline that stops with inputs in flight
(removed, updated, restarted) leaves its frames readable for the batches that mix them with other pipelines'.

When an update gives an instance a new model (a new ``MODEL_URL``, a new file, any config change), the
instance keeps the model it had until the new model's server is ready (downloaded, loaded, warmed up): then
the next input goes to the new one, and the old client is closed once its last input is answered, so an
update loses no frame (decision 36). A new model that never gets ready leaves the old one serving.

Cascades (``CASCADE``, see :mod:`edge_engine.serving.cascade`): once an input's first stages are answered, the
stage crops the boxes each cascade selects and sends the crops, packed in one shared-memory segment, to the second
model's shared server (its own client, so the server batches them with other frames' and pipelines' crops); it
does so for every input in flight whose first stage is done, and hands an input on once its cascades are answered.
``Input.inferences[AS]`` is then a list aligned with the ``ON`` engine's detections (a result, a ``ServingError``
for a box whose crop failed, or None for a box not cropped).

``Input.inferences[SIGNATURE]`` then holds each model's result, or a :class:`~edge_engine.errors.ServingError`.
When two instances of one pipeline use the same serving plugin with different configs, each gets a view
of the input with its own results (:meth:`complete` returns those views).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_engine.constants import KIND_SERVING
from edge_engine.errors import ServingError
from edge_engine.plugin.kinds import Input
from edge_engine.serving.cascade import (
    LOAD_WAIT,
    CascadeSpec,
    CropBatch,
    CropSlots,
    crop_detection,
    declared_cascades,
    resolve_cascades,
    select_boxes,
    submit_crops,
)
from edge_engine.serving.colocated import CascadeOutcome, ColocatedCascade
from edge_engine.serving.frame_slots import FrameSlots
from edge_engine.serving.instance_models import ModelKey, resolve_engines
from edge_engine.serving.model_server import LOAD_TIMEOUT
from edge_engine.serving.tickets import ModelClient, Ticket
from edge_engine.serving.worker import FrameItem

if TYPE_CHECKING:
    from edge_engine.config.pipelines import InstanceSpec
    from edge_engine.serving.manager import ServingManager

log = logging.getLogger(__name__)
FRAME_BUDGET_BYTES = 4 * 1024 * 1024  # frames of one pipeline in flight: big frames get a smaller window
MIN_WINDOW = 2
InstanceKey = tuple[str, str]


@dataclass(eq=False)
class CascadeRun:
    """One cascade of the pipeline: which first-stage model's boxes, and the second model's client (None: it could
    not be had, its boxes get ``error``; or it runs in the first stage's processes: ``colocated``)."""

    spec: CascadeSpec
    on_key: ModelKey
    client: ModelClient | None
    error: ServingError | None = None
    colocated: ColocatedCascade | None = None


class _CascadeJob:
    """One cascade on one input: the boxes cropped and their crops' answers (or a fixed result)."""

    __slots__ = ("batch", "count", "errors", "fixed", "indices", "run")

    def __init__(self, run: CascadeRun, count: int = 0, fixed: Any = None):
        self.run = run
        self.count = count  # detections of the ON engine
        self.fixed = fixed  # the result when nothing was sent: [] or a ServingError
        self.indices: list[int] = []  # the boxes whose crops were sent, in crop order
        self.errors: dict[int, ServingError] = {}  # boxes that could not be cropped
        self.batch: CropBatch | None = None

    def aligned(self) -> Any:
        if self.fixed is not None:
            return self.fixed
        out: list[Any] = [None] * self.count
        for index, error in self.errors.items():
            out[index] = error
        if self.batch is not None:
            for index, value in zip(self.indices, self.batch.results, strict=True):
                if isinstance(value, ServingError) and value.signature == "?":
                    engine = self.run.spec.engine
                    value = ServingError(engine.signature, value.kind, value.message, engine.model)
                out[index] = value
        return out


@dataclass(frozen=True)
class ServingPlan:
    """What the stage does for each input, rebuilt when the pipeline's instances change."""

    clients: tuple[ModelClient, ...] = ()
    shared: dict[str, ModelKey] = field(default_factory=dict)  # signature -> model, same for every instance
    per_instance: dict[InstanceKey, dict[str, ModelKey]] = field(default_factory=dict)
    markers: dict[str, ServingError] = field(default_factory=dict)  # engines that cannot run: a fixed error
    pending: tuple[ModelClient, ...] = ()  # new models loading while the ones they replace still serve
    window: int = 1
    wait_cap: float = 60.0
    cascades: tuple[CascadeRun, ...] = ()
    cascade_shared: dict[str, CascadeRun] = field(default_factory=dict)  # AS -> run, same for every instance
    cascade_per_instance: dict[InstanceKey, dict[str, CascadeRun]] = field(default_factory=dict)
    colocated: dict[ModelKey, tuple[ColocatedCascade, ...]] = field(default_factory=dict)  # by first-stage model

    @property
    def active(self) -> bool:
        return bool(self.clients or self.markers)


class ServingStage:
    """Runs the serving plugins a pipeline's instances need on each input."""

    def __init__(
        self,
        manager: ServingManager | None,
        pipeline: str,
        instances: tuple[InstanceSpec, ...] = (),
        wake: Callable[[], None] | None = None,
    ):
        self.manager = manager
        self.pipeline = pipeline
        self._wake = wake  # wakes the dispatcher's wait for new inputs (its inbox's wake())
        self._watched: Ticket | None = None  # the dispatcher waits for an input or this ticket's results (_cond)
        self._cond = threading.Condition()
        self._update_lock = threading.Lock()  # update() (node thread) against close() (dispatcher)
        self._closed = False
        self._clients: dict[ModelKey, ModelClient] = {}
        self._instances: tuple[InstanceSpec, ...] = ()
        self._mappings: dict[InstanceKey, dict[str, ModelKey]] = {}  # the models each instance uses now
        self._retiring: list[ModelClient] = []  # replaced models, closed once their last input is answered
        self._stopped = False
        self._warned: set[str] = set()
        self.plan = ServingPlan()
        self.slots: FrameSlots | None = None
        self._holding: set[Ticket] = set()  # tickets whose slot is not handed back yet (the dispatcher's)
        self._cascade_clients: dict[ModelKey, ModelClient] = {}  # second stages: their own clients (crops)
        self._cascade_order: deque[Ticket] = deque()  # inputs in flight with cascades, in order (the dispatcher's)
        self._cascade_jobs: dict[Ticket, list[_CascadeJob]] = {}  # their cascades, once started
        self.crop_slots: CropSlots | None = None
        self.cascade_crops = 0
        self.cascade_skipped = 0  # boxes past MAX_CROPS
        self.cascade_errors = 0  # boxes marked with a ServingError
        self.in_flight = 0
        self.errors = 0
        self._window = 1
        self._frame_bytes = 0
        self.update(instances)

    @property
    def active(self) -> bool:
        return self.plan.active

    @property
    def window(self) -> int:
        """Inputs to keep in flight now: this pipeline's own limit, or less when the servers suggest less (many
        pipelines share them, and a deeper queue would only add latency)."""
        window = self._window
        for client in self.plan.clients:
            suggested = client.server.suggested_window
            if suggested < window:
                window = suggested
        return window

    def _fit_window(self, frame_bytes: int) -> None:
        """Inputs in flight: ``MAX_IN_FLIGHT``, fewer for big frames (at most :data:`FRAME_BUDGET_BYTES` of them,
        but never under :data:`MIN_WINDOW`). The servers read it to size their batches."""
        self._frame_bytes = frame_bytes
        limit = self.plan.window
        fit = FRAME_BUDGET_BYTES // frame_bytes if frame_bytes else limit
        self._window = max(min(MIN_WINDOW, limit), min(limit, fit))
        for client in self.plan.clients:
            client.window = self._window

    # --- configuration (node thread) ------------------------------------------------------------------------
    def update(self, instances: tuple[InstanceSpec, ...]) -> None:
        """Build the plan for these instances: reuse the clients still needed, close the others."""
        with self._update_lock:
            if not self._closed:
                self._update(instances)

    def _update(self, instances: tuple[InstanceSpec, ...]) -> None:
        self._instances = instances
        wanted: dict[ModelKey, Any] = {}
        per_instance: dict[InstanceKey, dict[str, ModelKey]] = {}
        markers: dict[str, ServingError] = {}
        for spec in instances:
            engines, unknown, problems = resolve_engines(spec.config, self._registry())
            for name in unknown:
                markers[name] = self._unknown(name, spec)
            for signature, text in problems:
                markers[signature or "?"] = ServingError(signature or "?", "config", text)
            mapping = {}
            for engine in engines:
                wanted.setdefault(engine.key, engine)
                mapping[engine.signature] = engine.key
            per_instance[spec.key] = mapping
        window = min((int(e.config.get("MAX_IN_FLIGHT") or 1) for e in wanted.values()), default=1)
        clients = self._clients_for(wanted, window, markers)
        held = self._hold_over(per_instance, clients)
        used = {key for mapping in per_instance.values() for key in mapping.values()}
        serving = {key: client for key, client in {**clients, **held}.items() if key in used}
        pending = tuple(client for key, client in clients.items() if key not in used)
        shared, split = _split_uniform(per_instance)
        caps = [c.server.settings.inference_timeout for c in serving.values()]
        runs, cascade_shared, cascade_split = self._cascades(instances, per_instance)
        self.plan = ServingPlan(
            clients=tuple(serving.values()),
            shared=shared,
            per_instance=split,
            markers=markers,
            pending=pending,
            window=max(1, window),
            wait_cap=LOAD_TIMEOUT + max(caps, default=30.0) + 10.0,
            cascades=runs,
            cascade_shared=cascade_shared,
            cascade_per_instance=cascade_split,
            colocated=_colocated_by_model(runs),
        )
        keep = {**clients, **held}
        for key, client in list(self._clients.items()):
            if key not in keep:
                self._retiring.append(client)
        self._clients = keep
        self._close_retired()
        self._fit_window(self._frame_bytes)

    def _cascades(
        self, instances: tuple[InstanceSpec, ...], per_instance: dict[InstanceKey, dict[str, ModelKey]]
    ) -> tuple[tuple[CascadeRun, ...], dict[str, CascadeRun], dict[InstanceKey, dict[str, CascadeRun]]]:
        """The pipeline's cascades (one run per distinct declaration, shared by the instances declaring it), the ones
        every instance sees, and the ones only some do; acquires the second stages' clients, retires unused ones."""
        runs: dict[tuple[Any, ...], CascadeRun] = {}
        by_instance: dict[InstanceKey, dict[str, CascadeRun]] = {}
        clients: dict[ModelKey, ModelClient] = {}
        for spec in instances:
            try:
                if not declared_cascades(spec.config, spec.record.cls):
                    continue
                found, problems = resolve_cascades(spec.config, self._registry(), spec.record.cls)
            except Exception as exc:  # a plugin's cascades() raised (only when validation was skipped)
                found, problems = [], [f"the plugin's cascades() raised {type(exc).__name__}: {exc}"]
            for text in problems:  # only when validation was skipped
                self._warn_once(f"pipeline {self.pipeline!r} › {spec.signature}/{spec.instance_id} › CASCADE: {text}")
            mapping = {}
            for cascade in found:
                on_key = per_instance.get(spec.key, {}).get(cascade.on)
                if on_key is None:
                    continue
                ident = (cascade.identity(), on_key)
                run = runs.get(ident)
                if run is None:
                    run = runs[ident] = self._cascade_run(cascade, on_key, clients)
                mapping[cascade.name] = run
            by_instance[spec.key] = mapping
        for key, client in self._cascade_clients.items():
            if key not in clients:
                self._retiring.append(client)
        self._cascade_clients = clients
        names: dict[str, set[int]] = {}
        for mapping in by_instance.values():
            for name, run in mapping.items():
                names.setdefault(name, set()).add(id(run))
        # one declaration of a name: every instance sees its results (as for AI_ENGINE); several: each its own
        shared = {n: r for m in by_instance.values() for n, r in m.items() if len(names[n]) == 1}
        split = {k: {n: r for n, r in m.items() if n not in shared} for k, m in by_instance.items()}
        return tuple(runs.values()), shared, {k: m for k, m in split.items() if m}

    def _cascade_run(self, cascade: CascadeSpec, on_key: ModelKey, clients: dict[ModelKey, ModelClient]) -> CascadeRun:
        engine = cascade.engine
        if cascade.colocate and self.manager is not None:  # no server of its own: the first stage's run it
            return CascadeRun(
                cascade, on_key, None, colocated=ColocatedCascade.from_spec(cascade, self.manager.models_dir)
            )
        client = clients.get(engine.key) or self._cascade_clients.get(engine.key)
        if client is not None and (client.closed or client.server.closed):
            client = None
        if client is None:
            if self.manager is None:
                return CascadeRun(
                    cascade, on_key, None, ServingError(engine.signature, "unavailable", "model serving is off")
                )
            try:
                client = self.manager.acquire(engine, self.pipeline, 1)
            except RuntimeError as exc:
                return CascadeRun(cascade, on_key, None, ServingError(engine.signature, "stopping", str(exc)))
        clients[engine.key] = client
        return CascadeRun(cascade, on_key, client)

    def _warn_once(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            log.warning("%s", text)

    def _hold_over(
        self, per_instance: dict[InstanceKey, dict[str, ModelKey]], clients: dict[ModelKey, ModelClient]
    ) -> dict[ModelKey, ModelClient]:
        """Point each instance whose model changed to its previous model while the new one is not ready yet
        (downloading, loading, failed); returns the previous models' clients kept that way."""
        held: dict[ModelKey, ModelClient] = {}
        for instance, mapping in per_instance.items():
            before = self._mappings.get(instance, {})
            for signature, key in mapping.items():
                old_key = before.get(signature)
                if old_key is None:
                    continue
                new = clients.get(key)
                old = self._clients.get(old_key)
                if old is None or old_key == key or new is None or new.server.ready:
                    continue
                if old.closed or old.server.closed:
                    continue
                mapping[signature] = old_key
                held[old_key] = old
        self._mappings = {instance: dict(mapping) for instance, mapping in per_instance.items()}
        return held

    def _close_retired(self) -> None:
        """Close the replaced models' clients that have no input left in their servers."""
        still = []
        for client in self._retiring:
            if client.outstanding > 0 and not client.server.closed:
                still.append(client)
            else:
                client.close()
        self._retiring = still

    def _registry(self) -> Any:
        from edge_engine.plugin.registry import PluginRegistry

        return self.manager.registry if self.manager is not None else PluginRegistry()

    def _clients_for(
        self, wanted: dict[ModelKey, Any], window: int, markers: dict[str, ServingError]
    ) -> dict[ModelKey, ModelClient]:
        clients: dict[ModelKey, ModelClient] = {}
        for key, engine in wanted.items():
            client = self._clients.get(key)
            if client is not None and not client.closed and client.server.closed is False:
                client.window = window
                clients[key] = client
                continue
            if self.manager is None:
                markers[engine.signature] = ServingError(engine.signature, "unavailable", "model serving is off")
                continue
            try:
                clients[key] = self.manager.acquire(engine, self.pipeline, window)
            except RuntimeError as exc:
                markers[engine.signature] = ServingError(engine.signature, "stopping", str(exc))
        return clients

    def _unknown(self, name: str, spec: InstanceSpec) -> ServingError:
        near = self.manager.registry.suggest(KIND_SERVING, name) if self.manager is not None else None
        hint = f"; did you mean {near!r}?" if near else ""
        text = f"no serving plugin has the signature {name!r}{hint}"
        if name not in self._warned:
            self._warned.add(name)
            log.warning(
                "pipeline %r › %s/%s › AI_ENGINE: %s; its inputs get a ServingError",
                self.pipeline,
                spec.signature,
                spec.instance_id,
                text,
            )
        return ServingError(name, "unknown_engine", text)

    # --- per input (the pipeline's dispatcher thread) -----------------------------------------------------------
    def submit(self, inp: Input) -> Ticket:
        """Send ``inp`` to every model the instances need; returns at once (the ticket completes later)."""
        plan = self.plan
        if plan.pending and any(c.server.ready for c in plan.pending):
            self.update(self._instances)  # a new model is ready: it takes over from this input on
            plan = self.plan
        clients = plan.clients
        slot = None
        ref: tuple[Any, ...] = (None, (), "")
        if clients and inp.image is not None:
            if getattr(inp.image, "nbytes", 0) > self._frame_bytes:
                self._fit_window(inp.image.nbytes)
            slots = self._slots(plan.window)
            slot = slots.acquire()
            try:
                ref = slots.put(slot, inp.image)
            except BaseException:
                slots.release(slot)
                raise
        ticket = Ticket(inp, len(clients), self._cond, slot, plan, self._done if self._wake else None)
        if slot is not None:
            self._holding.add(ticket)
        if clients:
            item = FrameItem(ref, inp.data, inp.metadata, inp.seq, inp.timestamp)
            self.in_flight += 1
            colocated = plan.colocated
            for client in clients:
                cascades = colocated.get(client.key) if colocated else None
                client.submit(ticket, item._replace(cascades=cascades) if cascades else item)
        if plan.cascades:
            self._start_ready_cascades()
            self._cascade_order.append(ticket)
        return ticket

    # --- cascades (the dispatcher thread) ---------------------------------------------------------------------
    def _start_ready_cascades(self) -> None:
        """Send the crops of every input in flight whose first stage is answered (crops of consecutive frames then
        batch together in the second model's server)."""
        for ticket in self._cascade_order:
            if ticket.done and ticket not in self._cascade_jobs:
                self._cascade_jobs[ticket] = [self._start_cascade(ticket, run) for run in ticket.plan.cascades]

    def _start_cascade(self, ticket: Ticket, run: CascadeRun) -> _CascadeJob:
        spec = run.spec
        detections = ticket.results.get(run.on_key)
        if isinstance(detections, ServingError) or detections is None:
            return _CascadeJob(run, fixed=[])  # the first stage failed: no boxes to mark
        if not isinstance(detections, list):
            text = f"{spec.on} did not return a list of detections (got {type(detections).__name__})"
            self._warn_once(f"pipeline {self.pipeline!r} › CASCADE {spec.name}: {text}")
            return _CascadeJob(run, fixed=ServingError(spec.engine.signature, "config", text, spec.engine.model))
        if run.colocated is not None:
            return self._colocated_job(ticket, run, len(detections))
        job = _CascadeJob(run, len(detections))
        indices, skipped = select_boxes(detections, spec)
        self.cascade_skipped += skipped
        if not indices:
            return job
        image = ticket.inp.image
        failure = run.error
        if failure is None and (image is None or getattr(image, "ndim", 0) < 2):
            failure = ServingError(spec.engine.signature, "config", "the input has no image to crop", spec.engine.model)
        if failure is not None:
            job.errors = dict.fromkeys(indices, failure)
            self.cascade_errors += len(indices)
            return job
        crops = []
        for index in indices:
            try:
                crops.append(crop_detection(image, detections[index], spec.padding, spec.crop, spec.max_side))
                job.indices.append(index)
            except Exception as exc:  # a malformed box or quad marks that box alone
                text = f"box {index} could not be cropped: {type(exc).__name__}: {exc}"
                job.errors[index] = ServingError(spec.engine.signature, "inference_error", text, spec.engine.model)
        self.cascade_errors += len(job.errors)
        if crops:
            assert run.client is not None
            slots = self.crop_slots
            if slots is None:
                slots = self.crop_slots = CropSlots(4, self.manager.use_shm if self.manager is not None else False)
            job.batch = submit_crops(run.client, slots, crops, self._cond, ticket.inp.seq, ticket.inp.timestamp)
            self.cascade_crops += len(crops)
        return job

    def _colocated_job(self, ticket: Ticket, run: CascadeRun, count: int) -> _CascadeJob:
        """A co-located cascade's outcome, which came back with the first stage's answer."""
        assert run.colocated is not None
        outcome = ticket.cascaded.get(run.on_key, {}).get(run.colocated.key)
        if not isinstance(outcome, CascadeOutcome):
            text = "the first stage's server did not run the co-located cascade"
            outcome = CascadeOutcome([run.colocated.error("unavailable", text)] * count)
        aligned = outcome.aligned
        self.cascade_crops += outcome.crops
        self.cascade_skipped += outcome.skipped
        if isinstance(aligned, list):
            self.cascade_errors += sum(isinstance(v, ServingError) for v in aligned)
        return _CascadeJob(run, count, fixed=aligned)

    def _finish_cascades(self, ticket: Ticket) -> dict[CascadeRun, Any]:
        """Wait for the input's cascades (starting them, and those of the other inputs ready, first); the aligned
        results by run."""
        self._start_ready_cascades()
        jobs = self._cascade_jobs.pop(ticket, None)
        if jobs is None:  # the input is done: it was not when its cascades were last looked at
            jobs = [self._start_cascade(ticket, run) for run in ticket.plan.cascades]
        if self._cascade_order and self._cascade_order[0] is ticket:
            self._cascade_order.popleft()
        else:
            try:
                self._cascade_order.remove(ticket)
            except ValueError:
                pass
        results = {}
        for job in jobs:
            if job.batch is not None:
                client = job.run.client
                cap = LOAD_WAIT + (client.server.settings.inference_timeout if client is not None else 30.0) + 10.0
                self._wait_crops(job.batch, cap)
                self.cascade_errors += sum(isinstance(v, ServingError) for v in job.batch.results)
            results[job.run] = job.aligned()
        return results

    def _wait_crops(self, batch: CropBatch, cap: float) -> None:
        """Wait for a frame's crops; meanwhile, each time another input's first stage is answered (it wakes this
        wait), send that input's crops too, so the second model always has the next ones queued."""
        deadline = time.monotonic() + cap
        while True:
            with self._cond:
                if batch.done or self._stopped:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.25))
            if not batch.done:
                self._start_ready_cascades()
        if not batch.done:  # its unanswered crops get a ServingError (their segment is freed when answered)
            stopping = ("stopping", "the pipeline is stopping")
            kind, text = stopping if self._stopped else ("unavailable", f"no answer within {cap:g} s")
            batch.give_up(ServingError("?", kind, text))

    def _slots(self, window: int) -> FrameSlots:
        slots = self.slots
        if slots is None:
            use_shm = self.manager.use_shm if self.manager is not None else False
            slots = self.slots = FrameSlots(window, use_shm)
        elif slots.count < window:
            slots.resize(window)
        return slots

    def watch(self, ticket: Ticket) -> bool:
        """The dispatcher is about to wait for a new input while ``ticket`` is in flight: have ``wake`` called when
        its results are in. False when they already are (do not wait)."""
        with self._cond:
            if ticket.done:
                return False
            self._watched = ticket
            return True

    def unwatch(self) -> None:
        """The dispatcher's wait is over (an input came, or it was woken)."""
        self._watched = None

    def _done(self, ticket: Ticket) -> None:
        """``ticket`` completed (a server thread; its ``done`` is set under ``_cond``): wake the dispatcher if it
        waits for that ticket's results. ``watch`` reads ``done`` under the same lock, so no wake is lost."""
        with self._cond:
            if self._watched is not ticket:
                return
            self._watched = None
        if self._wake is not None:
            self._wake()

    def wait(self, ticket: Ticket) -> None:
        """Block until ``ticket`` is done (or the stage stops)."""
        if not ticket.done:
            self._wait(ticket, ticket.plan)

    def complete(self, ticket: Ticket) -> tuple[Input, dict[InstanceKey, Input] | None]:
        """Wait for the ticket's results; returns the input with its inferences, and per-instance views if any."""
        plan: ServingPlan = ticket.plan
        if not ticket.done:
            self._wait(ticket, plan)
        if ticket.slot is not None and self.slots is not None:
            self._holding.discard(ticket)
            ticket.hand_back(self.slots.release)  # at once, or when the last server lets go of the frame
        if plan.clients:
            self.in_flight -= 1
        if self._retiring:
            with self._update_lock:
                self._close_retired()
        inp = ticket.inp
        inferences = inp.inferences
        results = ticket.results
        for signature, key in plan.shared.items():
            value = results.get(key)
            inferences[signature] = value
            if isinstance(value, ServingError):
                self.errors += 1
        for signature, error in plan.markers.items():
            inferences[signature] = error
        cascaded = self._finish_cascades(ticket) if plan.cascades else {}
        for name, run in plan.cascade_shared.items():
            inferences[name] = cascaded.get(run)
        if not plan.per_instance and not plan.cascade_per_instance:
            return inp, None
        views = {}
        for instance in {*plan.per_instance, *plan.cascade_per_instance}:
            own = {signature: results.get(key) for signature, key in plan.per_instance.get(instance, {}).items()}
            own.update({n: cascaded.get(r) for n, r in plan.cascade_per_instance.get(instance, {}).items()})
            views[instance] = dataclasses.replace(inp, inferences={**inferences, **own})
        return inp, views

    def _wait(self, ticket: Ticket, plan: ServingPlan) -> None:
        with self._cond:
            if not ticket.done:
                self._cond.wait_for(lambda: ticket.done or self._stopped, plan.wait_cap)
        if ticket.done:
            return
        kind, text = ("stopping", "the pipeline is stopping") if self._stopped else ("unavailable", "no answer in time")
        for client in plan.clients:
            if client.key not in ticket.results:
                ticket.resolve(client.key, client.error(kind, text))

    def run(self, inp: Input) -> Input:
        """Submit and wait: the input with its inferences filled in (at once when no model is needed)."""
        if not self.plan.active:
            return inp
        return self.complete(self.submit(inp))[0]

    # --- stop (node thread, then dispatcher) --------------------------------------------------------------------
    def stop(self) -> None:
        """Wake a dispatcher waiting for results: the pipeline is stopping."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def close(self) -> None:
        """Release the models and the frame slots (called by the dispatcher thread when it ends)."""
        with self._update_lock:
            self._closed = True
            for client in [*self._clients.values(), *self._cascade_clients.values(), *self._retiring]:
                client.close()
            self._clients = {}
            self._cascade_clients = {}
            self._retiring = []
            self.plan = ServingPlan()
        self._cascade_jobs.clear()  # crops still in flight free their segment when answered
        self._cascade_order.clear()
        crop_slots, self.crop_slots = self.crop_slots, None
        if crop_slots is not None:
            crop_slots.close()
        slots, self.slots = self.slots, None
        if slots is not None:
            # inputs still in flight (the pipeline stopped without waiting for them) hand their slots back as
            # their servers answer; close() unlinks the others now and those then: never under a batch in flight
            for ticket in self._holding:
                ticket.hand_back(slots.release)
            self._holding.clear()
            slots.close()

    def snapshot(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "engines": sorted({*plan.shared, *plan.markers, *(s for m in plan.per_instance.values() for s in m)}),
            "in_flight": self.in_flight,
            "max_in_flight": self.window,
            "errors": self.errors,
            **({"cascades": self._cascade_snapshot(plan)} if plan.cascades else {}),
        }

    def _cascade_snapshot(self, plan: ServingPlan) -> dict[str, Any]:
        return {
            "names": sorted({run.spec.name for run in plan.cascades}),
            "colocated": sorted({run.spec.name for run in plan.cascades if run.colocated is not None}),
            "crops": self.cascade_crops,
            "skipped_over_max_crops": self.cascade_skipped,
            "box_errors": self.cascade_errors,
        }


def _colocated_by_model(runs: tuple[CascadeRun, ...]) -> dict[ModelKey, tuple[ColocatedCascade, ...]]:
    """The co-located cascades each first-stage model runs on the pipeline's frames."""
    found: dict[ModelKey, tuple[ColocatedCascade, ...]] = {}
    for run in runs:
        if run.colocated is not None:
            found[run.on_key] = (*found.get(run.on_key, ()), run.colocated)
    return found


def _split_uniform(
    per_instance: dict[InstanceKey, dict[str, ModelKey]],
) -> tuple[dict[str, ModelKey], dict[InstanceKey, dict[str, ModelKey]]]:
    """Signatures every instance uses with one config go to the shared input; the rest get per-instance views."""
    keys: dict[str, set[ModelKey]] = {}
    for mapping in per_instance.values():
        for signature, key in mapping.items():
            keys.setdefault(signature, set()).add(key)
    shared = {signature: next(iter(found)) for signature, found in keys.items() if len(found) == 1}
    split = {
        instance: {s: k for s, k in mapping.items() if s not in shared}
        for instance, mapping in per_instance.items()
        if any(s not in shared for s in mapping)
    }
    return shared, split
