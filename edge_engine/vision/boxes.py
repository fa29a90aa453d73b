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

    With ``class_ids``, boxes only suppress boxes of their own class (class-aware NMS); without, every box
    competes with every other. ``max_keep`` > 0 keeps at most that many.
    """
    import numpy as np

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    if class_ids is None:
        kept = _greedy(boxes, scores, np.arange(len(boxes)), iou_threshold)
    else:
        classes = np.asarray(class_ids).reshape(-1)
        kept = []
        for value in np.unique(classes):
            kept.extend(_greedy(boxes, scores, np.flatnonzero(classes == value), iou_threshold))
        kept.sort(key=lambda i: (-scores[i], i))
    return kept[:max_keep] if max_keep > 0 else kept


def _greedy(boxes: Any, scores: Any, candidates: Any, iou_threshold: float) -> list[int]:
    import numpy as np

    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    kept: list[int] = []
    while order.size:
        best = int(order[0])
        kept.append(best)
        rest = order[1:]
        if not rest.size:
            break
        order = rest[box_iou(boxes[best], boxes[rest])[0] <= iou_threshold]
    return kept
