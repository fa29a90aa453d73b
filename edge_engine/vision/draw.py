"""Witness images for detections: the frame, downscaled to a width, with each detection's box (or rotated
quad) drawn and labelled with its class name and score. Colours are fixed per class id, so the same class
looks the same in every image. OpenCV is imported inside the function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge_engine.vision.detections import Detection

_PALETTE = ((56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
            (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
            (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203))  # fmt: skip


def class_color(class_id: int) -> tuple[int, int, int]:
    """The BGR colour of a class id."""
    return _PALETTE[int(class_id) % len(_PALETTE)]


def draw_detections(image: Any, detections: Sequence[Detection], max_width: int = 0, labels: bool = True) -> Any:
    """A copy of ``image`` (BGR), at most ``max_width`` pixels wide (0: full size), with ``detections`` drawn:
    the quad when there is one, else the box; labelled ``class_name score`` (and ``#track_id`` once tracked)."""
    import cv2
    import numpy as np

    scale = min(1.0, max_width / image.shape[1]) if max_width > 0 else 1.0
    canvas = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image.copy()
    if canvas.ndim == 2:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    for det in detections:
        color = class_color(det.get("class_id", 0))
        if det.get("quad"):
            points = (np.asarray(det["quad"], np.float64) * scale).round().astype(np.int32)
            cv2.polylines(canvas, [points.reshape(-1, 1, 2)], True, color, thickness, cv2.LINE_AA)
            x, y = int(points[:, 0].min()), int(points[:, 1].min())
        else:
            x1, y1, x2, y2 = (round(v * scale) for v in det["box"])
            cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
            x, y = x1, y1
        if labels:
            _label(canvas, _label_text(det), x, y, color)
    return canvas


def _label_text(det: Detection) -> str:
    name = det.get("class_name") or str(det.get("class_id", ""))
    text = f"{name} {float(det.get('score', 0.0)):.2f}"
    return f"{text} #{det['track_id']}" if "track_id" in det else text


def _label(canvas: Any, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    import cv2

    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    (width, height), base = cv2.getTextSize(text, font, size, 1)
    top = y - height - base - 2 if y - height - base - 2 >= 0 else y
    cv2.rectangle(canvas, (x, top), (x + width + 2, top + height + base + 2), color, -1)
    cv2.putText(canvas, text, (x + 1, top + height + 1), font, size, (255, 255, 255), 1, cv2.LINE_AA)
