"""Text detector: a business plugin that reports where text is in a frame, with a witness image.

It needs the ``PP_OCR_DETECTOR`` serving plugin (its ``AI_ENGINE`` by default): the model runs in a shared
model server, batched with every other pipeline that uses it, and this plugin gets the regions in
``inp.inferences["PP_OCR_DETECTOR"]``, in the one detection format (``box`` xyxy, ``quad``, ``score``,
``class_id``, ``class_name``; any detector giving that format works). When at least ``MIN_REGIONS``
regions score ``MIN_SCORE`` or more, it sends a payload (at most one every ``MIN_PAYLOAD_INTERVAL`` seconds)::

    {"TEXT_REGIONS": 2, "BOXES": [[x, y, w, h], ...], "POLYGONS": [[[x, y] × 4], ...], "SCORES": [0.91, ...],
     "DETECTIONS": [{"box": [x1, y1, x2, y2], "quad": [[x, y] × 4], "score": 0.91, "class_id": 0,
                     "class_name": "text"}, ...],
     "FRAME_INDEX": 42, "IMAGE_SIZE": [640, 480], "MODEL": "PP-OCRv6_det_small.onnx"}

``BOXES`` and ``POLYGONS`` (integer pixels) are kept for consumers written before the detection format;
``POLYGONS`` is the quad, or the box's corners for a detector without quads.

with a witness image: the frame, at most ``WITNESS_WIDTH`` pixels wide, the regions outlined. If the model
could not answer for a frame (its server crashed, hung or did not load) ``process`` raises the
``ServingError``: the engine counts it in the instance's errors and goes on with the next frame.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from edge_engine.api import BusinessPlugin, Detection, Input, Key, ServingError, draw_detections

ENGINE = "PP_OCR_DETECTOR"


class TextDetector(BusinessPlugin):
    """Report text regions found by the PP-OCR detector; see the module docstring."""

    SIGNATURE = "TEXT_DETECTOR"
    VERSION = "1.0.0"
    DESCRIPTION = "text regions (PP-OCRv6 detector, served and batched) → payload with boxes, scores and a witness"
    CONFIG: ClassVar[dict[str, Any]] = {
        "AI_ENGINE": Key([ENGINE], type=(list, str), doc="the serving plugin giving text regions"),
        "MIN_REGIONS": Key(1, type=int, min=1, doc="regions needed for a payload"),
        "MIN_SCORE": Key(0.5, min=0, max=1, doc="regions scoring less are ignored"),
        "MIN_PAYLOAD_INTERVAL": Key(2.0, min=0, doc="seconds between two payloads (0: every frame with text)"),
        "WITNESS": Key(True, type=bool, doc="attach a witness image with the regions outlined"),
        "WITNESS_WIDTH": Key(640, type=int, min=64, max=4096, doc="largest witness image width"),
    }

    def on_init(self) -> None:
        self._last_payload = 0.0
        self.frames = 0
        self.frames_with_text = 0

    def process(self, inp: Input | None) -> None:
        if inp is None:
            return None
        result = inp.inferences.get(ENGINE)
        if isinstance(result, ServingError):
            raise result
        self.frames += 1
        regions = [r for r in result or [] if r["score"] >= self.config["MIN_SCORE"]]
        if len(regions) < self.config["MIN_REGIONS"]:
            return None
        self.frames_with_text += 1
        now = time.monotonic()
        if self._last_payload and now - self._last_payload < self.config["MIN_PAYLOAD_INTERVAL"]:
            return None
        self._last_payload = now
        self.emit(self._payload(inp, regions), image=self._witness(inp, regions))
        return None

    def _payload(self, inp: Input, regions: list[Detection]) -> dict[str, Any]:
        boxes = []
        for region in regions:
            x1, y1, x2, y2 = (round(v) for v in region["box"])
            boxes.append([x1, y1, x2 - x1, y2 - y1])
        height, width = inp.image.shape[:2] if inp.image is not None else (0, 0)
        return {
            "TEXT_REGIONS": len(regions),
            "BOXES": boxes,
            "POLYGONS": [_polygon(r) for r in regions],
            "SCORES": [r["score"] for r in regions],
            "DETECTIONS": [dict(r) for r in regions],
            "FRAME_INDEX": inp.metadata.get("frame_index", inp.seq),
            "IMAGE_SIZE": [width, height],
            "MODEL": "PP-OCRv6_det_small.onnx",
        }

    def _witness(self, inp: Input, regions: list[Detection]) -> Any:
        if not self.config["WITNESS"] or inp.image is None:
            return None
        return draw_detections(inp.image, regions, max_width=self.config["WITNESS_WIDTH"])


def _polygon(region: Detection) -> list[list[int]]:
    """The region's quad in integer pixels, or its box's corners (clockwise from the top-left)."""
    if region.get("quad"):
        return [[round(x), round(y)] for x, y in region["quad"]]
    x1, y1, x2, y2 = (round(v) for v in region["box"])
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
