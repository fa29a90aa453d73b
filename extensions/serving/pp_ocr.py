"""PP-OCR models shipped inside the ``rapidocr`` wheel: text detector, direction classifier and recognizer.

The ONNX files are loaded from the installed package's ``models/`` folder (found with ``importlib.util.find_spec``,
which does not import the package: it was installed with ``--no-deps`` and its own dependencies are absent).
Nothing is downloaded. The pre- and post-processing follow RapidOCR's (Apache-2.0), re-implemented with
OpenCV and numpy only.

* ``PP_OCR_DETECTOR`` (PP-OCRv6 det "small", DB): each frame is resized (``LIMIT_TYPE`` ``max``: longer side at
  most ``LIMIT_SIDE``; ``min``: shorter side at least ``LIMIT_SIDE``, as RapidOCR does with 736; multiples of
  32), frames of a batch are padded to a common size, and the probability map of each is turned into text
  regions in the one detection format (decision 34): ``box`` (xyxy around the region), ``quad`` (its four
  corners, clockwise from the top-left), ``score``, ``class_id`` 0 and ``class_name`` ``"text"``, all in the
  frame's pixels, in reading order (lines top to bottom, left to right within a line).
* ``PP_OCR_DIRECTION`` (PP-OCR mobile v2 cls): a text-line crop is resized to 48 px high (up to 192 wide) and
  classified upright or upside down: ``{"label": "0" | "180", "score": p}``. Small and fast: the model the
  sharing benchmark batches.
* ``PP_OCR_RECOGNIZER`` (PP-OCRv6 rec "small", CTC): a text-line crop (upright) is resized to 48 px high with
  its aspect ratio kept; crops of a batch are sorted by width and run in groups of ``GROUP_SIZE`` (default 1:
  on one CPU thread a group costs more per crop than crops run alone, even at equal widths), each group padded
  to its widest crop (at least 320 px). Greedy CTC decoding with the character dictionary stored in the
  model's metadata gives ``{"text": "...", "score": p}`` (``score``: the mean probability of the characters
  kept; 0 for an empty line).
* ``PP_OCR_LINES``: the direction classifier and the recognizer in one process (what ``TEXT_READER`` uses):
  a text-line crop is classified, turned half a turn when ``"180"`` scores above ``DIRECTION_THRESHOLD``, and
  read: ``{"text": "...", "score": p, "direction": "0" | "180"}`` (``direction``: whether it was turned). One
  process instead of two (each holds ~100 MB of Python, onnxruntime and OpenCV besides its model) and one
  round trip per frame instead of two.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edge_engine.api import Detection, Input, Key, OnnxServingPlugin, make_detection

PACKAGE = "rapidocr"
TEXT_CLASS = "text"
INSTALL_HINT = "install it with: pip install --no-deps rapidocr==3.10.0"
LINE_GAP = 10  # pixels: regions whose tops differ by less are on one line (reading order)


def rapidocr_models_dir() -> Path:
    """The ``models/`` folder of the installed rapidocr package (the package is not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the rapidocr package is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class _PackagedModel(OnnxServingPlugin):
    ABSTRACT = True
    MODEL_FILE: ClassVar[str] = ""

    @classmethod
    def model_file(cls, config: Mapping[str, Any], models_dir: Path | None) -> Path:
        return rapidocr_models_dir() / cls.MODEL_FILE

    @classmethod
    def model_name(cls, config: Mapping[str, Any]) -> str:
        return cls.MODEL_FILE


# --- text detector ----------------------------------------------------------------------------------------------
class PpOcrDetector(_PackagedModel):
    """PP-OCRv6 text detector; see the module docstring."""

    SIGNATURE = "PP_OCR_DETECTOR"
    VERSION = "2.0.0"
    DESCRIPTION = "PP-OCRv6 text detection (from the rapidocr wheel): text regions with quads and scores"
    MODEL_FILE = "PP-OCRv6_det_small.onnx"
    CONFIG: ClassVar[dict[str, Any]] = {
        "MAX_BATCH_SIZE": Key(
            1,
            type=int,
            min=1,
            doc="largest batch; 1 on CPU (batches of big frames are slower there and need more memory)",
        ),
        "LIMIT_SIDE": Key(640, type=int, min=32, max=4096, doc="the side LIMIT_TYPE bounds, in model pixels"),
        "LIMIT_TYPE": Key(
            "max",
            type=str,
            choices=("max", "min"),
            doc="max: longer side at most LIMIT_SIDE (never enlarged); min: shorter side at least LIMIT_SIDE",
        ),
        "THRESH": Key(0.3, min=0, max=1, doc="probability above which a pixel is text"),
        "BOX_THRESH": Key(0.5, min=0, max=1, doc="smallest mean probability of a reported region"),
        "UNCLIP_RATIO": Key(1.6, min=0, max=10, doc="how much a region is grown around its text"),
        "MAX_CANDIDATES": Key(1000, type=int, min=1, doc="most regions looked at per frame"),
        "USE_DILATION": Key(True, type=bool, doc="dilate the text mask (joins broken strokes)"),
    }

    @classmethod
    def expected_input(cls, config: Mapping[str, Any]) -> tuple[Any, ...]:
        return (None, 3, None, None)

    @classmethod
    def describe_input(cls, config: Mapping[str, Any]) -> str:
        return "PP_OCR_DETECTOR's pre-processing (BGR, NCHW)"

    def pre_process(self, inputs: list[Input]) -> Any:
        import cv2
        import numpy as np

        limit, limit_type = int(self.config["LIMIT_SIDE"]), str(self.config["LIMIT_TYPE"])
        resized, sizes = [], []
        for inp in inputs:
            if inp.image is None:
                raise ValueError(f"input #{inp.seq} has no image")
            height, width = inp.image.shape[:2]
            new_h, new_w = detector_size(height, width, limit, limit_type)
            image = inp.image if inp.image.ndim == 3 else cv2.cvtColor(inp.image, cv2.COLOR_GRAY2BGR)
            resized.append(cv2.resize(image, (new_w, new_h)))
            sizes.append((new_h, new_w, height, width))
        max_h, max_w = max(s[0] for s in sizes), max(s[1] for s in sizes)
        batch = self._batch_buffer((len(inputs), 3, max_h, max_w))
        for index, image in enumerate(resized):
            h, w = image.shape[:2]
            if (h, w) != (max_h, max_w):
                batch[index] = 0.0  # the padding of a smaller frame
            part = batch[index, :, :h, :w]
            np.multiply(image.transpose(2, 0, 1), np.float32(2 / 255.0), out=part, dtype=np.float32)
            np.subtract(part, np.float32(1.0), out=part)
        return batch, sizes

    def _batch_buffer(self, shape: tuple[int, ...]) -> Any:
        """The network's input array, reused while the batch shape stays the same: a new 8.8 MB array per frame
        (992×736) costs its page faults each time, about 7 ms of system time per frame on the test machine."""
        import numpy as np

        buffer = getattr(self, "_buffer", None)
        if buffer is None or buffer.shape != shape:
            buffer = self._buffer = np.empty(shape, np.float32)
        return buffer

    def predict(self, batch: Any) -> Any:
        tensor, sizes = batch
        return super().predict(tensor)[0], sizes

    def post_process(self, predictions: Any, inputs: list[Input]) -> list[Any]:
        probabilities, sizes = predictions
        config = self.config
        settings = {
            "thresh": config["THRESH"], "box_thresh": config["BOX_THRESH"], "unclip_ratio": config["UNCLIP_RATIO"],
            "max_candidates": config["MAX_CANDIDATES"], "dilate": config["USE_DILATION"],
        }  # fmt: skip
        results = []
        for index, (new_h, new_w, height, width) in enumerate(sizes):
            prob = probabilities[index, 0, :new_h, :new_w]
            results.append(db_regions(prob, height, width, **settings))
        return results


def detector_size(height: int, width: int, limit: int, limit_type: str = "max") -> tuple[int, int]:
    """The network size of a ``height`` × ``width`` frame, in multiples of 32: with ``limit_type`` ``max`` the
    longer side is at most ``limit`` (never enlarged), with ``min`` the shorter side at least ``limit``."""
    enlarge = limit_type == "min"
    ratio = max(1.0, limit / min(height, width)) if enlarge else min(1.0, limit / max(height, width))
    new_h, new_w = int(height * ratio), int(width * ratio)
    return max(32, round(new_h / 32) * 32), max(32, round(new_w / 32) * 32)


def db_regions(
    prob: Any, height: int, width: int, thresh: float = 0.3, box_thresh: float = 0.5, unclip_ratio: float = 1.6,
    max_candidates: int = 1000, dilate: bool = True,
) -> list[Detection]:  # fmt: skip
    """Text regions from a DB probability map (RapidOCR's ``DBPostProcess`` in fast score mode), as detections
    with their quad, top to bottom then left to right."""
    import cv2
    import numpy as np

    mask = (prob > thresh).astype(np.uint8)
    if dilate:
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    map_h, map_w = prob.shape
    regions: list[Detection] = []
    for contour in contours[:max_candidates]:
        points, short_side = _mini_box(contour)
        if short_side < 3:
            continue
        score = _box_score(prob, points)
        if score < box_thresh:
            continue
        points, short_side = _unclip(points, unclip_ratio)
        if short_side < 5:
            continue
        points[:, 0] = np.clip(np.round(points[:, 0] / map_w * width), 0, width - 1)
        points[:, 1] = np.clip(np.round(points[:, 1] / map_h * height), 0, height - 1)
        points = _clockwise(points)
        if np.linalg.norm(points[0] - points[1]) <= 3 or np.linalg.norm(points[0] - points[3]) <= 3:
            continue
        quad = points.astype(int)
        box = [quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max(), quad[:, 1].max()]
        regions.append(make_detection(box, round(float(score), 4), 0, TEXT_CLASS, quad=quad.tolist()))
    return reading_order(regions)


def reading_order(regions: list[Detection], line_gap: float = LINE_GAP) -> list[Detection]:
    """Regions in reading order: by the top-left corner's y, a new line where it grows by ``line_gap`` or more
    from the previous region's, then left to right within each line."""
    by_top = sorted(regions, key=lambda r: r["quad"][0][1] if r.get("quad") else r["box"][1])
    lines: list[list[Detection]] = []
    previous_top = None
    for region in by_top:
        top = region["quad"][0][1] if region.get("quad") else region["box"][1]
        if previous_top is None or top - previous_top >= line_gap:
            lines.append([])
        lines[-1].append(region)
        previous_top = top
    return [r for line in lines for r in sorted(line, key=lambda r: r["quad"][0][0] if r.get("quad") else r["box"][0])]


def _mini_box(contour: Any) -> tuple[Any, float]:
    import cv2
    import numpy as np

    rect = cv2.minAreaRect(contour)
    points = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = sorted(points[:2], key=lambda p: p[1])
    right = sorted(points[2:], key=lambda p: p[1])
    return np.array([left[0], right[0], right[1], left[1]], np.float32), min(rect[1])


def _box_score(prob: Any, points: Any) -> float:
    import cv2
    import numpy as np

    h, w = prob.shape
    xmin = int(np.clip(np.floor(points[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(points[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(points[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(points[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), np.uint8)
    shifted = points - np.array([xmin, ymin], np.float32)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(points: Any, ratio: float) -> tuple[Any, float]:
    """Grow the rectangle by ``area * ratio / perimeter`` on every side (what the polygon offset of RapidOCR
    gives once its minimum-area rectangle is taken again), without pyclipper."""
    import cv2

    (cx, cy), (w, h), angle = cv2.minAreaRect(points)
    distance = (w * h * ratio) / (2 * (w + h)) if w + h > 0 else 0.0
    grown = ((cx, cy), (w + 2 * distance, h + 2 * distance), angle)
    return _mini_box(cv2.boxPoints(grown))


def _clockwise(points: Any) -> Any:
    import numpy as np

    by_x = points[np.argsort(points[:, 0]), :]
    left = by_x[:2][np.argsort(by_x[:2, 1]), :]
    right = by_x[2:][np.argsort(by_x[2:, 1]), :]
    return np.array([left[0], right[0], right[1], left[1]], np.float32)


# --- text direction classifier -----------------------------------------------------------------------------------
class PpOcrDirection(_PackagedModel):
    """PP-OCR text-direction classifier; see the module docstring."""

    SIGNATURE = "PP_OCR_DIRECTION"
    VERSION = "2.0.0"
    DESCRIPTION = "PP-OCR text-line direction (0 or 180 degrees), from the rapidocr wheel"
    MODEL_FILE = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
    LABELS = ("0", "180")
    HEIGHT, WIDTH = 48, 192
    CONFIG: ClassVar[dict[str, Any]] = {
        "MAX_BATCH_SIZE": Key(4, type=int, min=1, doc="largest batch (4 is fastest per image on one CPU thread)"),
    }

    @classmethod
    def default_workers(cls, config: Mapping[str, Any], cores: int) -> int:
        """``WORKERS: 0`` means one process: a 0.6 MB model on 48×192 crops keeps one process far from busy even
        with every stream's lines, and each further process would hold ~110 MB (onnxruntime and its arena)."""
        return 1

    @classmethod
    def expected_input(cls, config: Mapping[str, Any]) -> tuple[Any, ...]:
        return (None, 3, cls.HEIGHT, cls.WIDTH)

    @classmethod
    def describe_input(cls, config: Mapping[str, Any]) -> str:
        return "PP_OCR_DIRECTION's pre-processing (3 × 48 × 192)"

    def pre_process(self, inputs: list[Input]) -> Any:
        return direction_batch([inp.image for inp in inputs])

    def post_process(self, predictions: Any, inputs: list[Input]) -> list[Any]:
        probabilities = predictions[0]
        best = probabilities.argmax(axis=1)
        return [
            {"label": self.LABELS[int(i)], "score": round(float(row[i]), 4)}
            for i, row in zip(best, probabilities, strict=True)
        ]


def direction_batch(images: list[Any], height: int = 48, width: int = 192) -> Any:
    """Text-line crops (BGR) → the classifier's ``N × 3 × 48 × 192`` batch (RapidOCR's ``resize_norm_img``)."""
    import cv2
    import numpy as np

    batch = np.zeros((len(images), 3, height, width), np.float32)
    for index, image in enumerate(images):
        if image is None:
            raise ValueError("an input has no image")
        h, w = image.shape[:2]
        new_w = min(width, math.ceil(height * w / float(h)))
        resized = cv2.resize(image, (new_w, height))
        if resized.ndim == 2:
            resized = cv2.cvtColor(resized, cv2.COLOR_GRAY2BGR)
        batch[index, :, :, :new_w] = (resized.astype(np.float32) * (2 / 255.0) - 1.0).transpose(2, 0, 1)
    return batch


# --- text recognizer ---------------------------------------------------------------------------------------------
class PpOcrRecognizer(_PackagedModel):
    """PP-OCRv6 text-line recognizer; see the module docstring."""

    SIGNATURE = "PP_OCR_RECOGNIZER"
    VERSION = "1.0.0"
    DESCRIPTION = "PP-OCRv6 text-line recognition (from the rapidocr wheel): a crop → its text and score"
    MODEL_FILE = "PP-OCRv6_rec_small.onnx"
    HEIGHT, MIN_WIDTH = 48, 320
    CONFIG: ClassVar[dict[str, Any]] = {
        "MAX_BATCH_SIZE": Key(12, type=int, min=1, doc="largest batch of crops (of any frames and pipelines)"),
        "GROUP_SIZE": Key(
            1,
            type=int,
            min=1,
            max=64,
            doc="crops run together once sorted by width, padded to the widest of them (1: each alone, the least "
            "CPU on one thread: padding costs more than the call it saves; more for a GPU)",
        ),
    }

    def __init__(self, config: Mapping[str, Any], context: Any):
        super().__init__(config, context)
        self.characters: list[str] = []

    @classmethod
    def expected_input(cls, config: Mapping[str, Any]) -> tuple[Any, ...]:
        return (None, 3, cls.HEIGHT, None)

    @classmethod
    def describe_input(cls, config: Mapping[str, Any]) -> str:
        return "PP_OCR_RECOGNIZER's pre-processing (3 × 48 × width)"

    def on_init(self) -> None:
        super().on_init()
        self.characters = ctc_characters(self.metadata.get("character", ""))
        classes = self.outputs[0].shape[-1] if self.outputs and self.outputs[0].shape else None
        if isinstance(classes, int) and classes != len(self.characters):
            raise ValueError(
                f"model {self.model_name(self.config)!r}: {classes} classes but its dictionary gives "
                f"{len(self.characters)} (blank + characters + space)"
            )

    def pre_process(self, inputs: list[Input]) -> Any:
        images = [inp.image for inp in inputs]
        for inp in inputs:
            if inp.image is None or inp.image.size == 0:
                raise ValueError(f"input #{inp.seq} has no image")
        return recognizer_groups(images, int(self.config["GROUP_SIZE"]), self.HEIGHT, self.MIN_WIDTH)

    def predict(self, batch: Any) -> Any:
        return [(indices, super(PpOcrRecognizer, self).predict(tensor)[0]) for indices, tensor in batch]

    def post_process(self, predictions: Any, inputs: list[Input]) -> list[Any]:
        results: list[Any] = [None] * len(inputs)
        for indices, probabilities in predictions:
            for index, row in zip(indices, probabilities, strict=True):
                text, score = ctc_decode(row, self.characters)
                results[index] = {"text": text, "score": score}
        return results


def ctc_characters(dictionary: str) -> list[str]:
    """The CTC classes of a PP-OCR recognizer: the blank, the dictionary's lines, then a space."""
    if not dictionary:
        raise ValueError("the recognizer model has no 'character' dictionary in its metadata")
    return ["", *dictionary.splitlines(), " "]


def recognizer_groups(images: list[Any], group_size: int, height: int = 48, min_width: int = 320) -> list[Any]:
    """Crops → ``[(indices, N × 3 × height × W tensor)]``: sorted by aspect ratio, ``group_size`` at a time,
    each resized to ``height`` with its ratio kept and padded (zeros on the right) to the group's widest."""
    import cv2
    import numpy as np

    ratios = [image.shape[1] / float(image.shape[0]) for image in images]
    order = sorted(range(len(images)), key=lambda i: ratios[i])
    groups = []
    for start in range(0, len(order), group_size):
        indices = order[start : start + group_size]
        width = int(height * max(min_width / height, *(ratios[i] for i in indices)))
        tensor = np.zeros((len(indices), 3, height, width), np.float32)
        for row, index in enumerate(indices):
            image = images[index]
            new_w = min(width, math.ceil(height * ratios[index]))
            resized = cv2.resize(image, (new_w, height))
            if resized.ndim == 2:
                resized = cv2.cvtColor(resized, cv2.COLOR_GRAY2BGR)
            tensor[row, :, :, :new_w] = (resized.astype(np.float32) / 255.0 - 0.5).transpose(2, 0, 1) / 0.5
        groups.append((indices, tensor))
    return groups


def ctc_decode(probabilities: Any, characters: list[str]) -> tuple[str, float]:
    """Greedy CTC: the best class per time step, repeats merged, blanks dropped; the score is the mean
    probability of the characters kept (5 decimals), 0 when none is."""
    import numpy as np

    best = probabilities.argmax(axis=1)
    keep = np.ones(len(best), bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != 0
    if not keep.any():
        return "", 0.0
    text = "".join(characters[i] for i in best[keep])
    score = round(float(np.mean(probabilities.max(axis=1)[keep])), 5)
    return text, score


# --- direction classifier and recognizer in one process ----------------------------------------------------------
class PpOcrLines(PpOcrRecognizer):
    """PP-OCR direction classifier then recognizer, both sessions in each worker; see the module docstring."""

    SIGNATURE = "PP_OCR_LINES"
    VERSION = "1.0.0"
    DESCRIPTION = "PP-OCR text lines in one process: direction (turned when upside down), then PP-OCRv6 recognition"
    DIRECTION_FILE = PpOcrDirection.MODEL_FILE
    CONFIG: ClassVar[dict[str, Any]] = {
        "USE_DIRECTION": Key(True, type=bool, doc="classify each crop's direction and turn upside-down ones"),
        "DIRECTION_THRESHOLD": Key(0.9, min=0, max=1, doc="turn a crop only when '180' scores more than this"),
        "DIRECTION_BATCH": Key(4, type=int, min=1, max=64, doc="crops per direction-classifier run"),
    }

    def __init__(self, config: Mapping[str, Any], context: Any):
        super().__init__(config, context)
        self.direction: Any = None

    @classmethod
    def default_workers(cls, config: Mapping[str, Any], cores: int) -> int:
        """One process per four cores (at least one): the lines of a frame cost a fraction of its detection (about
        an eighth on the PP-OCR test frames), so more processes would mostly hold memory."""
        return max(1, cores // 4)

    @classmethod
    def describe_input(cls, config: Mapping[str, Any]) -> str:
        return "PP_OCR_LINES's pre-processing (3 × 48 × width)"

    def on_init(self) -> None:
        super().on_init()
        if self.config["USE_DIRECTION"]:
            self.direction = self._session(rapidocr_models_dir() / self.DIRECTION_FILE)

    def _session(self, path: Path) -> Any:
        """A session on ``path`` with the recognizer's threads, memory settings and providers."""
        import onnxruntime as ort

        return ort.InferenceSession(str(path), self.session_options(), providers=self.session.get_providers())

    def pre_process(self, inputs: list[Input]) -> Any:
        images = [inp.image for inp in inputs]
        for inp in inputs:
            if inp.image is None or inp.image.size == 0:
                raise ValueError(f"input #{inp.seq} has no image")
        turned = self.turn_upside_down(images) if self.direction is not None else [False] * len(images)
        groups = recognizer_groups(images, int(self.config["GROUP_SIZE"]), self.HEIGHT, self.MIN_WIDTH)
        return groups, turned

    def turn_upside_down(self, images: list[Any]) -> list[bool]:
        """Classify the crops (in place: those read as upside down are turned); which ones were turned."""
        import cv2

        size, threshold = int(self.config["DIRECTION_BATCH"]), float(self.config["DIRECTION_THRESHOLD"])
        name = self.direction.get_inputs()[0].name
        turned: list[bool] = []
        for start in range(0, len(images), size):
            batch = direction_batch(images[start : start + size])
            for probabilities in self.direction.run(None, {name: batch})[0]:
                index = len(turned)
                upside_down = int(probabilities.argmax()) == 1 and float(probabilities[1]) > threshold
                if upside_down:
                    images[index] = cv2.rotate(images[index], cv2.ROTATE_180)
                turned.append(upside_down)
        return turned

    def predict(self, batch: Any) -> Any:
        groups, turned = batch
        return super().predict(groups), turned

    def post_process(self, predictions: Any, inputs: list[Input]) -> list[Any]:
        read, turned = predictions
        results = super().post_process(read, inputs)
        for result, upside_down in zip(results, turned, strict=True):
            result["direction"] = "180" if upside_down else "0"
        return results
