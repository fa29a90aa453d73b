"""Text reader: a business plugin that reads the text in a frame (full OCR), line by line, with a witness image.

Three models, in the node's shared model servers (batched with every other pipeline that uses them):

1. ``PP_OCR_DETECTOR`` (its ``AI_ENGINE``) finds text regions, each with its ``quad`` (decision 34);
2. each region is cut out of the frame along its quad (:func:`~edge_engine.api.crop_text_line`: perspective
   warp, cubic, to an upright line; a crop 1.5 times taller than wide is turned a quarter, as RapidOCR does)
   and the crops go to ``PP_OCR_LINES``: the direction classifier and the recognizer together; a crop
   classified ``"180"`` with a score above ``DIRECTION_THRESHOLD`` is turned half a turn, then read (text and
   score).

By default (``COLOCATE``) step 2 is a co-located cascade the reader declares itself (:meth:`TextReader.cascades`,
``CROP: "text_line"``): the detector's server processes crop each frame's regions from the frame they already
hold and run ``PP_OCR_LINES`` on them right after the detection. A frame then costs one round trip, and the
node runs no server process for the lines: each detector process holds a copy of the two small line models,
and no third busy process shares the cores with the detector's (benchmarks/README.md). With ``COLOCATE:
false`` the reader crops in the pipeline and sends the crops, in one call, to a ``PP_OCR_LINES`` server of
their own (``self.infer``: the crops travel in shared memory and are batched with crops of other frames and
pipelines), which scales on its own (``RECOGNIZER_PARAMS``' ``WORKERS``). With ``SEPARATE_STAGES`` the crops
go to ``PP_OCR_DIRECTION`` first, then (turned where needed) to ``PP_OCR_RECOGNIZER``: two servers, each
scaled on its own (``DIRECTION_PARAMS``, ``RECOGNIZER_PARAMS``), at the price of a process and a round trip
more per frame (``COLOCATE`` does not apply).
The defaults are RapidOCR's (detector: shorter side enlarged to 736, box threshold 0.5, unclip 1.6; direction
threshold 0.9; lines scoring under 0.5 or empty are dropped), so the text read is RapidOCR's. Each frame with
at least ``MIN_LINES`` lines gives (at most one every ``MIN_PAYLOAD_INTERVAL`` seconds) a payload::

    {"TEXT_LINES": 2, "TEXT": "HELLO EDGE\\nInvoice 4711",
     "LINES": [{"text": "HELLO EDGE", "score": 0.99, "box": [x1, y1, x2, y2], "quad": [[x, y] × 4],
                "detection_score": 0.87, "direction": "0"}, ...],
     "FAILED_LINES": 0, "FRAME_INDEX": 42, "IMAGE_SIZE": [640, 480]}

``LINES`` are in reading order (top to bottom, then left to right). A line whose second or third stage
failed (its server crashed, timed out...) is kept with ``"text": null`` and ``"error": "..."`` and counted in
``FAILED_LINES``: a failing second stage marks boxes, never the frame (decision 35). When the detector
itself failed, ``process`` raises its ``ServingError`` (the engine counts it; the next frame goes on). The
other models' servers start with the instance (``on_init``), where a wrong key in their params fails it. The
witness image is the frame (at most ``WITNESS_WIDTH`` wide) with each line's quad outlined and its text
written above it (characters OpenCV's fonts lack are drawn as ``?``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from edge_engine.api import BusinessPlugin, Detection, Input, Key, ServingError, crop_detection

DETECTOR = "PP_OCR_DETECTOR"
DIRECTION = "PP_OCR_DIRECTION"
RECOGNIZER = "PP_OCR_RECOGNIZER"
LINES = "PP_OCR_LINES"  # the direction classifier and the recognizer in one server
LINES_RESULTS = "TEXT_READER_LINES"  # inp.inferences key of the co-located lines (the cascade's AS)
RAPIDOCR_DETECTOR = {"LIMIT_TYPE": "min", "LIMIT_SIDE": 736}  # RapidOCR's detector resize
TEXT_COLOR, BOX_COLOR = (255, 255, 255), (0, 160, 0)


class TextReader(BusinessPlugin):
    """Read text lines: detector → crops → direction → recognizer; see the module docstring."""

    SIGNATURE = "TEXT_READER"
    VERSION = "1.0.0"
    DESCRIPTION = "full OCR (PP-OCRv6 detector, direction classifier, recognizer; served, batched) → text per line"
    CONFIG: ClassVar[dict[str, Any]] = {
        "AI_ENGINE": Key([DETECTOR], type=(list, str), doc="the serving plugin giving text regions (with quads)"),
        "STARTUP_AI_ENGINE_PARAMS": Key(
            {DETECTOR: dict(RAPIDOCR_DETECTOR)},
            type=dict,
            doc="the detector's config; keys that are not a signature's section also go to the two other models",
        ),
        "COLOCATE": Key(
            True,
            type=bool,
            doc="read the lines inside the detector's server processes (one round trip per frame, no lines server)",
        ),
        "SEPARATE_STAGES": Key(
            False, type=bool, doc="direction and recognizer in two servers (PP_OCR_DIRECTION, PP_OCR_RECOGNIZER)"
        ),
        "DIRECTION_PARAMS": Key({}, type=dict, doc="PP_OCR_DIRECTION's config (with SEPARATE_STAGES)"),
        "RECOGNIZER_PARAMS": Key(
            {},
            type=dict,
            doc="PP_OCR_LINES's config (PP_OCR_RECOGNIZER's with SEPARATE_STAGES): WORKERS, GROUP_SIZE...",
        ),
        "USE_DIRECTION": Key(True, type=bool, doc="classify each line's direction and turn upside-down ones"),
        "DIRECTION_THRESHOLD": Key(0.9, min=0, max=1, doc="turn a line only when '180' scores more than this"),
        "MIN_DETECTION_SCORE": Key(0.0, min=0, max=1, doc="regions scoring less are not read"),
        "MIN_TEXT_SCORE": Key(0.5, min=0, max=1, doc="lines read with a lower score are dropped"),
        "MAX_LINES": Key(100, type=int, min=1, max=1024, doc="lines read per frame, best detection scores first"),
        "MIN_LINES": Key(1, type=int, min=1, doc="lines (read, or marked failed) needed for a payload"),
        "MIN_PAYLOAD_INTERVAL": Key(0.0, min=0, doc="seconds between two payloads (0: every frame with text)"),
        "WITNESS": Key(True, type=bool, doc="attach a witness image with the lines and their text"),
        "WITNESS_WIDTH": Key(960, type=int, min=64, max=4096, doc="largest witness image width"),
        "INFER_TIMEOUT": Key(0.0, min=0, doc="seconds a frame's crops may wait for a model (0: the engine's default)"),
    }

    @classmethod
    def cascades(cls, config: Mapping[str, Any]) -> Any:
        """The instance's ``CASCADE``, and with ``COLOCATE`` the reader's own: ``PP_OCR_LINES`` on the detector's
        regions (the best ``MAX_LINES`` scoring at least ``MIN_DETECTION_SCORE``), in its server processes."""
        declared = super().cascades(config)
        if not colocated(config) or not isinstance(declared, list):
            return declared
        own = {
            "SIGNATURE": LINES, "AS": LINES_RESULTS, "CROP": "text_line", "MAX_SIDE": 0, "COLOCATE": True,
            "MIN_SCORE": config["MIN_DETECTION_SCORE"], "MAX_CROPS": config["MAX_LINES"],
            "PARAMS": line_params(config, LINES),
        }  # fmt: skip
        return [*declared, own]

    def on_init(self) -> None:
        self._last_payload = 0.0
        self.frames = 0
        self.frames_with_text = 0
        self.lines_failed = 0
        self._start_second_stages()

    def _start_second_stages(self) -> None:
        """Check the two other models' configs and start their servers now: a wrong key in DIRECTION_PARAMS or
        RECOGNIZER_PARAMS fails the instance's start with the key named, and the models load while the
        detector runs on the first frames. Co-located lines have no server (their config was checked with the
        pipeline); each detector process loads them at its first frame with text."""
        if colocated(self.config):
            return
        try:
            if not self.config["SEPARATE_STAGES"]:
                self.infer(LINES, [], self._params(LINES))
                return
            if self.config["USE_DIRECTION"]:
                self.infer(DIRECTION, [], self._params(DIRECTION))
            self.infer(RECOGNIZER, [], self._params(RECOGNIZER))
        except RuntimeError:  # not in a node (a plugin test harness): the models are asked at the first frame
            return

    # --- per frame ------------------------------------------------------------------------------------------------
    def process(self, inp: Input | None) -> None:
        if inp is None or inp.image is None:
            return None
        regions = inp.inferences.get(DETECTOR)
        if isinstance(regions, ServingError):
            raise regions
        self.frames += 1
        read = inp.inferences.get(LINES_RESULTS) if colocated(self.config) else None
        if read is not None:  # the co-located cascade read the lines with the detection
            lines = self.lines_read(regions or [], read)
        else:  # not co-located, or outside a node (a plugin test harness runs no cascade): ask the models now
            lines = self.read_lines(inp.image, self._regions(regions or []))
        lines = [line for line in lines if "error" in line or self._kept(line)]
        if len(lines) < self.config["MIN_LINES"]:  # lines that failed count: their boxes are reported, marked
            return None
        self.frames_with_text += 1
        now = time.monotonic()
        if self._last_payload and now - self._last_payload < self.config["MIN_PAYLOAD_INTERVAL"]:
            return None
        self._last_payload = now
        self.emit(self._payload(inp, lines), image=self._witness(inp, lines))
        return None

    def lines_read(self, regions: list[Detection], read: Any) -> list[dict[str, Any]]:
        """The lines of the co-located cascade's results (aligned with ``regions``; None: a region not read)."""
        if isinstance(read, ServingError):
            read = [read] * len(regions)
        lines = []
        for region, result in zip(regions, read, strict=False):
            if result is None:
                continue
            line = _line(region)
            if isinstance(result, ServingError):
                self._fail(line, result)
            else:
                line["text"], line["score"], line["direction"] = result["text"], result["score"], result["direction"]
            lines.append(line)
        return lines

    def read_lines(self, image: Any, regions: list[Detection]) -> list[dict[str, Any]]:
        """Each region's line (text, score, box, quad, direction) or its error, in the regions' order."""
        crops = [crop_detection(image, region, mode="text_line") for region in regions]
        lines: list[dict[str, Any]] = [_line(region) for region in regions]
        if not crops:
            return lines
        if not self.config["SEPARATE_STAGES"]:
            for line, result in zip(lines, self.infer(LINES, crops, self._params(LINES), self._timeout()), strict=True):
                if isinstance(result, ServingError):
                    self._fail(line, result)
                else:
                    line["text"], line["score"], line["direction"] = (
                        result["text"],
                        result["score"],
                        result["direction"],
                    )
            return lines
        pending = list(range(len(crops)))
        if self.config["USE_DIRECTION"]:
            directions = self.infer(DIRECTION, crops, self._params(DIRECTION), self._timeout())
            pending = []
            for index, result in enumerate(directions):
                if isinstance(result, ServingError):
                    self._fail(lines[index], result)
                    continue
                lines[index]["direction"] = result["label"]
                if result["label"] == "180" and result["score"] > self.config["DIRECTION_THRESHOLD"]:
                    crops[index] = turn_half(crops[index])
                else:
                    lines[index]["direction"] = "0"
                pending.append(index)
        texts = self.infer(RECOGNIZER, [crops[i] for i in pending], self._params(RECOGNIZER), self._timeout())
        for index, result in zip(pending, texts, strict=True):
            if isinstance(result, ServingError):
                self._fail(lines[index], result)
            else:
                lines[index]["text"], lines[index]["score"] = result["text"], result["score"]
        return lines

    def _regions(self, detections: list[Detection]) -> list[Detection]:
        """The regions read: scoring at least MIN_DETECTION_SCORE, the best MAX_LINES, in reading order."""
        kept = [d for d in detections if d.get("score", 0.0) >= self.config["MIN_DETECTION_SCORE"]]
        if len(kept) > self.config["MAX_LINES"]:
            best = sorted(kept, key=lambda d: -d.get("score", 0.0))[: self.config["MAX_LINES"]]
            kept = [d for d in kept if any(d is b for b in best)]
        return kept

    def _kept(self, line: Mapping[str, Any]) -> bool:
        return bool(str(line.get("text") or "").strip()) and line.get("score", 0.0) >= self.config["MIN_TEXT_SCORE"]

    def _fail(self, line: dict[str, Any], error: ServingError) -> None:
        line["error"] = f"{error.signature}: {error.kind}: {error.message}"
        self.lines_failed += 1

    def _params(self, signature: str) -> dict[str, Any]:
        return line_params(self.config, signature)

    def _timeout(self) -> float | None:
        return float(self.config["INFER_TIMEOUT"]) or None

    # --- output ---------------------------------------------------------------------------------------------------
    def _payload(self, inp: Input, lines: list[dict[str, Any]]) -> dict[str, Any]:
        height, width = inp.image.shape[:2]
        read = [line for line in lines if "error" not in line]
        return {
            "TEXT_LINES": len(read),
            "TEXT": "\n".join(line["text"] for line in read),
            "LINES": lines,
            "FAILED_LINES": len(lines) - len(read),
            "FRAME_INDEX": inp.metadata.get("frame_index", inp.seq),
            "IMAGE_SIZE": [width, height],
        }

    def _witness(self, inp: Input, lines: list[dict[str, Any]]) -> Any:
        if not self.config["WITNESS"]:
            return None
        return draw_lines(inp.image, lines, self.config["WITNESS_WIDTH"])


