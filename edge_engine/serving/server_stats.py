"""Counters of one model server, kept on the node side: batch sizes, latency, throughput, errors.

Written only by the server's scheduler thread; the snapshot writer reads them (plain numbers under the GIL,
a value one update old is fine). Latency is measured from the moment a pipeline hands an input to the
serving stage until its result is back; the last :data:`LATENCY_WINDOW` values give the percentiles, so a
snapshot costs one sort of a small list.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edge_engine.runtime.stage_stats import RatedStats

LATENCY_WINDOW = 2048


@dataclass
class ModelStats(RatedStats):
    """What ``local_info.json`` reports per model; the rate (throughput) is of results.

    Errors are counted as they are answered (:meth:`answered`); :meth:`error` only records the last one.
    """

    requests: int = 0
    results: int = 0
    errors: int = 0
    batches: int = 0
    restarts: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    infer_seconds: float = 0.0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def batch_done(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1
        self.infer_seconds += seconds

    def answered(self, latency: float, ok: bool) -> None:
        if ok:
            self.results += 1
        else:
            self.errors += 1
        self.latency_sum += latency
        if latency > self.latency_max:
            self.latency_max = latency
        self.latencies.append(latency)

    def rated_count(self) -> int:
        """Results."""
        return self.results

    def snapshot(self) -> dict[str, Any]:
        answered = self.results + self.errors
        recent = sorted(self.latencies)
        return {
            "requests": self.requests,
            "results": self.results,
            "errors": self.errors,
            "restarts": self.restarts,
            "batches": self.batches,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "batch_size_avg": round(sum(k * v for k, v in self.batch_sizes.items()) / self.batches, 2)
            if self.batches
            else None,
            "inference_ms_avg": round(1000 * self.infer_seconds / self.batches, 3) if self.batches else None,
            "latency_ms": {
                "avg": round(1000 * self.latency_sum / answered, 3) if answered else None,
                "p50": _ms(percentile(recent, 0.50)),
                "p99": _ms(percentile(recent, 0.99)),
                "max": round(1000 * self.latency_max, 3) if answered else None,
            },
            "throughput": round(self.rate, 2),
            "last_error": self.last_error,
        }


def percentile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile of an already sorted list (nearest rank), None when empty."""
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(1000 * value, 3)
