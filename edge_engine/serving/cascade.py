"""Cascades: a second model runs on the regions a first model found (decision 35).

Two ways in, one mechanism:

* **Declared in the pipeline** (no code). A business instance lists its cascades in ``CASCADE``::

      {"INSTANCE_ID": "cars", "AI_ENGINE": ["YOLO"],
       "CASCADE": [{"SIGNATURE": "ONNX", "ON": "YOLO", "AS": "COLOR", "CLASSES": ["car"], "MIN_SCORE": 0.5,
                    "PADDING": 0.1, "MAX_CROPS": 32, "CROP": "box", "MAX_SIDE": 320,
                    "PARAMS": {"ONNX_MODEL": "color.onnx", "INPUT_WIDTH": 64, "INPUT_HEIGHT": 64}}]}

  For each frame, the detections the ``ON`` engine returned (a list in the detection format, decision 34)
  are filtered (``CLASSES`` by name or id, ``score >= MIN_SCORE``), the best ``MAX_CROPS`` kept, each cropped
  from the frame (``CROP: "box"``: the axis-aligned box grown by ``PADDING`` × its width/height on each side;
  ``"quad"``: the detection's ``quad`` perspective-warped to an upright rectangle, the box when it has none;
  ``"text_line"``: the quad warped as OCR reads a text line, see :func:`crop_text_line`),
  downscaled to ``MAX_SIDE`` pixels on its longer side when bigger (0: never), and sent to the ``SIGNATURE``
  serving plugin configured with ``PARAMS`` (the keys ``STARTUP_AI_ENGINE_PARAMS`` would give it). The
  instance then finds ``inp.inferences[AS]`` (``AS`` defaults to ``SIGNATURE``): a list **aligned with**
  ``inp.inferences[ON]``, one entry per detection: the second model's result for that box's crop, a
  :class:`~edge_engine.errors.ServingError` when the second stage failed for it (the frame and the other
  boxes are not affected), or ``None`` when the box was not cropped (filtered out, or beyond ``MAX_CROPS``).
  When ``ON`` itself failed, ``inp.inferences[AS]`` is ``[]``. The detections themselves are not changed,
  so they stay plain JSON for payloads.
  With ``"COLOCATE": true`` the second model runs inside the ``ON`` model's server processes instead of a
  server of its own: same boxes, crops and aligned results, one round trip per frame
  (:mod:`~edge_engine.serving.colocated`).

* **From a business plugin** (anything else: chains, custom crops, rotations)::

      crops = [crop_detection(inp.image, det, mode="quad") for det in detections]
      results = self.context.infer("PP_OCR_DIRECTION", crops, params={"MAX_BATCH_SIZE": 8})
      for det, result in zip(detections, results):
          if isinstance(result, ServingError): ...

  :meth:`ModelCaller.infer` (``PluginContext.infer``, ``BusinessPlugin.infer``) takes any list of numpy
  arrays (at most :data:`INFER_MAX_CROPS`), blocks until every one has an answer or ``timeout`` seconds
  passed, and returns the results aligned with the crops (a ``ServingError`` for each crop that got none).
  A wrong signature or config raises ``ValueError`` (a programming error, not a model failure). The first
  call for a model starts its server and waits for it to load; the instance keeps the model until it stops.

Either way the crops run **in the same shared model servers** as first stages (one per (plugin, config)
in the node, whatever the number of pipelines): a frame's crops are packed into one shared-memory segment
(:class:`CropSlots`), each crop is one request, so the server's fair cross-pipeline batcher batches crops of
many frames and pipelines together, and each answer comes back to its crop's index (:class:`CropBatch`).
The segment is reused only when every crop in it was answered. Crop helpers for plugins:
:func:`crop_detection` (and :func:`crop_box`, :func:`crop_quad`, :func:`crop_text_line`), exported from
:mod:`edge_engine.api`.

The pipeline side is :class:`~edge_engine.runtime.serving_stage.ServingStage`: each time it sends a frame or
hands one on, it sends the crops of every frame in flight whose first stage is answered (so crops of
consecutive frames batch together), and it hands a frame on once its cascades are answered. The config is
checked with the pipeline (:func:`check_cascades`; errors name file › pipeline › plugin › instance ›
``CASCADE``).
"""

