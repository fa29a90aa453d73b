"""Box geometry shared by detector serving plugins: letterboxing a frame into a model's input and back, the
intersection over union of boxes, and greedy non-maximum suppression (per class or across classes).

Boxes are ``[x1, y1, x2, y2]`` in pixels (the frame's, or the model input's before :meth:`Letterbox.to_frame`).
The suppression is the usual greedy one (the same choices as OpenCV's ``cv2.dnn.NMSBoxes``: candidates in
descending score, ties in input order; a box is dropped when its IoU with a kept one is above the threshold).
numpy and OpenCV are imported inside the functions: this module is imported by every node at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LETTERBOX_PAD = 114  # the grey Ultralytics pads with
MATRIX_NMS_MAX = 1024  # up to this many boxes, NMS computes every pair's IoU at once (8 MB), then walks the rows


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed into a model input: scaled by ``scale_x``/``scale_y`` (equal but for rounding),
    then shifted by ``pad_x``/``pad_y``. ``frame_width``/``frame_height`` bound the boxes mapped back."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    frame_width: int
    frame_height: int

    def to_frame(self, boxes: Any) -> Any:
        """Model-input ``[x1, y1, x2, y2]`` rows (an ``N × 4`` array) → frame pixels, clipped to the frame."""
        import numpy as np

        out = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 4)
        out[:, [0, 2]] = ((out[:, [0, 2]] - self.pad_x) / self.scale_x).clip(0, self.frame_width)
        out[:, [1, 3]] = ((out[:, [1, 3]] - self.pad_y) / self.scale_y).clip(0, self.frame_height)
        return out


def letterbox(image: Any, width: int, height: int, pad_value: int = LETTERBOX_PAD) -> tuple[Any, Letterbox]:
    """Resize ``image`` to fit ``width`` × ``height`` keeping its aspect ratio, centred on a ``pad_value`` canvas.

    Returns the canvas (same channels and dtype as ``image``) and the :class:`Letterbox` that maps boxes back.
    """
    import cv2
    import numpy as np

    frame_h, frame_w = image.shape[:2]
    ratio = min(width / frame_w, height / frame_h)
    new_w, new_h = max(1, min(width, round(frame_w * ratio))), max(1, min(height, round(frame_h * ratio)))
    pad_x, pad_y = (width - new_w) // 2, (height - new_h) // 2
    canvas = np.full((height, width, *image.shape[2:]), pad_value, dtype=image.dtype)
    if (new_w, new_h) == (frame_w, frame_h):
        resized = image
    else:
        interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized.reshape(new_h, new_w, *image.shape[2:])
    return canvas, Letterbox(new_w / frame_w, new_h / frame_h, pad_x, pad_y, frame_w, frame_h)


def box_iou(boxes_a: Any, boxes_b: Any) -> Any:
    """IoU of every box in ``boxes_a`` (``N × 4`` xyxy) with every box in ``boxes_b`` (``M × 4``): ``N × M``.
    Boxes without area overlap nothing (IoU 0)."""
    import numpy as np

    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    width = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    height = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    inter = width * height
    area_a = ((a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0))[:, None]
    area_b = ((b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0))[None, :]
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def non_max_suppression(
    boxes: Any, scores: Any, iou_threshold: float, class_ids: Any = None, max_keep: int = 0
) -> list[int]:
    """Indices of the boxes kept by greedy NMS, best score first.

    With ``class_ids``, boxes only suppress boxes of their own class (class-aware NMS: each class's boxes are
    shifted apart by ``class id × (largest coordinate + 1)``, as OpenCV's ``NMSBoxesBatched`` does); without,
    every box competes with every other. ``max_keep`` > 0 keeps at most that many (and stops there: the
    greedy pass keeps boxes in score order).
    """
    import numpy as np

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    if class_ids is not None and len(boxes):
        shift = np.asarray(class_ids, np.float64).reshape(-1, 1) * (float(boxes.max()) + 1.0)
        boxes = boxes + shift
    order = np.argsort(-scores, kind="stable")
    limit = max_keep if max_keep > 0 else len(order)
    if len(order) <= MATRIX_NMS_MAX:
        return _greedy_by_matrix(boxes, order, iou_threshold, limit)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    kept: list[int] = []
    while order.size and len(kept) < limit:
        best, rest = int(order[0]), order[1:]
        kept.append(best)
        width = (np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])).clip(0)
        height = (np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])).clip(0)
        inter = width * height
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return kept


def _greedy_by_matrix(boxes: Any, order: Any, iou_threshold: float, limit: int) -> list[int]:
    """Greedy NMS over boxes already in score order, from the matrix of every pair's IoU (few boxes: one
    vectorised step, then one row test per kept box)."""
    import numpy as np

    overlaps = box_iou(boxes[order], boxes[order]) > iou_threshold
    suppressed = np.zeros(len(order), bool)
    kept: list[int] = []
    for position in range(len(order)):
        if suppressed[position]:
            continue
        kept.append(int(order[position]))
        if len(kept) >= limit:
            break
        suppressed |= overlaps[position]
    return kept
