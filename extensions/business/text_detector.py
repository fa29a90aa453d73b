"""Text detector: a business plugin that reports where text is in a frame, with a witness image.

It needs the ``PP_OCR_DETECTOR`` serving plugin (its ``AI_ENGINE`` by default): the model runs in a shared
model server, batched with every other pipeline that uses it, and this plugin gets the regions in
``inp.inferences["PP_OCR_DETECTOR"]``. When at least ``MIN_REGIONS`` regions score ``MIN_SCORE`` or more,
it sends a payload (at most one every ``MIN_PAYLOAD_INTERVAL`` seconds)::

    {"TEXT_REGIONS": 2, "BOXES": [[x, y, w, h], ...], "POLYGONS": [[[x, y] × 4], ...], "SCORES": [0.91, ...],
     "FRAME_INDEX": 42, "IMAGE_SIZE": [640, 480], "MODEL": "ch_PP-OCRv4_det_infer.onnx"}

with a witness image: the frame, at most ``WITNESS_WIDTH`` pixels wide, the regions outlined. If the model
could not answer for a frame (its server crashed, hung or did not load) ``process`` raises the
``ServingError``: the engine counts it in the instance's errors and goes on with the next frame.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from edge_engine.api import BusinessPlugin, Input, Key, ServingError

ENGINE = "PP_OCR_DETECTOR"
_OUTLINE = (0, 200, 255)  # BGR orange


class TextDetector(BusinessPlugin):
    """Report text regions found by the PP-OCR detector; see the module docstring."""

    SIGNATURE = "TEXT_DETECTOR"
    VERSION = "1.0.0"
    DESCRIPTION = "text regions (PP-OCRv4 detector, served and batched) → payload with boxes, scores and a witness"
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

    def _payload(self, inp: Input, regions: list[dict[str, Any]]) -> dict[str, Any]:
        boxes = []
        for region in regions:
            xs = [p[0] for p in region["box"]]
            ys = [p[1] for p in region["box"]]
            boxes.append([min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)])
        height, width = inp.image.shape[:2] if inp.image is not None else (0, 0)
        return {
            "TEXT_REGIONS": len(regions),
            "BOXES": boxes,
            "POLYGONS": [r["box"] for r in regions],
            "SCORES": [r["score"] for r in regions],
            "FRAME_INDEX": inp.metadata.get("frame_index", inp.seq),
            "IMAGE_SIZE": [width, height],
            "MODEL": "ch_PP-OCRv4_det_infer.onnx",
        }

    def _witness(self, inp: Input, regions: list[dict[str, Any]]) -> Any:
        if not self.config["WITNESS"] or inp.image is None:
            return None
        import cv2
        import numpy as np

        image = inp.image
        scale = min(1.0, self.config["WITNESS_WIDTH"] / image.shape[1])
        witness = cv2.resize(image, None, fx=scale, fy=scale) if scale < 1 else image.copy()
        for region in regions:
            polygon = (np.asarray(region["box"], np.float32) * scale).astype(np.int32)
            cv2.polylines(witness, [polygon.reshape(-1, 1, 2)], True, _OUTLINE, 2)
            x, y = polygon[0]
            cv2.putText(witness, f"{region['score']:.2f}", (int(x), max(10, int(y) - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, _OUTLINE, 1, cv2.LINE_AA)  # fmt: skip
        return witness