from __future__ import annotations

import heapq
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_engine.constants import KIND_SERVING
from edge_engine.errors import ConfigIssue, ServingError
from edge_engine.plugin.config_keys import Key, check_value, defaults
from edge_engine.serving.frame_slots import FrameSlots
from edge_engine.serving.instance_models import ENGINE_KEY, PARAMS_KEY, EngineSpec, engine_names, resolve_engines
from edge_engine.serving.worker import FrameItem

if TYPE_CHECKING:
    from edge_engine.plugin.registry import PluginRegistry
    from edge_engine.serving.manager import ServingManager
    from edge_engine.serving.tickets import ModelClient

CASCADE_KEY = "CASCADE"
INFER_MAX_CROPS = 1024  # crops of one infer() call
CROP_ALIGN = 64  # bytes: each crop starts on a cache line of its segment
LOAD_WAIT = 120.0  # seconds a first crop may wait for its model to load (the server's LOAD_TIMEOUT)
_PENDING = object()
CROP_MODES = ("box", "quad", "text_line")

ENTRY_SCHEMA: dict[str, Key] = {
    "SIGNATURE": Key(None, type=str, required=True, doc="the serving plugin run on the crops"),
    "ON": Key("", type=str, doc="the AI_ENGINE whose detections are cropped (default: the instance's only one)"),
    "AS": Key("", type=str, doc="where the results go: inp.inferences[AS] (default: SIGNATURE)"),
    "CLASSES": Key([], type=list, doc="class names or ids to crop; [] = all"),
    "MIN_SCORE": Key(0.0, min=0, max=1, doc="crop only detections scoring at least this"),
    "PADDING": Key(0.0, min=0, max=10, doc="grow each box by this fraction of its width/height on each side"),
    "MAX_CROPS": Key(32, type=int, min=1, max=1024, doc="crops per frame, best scores first"),
    "CROP": Key(
        "box",
        type=str,
        choices=CROP_MODES,
        doc="box: axis-aligned; quad: perspective-warped quad; text_line: the quad as OCR crops a line",
    ),
    "MAX_SIDE": Key(320, type=int, min=0, max=8192, doc="downscale crops whose longer side exceeds this; 0 = never"),
    "PARAMS": Key({}, type=dict, doc="the second model's config (as STARTUP_AI_ENGINE_PARAMS would give it)"),
    "COLOCATE": Key(
        False,
        type=bool,
        doc="run the second model inside the first stage's server processes (one round trip per frame, a copy "
        "of the second model in each of them)",
    ),
}


# --- configuration ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CascadeSpec:
    """One validated ``CASCADE`` entry of an instance."""

    name: str  # AS: the inferences key of its results
    on: str  # the first-stage signature whose detections are cropped
    engine: EngineSpec  # the second stage
    classes: tuple[str, ...]
    min_score: float
    padding: float
    max_crops: int
    crop: str
    max_side: int
    colocate: bool = False  # run in the first stage's server processes (see edge_engine.serving.colocated)

    def identity(self) -> tuple[Any, ...]:
        """Equal for two instances declaring the same cascade (they then share its crops and results)."""
        return (
            self.name,
            self.on,
            self.engine.key,
            self.classes,
            self.min_score,
            self.padding,
            self.max_crops,
            self.crop,
            self.max_side,
            self.colocate,
        )


def declared_cascades(instance_config: Mapping[str, Any], plugin_cls: Any = None) -> Any:
    """The cascade entries an instance runs: its ``CASCADE``, or what its plugin class derives from its config
    (``BusinessPlugin.cascades``: ``TEXT_READER`` adds its text lines)."""
    derive = getattr(plugin_cls, "cascades", None)
    if derive is None:
        return instance_config.get(CASCADE_KEY) or []
    return derive(instance_config)


