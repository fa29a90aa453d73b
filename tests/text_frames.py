"""Frames with known text, drawn with OpenCV's fonts, for the OCR tests, the OCR benchmark and the bundled sample.

Each :class:`Line` is drawn on its own layer (dark text on a light background), turned by its ``angle`` around
its centre and pasted on the frame; a frame may then be turned half a turn (``upside_down``). What a reader
must give back is :func:`expected_text`: the lines' texts in reading order (by the height of their centre
once drawn, so the order of an upside-down frame is reversed). Nothing is random: the same cases always give
the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
BACKGROUND = (232, 236, 238)
INK = (30, 28, 25)
FONTS = {
    "simplex": cv2.FONT_HERSHEY_SIMPLEX,
    "duplex": cv2.FONT_HERSHEY_DUPLEX,
    "complex": cv2.FONT_HERSHEY_COMPLEX,
    "triplex": cv2.FONT_HERSHEY_TRIPLEX,
    "italic": cv2.FONT_HERSHEY_COMPLEX | cv2.FONT_ITALIC,
}


@dataclass(frozen=True)
class Line:
    """One line of text: where its baseline starts (x, y), its font, size, stroke and angle (degrees, counter-
    clockwise)."""

    text: str
    x: int
    y: int
    font: str = "simplex"
    scale: float = 1.0
    thickness: int = 2
    angle: float = 0.0


@dataclass(frozen=True)
class TextFrame:
    """A frame's lines, and whether it is drawn upside down."""

    name: str
    lines: tuple[Line, ...]
    upside_down: bool = False


CASES = (
    TextFrame("fonts", (
        Line("HELLO EDGE 2026", 40, 80, "simplex", 1.3, 3),
        Line("Invoice 4711", 60, 170, "duplex", 1.0, 2),
        Line("Gate B closed", 60, 260, "complex", 1.1, 2),
        Line("Parking level 3", 60, 350, "triplex", 1.0, 2),
        Line("Delivery at noon", 60, 430, "italic", 0.9, 2),
    )),
    TextFrame("sizes", (
        Line("EXIT", 60, 110, "duplex", 2.4, 4),
        Line("Speed limit 30", 60, 220, "simplex", 1.6, 3),
        Line("Serial number 583920", 60, 320, "simplex", 0.8, 2),
        Line("keep the door closed", 60, 400, "duplex", 0.7, 1),
    )),
    TextFrame("angles", (
        Line("Turned ten degrees", 80, 140, "duplex", 1.1, 2, 10.0),
        Line("Minus eight degrees", 90, 280, "simplex", 1.1, 2, -8.0),
        Line("Level 42", 140, 400, "complex", 1.4, 3, 5.0),
    )),
    TextFrame("upside down", (
        Line("HELLO EDGE 2026", 40, 100, "simplex", 1.3, 3),
        Line("Invoice 4711", 60, 220, "duplex", 1.0, 2),
        Line("Gate B closed", 60, 340, "complex", 1.1, 2),
    ), upside_down=True),
)  # fmt: skip


def render(case: TextFrame, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """The frame of ``case`` (BGR, ``height`` × ``width``)."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = BACKGROUND
    for line in case.lines:
        mask = _line_mask(line, width, height)
        frame[mask > 127] = INK
    return cv2.rotate(frame, cv2.ROTATE_180) if case.upside_down else frame


def expected_text(case: TextFrame, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    """The lines' texts in reading order: top to bottom by their centre as drawn."""
    centres = []
    for line in case.lines:
        ys, _ = np.nonzero(_line_mask(line, width, height) > 127)
        centre = float(ys.mean())
        centres.append(height - 1 - centre if case.upside_down else centre)
    return [line.text for _, line in sorted(zip(centres, case.lines, strict=True), key=lambda pair: pair[0])]


def _line_mask(line: Line, width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    font = FONTS[line.font]
    cv2.putText(mask, line.text, (line.x, line.y), font, line.scale, 255, line.thickness, cv2.LINE_AA)
    if line.angle:
        (text_w, text_h), _ = cv2.getTextSize(line.text, font, line.scale, line.thickness)
        centre = (line.x + text_w / 2, line.y - text_h / 2)
        matrix = cv2.getRotationMatrix2D(centre, line.angle, 1.0)
        mask = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_LINEAR)
    return mask
