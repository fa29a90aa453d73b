"""The one way a benchmark hands its figures to ``benchmarks/run_all.py``: :func:`record`, next to its prints.

A benchmark keeps printing its figures as before and also calls ``record("name", value, "unit", goal=...)`` for
each figure worth a row of ``benchmarks/RESULTS.md``. Outside ``run_all.py`` nothing is written; under it
(``EE_BENCH_RESULTS`` names a file) each call appends one JSON line there. ``samples`` (the runs a median was taken
over) give the table its min–max; ``baseline`` is the figure the value is compared with (the ratio column).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

ENV = "EE_BENCH_RESULTS"


def record(
    name: str,
    value: float | None,
    unit: str,
    goal: str | None = None,
    samples: Sequence[float] | None = None,
    baseline: float | None = None,
    baseline_name: str | None = None,
    note: str | None = None,
) -> None:
    """One figure: ``value`` (the median when there are ``samples``) in ``unit``; ``goal`` as text (``"≤ 5"``)."""
    path = os.environ.get(ENV)
    if not path:
        return
    row = {"name": name, "value": value, "unit": unit, "goal": goal, "baseline": baseline,
           "baseline_name": baseline_name, "note": note,
           "samples": [float(s) for s in samples] if samples else None}  # fmt: skip
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")