def colocated(config: Mapping[str, Any]) -> bool:
    """Whether the lines are read in the detector's processes (``COLOCATE``, without ``SEPARATE_STAGES``)."""
    return bool(config.get("COLOCATE", True)) and not config.get("SEPARATE_STAGES")


def line_params(config: Mapping[str, Any], signature: str) -> dict[str, Any]:
    """A second stage's config: the shared keys of STARTUP_AI_ENGINE_PARAMS, then its own *_PARAMS
    (``PP_OCR_LINES``: RECOGNIZER_PARAMS, and the reader's USE_DIRECTION and DIRECTION_THRESHOLD)."""
    shared = config.get("STARTUP_AI_ENGINE_PARAMS") or {}
    params = {k: v for k, v in shared.items() if not isinstance(v, Mapping)}
    own = config.get("DIRECTION_PARAMS") if signature == DIRECTION else config.get("RECOGNIZER_PARAMS")
    params.update(own or {})
    if signature == LINES:
        params["USE_DIRECTION"] = config.get("USE_DIRECTION", True)
        params["DIRECTION_THRESHOLD"] = config.get("DIRECTION_THRESHOLD", 0.9)
    return params


def _line(region: Detection) -> dict[str, Any]:
    quad = region.get("quad") or _corners(region["box"])
    return {
        "text": None,
        "score": 0.0,
        "box": [round(float(v)) for v in region["box"]],
        "quad": [[round(float(x)), round(float(y))] for x, y in quad],
        "detection_score": region.get("score", 0.0),
        "direction": "0",
    }


