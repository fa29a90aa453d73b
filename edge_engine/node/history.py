"""The node's resource history: sampled every 10 s in memory, saved every minute to ``_data/local_history.json``.

The last hour is kept at sample resolution and the last day at 5-minute resolution (each coarse point is the mean
of the samples in its 5-minute bucket; only completed buckets are kept). The file keeps Ratio1's field names and
units: ``cpu_load`` (%), ``total_memory`` and ``occupied_memory`` (GB, occupied = total - available), ``timestamps``,
``uptime`` (string), ``version``, ``last_save_time``. Beside them, our own: ``disk_total`` and ``disk_used`` (bytes,
the volume of the local cache), ``process_rss`` (bytes, the node process and its children), ``pipelines`` (inputs
per second of each pipeline, ``null`` where the pipeline did not exist) and ``coarse`` (the same lists at 5 min).
Memory stays bounded: every series lives in a ``deque`` with a fixed ``maxlen`` and is also pruned by age.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from edge_engine import constants as C
from edge_engine.errors import CacheError
from edge_engine.local.cache import atomic_write_json, read_json

log = logging.getLogger(__name__)

GB = 1024**3
# Numeric series, in the order of the fields of `_Point` after the timestamp (`_Point._make` builds from that order).
SERIES = ("cpu_load", "total_memory", "occupied_memory", "disk_total", "disk_used", "process_rss")
UNITS = {
    "cpu_load": "%",
    "total_memory": "GB",
    "occupied_memory": "GB",
    "disk_total": "bytes",
    "disk_used": "bytes",
    "process_rss": "bytes",
    "pipelines": "inputs/s",
}
_INT_SERIES = frozenset({"disk_total", "disk_used", "process_rss"})
_CHILDREN_REFRESH_SECONDS = 60.0


class _Point(NamedTuple):
    """One sample (fine) or one 5-minute mean (coarse); ``None`` where a value was unavailable."""

    ts: float
    cpu_load: float | None
    total_memory: float | None
    occupied_memory: float | None
    disk_total: int | None
    disk_used: int | None
    process_rss: int | None
    pipelines: dict[str, float]


Probe = Callable[[], Mapping[str, float | int | None]]


class SystemProbe:
    """Reads the machine's figures with psutil; cheap enough to call every few seconds (well under 2 ms)."""

    def __init__(self, cache_dir: Path, clock: Callable[[], float] = time.monotonic):
        self.cache_dir = Path(cache_dir)
        self._clock = clock
        self._process = psutil.Process(os.getpid())
        self._children: list[psutil.Process] = []
        self._children_at = -math.inf
        psutil.cpu_percent(interval=None)  # the first non-blocking call only sets the reference point

    def __call__(self) -> dict[str, float | int | None]:
        memory = psutil.virtual_memory()
        values: dict[str, float | int | None] = {
            "cpu_load": round(psutil.cpu_percent(interval=None), 1),
            "total_memory": round(memory.total / GB, 2),
            "occupied_memory": round((memory.total - memory.available) / GB, 2),
            "disk_total": None,
            "disk_used": None,
            "process_rss": self._rss(),
        }
        try:
            disk = psutil.disk_usage(str(self.cache_dir))
            values["disk_total"], values["disk_used"] = disk.total, disk.used
        except OSError:
            pass
        return values

    def _rss(self) -> int | None:
        """RSS of the node and its children; the child list is refreshed once a minute (scanning /proc costs)."""
        now = self._clock()
        if now - self._children_at >= _CHILDREN_REFRESH_SECONDS:
            self._children_at = now
            try:
                self._children = self._process.children(recursive=True)
            except psutil.Error:
                self._children = []
        total = 0
        try:
            total += self._process.memory_info().rss
        except psutil.Error:
            return None
        alive = []
        for child in self._children:
            try:
                total += child.memory_info().rss
                alive.append(child)
            except psutil.Error:
                pass
        self._children = alive
        return total


