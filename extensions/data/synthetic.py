"""``SYNTHETIC`` capture plugin: deterministic frames or messages made up on the spot, no file needed.

Modes: ``moving_box`` (a white square moving across a dark background, its position a function of
the frame index only), ``static`` (the same gradient frame every time), ``noise`` (random pixels from
a seeded generator, so the sequence repeats run after run) and ``messages`` (structured data
``{"index": i, "value": sin(i / 10)}`` instead of images). ``COUNT`` > 0 ends the stream after that
many inputs. Inputs come as fast as the pipeline takes them; cap the rate with ``CAP_RESOLUTION``.
Useful for tests, benchmarks and demos. ``numpy`` is imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from edge_engine.api import CapturePlugin, EndOfStream, Input, Key, PluginContext

MODES = ("moving_box", "static", "noise", "messages")


class Synthetic(CapturePlugin):
    """Generate inputs; see the module docstring."""

    SIGNATURE = "SYNTHETIC"
    VERSION = "1.0.0"
    DESCRIPTION = (
        "Deterministic generated inputs: a moving box, a static frame, seeded noise, or structured messages. "
        "COUNT > 0 ends the stream after COUNT inputs; pace with CAP_RESOLUTION."
    )
    CONFIG: ClassVar[dict[str, Any]] = {
        "WIDTH": Key(320, type=int, min=8, max=8192, doc="frame width in pixels"),
        "HEIGHT": Key(240, type=int, min=8, max=8192, doc="frame height in pixels"),
        "MODE": Key("moving_box", type=str, choices=MODES, doc="what to generate"),
        "COUNT": Key(0, type=int, min=0, doc="inputs before the stream ends; 0 = endless"),
        "SEED": Key(0, type=int, doc="seed of the noise mode"),
    }

    def __init__(self, config: Mapping[str, Any], context: PluginContext):
        super().__init__(config, context)
        self._index = 0
        self._background: Any = None
        self._rng: Any = None

    def connect(self) -> None:
        """Restart the sequence and prepare the background buffer (reused by every frame)."""
        self._index = 0
        self._prepare()

    def on_config(self, changed: dict[str, Any]) -> None:
        """Rebuild the buffers when the size, mode or seed changes; the index goes on."""
        if self._background is not None and changed.keys() & {"WIDTH", "HEIGHT", "MODE", "SEED"}:
            self._prepare()

    def _prepare(self) -> None:
        import numpy as np

        width, height = int(self.config["WIDTH"]), int(self.config["HEIGHT"])
        self._rng = np.random.default_rng(int(self.config.get("SEED", 0)))
        mode = self.config["MODE"]
        if mode == "static":  # a horizontal gray ramp with a colour tint, so it is not blank
            ramp = np.linspace(30, 220, width, dtype=np.float32)
            row = np.stack([ramp, ramp * 0.8, 255 - ramp], axis=-1).astype(np.uint8)
            self._background = np.ascontiguousarray(np.broadcast_to(row, (height, width, 3)))
        else:
            self._background = np.full((height, width, 3), 24, np.uint8)

    def read(self) -> Input | dict[str, Any]:
        """Return the next generated input; EndOfStream after COUNT of them."""
        count = self.config.get("COUNT", 0)
        i = self._index
        if count and i >= count:
            raise EndOfStream(f"synthetic source produced its {count} inputs")
        self._index = i + 1
        mode = self.config["MODE"]
        if mode == "messages":
            return {"index": i, "value": math.sin(i / 10.0)}
        if mode == "noise":
            frame = self._rng.integers(0, 256, size=self._background.shape, dtype="uint8")
        else:
            frame = self._background.copy()
            if mode == "moving_box":
                self._draw_box(frame, i)
        return Input(image=frame, metadata={"frame_index": i, "mode": mode})

    def release(self) -> None:
        """Drop the buffers."""
        self._background = None
        self._rng = None

    @staticmethod
    def box_position(i: int, width: int, height: int) -> tuple[int, int, int]:
        """``(x, y, side)`` of the box in frame ``i``: it sweeps right, wrapping, and bounces up and down."""
        side = max(4, min(width, height) // 6)
        span_x, span_y = width - side, height - side
        x = (i * 4) % (span_x + 1)
        phase = (i * 2) % (2 * span_y) if span_y else 0
        y = phase if phase <= span_y else 2 * span_y - phase
        return x, y, side

    def _draw_box(self, frame: Any, i: int) -> None:
        height, width = frame.shape[:2]
        x, y, side = self.box_position(i, width, height)
        frame[y : y + side, x : x + side] = 255
