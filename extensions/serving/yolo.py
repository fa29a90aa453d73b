"""``YOLO`` serving plugin: object detection with a user's Ultralytics-style ONNX export (YOLOv5, v8, v11...).

Drop the exported file into the local cache's ``_models/`` folder and name it in the pipeline::

    {"SIGNATURE": "OBJECT_DETECTOR", "INSTANCES": [{"INSTANCE_ID": "people",
      "AI_ENGINE": "YOLO", "STARTUP_AI_ENGINE_PARAMS": {"ONNX_MODEL": "yolov8n.onnx", "CLASSES": ["person"]}}]}

Each frame (BGR, any size) is letterboxed into the model's input (aspect ratio kept, centred, grey 114
padding), converted to RGB, scaled to 0..1 and laid out NCHW in the model's input type (float32 or float16).
The first output is decoded according to its layout:

* ``v8`` (YOLOv8/v11): ``[N, 4 + classes, boxes]``, rows ``cx, cy, w, h`` then one score per class;
* ``v5`` (YOLOv5/v7): ``[N, boxes, 5 + classes]``, columns ``cx, cy, w, h, objectness`` then class scores
  (a box scores objectness × its best class score).

``LAYOUT: "auto"`` tells them apart by the class count when the class names are known (``4 + classes``
rows is v8, ``5 + classes`` columns is v5), else by which dimension is smaller (the boxes outnumber the
attributes). Each box keeps its best class; boxes scoring ``CONF_THRESHOLD`` or less, or of a class not in
``CLASSES``, are dropped; the rest go through NMS per class (``AGNOSTIC_NMS``: across classes) at
``IOU_THRESHOLD``; at most ``MAX_DETECTIONS`` are kept, best first. The result per input is a list of
detections in the one format (``box`` xyxy in the frame's pixels, ``score``, ``class_id``, ``class_name``).

Class names come from ``LABELS_FILE`` (a ``.txt`` with one name per line, or a ``.json`` list or
``{id: name}`` object, in ``_models/`` or a full path) or else from the model's ``names`` metadata (which
Ultralytics writes into its exports); without either, a class is named by its id. A model whose output fits
neither layout, a labels file whose count differs from the model's classes, or a ``CLASSES`` entry that
names no class is refused when the pipeline is added, naming the model.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Any, ClassVar

from edge_engine.api import (
    Input,
    Key,
    OnnxIO,
    OnnxServingPlugin,
    letterbox,
    make_detection,
    non_max_suppression,
    read_onnx_io,
)

DEFAULT_SIZE = 640  # the input size used when neither the config nor the model fixes one
MAX_CANDIDATES = 30000  # boxes looked at by NMS per frame, best first (a poorly thresholded model stays bounded)
LAYOUTS = ("auto", "v8", "v5")


class YoloDetector(OnnxServingPlugin):
    """Ultralytics-style YOLO ONNX exports; see the module docstring."""

    SIGNATURE = "YOLO"
    VERSION = "1.0.0"
    DESCRIPTION = "object detection with a YOLOv5/v8/v11 ONNX export from _models/: boxes, scores, class names"
    CONFIG: ClassVar[dict[str, Any]] = {
        "ONNX_MODEL": Key(
            "", type=str, doc="model file: a name in the cache's _models/, or a full path (or MODEL_URL)"
        ),
        "INPUT_WIDTH": Key(0, type=int, min=0, max=8192, doc="model input width; 0 = the model's fixed width (or 640)"),
        "INPUT_HEIGHT": Key(
            0, type=int, min=0, max=8192, doc="model input height; 0 = the model's fixed height (or 640)"
        ),
        "LAYOUT": Key("auto", type=str, choices=LAYOUTS, doc="output layout: v8 [N, 4+C, boxes], v5 [N, boxes, 5+C]"),
        "CONF_THRESHOLD": Key(0.25, min=0, max=1, doc="boxes scoring this or less are dropped"),
        "IOU_THRESHOLD": Key(0.45, min=0, max=1, doc="NMS: a box overlapping a better one by more is dropped"),
        "CLASSES": Key([], type=list, doc="class ids or names to keep; empty = all"),
        "AGNOSTIC_NMS": Key(False, type=bool, doc="NMS across classes (default: boxes suppress their own class only)"),
        "MAX_DETECTIONS": Key(300, type=int, min=1, max=10000, doc="most detections per frame, best first"),
        "LABELS_FILE": Key("", type=str, doc="class names (.txt one per line, or .json); empty = the model's names"),
        "MAX_BATCH_SIZE": Key(0, type=int, min=0, doc="largest batch; 0 = from the input size (1 at 640x640)"),
    }

    # --- node process: where the model is and whether it fits the config --------------------------------------
    @classmethod
    def model_file(cls, config: Mapping[str, Any], models_dir: Path | None) -> Path:
        name = str(config.get("ONNX_MODEL") or "")
        if not name.strip():
            raise ValueError("set ONNX_MODEL (a file in _models/) or MODEL_URL and MODEL_SHA256")
        return _in_models(name, models_dir, "ONNX_MODEL")

    @classmethod
    def expected_input(cls, config: Mapping[str, Any]) -> tuple[Any, ...]:
        return (None, 3, int(config.get("INPUT_HEIGHT") or 0) or None, int(config.get("INPUT_WIDTH") or 0) or None)

    @classmethod
    def model_input_size(cls, config: Mapping[str, Any], models_dir: Path | None) -> tuple[int, int] | None:
        fixed = int(config.get("INPUT_HEIGHT") or 0) and int(config.get("INPUT_WIDTH") or 0)
        return input_size(config, None if fixed else cls.fixed_input_dims(config, models_dir))

    @classmethod
    def describe_input(cls, config: Mapping[str, Any]) -> str:
        height, width = config.get("INPUT_HEIGHT"), config.get("INPUT_WIDTH")
        return f"the config (INPUT_HEIGHT {height}, INPUT_WIDTH {width}, RGB NCHW)"

    @classmethod
    def input_element_type(cls, config: Mapping[str, Any]) -> str | None:
        return None  # float32 or float16: checked in check_io

    @classmethod
    def check_config(cls, config: Mapping[str, Any], models_dir: Path | None) -> list[str]:
        problems = super().check_config(config, models_dir)
        if problems or models_dir is None:
            return problems
        try:
            path = cls.model_location(config, models_dir)
            if not path.is_file():
                return []  # fetched from MODEL_URL when a pipeline needs it; checked once loaded
            io = read_onnx_io(path)
            names = class_names(config, io.metadata, models_dir)
        except (ValueError, OSError) as exc:
            return [f"model {cls.model_name(config)!r}: {exc}"]
        return output_problems(cls.model_name(config), config, io, names)

    @classmethod
    def check_io(cls, config: Mapping[str, Any], io: OnnxIO) -> list[str]:
        problems = super().check_io(config, io)
        if io.inputs and io.inputs[0].element_type not in ("float32", "float16", "unknown"):
            problems.append(
                f"model {cls.model_name(config)!r}: input {io.inputs[0].name!r} takes {io.inputs[0].element_type}; "
                "the YOLO plugin feeds float32 or float16"
            )
        return problems

    # --- model-server process -----------------------------------------------------------------------------------
    def on_init(self) -> None:
        super().on_init()
        names = class_names(self.config, self.metadata, self.context.models_dir)
        io = OnnxIO(tuple(self.inputs), tuple(self.outputs), self.metadata)
        problems = output_problems(self.model_name(self.config), self.config, io, names)
        if problems:
            raise ValueError("; ".join(problems))
        self.names = names
        self.height, self.width = input_size(self.config, self.inputs[0].shape)
        self.input_dtype = "float16" if self.inputs[0].element_type == "float16" else "float32"
        self.keep_classes = class_filter(self.config.get("CLASSES") or [], names)

    def pre_process(self, inputs: list[Input]) -> Any:
        import cv2
        import numpy as np

        canvases = np.empty((len(inputs), self.height, self.width, 3), np.uint8)
        placements = []
        for index, inp in enumerate(inputs):
            if inp.image is None:
                raise ValueError(f"input #{inp.seq} has no image")
            image = inp.image if inp.image.ndim == 3 else cv2.cvtColor(inp.image, cv2.COLOR_GRAY2BGR)
            canvases[index], placement = letterbox(image, self.width, self.height)
            placements.append(placement)
        tensor = canvases[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) * (1 / 255.0)
        return np.ascontiguousarray(tensor, dtype=self.input_dtype), placements

    def predict(self, batch: Any) -> Any:
        tensor, placements = batch
        return super().predict(tensor)[0], placements

    def post_process(self, predictions: Any, inputs: list[Input]) -> list[Any]:
        output, placements = predictions
        config = self.config
        layout, _classes = output_layout(output.shape[1:], str(config["LAYOUT"]), _count(self.names))
        settings = {
            "conf_threshold": float(config["CONF_THRESHOLD"]), "iou_threshold": float(config["IOU_THRESHOLD"]),
            "keep_classes": self.keep_classes, "agnostic": bool(config["AGNOSTIC_NMS"]),
            "max_detections": int(config["MAX_DETECTIONS"]),
        }  # fmt: skip
        results = []
        for index, placement in enumerate(placements):
            boxes, scores, class_ids = detect(output[index], layout, **settings)
            boxes = placement.to_frame(boxes)
            inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # boxes wholly in the padding go
            boxes, scores, class_ids = boxes[inside], scores[inside], class_ids[inside]
            results.append([
                make_detection([round(v, 2) for v in box], round(float(score), 4), class_id, self._name(class_id))
                for box, score, class_id in zip(boxes.tolist(), scores, class_ids, strict=True)
            ])  # fmt: skip
        return results

    def _name(self, class_id: int) -> str:
        names = self.names or []
        return names[class_id] if 0 <= class_id < len(names) else str(class_id)

    def model_info(self) -> dict[str, Any]:
        info = super().model_info()
        info["classes"] = len(self.names) if self.names else None
        info["input_size"] = [self.width, self.height]
        return info


# --- decoding (pure numpy: unit-tested on its own) -----------------------------------------------------------------
def detect(
    output: Any, layout: str, conf_threshold: float, iou_threshold: float, keep_classes: set[int] | None = None,
    agnostic: bool = False, max_detections: int = 300,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """One input's raw output (``[4+C, boxes]`` for v8, ``[boxes, 5+C]`` for v5) → ``(boxes xyxy, scores,
    class ids)`` in the model input's pixels, after the score and class filters and NMS, best first."""
    import numpy as np

    rows = np.asarray(output, np.float32)
    rows = rows.T if layout == "v8" else rows
    class_scores = rows[:, 5:] * rows[:, 4:5] if layout == "v5" else rows[:, 4:]
    if not class_scores.shape[1]:
        raise ValueError(f"the output has no class scores in the {layout} layout")
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), class_ids]
    keep = scores > conf_threshold
    if keep_classes is not None:
        keep &= np.isin(class_ids, list(keep_classes))
    picked = np.flatnonzero(keep)
    if picked.size > MAX_CANDIDATES:
        picked = picked[np.argsort(-scores[picked], kind="stable")[:MAX_CANDIDATES]]
    cx, cy, w, h = (rows[picked, i].astype(np.float64) for i in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    scores, class_ids = scores[picked], class_ids[picked]
    kept = non_max_suppression(
        boxes, scores, iou_threshold, class_ids=None if agnostic else class_ids, max_keep=max_detections
    )
    return boxes[kept], scores[kept], class_ids[kept]


def output_layout(dims: Sequence[Any], layout: str, classes: int | None) -> tuple[str, int]:
    """``(layout, class count)`` of an output whose per-input dims are ``dims`` (``[a, b]``), or ValueError."""
    if len(dims) != 2 or not all(isinstance(d, int) for d in dims):
        raise ValueError(f"the output has per-input shape {list(dims)}; a YOLO output has two fixed dimensions")
    rows, cols = int(dims[0]), int(dims[1])
    if layout == "auto":
        if classes is not None:
            layout = "v8" if rows == 4 + classes else "v5" if cols == 5 + classes else ""
            if not layout:
                raise ValueError(
                    f"the output [N, {rows}, {cols}] fits neither v8 [N, 4+C, boxes] nor v5 [N, boxes, 5+C] with "
                    f"the {classes} class names (C = {classes}); segmentation and pose exports are not supported"
                )
        else:
            layout = "v8" if rows < cols else "v5"
    found = rows - 4 if layout == "v8" else cols - 5
    if found < 1:
        raise ValueError(f"the output [N, {rows}, {cols}] leaves no class scores in the {layout} layout")
    if classes is not None and found != classes:
        raise ValueError(f"the output [N, {rows}, {cols}] in the {layout} layout has {found} classes, not {classes}")
    return layout, found


def output_problems(model: str, config: Mapping[str, Any], io: OnnxIO, names: list[str] | None) -> list[str]:
    """Sentences saying how the model's first output does not fit the config (layout, class names, CLASSES)."""
    if not io.outputs:
        return [f"model {model!r}: the graph has no output"]
    first = io.outputs[0]
    shape = first.shape
    if shape is None or len(shape) != 3:
        return [f"model {model!r}: output {first.name!r} has shape {first.shape_text()}; YOLO gives [N, a, b]"]
    problems = []
    if all(isinstance(d, int) for d in shape[1:]):
        try:
            output_layout(shape[1:], str(config.get("LAYOUT", "auto")), _count(names))
        except ValueError as exc:
            source = f" (names from {names_source(config)})" if names is not None else ""
            problems.append(f"model {model!r}: output {first.name!r}: {exc}{source}")
    try:
        class_filter(config.get("CLASSES") or [], names)
    except ValueError as exc:
        problems.append(f"model {model!r}: key 'CLASSES': {exc}")
    return problems


def input_size(config: Mapping[str, Any], shape: Sequence[Any] | None) -> tuple[int, int]:
    """``(height, width)`` fed to the model: the config's, else the model's fixed ones, else 640."""
    dims = list(shape or [])[2:4]
    fixed = [d if isinstance(d, int) and d > 0 else 0 for d in dims] + [0, 0]
    height = int(config.get("INPUT_HEIGHT") or 0) or fixed[0] or DEFAULT_SIZE
    width = int(config.get("INPUT_WIDTH") or 0) or fixed[1] or DEFAULT_SIZE
    return height, width


# --- class names --------------------------------------------------------------------------------------------------
def class_names(config: Mapping[str, Any], metadata: Mapping[str, str], models_dir: Path | None) -> list[str] | None:
    """The class names: from ``LABELS_FILE``, else from the model's ``names`` metadata; None when neither."""
    labels = str(config.get("LABELS_FILE") or "").strip()
    if labels:
        path = _in_models(labels, models_dir, "LABELS_FILE")
        if not path.is_file():
            raise ValueError(f"LABELS_FILE {Path(labels).name!r} not found")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            return names_from(json.loads(text), f"LABELS_FILE {path.name!r}")
        return [line.strip() for line in text.splitlines() if line.strip()]
    if metadata.get("names"):
        try:
            value = ast.literal_eval(metadata["names"])
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"the model's 'names' metadata is not a list or dict ({exc})") from exc
        return names_from(value, "the model's 'names' metadata")
    return None