class NodeHistory:
    """Rolling history of the node's resources and pipeline rates (see the module docstring for the file format).

    ``identity_fields`` go to the top of the file as they are (Ratio1's ``address``, ``eth_address``, ``alias``,
    ``version``). The node calls :meth:`sample` every 10 s and :meth:`save` every minute; :meth:`load` continues
    a history saved before a restart.
    """

    def __init__(
        self,
        identity_fields: Mapping[str, Any],
        cache_dir: Path,
        clock: Callable[[], float] = time.time,
        *,
        probe: Probe | None = None,
        started_at: float | None = None,
        sample_seconds: float = C.DEFAULT_HISTORY_SAMPLE_SECONDS,
        fine_span: float = C.HISTORY_FINE_SPAN_SECONDS,
        coarse_step: float = C.HISTORY_COARSE_STEP_SECONDS,
        coarse_span: float = C.HISTORY_COARSE_SPAN_SECONDS,
    ):
        self.identity_fields = dict(identity_fields)
        self.cache_dir = Path(cache_dir)
        self._clock = clock
        self._probe: Probe = probe if probe is not None else SystemProbe(self.cache_dir)
        self.started_at = clock() if started_at is None else started_at
        self.sample_seconds = sample_seconds
        self.fine_span = fine_span
        self.coarse_step = coarse_step
        self.coarse_span = coarse_span
        self._fine: deque[_Point] = deque(maxlen=max(1, math.ceil(fine_span / sample_seconds)))
        self._coarse: deque[_Point] = deque(maxlen=max(1, math.ceil(coarse_span / coarse_step)))
        self._bucket: int | None = None
        self._bucket_points: list[_Point] = []
        self._bucket_cap = max(1, math.ceil(coarse_step / sample_seconds)) * 4  # bounds a too-eager caller

    # --- sampling ---------------------------------------------------------------------------------------
    def sample(self, pipeline_rates: Mapping[str, float] | None = None) -> dict[str, Any]:
        """Take one sample (machine figures + ``pipeline_rates`` in inputs/s) and return it as a dict."""
        now = self._clock()
        values = self._probe()
        rates = {
            str(name): round(float(rate), 2)
            for name, rate in (pipeline_rates or {}).items()
            if isinstance(rate, (int, float)) and math.isfinite(rate)
        }
        point = _Point._make((now, *(values.get(name) for name in SERIES), rates))
        self._fine.append(point)
        self._add_to_bucket(point)
        self._prune(now)
        return {"timestamp": iso_utc(now), **{name: getattr(point, name) for name in SERIES}, "pipelines": rates}

    def _add_to_bucket(self, point: _Point) -> None:
        bucket = int(point.ts // self.coarse_step)
        if self._bucket is not None and bucket != self._bucket:
            self._coarse.append(_mean_point(self._bucket * self.coarse_step, self._bucket_points))
            self._bucket_points = []
        self._bucket = bucket
        if len(self._bucket_points) < self._bucket_cap:
            self._bucket_points.append(point)

    def _prune(self, now: float) -> None:
        while self._fine and self._fine[0].ts < now - self.fine_span:
            self._fine.popleft()
        while self._coarse and self._coarse[0].ts + self.coarse_step < now - self.coarse_span:  # bucket ended
            self._coarse.popleft()

    # --- output -----------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The content of ``local_history.json``."""
        now = self._clock()
        data: dict[str, Any] = dict(self.identity_fields)
        data["uptime"] = str(timedelta(seconds=int(max(0.0, now - self.started_at))))
        data["last_save_time"] = iso_utc(now)
        data["sample_seconds"] = self.sample_seconds
        data["coarse_seconds"] = self.coarse_step
        data["units"] = dict(UNITS)
        data.update(_series(self._fine))
        data["coarse"] = _series(self._coarse)
        return data

    def save(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path`` atomically, as compact JSON (as Ratio1 does)."""
        atomic_write_json(Path(path), self.to_json(), indent=None)

    def load(self, path: Path) -> bool:
        """Continue the history saved in ``path``; an unreadable file is ignored with a warning. True if loaded."""
        path = Path(path)
        if not path.exists():
            return False
        try:
            data = read_json(path)
            fine = _points_from_json(data)
            coarse = _points_from_json(data.get("coarse") or {})
        except (CacheError, TypeError, ValueError, AttributeError) as exc:
            log.warning("ignoring the saved history %s: %s", path, exc)
            return False
        self._fine.clear()
        self._fine.extend(p for p in fine if p.ts <= self._clock())
        self._coarse.clear()
        self._coarse.extend(coarse)
        self._bucket, self._bucket_points = None, []
        self._prune(self._clock())
        log.debug("history loaded from %s: %d samples, %d coarse points", path, len(self._fine), len(self._coarse))
        return True

    def __len__(self) -> int:
        return len(self._fine)

    @property
    def coarse_len(self) -> int:
        return len(self._coarse)


def iso_utc(ts: float) -> str:
    """``2026-11-23T15:00:00.000Z`` for a POSIX timestamp."""
    moment = datetime.fromtimestamp(ts, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso_utc(text: str) -> float:
    """POSIX timestamp of an ISO-8601 string (``Z`` accepted; naive means UTC)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _mean(values: list[Any], as_int: bool) -> float | int | None:
    numbers = [v for v in values if isinstance(v, (int, float))]
    if not numbers:
        return None
    mean = sum(numbers) / len(numbers)
    return round(mean) if as_int else round(mean, 2)


def _mean_point(ts: float, points: list[_Point]) -> _Point:
    columns = [_mean([getattr(p, name) for p in points], name in _INT_SERIES) for name in SERIES]
    names = sorted({name for p in points for name in p.pipelines})
    rates = {name: _mean([p.pipelines.get(name) for p in points], False) for name in names}
    return _Point._make((ts, *columns, {k: v for k, v in rates.items() if v is not None}))


def _series(points: deque[_Point]) -> dict[str, Any]:
    out: dict[str, Any] = {"timestamps": [iso_utc(p.ts) for p in points]}
    for name in SERIES:
        out[name] = [getattr(p, name) for p in points]
    names = sorted({name for p in points for name in p.pipelines})
    out["pipelines"] = {name: [p.pipelines.get(name) for p in points] for name in names}
    return out


def _points_from_json(data: Mapping[str, Any]) -> list[_Point]:
    stamps = data.get("timestamps") or []
    if not isinstance(stamps, list):
        raise ValueError("'timestamps' is not a list")
    columns = {name: _list_of(data, name, len(stamps)) for name in SERIES}
    pipelines = data.get("pipelines") or {}
    if not isinstance(pipelines, dict):
        raise ValueError("'pipelines' is not an object")
    rates = {name: _list_of(pipelines, name, len(stamps)) for name in pipelines}
    points = []
    for i, stamp in enumerate(stamps):
        sample_rates = {name: float(vals[i]) for name, vals in rates.items() if isinstance(vals[i], (int, float))}
        points.append(_Point._make((parse_iso_utc(stamp), *(columns[name][i] for name in SERIES), sample_rates)))
    return points


def _list_of(data: Mapping[str, Any], name: str, length: int) -> list[Any]:
    values = data.get(name) or []
    if not isinstance(values, list):
        raise ValueError(f"{name!r} is not a list")
    values = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else None for v in values[:length]]
    return values + [None] * (length - len(values))
