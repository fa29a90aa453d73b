"""Object detector: a business plugin that reports the objects a detector serving plugin finds, with a witness
image, so a user with a detection model needs no code.

It reads the one detection format (``box`` xyxy in frame pixels, ``score``, ``class_id``, ``class_name``)
from the first engine of its ``AI_ENGINE`` (``YOLO`` by default; any detector in that format works, e.g.
``PP_OCR_DETECTOR``). Detections of a class not in ``CLASSES`` (names or ids; empty = all) or scoring under
``MIN_SCORE`` are ignored. When at least ``MIN_OBJECTS`` remain it sends a payload, at most one every
``MIN_PAYLOAD_INTERVAL`` seconds::

    {"OBJECTS": 2, "COUNTS": {"person": 1, "car": 1},
     "DETECTIONS": [{"box": [x1, y1, x2, y2], "score": 0.91, "class_id": 0, "class_name": "person"}, ...],
     "FRAME_INDEX": 42, "IMAGE_SIZE": [1280, 720], "ENGINE": "YOLO"}

with a witness image: the frame, at most ``WITNESS_WIDTH`` pixels wide, each box drawn and labelled with its
class and score. Filtering here rather than with the serving plugin's own ``CLASSES`` lets instances that
want different classes share one model server. If the model could not answer for a frame, ``process``
raises the ``ServingError``: the engine counts it in the instance's errors and goes on with the next frame.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

from edge_engine.api import BusinessPlugin, Detection, Input, Key, ServingError, draw_detections


class ObjectDetector(BusinessPlugin):
    """Report detections with counts per class and a witness image; see the module docstring."""

    SIGNATURE = "OBJECT_DETECTOR"
    VERSION = "1.0.0"
    DESCRIPTION = "objects from a detector (YOLO by default) → payload with boxes, classes, counts and a witness"
    CONFIG: ClassVar[dict[str, Any]] = {
        "AI_ENGINE": Key(["YOLO"], type=(list, str), doc="the detector serving plugin (its first entry is read)"),
        "CLASSES": Key([], type=list, doc="class names or ids to report; empty = all"),
        "MIN_SCORE": Key(0.0, min=0, max=1, doc="detections scoring less are ignored"),
        "MIN_OBJECTS": Key(1, type=int, min=1, doc="detections needed for a payload"),
        "MIN_PAYLOAD_INTERVAL": Key(2.0, min=0, doc="seconds between two payloads (0: every frame with objects)"),
        "WITNESS": Key(True, type=bool, doc="attach a witness image with the boxes drawn"),
        "WITNESS_WIDTH": Key(640, type=int, min=64, max=4096, doc="largest witness image width"),
    }

    def on_init(self) -> None:
        names = self.config["AI_ENGINE"]
        self.engine = names if isinstance(names, str) else (names[0] if names else "")
        if not self.engine:
            raise ValueError("AI_ENGINE names no detector")
        self.wanted_names, self.wanted_ids = _class_filter(self.config["CLASSES"])
        self._last_payload = 0.0
        self.frames = 0
        self.frames_with_objects = 0

    def process(self, inp: Input | None) -> None:
        if inp is None:
            return None
        result = inp.inferences.get(self.engine)
        if isinstance(result, ServingError):
            raise result
        self.frames += 1
        detections = [d for d in result or [] if self._wanted(d)]
        if len(detections) < self.config["MIN_OBJECTS"]:
            return None
        self.frames_with_objects += 1
        now = time.monotonic()
        if self._last_payload and now - self._last_payload < self.config["MIN_PAYLOAD_INTERVAL"]:
            return None
        self._last_payload = now
        image = None
        if self.config["WITNESS"] and inp.image is not None:
            image = draw_detections(inp.image, detections, max_width=self.config["WITNESS_WIDTH"])
        self.emit(self._payload(inp, detections), image=image)
        return None

    def _wanted(self, det: Detection) -> bool:
        if det.get("score", 0.0) < self.config["MIN_SCORE"]:
            return False
        if self.wanted_names is None:
            return True
        return det.get("class_id") in self.wanted_ids or str(det.get("class_name", "")).lower() in self.wanted_names

    def _payload(self, inp: Input, detections: list[Detection]) -> dict[str, Any]:
        height, width = inp.image.shape[:2] if inp.image is not None else (0, 0)
        counts = Counter(d.get("class_name") or str(d.get("class_id", "")) for d in detections)
        return {
            "OBJECTS": len(detections),
            "COUNTS": dict(sorted(counts.items())),
            "DETECTIONS": [dict(d) for d in detections],
            "FRAME_INDEX": inp.metadata.get("frame_index", inp.seq),
            "IMAGE_SIZE": [width, height],
            "ENGINE": self.engine,
        }


def _class_filter(classes: Sequence[Any]) -> tuple[set[str] | None, set[int]]:
    """``CLASSES`` as (lower-case names, ids); None when every class is wanted."""
    if not classes:
        return None, set()
    names: set[str] = set()
    ids: set[int] = set()
    for entry in classes:
        if isinstance(entry, bool) or not isinstance(entry, (int, str)):
            raise ValueError(f"CLASSES: {entry!r} is neither a class name nor a class id")
        if isinstance(entry, int):
            ids.add(entry)
        else:
            names.add(entry.strip().lower())
    return names, ids
