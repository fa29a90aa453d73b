"""Moving regions as detections: a background model that gives, for every frame, the boxes of what moves.

The same two-rate background model as the ``MOTION_DETECTOR`` plugin (calm pixels learn at
``background_alpha``, changed pixels at the slower ``foreground_alpha`` so a passing object leaves no ghost),
but instead of one event per scene change it returns each frame's changed regions in the common detection
format (decision 34: ``box`` xyxy in frame pixels, ``score`` 1.0, ``class_name`` ``"motion"``), so that a
tracker and zones can run on cameras without a detector model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_engine.vision.detections import Detection, make_detection


@dataclass
class MotionSettings:
    """How :class:`MotionBoxes` finds moving regions."""

    analysis_width: int = 320  # frames are downscaled to this width first
    blur_size: int = 3  # Gaussian blur kernel (made odd; 1 = none)
    pixel_threshold: int = 25  # gray-level difference that counts as changed
    background_alpha: float = 0.05  # learning rate of calm pixels
    foreground_alpha: float = 0.002  # learning rate of changed pixels
    min_box_area: int = 64  # smallest region reported, in frame pixels
    dilate: int = 1  # dilation iterations joining the parts of one object


class MotionBoxes:
    """Per-frame boxes of moving regions (one object per camera; call :meth:`boxes` with each frame)."""

    def __init__(self, settings: MotionSettings | None = None):
        self.settings = settings or MotionSettings()
        self._background: Any = None

    def reset(self) -> None:
        """Forget the background; the next frame becomes it."""
        self._background = None

    def boxes(self, frame: Any) -> list[Detection]:
        """The moving regions of ``frame`` (BGR or gray), largest first; none for the very first frame."""
        import cv2
        import numpy as np

        s = self.settings
        height, width = frame.shape[:2]
        scale = min(1.0, s.analysis_width / width)
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if s.blur_size > 1:
            small = cv2.GaussianBlur(small, (s.blur_size | 1, s.blur_size | 1), 0)
        small = small.astype(np.float32)
        if self._background is None or self._background.shape != small.shape:
            self._background = small.copy()
            return []
        mask = (cv2.absdiff(small, self._background) > s.pixel_threshold).astype(np.uint8)
        cv2.accumulateWeighted(small, self._background, s.background_alpha, mask=1 - mask)
        if s.foreground_alpha > 0:
            cv2.accumulateWeighted(small, self._background, s.foreground_alpha, mask=mask)
        if s.dilate > 0:
            mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=s.dilate)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        sx, sy = width / small.shape[1], height / small.shape[0]
        found = []
        for x, y, w, h, _area in stats[1:count]:
            box = [x * sx, y * sy, min(width, (x + w) * sx), min(height, (y + h) * sy)]
            if (box[2] - box[0]) * (box[3] - box[1]) >= s.min_box_area:
                found.append(make_detection(box, 1.0, 0, "motion"))
        found.sort(key=lambda d: (d["box"][2] - d["box"][0]) * (d["box"][3] - d["box"][1]), reverse=True)
        return found