def names_source(config: Mapping[str, Any]) -> str:
    """Where :func:`class_names` took the names from, for error messages."""
    labels = str(config.get("LABELS_FILE") or "").strip()
    return f"LABELS_FILE {Path(labels).name!r}" if labels else "the model's 'names' metadata"


def names_from(value: Any, source: str) -> list[str]:
    """A list of names from a list, or from an ``{id: name}`` mapping (ids 0..n-1; a missing id is named by it)."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        try:
            by_id = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: class ids must be integers ({exc})") from exc
        if any(k < 0 for k in by_id):
            raise ValueError(f"{source}: class ids must not be negative")
        return [by_id.get(i, str(i)) for i in range(max(by_id, default=-1) + 1)]
    raise ValueError(f"{source} is not a list or an object of names")


def class_filter(classes: Sequence[Any], names: list[str] | None) -> set[int] | None:
    """The class ids ``CLASSES`` keeps (None: all); a name matches case-insensitively, an id must exist."""
    if not classes:
        return None
    lowered = [n.lower() for n in names or []]
    keep: set[int] = set()
    for entry in classes:
        if isinstance(entry, bool) or not isinstance(entry, (int, str)):
            raise ValueError(f"{entry!r} is neither a class id nor a class name")
        if isinstance(entry, int) or entry.strip().isdigit():
            class_id = int(entry)
            if names is not None and not 0 <= class_id < len(names):
                raise ValueError(f"class id {class_id} is out of range (the model has {len(names)} classes)")
            keep.add(class_id)
            continue
        if entry.lower() not in lowered:
            near = get_close_matches(entry, names or [], n=1, cutoff=0.6)
            known = "the model has no class names" if names is None else f"did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"no class named {entry!r}" + (f"; {known}" if known else ""))
        keep.add(lowered.index(entry.lower()))
    return keep


def _count(names: list[str] | None) -> int | None:
    return len(names) if names is not None else None


def _in_models(name: str, models_dir: Path | None, key: str) -> Path:
    if not name.strip():
        raise ValueError(f"{key} is empty")
    path = Path(name.strip()).expanduser()
    return path if path.is_absolute() or models_dir is None else models_dir / path