def resolve_cascades(
    instance_config: Mapping[str, Any], registry: PluginRegistry, plugin_cls: Any = None
) -> tuple[list[CascadeSpec], list[str]]:
    """The instance's cascades (:func:`declared_cascades`), and sentences saying what is wrong with the others
    (``entry 0 (ONNX) › ...``)."""
    entries = declared_cascades(instance_config, plugin_cls)
    if not isinstance(entries, list):
        return [], ["expected a list of cascades"]
    specs: list[CascadeSpec] = []
    problems: list[str] = []
    firsts = _first_stages(instance_config, registry)
    names_taken = {s.upper() for s in firsts}
    for index, entry in enumerate(entries):
        spec, found = _resolve_entry(index, entry, firsts, registry)
        if spec is not None and spec.name.upper() in names_taken:
            found.append(
                f"{_entry_label(index, entry)} › key 'AS': {spec.name!r} is already an AI_ENGINE or "
                "another cascade's name; give this cascade its own AS"
            )
        problems.extend(found)
        if spec is not None and not found:
            names_taken.add(spec.name.upper())
            specs.append(spec)
    return specs, problems


def _first_stages(instance_config: Mapping[str, Any], registry: PluginRegistry) -> dict[str, str]:
    """The instance's AI_ENGINE names known to the registry: upper-cased name or alias → signature."""
    found: dict[str, str] = {}
    for name in engine_names(instance_config):
        record = registry.get(KIND_SERVING, name)
        if record is not None:
            found[name.upper()] = record.signature
            found[record.signature.upper()] = record.signature
    return found


def _entry_label(index: int, entry: Any) -> str:
    signature = entry.get("SIGNATURE") if isinstance(entry, Mapping) else None
    return f"entry {index}" + (f" ({signature})" if isinstance(signature, str) and signature else "")


def _resolve_entry(
    index: int, entry: Any, firsts: dict[str, str], registry: PluginRegistry
) -> tuple[CascadeSpec | None, list[str]]:
    label = _entry_label(index, entry)
    if not isinstance(entry, Mapping):
        return None, [f"{label}: expected an object"]
    problems = []
    for key, value in entry.items():
        if key not in ENTRY_SCHEMA:
            near = get_close_matches(str(key).upper(), sorted(ENTRY_SCHEMA), n=1, cutoff=0.6)
            problems.append(f"{label} › key {key!r}: unknown key" + (f"; did you mean {near[0]!r}?" if near else ""))
            continue
        issue = check_value(ENTRY_SCHEMA[key], value)
        if issue:
            message, hint = issue
            problems.append(f"{label} › key {key!r}: {message} (got {value!r})" + (f"; {hint}" if hint else ""))
    if "SIGNATURE" not in entry:
        problems.append(f"{label} › key 'SIGNATURE': missing required key (the serving plugin run on the crops)")
    if problems:
        return None, problems
    config = {**defaults(ENTRY_SCHEMA), **entry}
    on = _resolve_on(config["ON"], firsts)
    if isinstance(on, list):
        return None, [f"{label} › key 'ON': {text}" for text in on]
    engine, found = _second_stage(config["SIGNATURE"], config["PARAMS"], registry)
    if engine is None:
        return None, [f"{label} › {text}" for text in found]
    if config["COLOCATE"] and _fetched_model(engine):
        return None, [
            f"{label} › key 'COLOCATE': the second model comes from MODEL_URL, which only its own server fetches; "
            "drop COLOCATE (or MODEL_URL: name a file in _models/)"
        ]
    classes = tuple(str(c) for c in config["CLASSES"])
    return CascadeSpec(
        name=config["AS"] or engine.signature,
        on=on,
        engine=engine,
        classes=classes,
        min_score=float(config["MIN_SCORE"]),
        padding=float(config["PADDING"]),
        max_crops=int(config["MAX_CROPS"]),
        crop=config["CROP"],
        max_side=int(config["MAX_SIDE"]),
        colocate=bool(config["COLOCATE"]),
    ), []


def _fetched_model(engine: EngineSpec) -> bool:
    """Whether the engine's model is fetched by its server from ``MODEL_URL``."""
    reader = getattr(engine.record.cls, "model_source", None)
    try:
        return reader is not None and reader(engine.config) is not None
    except ValueError:
        return False  # wrong MODEL_URL keys: the plugin's own check says so


