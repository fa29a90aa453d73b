"""Frame statistics: a business plugin that periodically reports what a pipeline's inputs look like.

For images it measures each frame's brightness (mean and standard deviation of the gray level), size and
sharpness (variance of the Laplacian on a gray frame downscaled to ``ANALYSIS_WIDTH``, so values are comparable
between cameras of different resolutions), and every ``REPORT_EVERY`` inputs emits one aggregate payload, then
starts over. For structured inputs (``inp.data`` dicts without an image) it counts messages and reports the mean
of each numeric field (nested dicts are flattened to dotted names). The input rate is measured from the
inputs' capture timestamps. Useful to check a camera (too dark, out of focus, wrong resolution, dropping frames)
or a sensor stream at a glance.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

from edge_engine.api import BusinessPlugin, Input, Key


class FrameStats(BusinessPlugin):
    """Aggregate per-input statistics and emit them every ``REPORT_EVERY`` inputs."""

    SIGNATURE = "FRAME_STATS"
    VERSION = "0.1.0"
    DESCRIPTION = "periodic brightness / sharpness / size / fps report for images, field means for messages"
    CONFIG: ClassVar[dict[str, Any]] = {
        "REPORT_EVERY": Key(50, type=int, min=1, doc="inputs aggregated into one payload"),
        "ANALYSIS_WIDTH": Key(320, type=int, min=16, doc="frames are downscaled to this width for the statistics"),
        "MAX_FIELDS": Key(64, type=int, min=1, doc="most numeric fields averaged for structured messages"),
    }

    # --- lifecycle ----------------------------------------------------------------------------------
    def on_init(self) -> None:
        """Start an empty aggregate."""
        self._reset()

    def on_command(self, command: Any, **params: Any) -> Any:
        """``REPORT`` returns the current (partial) aggregate; ``RESET`` discards it."""
        name = str(command).strip().upper()
        if name == "REPORT":
            return self._report()
        if name == "RESET":
            self._reset()
            return {"reset": True}
        return {"error": f"unknown command {command!r}; known: REPORT, RESET"}

    # --- per input ------------------------------------------------------------------------------------
    def process(self, inp: Input | None) -> dict[str, Any] | None:
        """Add one input to the aggregate; return the report every ``REPORT_EVERY`` inputs."""
        if inp is None:
            return None
        self._inputs += 1
        if inp.timestamp:
            self._first_ts = inp.timestamp if self._first_ts is None else self._first_ts
            self._last_ts = inp.timestamp
            self._stamped += 1
        if inp.image is not None:
            self._add_frame(inp.image)
        elif isinstance(inp.data, dict):
            self._add_message(inp.data)
        if self._inputs < int(self.config["REPORT_EVERY"]):
            return None
        report = self._report()
        self._reset()
        return report

    # --- helpers --------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._inputs = 0
        self._stamped = 0
        self._first_ts: float | None = None
        self._last_ts: float | None = None
        self._frames = 0
        self._sum_brightness = 0.0
        self._min_brightness = math.inf
        self._max_brightness = -math.inf
        self._sum_std = 0.0
        self._sum_sharpness = 0.0
        self._size: tuple[int, int] | None = None
        self._messages = 0
        self._field_sums: dict[str, float] = {}
        self._field_counts: dict[str, int] = {}

    def _add_frame(self, frame: Any) -> None:
        """Brightness, contrast and sharpness of one frame, measured on a downscaled gray copy."""
        import cv2

        height, width = frame.shape[:2]
        target = int(self.config["ANALYSIS_WIDTH"])
        small = frame
        if width > target:
            small = cv2.resize(frame, (target, max(1, round(height * target / width))), interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGRA2GRAY if small.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
        mean, std = cv2.meanStdDev(small)
        brightness = float(mean[0][0])
        self._frames += 1
        self._sum_brightness += brightness
        self._min_brightness = min(self._min_brightness, brightness)
        self._max_brightness = max(self._max_brightness, brightness)
        self._sum_std += float(std[0][0])
        self._sum_sharpness += float(cv2.Laplacian(small, cv2.CV_64F).var())
        self._size = (int(width), int(height))

    def _add_message(self, data: dict[str, Any]) -> None:
        """Count a structured message and accumulate its numeric fields."""
        self._messages += 1
        limit = int(self.config["MAX_FIELDS"])
        for name, value in _numeric_fields(data):
            if name not in self._field_sums and len(self._field_sums) >= limit:
                continue
            self._field_sums[name] = self._field_sums.get(name, 0.0) + value
            self._field_counts[name] = self._field_counts.get(name, 0) + 1

    def _report(self) -> dict[str, Any]:
        """The aggregate so far as a payload."""
        fps = None
        if self._stamped > 1 and self._last_ts is not None and self._first_ts is not None:
            span = self._last_ts - self._first_ts
            fps = round((self._stamped - 1) / span, 3) if span > 0 else None
        report: dict[str, Any] = {"INPUTS": self._inputs, "INPUT_FPS": fps}
        if self._frames:
            n = self._frames
            report.update(
                {
                    "FRAMES": n,
                    "MEAN_BRIGHTNESS": round(self._sum_brightness / n, 3),
                    "MIN_BRIGHTNESS": round(self._min_brightness, 3),
                    "MAX_BRIGHTNESS": round(self._max_brightness, 3),
                    "MEAN_CONTRAST": round(self._sum_std / n, 3),
                    "MEAN_SHARPNESS": round(self._sum_sharpness / n, 3),
                    "WIDTH": self._size[0] if self._size else None,
                    "HEIGHT": self._size[1] if self._size else None,
                }
            )
        if self._messages:
            means = {k: round(self._field_sums[k] / self._field_counts[k], 6) for k in sorted(self._field_sums)}
            report.update({"MESSAGES": self._messages, "MEANS": means})
        return report


def _numeric_fields(data: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, float]]:
    """Finite real values of a message (not bools), nested dicts flattened as ``outer.inner``."""
    found: list[tuple[str, float]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, numbers.Real) and math.isfinite(value):
            found.append((name, float(value)))
        elif isinstance(value, dict) and depth < 3:
            found.extend(_numeric_fields(value, f"{name}.", depth + 1))
    return found
