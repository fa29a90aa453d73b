"""Motion / scene-change detector: a business plugin that reports when a camera view starts and stops changing.

Each frame is downscaled to ``ANALYSIS_WIDTH`` pixels wide, turned to grayscale and blurred, then compared with
a running background (``cv2.accumulateWeighted``: calm pixels learn at ``BACKGROUND_ALPHA``, changed pixels at
the slower ``FOREGROUND_ALPHA`` so that a passing object leaves no ghost). The fraction of pixels that differ
from the background by more than ``PIXEL_THRESHOLD`` drives a two-threshold state machine (hysteresis) so that
noise or flicker does not make it chatter: the scene becomes *changed* after ``ON_FRAMES`` consecutive frames at
or above ``ON_THRESHOLD`` and becomes *calm* again only after ``OFF_FRAMES`` consecutive frames at or below
``OFF_THRESHOLD``. Only transitions produce payloads: ``MOTION_START`` (with the changed regions' bounding
boxes, in original-frame pixels, and a witness image) and ``MOTION_END`` (with the event's duration and peak). A
lasting change (a light switched on, an object left behind) is absorbed into the background at the rate
``FOREGROUND_ALPHA``, which ends the event; its removal is then a new change.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from edge_engine.api import BusinessPlugin, Input, Key

_BOX_COLOR = (0, 0, 255)  # BGR red


class MotionDetector(BusinessPlugin):
    """Emit ``MOTION_START`` / ``MOTION_END`` payloads when the fraction of changed pixels crosses thresholds."""

    SIGNATURE = "MOTION_DETECTOR"
    VERSION = "0.1.0"
    DESCRIPTION = "scene-change / motion detection with hysteresis; emits MOTION_START (with boxes) and MOTION_END"
    CONFIG: ClassVar[dict[str, Any]] = {
        "ANALYSIS_WIDTH": Key(160, type=int, min=16, doc="frames are downscaled to this width before analysis"),
        "BLUR_SIZE": Key(5, type=int, min=1, max=31, doc="Gaussian blur kernel on the analysis frame (made odd)"),
        "BACKGROUND_ALPHA": Key(0.05, min=0.0001, max=1, doc="background learning rate per frame"),
        "FOREGROUND_ALPHA": Key(
            0.01, min=0, max=1, doc="learning rate of changed pixels (slower: no ghosts; 0: never absorb a change)"
        ),
        "PIXEL_THRESHOLD": Key(25, type=int, min=1, max=255, doc="gray-level difference that counts as changed"),
        "ON_THRESHOLD": Key(0.02, min=0, max=1, doc="changed fraction that starts an event"),
        "ON_FRAMES": Key(2, type=int, min=1, doc="consecutive frames >= ON_THRESHOLD to start an event"),
        "OFF_THRESHOLD": Key(0.005, min=0, max=1, doc="changed fraction under which the scene is calm"),
        "OFF_FRAMES": Key(5, type=int, min=1, doc="consecutive frames <= OFF_THRESHOLD to end an event"),
        "MAX_BOXES": Key(10, type=int, min=0, doc="largest number of boxes reported in MOTION_START"),
        "MIN_BOX_AREA": Key(100, type=int, min=0, doc="smallest box area reported, in original-frame pixels"),
        "WITNESS_ON_END": Key(False, type=bool, doc="attach a witness image to MOTION_END too"),
    }

    # --- lifecycle ----------------------------------------------------------------------------------
    def on_init(self) -> None:
        """Check the thresholds and reset the detector."""
        self._settings = self._read_settings(self.config)
        self._reset_background()
        self._changed = False
        self._on_count = 0
        self._off_count = 0
        self._event_start = 0.0
        self._event_peak = 0.0
        self.last_fraction: float | None = None

    def on_config(self, changed: dict[str, Any]) -> None:
        """Re-read settings; a new ``ANALYSIS_WIDTH`` restarts the background model.

        Invalid thresholds raise ``ValueError`` and the previous (valid) settings stay in force.
        """
        self._settings = self._read_settings(self.config)
        if "ANALYSIS_WIDTH" in changed:
            self._reset_background()
        self._on_count = 0
        self._off_count = 0

    def on_command(self, command: Any, **params: Any) -> Any:
        """``RESET`` forgets the background (the next frame becomes the new one); ``STATUS`` reports the state."""
        name = str(command).strip().upper()
        if name == "RESET":
            self._reset_background()
            return {"reset": True}
        if name == "STATUS":
            return {"changed": self._changed, "last_fraction": self.last_fraction}
        return {"error": f"unknown command {command!r}; known: RESET, STATUS"}

    def on_close(self) -> None:
        """Drop the background model."""
        self._reset_background()

    # --- per frame ------------------------------------------------------------------------------------
    def process(self, inp: Input | None) -> dict[str, Any] | None:
        """Update the background with one frame and emit a payload when the state flips."""
        if inp is None or inp.image is None:
            return None
        frame = inp.image
        small = self._prepare(frame)
        if small is None:
            return None
        fraction, mask = self._compare(small)
        self.last_fraction = fraction
        ts = inp.timestamp or time.time()
        s = self._settings
        if not self._changed:
            self._on_count = self._on_count + 1 if fraction >= s["ON_THRESHOLD"] else 0
            if self._on_count >= s["ON_FRAMES"]:
                self._changed, self._on_count, self._off_count = True, 0, 0
                self._event_start, self._event_peak = ts, fraction
                self._emit_start(inp, frame, fraction, mask)
            return None
        self._event_peak = max(self._event_peak, fraction)
        self._off_count = self._off_count + 1 if fraction <= s["OFF_THRESHOLD"] else 0
        if self._off_count >= s["OFF_FRAMES"]:
            self._changed, self._on_count, self._off_count = False, 0, 0
            payload = {
                "EVENT": "MOTION_END",
                "DURATION_S": round(max(0.0, ts - self._event_start), 3),
                "PEAK_FRACTION": round(self._event_peak, 5),
                "CHANGED_FRACTION": round(fraction, 5),
                "FRAME_INDEX": (inp.metadata or {}).get("frame_index"),
                "INPUT_SEQ": inp.seq,
            }
            self.emit(payload, image=frame.copy() if s["WITNESS_ON_END"] else None)
        return None

    # --- helpers --------------------------------------------------------------------------------------
    @staticmethod
    def _read_settings(config: Any) -> dict[str, Any]:
        """Copy the keys used per frame into a dict, checking that they make sense together."""
        s = {
            "ANALYSIS_WIDTH": int(config["ANALYSIS_WIDTH"]),
            "BLUR_SIZE": int(config["BLUR_SIZE"]) | 1,
            "BACKGROUND_ALPHA": float(config["BACKGROUND_ALPHA"]),
            "FOREGROUND_ALPHA": float(config["FOREGROUND_ALPHA"]),
            "PIXEL_THRESHOLD": float(config["PIXEL_THRESHOLD"]),
            "ON_THRESHOLD": float(config["ON_THRESHOLD"]),
            "ON_FRAMES": int(config["ON_FRAMES"]),
            "OFF_THRESHOLD": float(config["OFF_THRESHOLD"]),
            "OFF_FRAMES": int(config["OFF_FRAMES"]),
            "MAX_BOXES": int(config["MAX_BOXES"]),
            "MIN_BOX_AREA": float(config["MIN_BOX_AREA"]),
            "WITNESS_ON_END": bool(config["WITNESS_ON_END"]),
        }
        if not 0 <= s["OFF_THRESHOLD"] < s["ON_THRESHOLD"] <= 1:
            raise ValueError(
                f"MOTION_DETECTOR needs 0 <= OFF_THRESHOLD < ON_THRESHOLD <= 1 (hysteresis); got "
                f"OFF_THRESHOLD={s['OFF_THRESHOLD']} and ON_THRESHOLD={s['ON_THRESHOLD']}"
            )
        if not 0 < s["BACKGROUND_ALPHA"] <= 1:
            raise ValueError(f"MOTION_DETECTOR needs 0 < BACKGROUND_ALPHA <= 1; got {s['BACKGROUND_ALPHA']}")
        if not 0 <= s["FOREGROUND_ALPHA"] <= 1:
            raise ValueError(f"MOTION_DETECTOR needs 0 <= FOREGROUND_ALPHA <= 1; got {s['FOREGROUND_ALPHA']}")
        if s["ANALYSIS_WIDTH"] < 16:
            raise ValueError(f"MOTION_DETECTOR needs ANALYSIS_WIDTH >= 16; got {s['ANALYSIS_WIDTH']}")
        if s["ON_FRAMES"] < 1 or s["OFF_FRAMES"] < 1:
            raise ValueError("MOTION_DETECTOR needs ON_FRAMES >= 1 and OFF_FRAMES >= 1")
        return s

    def _reset_background(self) -> None:
        self._background: Any = None
        self._scale = (1.0, 1.0)

    def _prepare(self, frame: Any) -> Any:
        """Downscale first (cheap), then grayscale and blur; returns a float32 analysis frame."""
        import cv2
        import numpy as np

        if getattr(frame, "ndim", 0) not in (2, 3) or frame.shape[0] < 2 or frame.shape[1] < 2:
            return None
        height, width = frame.shape[:2]
        target = self._settings["ANALYSIS_WIDTH"]
        if width > target:
            small_h = max(2, round(height * target / width))
            small = cv2.resize(frame, (target, small_h), interpolation=cv2.INTER_AREA)
        else:
            small = frame
        if small.ndim == 3:
            code = cv2.COLOR_BGRA2GRAY if small.shape[2] == 4 else cv2.COLOR_BGR2GRAY
            small = cv2.cvtColor(small, code) if small.shape[2] in (3, 4) else small[:, :, 0]
        k = self._settings["BLUR_SIZE"]
        if k > 1:
            small = cv2.GaussianBlur(small, (k, k), 0)
        self._scale = (width / small.shape[1], height / small.shape[0])
        return small.astype(np.float32)

    def _compare(self, small: Any) -> tuple[float, Any]:
        """Changed fraction against the background and the changed-pixel mask; then learn the frame."""
        import cv2
        import numpy as np

        if self._background is None or self._background.shape != small.shape:
            self._background = small.copy()
            return 0.0, None
        mask = cv2.absdiff(small, self._background) > self._settings["PIXEL_THRESHOLD"]
        changed = np.count_nonzero(mask)
        if changed == 0:
            cv2.accumulateWeighted(small, self._background, self._settings["BACKGROUND_ALPHA"])
        else:
            # Two rates: calm pixels follow the scene quickly, changed pixels slowly (a passing object leaves
            # no ghost behind, a lasting change is still absorbed in the end).
            fg = mask.astype(np.uint8)
            cv2.accumulateWeighted(small, self._background, self._settings["BACKGROUND_ALPHA"], mask=1 - fg)
            if self._settings["FOREGROUND_ALPHA"] > 0:
                cv2.accumulateWeighted(small, self._background, self._settings["FOREGROUND_ALPHA"], mask=fg)
        return float(changed) / mask.size, mask

    def _boxes(self, mask: Any) -> list[list[int]]:
        """Bounding boxes of the changed regions, in original-frame pixels, largest first."""
        import cv2
        import numpy as np

        if mask is None or self._settings["MAX_BOXES"] == 0:
            return []
        binary = cv2.dilate(mask.astype(np.uint8) * 255, np.ones((3, 3), np.uint8), iterations=2)
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        sx, sy = self._scale
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            box = [round(x * sx), round(y * sy), round(w * sx), round(h * sy)]
            if box[2] * box[3] >= self._settings["MIN_BOX_AREA"]:
                boxes.append(box)
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes[: self._settings["MAX_BOXES"]]

    def _emit_start(self, inp: Input, frame: Any, fraction: float, mask: Any) -> None:
        """Emit MOTION_START with boxes and a witness image (drawn only now, on a copy)."""
        import cv2

        boxes = self._boxes(mask)
        witness = frame.copy()
        thickness = max(1, round(frame.shape[1] / 320))
        for x, y, w, h in boxes:
            cv2.rectangle(witness, (x, y), (x + w - 1, y + h - 1), _BOX_COLOR, thickness)
        payload = {
            "EVENT": "MOTION_START",
            "CHANGED_FRACTION": round(fraction, 5),
            "BOXES": boxes,
            "FRAME_INDEX": (inp.metadata or {}).get("frame_index"),
            "INPUT_SEQ": inp.seq,
        }
        self.emit(payload, image=witness)