def _resolve_on(on: str, firsts: dict[str, str]) -> str | list[str]:
    signatures = sorted(set(firsts.values()))
    if not on:
        if len(signatures) == 1:
            return signatures[0]
        if not signatures:
            return [f"the instance names no installed serving plugin in {ENGINE_KEY}: a cascade needs a first stage"]
        return [f"the instance has several AI_ENGINE ({', '.join(signatures)}): say which one's boxes to crop"]
    signature = firsts.get(on.upper())
    if signature is None:
        hint = f"; its {ENGINE_KEY} names {', '.join(signatures)}" if signatures else ""
        return [f"{on!r} is not in the instance's {ENGINE_KEY}{hint}"]
    return signature


def _second_stage(signature: str, params: Mapping[str, Any], registry: PluginRegistry) -> tuple[Any, list[str]]:
    """The second stage's engine, or the sentences saying why there is none."""
    engines, unknown, problems = resolve_engines(
        {ENGINE_KEY: [signature], PARAMS_KEY: {signature: dict(params)}}, registry
    )
    if unknown:
        near = registry.suggest(KIND_SERVING, signature)
        hint = f"; did you mean {near!r}?" if near else ""
        return None, [f"key 'SIGNATURE': no serving plugin has the signature {signature!r}{hint}"]
    if problems:
        return None, [f"key 'PARAMS': serving plugin {sig or signature!r} › {text}" for sig, text in problems]
    return engines[0], []


def check_cascades(
    instance_config: Mapping[str, Any],
    registry: PluginRegistry,
    where: dict[str, Any],
    models_dir: Path | None,
    plugin_cls: Any = None,
) -> list[ConfigIssue]:
    """Configuration issues of an instance's cascades (:func:`declared_cascades`, with the second models' own
    checks: files, shapes)."""
    try:
        if not declared_cascades(instance_config, plugin_cls):
            return []
    except Exception as exc:  # a plugin's cascades() must not break validation
        return [ConfigIssue(f"the plugin's cascades() raised {type(exc).__name__}: {exc}", key=CASCADE_KEY, **where)]
    specs, problems = resolve_cascades(instance_config, registry, plugin_cls)
    issues = [ConfigIssue(text, key=CASCADE_KEY, **where) for text in problems]
    for index, spec in enumerate(specs):
        try:
            found = spec.engine.record.cls.check_config(spec.engine.config, models_dir)  # type: ignore[attr-defined]  # a serving plugin's classmethod (the record types its class as PluginBase)
        except Exception as exc:  # a plugin's check must not break validation
            found = [f"check_config raised {type(exc).__name__}: {exc}"]
        label = f"entry {index} ({spec.engine.signature}) › key 'PARAMS': serving plugin {spec.engine.signature!r}"
        issues.extend(ConfigIssue(f"{label} › {text}", key=CASCADE_KEY, **where) for text in found)
    return issues


# --- which boxes, and their crops --------------------------------------------------------------------------------
def select_boxes(detections: Sequence[Any], spec: CascadeSpec) -> tuple[list[int], int]:
    """Indices (in list order) of the detections to crop, at most ``MAX_CROPS`` of the best-scoring ones that pass
    the class and score filters; and how many passing ones were left out by that bound."""
    classes = set(spec.classes)
    min_score = spec.min_score
    passing: list[tuple[float, int]] = []
    for index, det in enumerate(detections):
        if not isinstance(det, Mapping):
            continue
        score = det.get("score", 0.0)
        if score < min_score:
            continue
        if classes and str(det.get("class_name")) not in classes and str(det.get("class_id")) not in classes:
            continue
        passing.append((score, index))
    if len(passing) <= spec.max_crops:
        return [i for _, i in passing], 0
    best = heapq.nlargest(spec.max_crops, passing, key=lambda item: (item[0], -item[1]))
    return sorted(i for _, i in best), len(passing) - spec.max_crops


