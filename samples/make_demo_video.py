"""Generate ``samples/demo.mp4``, the node's built-in demo video, deterministically.

The clip is 10 s of a calm indoor scene (a wall with a window, a floor, a table) at 12 fps, 320x240,
encoded as MPEG-4 Part 2 (``mp4v``), which every OpenCV build with FFmpeg can both write and read.
Three events happen in each loop, separated by calm stretches, so a motion or scene-change detector
fires several times per loop (see ``EVENTS``): a ball rolls across the room, a person walks through,
and a large crate appears, stays a moment and disappears. The first and the last frames are both
calm and identical, so looping the file does not itself look like an event. Nothing is random: the
same script always draws the same frames. Run it from the repository root to rebuild the sample::

    .venv/bin/python samples/make_demo_video.py            # writes samples/demo.mp4 and checks it
    .venv/bin/python samples/make_demo_video.py --out /tmp/x.mp4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

WIDTH = 320
HEIGHT = 240
FPS = 12
SECONDS = 10
FRAMES = FPS * SECONDS
FOURCC = "mp4v"
DEFAULT_OUT = Path(__file__).resolve().parent / "demo.mp4"

# (first frame, last frame inclusive, what happens); everything else is calm.
EVENTS: tuple[tuple[int, int, str], ...] = (
    (15, 38, "ball rolls left to right"),
    (54, 80, "person walks right to left"),
    (94, 106, "crate appears, stays, disappears"),
)


def _background() -> np.ndarray:
    """The static scene, drawn once."""
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    # Wall: a soft vertical gradient; floor: darker, below the horizon line.
    horizon = 165
    wall = np.linspace(70, 95, horizon, dtype=np.float32)[:, None]
    img[:horizon] = np.stack([wall + 20, wall + 10, wall], axis=-1).astype(np.uint8)
    floor = np.linspace(55, 40, HEIGHT - horizon, dtype=np.float32)[:, None]
    img[horizon:] = np.stack([floor, floor + 5, floor + 10], axis=-1).astype(np.uint8)
    cv2.line(img, (0, horizon), (WIDTH - 1, horizon), (35, 40, 45), 2)
    # Window with a frame and a cross bar.
    cv2.rectangle(img, (200, 30), (290, 100), (150, 130, 110), -1)
    cv2.rectangle(img, (200, 30), (290, 100), (60, 60, 70), 3)
    cv2.line(img, (245, 30), (245, 100), (60, 60, 70), 2)
    cv2.line(img, (200, 65), (290, 65), (60, 60, 70), 2)
    # Table.
    cv2.rectangle(img, (30, 130), (120, 140), (40, 70, 100), -1)
    cv2.rectangle(img, (38, 140), (46, 185), (35, 60, 85), -1)
    cv2.rectangle(img, (104, 140), (112, 185), (35, 60, 85), -1)
    return img


def _progress(i: int, start: int, end: int) -> float:
    return (i - start) / max(1, end - start)


def render_frame(i: int, background: np.ndarray | None = None) -> np.ndarray:
    """Frame ``i`` (0-based) of the clip, BGR, HEIGHTxWIDTHx3."""
    frame = (_background() if background is None else background).copy()
    i %= FRAMES
    (b0, b1, _), (p0, p1, _), (c0, c1, _) = EVENTS
    if b0 <= i <= b1:  # a ball rolling across the floor, from off-screen left to off-screen right
        x = int(-20 + _progress(i, b0, b1) * (WIDTH + 40))
        cv2.circle(frame, (x, 196), 20, (40, 40, 220), -1, cv2.LINE_AA)
        cv2.circle(frame, (x - 6, 189), 5, (170, 170, 255), -1, cv2.LINE_AA)
    if p0 <= i <= p1:  # a person walking from the right edge to the left edge
        x = int(WIDTH + 20 - _progress(i, p0, p1) * (WIDTH + 40))
        cv2.rectangle(frame, (x - 14, 105), (x + 14, 175), (60, 110, 30), -1)  # body
        cv2.circle(frame, (x, 90), 13, (120, 160, 210), -1, cv2.LINE_AA)  # head
        step = 8 if (i // 3) % 2 else -8
        cv2.line(frame, (x - 6, 175), (x - 6 + step, 215), (50, 50, 50), 7)  # legs
        cv2.line(frame, (x + 6, 175), (x + 6 - step, 215), (50, 50, 50), 7)
    if c0 <= i <= c1:  # a large crate: appears, stays, disappears (a scene change)
        cv2.rectangle(frame, (95, 120), (235, 225), (30, 150, 200), -1)
        cv2.rectangle(frame, (95, 120), (235, 225), (20, 90, 130), 4)
        cv2.line(frame, (95, 120), (235, 225), (20, 90, 130), 3)
        cv2.line(frame, (235, 120), (95, 225), (20, 90, 130), 3)
    return frame


def write(out: Path) -> None:
    """Encode the clip to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*FOURCC), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"this OpenCV build cannot encode {FOURCC!r} to {out}")
    background = _background()
    try:
        for i in range(FRAMES):
            writer.write(render_frame(i, background))
    finally:
        writer.release()


def check(out: Path) -> dict[str, float]:
    """Decode ``out`` and return its stats; raise if it does not match what was written."""
    cap = cv2.VideoCapture(str(out))
    if not cap.isOpened():
        raise RuntimeError(f"cannot decode {out}")
    frames = 0
    shape = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames += 1
        shape = frame.shape
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    if frames != FRAMES or shape != (HEIGHT, WIDTH, 3):
        raise RuntimeError(f"{out}: decoded {frames} frames of shape {shape}, expected {FRAMES} of {HEIGHT}x{WIDTH}")
    return {"frames": frames, "fps": fps, "bytes": out.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output file (default: samples/demo.mp4)")
    args = parser.parse_args(argv)
    write(args.out)
    stats = check(args.out)
    print(f"{args.out}: {stats['frames']} frames, {stats['fps']:g} fps, {WIDTH}x{HEIGHT}, {stats['bytes']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
