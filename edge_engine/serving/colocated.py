"""Co-located cascades: the second model runs inside the first stage's server process (``CASCADE`` ``COLOCATE``).

A cascade declared with ``"COLOCATE": true`` sends no crops to a server of its own: each frame's request to the
first stage carries the cascade (:class:`ColocatedCascade`, in :class:`~edge_engine.serving.worker.FrameItem`'s
``cascades``), and the first stage's worker process, right after its batch, selects each frame's boxes, crops
them from the frame it already has in shared memory, runs the second model on the crops of every frame of the
batch (several frames and pipelines per second-stage batch, up to its ``MAX_BATCH_SIZE``), and returns the first
stage's result and the aligned crop results together (:class:`Cascaded`). A frame's cascade then costs no second
round trip between the node and a server process.

The second model is loaded in each first-stage process at the first frame that needs it (one copy per process,
whatever the number of pipelines), and closed with it; while it loads, the batch's watchdog allows the load's time
(``LOAD_TIMEOUT``, told by a :class:`~edge_engine.serving.worker.Loading` message), not only ``INFERENCE_TIMEOUT``.
A model that fails to load is not tried again by that process (its boxes get ``load_failed`` at once) until the
process restarts or the cascade's ``PARAMS`` change. What stays as on the shared-server path: the boxes chosen
(``CLASSES``, ``MIN_SCORE``, the best ``MAX_CROPS``), the crops (``PADDING``, ``CROP``, ``MAX_SIDE``) and the
answers aligned with the detections; a second model that does not load, raises, or returns the wrong number of
results marks the boxes with a :class:`~edge_engine.errors.ServingError` (``load_failed``, ``inference_error``),
never the frame. The price: the second model's time counts in the first stage's batch (its ``INFERENCE_TIMEOUT``),
and a second model that crashes the process loses that batch's first-stage results too.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from edge_engine.errors import ServingError
from edge_engine.serving.worker import WorkerSpec

if TYPE_CHECKING:
    from edge_engine.serving.cascade import CascadeSpec


@dataclass(frozen=True)
class ColocatedCascade:
    """What a first-stage process needs to run one cascade (picklable; the attribute names
    :func:`~edge_engine.serving.cascade.select_boxes` reads)."""

    key: str  # a hash of the cascade's identity: the first stage's answer names its results by it
    model_key: str  # the second model (plugin class and config): one loaded copy per process
    worker: WorkerSpec  # how to create the second model's plugin
    model: str  # its model, for the ServingErrors
    classes: tuple[str, ...]
    min_score: float
    padding: float
    max_crops: int
    crop: str
    max_side: int
    max_batch: int

    @classmethod
    def from_spec(cls, spec: CascadeSpec, models_dir: Path) -> ColocatedCascade:
        from edge_engine.serving.instance_models import ServerSettings

        engine = spec.engine
        model_key = f"{engine.key.cls.__module__}.{engine.key.cls.__qualname__}:{engine.key.config_json}"
        return cls(
            key=hashlib.sha1(repr((spec.name, spec.on, model_key, *spec.identity()[3:])).encode()).hexdigest()[:16],
            model_key=model_key,
            worker=WorkerSpec.for_class(engine.record.cls, engine.config, models_dir, 0),
            model=engine.model,
            classes=spec.classes,
            min_score=spec.min_score,
            padding=spec.padding,
            max_crops=spec.max_crops,
            crop=spec.crop,
            max_side=spec.max_side,
            max_batch=ServerSettings.from_engine(engine, models_dir).max_batch,
        )

    def error(self, kind: str, text: str) -> ServingError:
        return ServingError(self.worker.signature, kind, text, self.model)

    @cached_property
    def _blob(self) -> bytes:
        return pickle.dumps(tuple(getattr(self, f.name) for f in fields(self)), pickle.HIGHEST_PROTOCOL)

    def __reduce__(self) -> tuple[Any, ...]:
        # it travels with every frame of its pipeline: pickled once, and read once per process (:func:`_cascade`)
        return _cascade, (self._blob,)


_READ: dict[bytes, ColocatedCascade] = {}


def _cascade(blob: bytes) -> ColocatedCascade:
    """A first-stage process's copy of a cascade, unpickled at its first frame only."""
    found = _READ.get(blob)
    if found is None:
        if len(_READ) > 256:
            _READ.clear()
        found = _READ[blob] = ColocatedCascade(*pickle.loads(blob))
    return found


class CascadeOutcome(NamedTuple):
    """One co-located cascade on one frame: a value per detection (a result, a ``ServingError``, or None for a
    box not cropped), or a ``ServingError`` for all when the first stage's answer is not a list of detections."""

    aligned: list[Any] | ServingError
    crops: int = 0
    skipped: int = 0  # boxes past MAX_CROPS


class Cascaded(NamedTuple):
    """A first stage's answer for a frame with co-located cascades: its own result and each cascade's outcome (by
    :attr:`ColocatedCascade.key`). :class:`~edge_engine.serving.tickets.Ticket` takes it apart."""

    first: Any
    outcomes: dict[str, CascadeOutcome]


MAX_LOADED = 4  # second models one first-stage process keeps loaded (the least recently used one goes first)