def crop_box(image: Any, box: Sequence[float], padding: float = 0.0, max_side: int = 0) -> Any:
    """The part of ``image`` inside ``box`` (xyxy, frame pixels) grown by ``padding`` × its width and height on
    each side, clipped to the frame (at least one pixel), downscaled to ``max_side`` when bigger (0: never).
    Without downscaling it is a view of ``image`` (copy it to keep it)."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left = min(max(int(x1 - pad_x), 0), width - 1)
    top = min(max(int(y1 - pad_y), 0), height - 1)
    right = max(min(int(-(-(x2 + pad_x) // 1)), width), left + 1)
    bottom = max(min(int(-(-(y2 + pad_y) // 1)), height), top + 1)
    return _fit(image[top:bottom, left:right], max_side)


def crop_quad(image: Any, quad: Sequence[Sequence[float]], padding: float = 0.0, max_side: int = 0) -> Any:
    """The quadrilateral ``quad`` (four ``[x, y]`` corners clockwise from the top-left) warped to an upright
    rectangle as wide as its longer horizontal side and as high as its longer vertical side, grown by
    ``padding`` around its centre first, downscaled to ``max_side`` when bigger (0: never). Pixels outside the
    frame repeat its border."""
    import cv2

    points, width, height = _quad_sides(quad, padding)
    scale = min(1.0, max_side / max(width, height)) if max_side and max(width, height) > 0 else 1.0
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    return _warp(image, points, out_w, out_h, cv2.INTER_LINEAR)


def crop_text_line(image: Any, quad: Sequence[Sequence[float]], padding: float = 0.0, max_side: int = 0) -> Any:
    """A text line's crop as PP-OCR (and RapidOCR) makes it: ``quad`` (grown by ``padding`` around its centre)
    warped to a rectangle as wide as its longer horizontal side and as high as its longer vertical side (sizes
    truncated to whole pixels), with cubic interpolation and the frame's border repeated; a crop at least 1.5
    times taller than wide is vertical text, turned a quarter counter-clockwise; then downscaled to
    ``max_side`` when bigger (0: never)."""
    import cv2
    import numpy as np

    points, width, height = _quad_sides(quad, padding)
    crop = _warp(image, points, max(1, int(width)), max(1, int(height)), cv2.INTER_CUBIC)
    if crop.shape[0] >= 1.5 * crop.shape[1]:
        crop = np.ascontiguousarray(np.rot90(crop))
    return _fit(crop, max_side)


def _quad_sides(quad: Sequence[Sequence[float]], padding: float) -> tuple[Any, float, float]:
    """The quad's corners (moved away from its centre by ``padding`` × its size on each side), its longer
    horizontal side and its longer vertical side."""
    import numpy as np

    points = np.asarray(quad, dtype=np.float32).reshape(4, 2)
    if padding:
        centre = points.mean(axis=0)
        points = centre + (points - centre) * (1.0 + 2.0 * padding)
    width = max(np.linalg.norm(points[1] - points[0]), np.linalg.norm(points[2] - points[3]))
    height = max(np.linalg.norm(points[3] - points[0]), np.linalg.norm(points[2] - points[1]))
    return points, float(width), float(height)


def _warp(image: Any, points: Any, width: int, height: int, interpolation: int) -> Any:
    """The quad ``points`` warped to an upright ``width`` × ``height`` rectangle; pixels outside the frame repeat
    its border."""
    import cv2
    import numpy as np

    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(points.astype(np.float32), target)
    return cv2.warpPerspective(image, matrix, (width, height), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)


def crop_detection(
    image: Any, detection: Mapping[str, Any], padding: float = 0.0, mode: str = "box", max_side: int = 0
) -> Any:
    """A detection's crop as a cascade makes it: ``mode="box"`` (:func:`crop_box`), ``"quad"``
    (:func:`crop_quad` of its ``quad``; its box, as ``"box"``, when it has none) or ``"text_line"``
    (:func:`crop_text_line` of its ``quad``; of its box's corners when it has none)."""
    if mode not in CROP_MODES:
        raise ValueError(f"mode must be one of {', '.join(CROP_MODES)} (got {mode!r})")
    if mode == "text_line":
        return crop_text_line(image, detection.get("quad") or _corners(detection["box"]), padding, max_side)
    if mode == "quad" and detection.get("quad"):
        return crop_quad(image, detection["quad"], padding, max_side)
    return crop_box(image, detection["box"], padding, max_side)


def _corners(box: Sequence[float]) -> list[list[float]]:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def _fit(crop: Any, max_side: int) -> Any:
    height, width = crop.shape[:2]
    longer = max(height, width)
    if not max_side or longer <= max_side:
        return crop
    import cv2

    scale = max_side / longer
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


# --- crops in shared memory, answers aligned ---------------------------------------------------------------------
class CropSlots(FrameSlots):
    """A ring of shared-memory segments, each holding all the crops of one frame (or one ``infer`` call) packed
    one after another; a crop's reference is ``(segment, shape, dtype, offset)``. Pipe mode: the crops' bytes."""

    def __init__(self, count: int, use_shm: bool):
        super().__init__(count, use_shm, prefix="eec")

    def put_many(self, slot: int, crops: Sequence[Any]) -> list[tuple[Any, ...]]:
        import numpy as np

        arrays = [c if isinstance(c, np.ndarray) else np.asarray(c) for c in crops]  # views are copied once, below
        offsets, total = [], 0
        for array in arrays:
            total = -(-total // CROP_ALIGN) * CROP_ALIGN
            offsets.append(total)
            total += array.nbytes
        if self.use_shm:
            segment = self._segment(slot, max(1, total))
            if segment is not None:
                name = self._names[slot]
                refs: list[tuple[Any, ...]] = []
                for array, offset in zip(arrays, offsets, strict=True):
                    np.ndarray(array.shape, array.dtype, buffer=segment.buf, offset=offset)[...] = array
                    refs.append((name, array.shape, array.dtype.str, offset))
                return refs
        return [(array.tobytes(), array.shape, array.dtype.str) for array in arrays]


class CropBatch:
    """The crops of one frame (or call) on their way through one model server; ``results[i]`` is crop ``i``'s
    answer. The crops' segment goes back to its ring when every crop was answered (not when the waiter gives up:
    a server may still read it)."""

    __slots__ = ("cond", "done", "held", "release", "remaining", "results", "slot")

    def __init__(self, count: int, cond: threading.Condition, slot: int | None, release: Any):
        self.cond = cond
        self.results: list[Any] = [_PENDING] * count
        self.remaining = count
        self.held = count
        self.slot = slot
        self.release = release
        self.done = count == 0

    def answer(self, index: int, value: Any) -> None:
        """A server's answer for crop ``index`` (any thread)."""
        free = None
        with self.cond:
            self.held -= 1
            if self.results[index] is _PENDING:
                self.results[index] = value
                self.remaining -= 1
                if self.remaining <= 0 and not self.done:
                    self.done = True
                    self.cond.notify_all()
            if self.held <= 0 and self.slot is not None:
                free, self.slot = self.slot, None
        if free is not None:
            self.release(free)

    def give_up(self, error: ServingError) -> None:
        """The waiter stops waiting: unanswered crops get ``error`` (their segment is freed when answered)."""
        with self.cond:
            for index, value in enumerate(self.results):
                if value is _PENDING:
                    self.results[index] = error
            self.remaining = 0
            self.done = True


class _CropTicket:
    """What a crop's request resolves (the server calls ``ticket.resolve(key, value, served=True)``)."""

    __slots__ = ("batch", "index")

    def __init__(self, batch: CropBatch, index: int):
        self.batch = batch
        self.index = index

    def resolve(self, key: Any, value: Any, served: bool = False) -> None:
        self.batch.answer(self.index, value)


def submit_crops(
    client: ModelClient,
    slots: CropSlots,
    crops: Sequence[Any],
    cond: threading.Condition,
    seq: int = 0,
    timestamp: float = 0.0,
) -> CropBatch:
    """Pack ``crops`` into one segment and queue one request per crop on ``client``'s server; never blocks."""
    if not crops:
        return CropBatch(0, cond, None, slots.release)
    slot = slots.acquire()
    try:
        refs = slots.put_many(slot, crops)
    except BaseException:
        slots.release(slot)
        raise
    batch = CropBatch(len(refs), cond, slot, slots.release)
    # all these crops are coming: the batcher may send them without waiting MAX_WAIT_MS for more
    client.window = max(1, client.outstanding + len(refs))
    client.submit_many(
        [(_CropTicket(batch, index), FrameItem(ref, None, {}, seq, timestamp)) for index, ref in enumerate(refs)]
    )
    return batch


def wait_batch(batch: CropBatch, cap: float, stopped: Any = None) -> None:
    """Wait until ``batch`` is answered, ``cap`` seconds passed or ``stopped()`` is true; unanswered crops then get
    a ``ServingError`` (``unavailable`` or ``stopping``)."""
    deadline = time.monotonic() + cap
    with batch.cond:
        while not batch.done:
            left = deadline - time.monotonic()
            if left <= 0 or (stopped is not None and stopped()):
                break
            batch.cond.wait(min(left, 0.25) if stopped is not None else left)
    if not batch.done:
        kind, text = (
            ("stopping", "stopping")
            if stopped is not None and stopped()
            else ("unavailable", f"no answer within {cap:g} s")
        )
        batch.give_up(ServingError("?", kind, text))


# --- the business plugins' side: ctx.infer ---------------------------------------------------------------------
class ModelCaller:
    """``PluginContext.infer`` for one business instance: its own clients of the shared model servers."""

    def __init__(self, manager: ServingManager | None, pipeline: str, stop_event: threading.Event | None = None):
        self.manager = manager
        self.pipeline = pipeline
        self.stop_event = stop_event
        self._cond = threading.Condition()
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[ModelClient, EngineSpec]] = {}
        self._slots: CropSlots | None = None
        self._closed = False

    def infer(
        self,
        signature: str,
        crops: Sequence[Any],
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[Any]:
        """Run ``signature`` (configured with ``params``) on each crop; results aligned with ``crops``, a
        ``ServingError`` for each crop that got none. Blocks at most ``timeout`` seconds (default: the model's
        ``INFERENCE_TIMEOUT`` plus the time a model may take to load)."""
        if not isinstance(signature, str) or not signature:
            raise ValueError("infer() needs a serving plugin's signature")
        crops = list(crops)
        if len(crops) > INFER_MAX_CROPS:
            raise ValueError(f"infer() takes at most {INFER_MAX_CROPS} crops per call (got {len(crops)})")
        if self.manager is None:
            error = ServingError(signature, "unavailable", "model serving is off")
            return [error] * len(crops)
        client, engine = self._client(signature, params or {})
        if not crops:
            return []
        import numpy as np

        arrays = [c if isinstance(c, np.ndarray) else np.asarray(c) for c in crops]
        slots = self._crop_slots()
        batch = submit_crops(client, slots, arrays, self._cond, 0, time.time())
        settings = client.server.settings
        cap = float(timeout) if timeout is not None else LOAD_WAIT + settings.inference_timeout + 10.0
        stop = self.stop_event
        wait_batch(batch, cap, (lambda: self._closed or stop.is_set()) if stop is not None else lambda: self._closed)
        return [_named(r, engine) for r in batch.results]

    def _client(self, signature: str, params: Mapping[str, Any]) -> tuple[ModelClient, EngineSpec]:
        ident = json.dumps([signature.upper(), params], sort_keys=True, default=str)
        with self._lock:
            found = self._clients.get(ident)
            if found is not None and not found[0].closed and not found[0].server.closed:
                return found
            if self._closed:
                raise RuntimeError("the instance is stopping")
            assert self.manager is not None
            engine, problems = _second_stage(signature, params, self.manager.registry)
            if engine is None:
                raise ValueError(f"infer({signature!r}): " + "; ".join(problems))
            found_problems = engine.record.cls.check_config(engine.config, self.manager.models_dir)
            if found_problems:
                raise ValueError(f"infer({signature!r}): " + "; ".join(found_problems))
            client = self.manager.acquire(engine, self.pipeline, 1)
            self._clients[ident] = (client, engine)
            return client, engine

    def _crop_slots(self) -> CropSlots:
        with self._lock:
            if self._slots is None:
                self._slots = CropSlots(1, self.manager.use_shm if self.manager is not None else False)
            return self._slots

    def close(self) -> None:
        """Let go of the models (their crops still in flight free their segment when answered)."""
        with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.values()), {}
            slots, self._slots = self._slots, None
        for client, _ in clients:
            client.close()
        if slots is not None:
            slots.close()
        with self._cond:
            self._cond.notify_all()


def _named(value: Any, engine: EngineSpec) -> Any:
    """A waiter's own ServingError (signature ``?``) gets the engine's name."""
    if isinstance(value, ServingError) and value.signature == "?":
        return ServingError(engine.signature, value.kind, value.message, engine.model)
    return value