def _corners(box: Any) -> list[list[float]]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def turn_half(crop: Any) -> Any:
    """The crop turned 180°."""
    import cv2

    return cv2.rotate(crop, cv2.ROTATE_180)


def draw_lines(image: Any, lines: list[dict[str, Any]], max_width: int) -> Any:
    """A copy of the frame (at most ``max_width`` wide) with each line's quad and its text (or ``ERROR``)."""
    import cv2
    import numpy as np

    scale = min(1.0, max_width / image.shape[1])
    canvas = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image.copy()
    if canvas.ndim == 2:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    for line in lines:
        points = (np.asarray(line["quad"], np.float64) * scale).round().astype(np.int32)
        failed = "error" in line
        cv2.polylines(canvas, [points.reshape(-1, 1, 2)], True, (0, 0, 255) if failed else BOX_COLOR, 2)
        text = "ERROR" if failed else _printable(f"{line['text']} ({line['score']:.2f})")
        (width, height), base = cv2.getTextSize(text, font, size, 1)
        x, y = int(points[:, 0].min()), max(int(points[:, 1].min()) - 4, height + base)
        cv2.rectangle(canvas, (x, y - height - base), (x + width, y + base), (0, 0, 0), -1)
        cv2.putText(canvas, text, (x, y), font, size, TEXT_COLOR, 1, cv2.LINE_AA)
    return canvas


def _printable(text: str) -> str:
    """``text`` with the characters OpenCV's Hershey fonts cannot draw replaced by ``?``."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
