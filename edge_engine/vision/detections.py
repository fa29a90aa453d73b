"""The one detection format: what every detector serving plugin returns per input, and what business plugins,
cascades, trackers and zones read (decision 34).

A detector returns, for each input, a ``list[Detection]``. Boxes are ``[x1, y1, x2, y2]`` floats in the pixels
of the frame the input carried (not the model's input size); ``quad`` is an optional rotated box as four
``[x, y]`` points, clockwise from top-left; ``track_id`` appears once a tracker has seen the box.
"""

from __future__ import annotations

from typing import TypedDict


class _DetectionRequired(TypedDict):
    box: list[float]
    score: float
    class_id: int
    class_name: str


class Detection(_DetectionRequired, total=False):
    """One detected object in frame pixels (``quad`` and ``track_id`` are optional)."""

    quad: list[list[float]]
    track_id: int


def make_detection(
    box: list[float] | tuple[float, float, float, float],
    score: float,
    class_id: int = 0,
    class_name: str = "",
    quad: list[list[float]] | None = None,
) -> Detection:
    """Build a :class:`Detection` with plain Python numbers (JSON-ready, whatever numpy types came in)."""
    det: Detection = {
        "box": [float(v) for v in box],
        "score": float(score),
        "class_id": int(class_id),
        "class_name": str(class_name),
    }
    if quad is not None:
        det["quad"] = [[float(x), float(y)] for x, y in quad]
    return det
