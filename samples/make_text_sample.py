"""Generate ``samples/text.png``: the bundled frame with known text that ``edge-node dry-run`` reads.

The frame is the ``fonts`` case of ``tests/text_frames.py`` (640×480, five lines in five fonts); the script
checks the file it wrote decodes to the same pixels. Run it from the repository root to rebuild the sample::

    .venv/bin/python samples/make_text_sample.py            # writes samples/text.png
    .venv/bin/python samples/make_text_sample.py --out /tmp/text.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "samples" / "text.png"


def main() -> int:
    parser = argparse.ArgumentParser(description="write the bundled text sample")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.text_frames import CASES, expected_text, render

    case = next(c for c in CASES if c.name == "fonts")
    frame = render(case)
    if not cv2.imwrite(str(args.out), frame, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        print(f"error: could not write {args.out}", file=sys.stderr)
        return 1
    if not np.array_equal(cv2.imread(str(args.out)), frame):
        print(f"error: {args.out} does not decode to the frame drawn", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB): " + " | ".join(expected_text(case)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