class SecondStages:
    """In a first-stage process: the second models it loaded, and the cascades of one batch run on them.

    A cascade's model is keyed by its plugin class and config, so a live config change (``TEXT_READER``'s
    ``DIRECTION_THRESHOLD``, say) loads a new copy: at most ``max_loaded`` stay loaded, the least recently used
    one is closed to make room (and loaded again if a frame needs it later), so repeated changes do not pile up
    model copies in the process."""

    def __init__(self, log: logging.Logger, loading: Callable[[bool], Any] | None = None, max_loaded: int = MAX_LOADED):
        self.log = log
        self.loading = loading  # told when a model starts (True) and ends (False) loading: the batch's watchdog
        self.max_loaded = max(1, max_loaded)
        self._plugins: OrderedDict[str, Any] = OrderedDict()  # by model key, least recently used first
        self._failed: dict[str, str] = {}

    def run(
        self, frames: list[tuple[int, Any, Any, tuple[ColocatedCascade, ...]]], input_type: type
    ) -> dict[int, dict[str, CascadeOutcome]]:
        """``frames``: ``(index in the batch, first-stage answer, image, cascades)``; each frame's outcomes by key.
        Each cascade's crops of every frame run together, in batches of the second model's ``MAX_BATCH_SIZE``."""
        from edge_engine.serving.cascade import crop_detection, select_boxes

        outcomes: dict[int, dict[str, CascadeOutcome]] = {index: {} for index, _, _, _ in frames}
        pending: dict[str, tuple[ColocatedCascade, list[tuple[int, int, Any]]]] = {}  # key -> (cascade, crops)
        aligned: dict[tuple[int, str], list[Any]] = {}
        skipped_by: dict[tuple[int, str], int] = {}
        sent_by: dict[tuple[int, str], int] = {}
        for index, answer, image, cascades in frames:
            for cascade in cascades:
                if not isinstance(answer, list):
                    text = f"the first stage did not return a list of detections (got {type(answer).__name__})"
                    outcomes[index][cascade.key] = CascadeOutcome(cascade.error("config", text))
                    continue
                out: list[Any] = [None] * len(answer)
                aligned[(index, cascade.key)] = out
                chosen, skipped_by[(index, cascade.key)] = select_boxes(answer, cascade)  # type: ignore[arg-type]  # duck-typed: the selection fields
                crops = pending.setdefault(cascade.key, (cascade, []))[1]
                for box in chosen:
                    try:
                        crop = crop_detection(image, answer[box], cascade.padding, cascade.crop, cascade.max_side)
                    except Exception as exc:  # a malformed box or quad marks that box alone
                        text = f"box {box} could not be cropped: {type(exc).__name__}: {exc}"
                        out[box] = cascade.error("inference_error", text)
                        continue
                    crops.append((index, box, crop))  # a view of the frame: its slot is held until this batch answers
                    sent_by[(index, cascade.key)] = sent_by.get((index, cascade.key), 0) + 1
        for cascade, crops in pending.values():
            self._run_crops(cascade, crops, aligned, input_type)
        for (index, key), out in aligned.items():
            outcomes[index][key] = CascadeOutcome(out, sent_by.get((index, key), 0), skipped_by[(index, key)])
        return outcomes

    def failed(
        self, frames: list[tuple[int, Any, Any, tuple[ColocatedCascade, ...]]], text: str
    ) -> dict[int, dict[str, CascadeOutcome]]:
        """Outcomes when :meth:`run` itself raised: every detection of every cascade marked with the error."""
        outcomes: dict[int, dict[str, CascadeOutcome]] = {}
        for index, answer, _, cascades in frames:
            found = outcomes[index] = {}
            for cascade in cascades:
                error = cascade.error("inference_error", text)
                found[cascade.key] = CascadeOutcome([error] * len(answer) if isinstance(answer, list) else error)
        return outcomes

    def _run_crops(
        self,
        cascade: ColocatedCascade,
        crops: list[tuple[int, int, Any]],
        aligned: dict[tuple[int, str], list[Any]],
        input_type: type,
    ) -> None:
        if not crops:
            return
        plugin = self._plugin(cascade)
        if isinstance(plugin, ServingError):
            for index, box, _ in crops:
                aligned[(index, cascade.key)][box] = plugin
            return
        size = max(1, cascade.max_batch)
        for start in range(0, len(crops), size):
            chunk = crops[start : start + size]
            inputs = [input_type(crop, None, {}, 0, 0.0) for _, _, crop in chunk]
            try:
                answers = list(plugin.post_process(plugin.predict(plugin.pre_process(inputs)), inputs))
                if len(answers) != len(inputs):
                    raise ValueError(f"post_process returned {len(answers)} results for {len(inputs)} inputs")
            except Exception as exc:
                error = cascade.error("inference_error", f"{type(exc).__name__}: {exc}")
                answers = [error] * len(chunk)
            for (index, box, _), answer in zip(chunk, answers, strict=True):
                aligned[(index, cascade.key)][box] = answer

    def _plugin(self, cascade: ColocatedCascade) -> Any:
        """The second model's plugin, loaded at its first use in this process (or the ServingError it gave)."""
        plugin = self._plugins.get(cascade.model_key)
        if plugin is not None:
            self._plugins.move_to_end(cascade.model_key)
            return plugin
        failed = self._failed.get(cascade.model_key)
        if failed is None:
            from edge_engine.serving.worker import create_plugin

            if self.loading is not None:
                self.loading(True)
            try:
                while len(self._plugins) >= self.max_loaded:
                    self._close(self._plugins.popitem(last=False)[1])
                plugin = create_plugin(cascade.worker, self.log)
                plugin.on_init()
                self._plugins[cascade.model_key] = plugin
                return plugin
            except Exception as exc:
                failed = self._failed[cascade.model_key] = f"{type(exc).__name__}: {exc}"
                self.log.error("co-located model %s failed to load: %s", cascade.model, failed)
            finally:
                if self.loading is not None:
                    self.loading(False)
        return cascade.error("load_failed", failed)

    def close(self) -> None:
        while self._plugins:
            self._close(self._plugins.popitem(last=False)[1])

    def _close(self, plugin: Any) -> None:
        try:
            plugin.on_close()
        except Exception:
            self.log.exception("on_close of a co-located model raised")
