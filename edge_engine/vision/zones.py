"""Zones (polygons) and lines (polylines) as config, and the events tracked objects make with them.

A region is declared as a dict (UPPER keys, as in pipeline JSON)::

    {"NAME": "door", "POINTS": [[0.5, 0.0], [0.5, 1.0]]}                       # a line (LINES)
    {"NAME": "parking", "POINTS": [[100, 80], [500, 80], [500, 400], [100, 400]],
     "CLASSES": ["car"], "DWELL_SECONDS": 60, "MAX_COUNT": 3}                  # a zone (ZONES)

``POINTS`` are pixels, or fractions of the frame when every coordinate is within [0, 1] (force either with
``RELATIVE``). ``CLASSES`` lists class names or ids (empty: every class). ``ANCHOR`` is the point of a box
that must be inside or cross: ``bottom_center`` (default: where a person or car touches the ground) or
``center``. ``MARGIN`` (pixels, default 4) is the hysteresis band: a point counts as inside/outside, or on
a side of a line, only once it is further than ``MARGIN`` from the border, so a box jittering on a border
never counts twice.

:class:`ZoneMonitor` turns each frame's tracked detections into events (dicts, UPPER keys):

* ``ENTER`` / ``EXIT`` – a track's anchor got inside / outside a zone (``EXIT`` also when the tracker
  removes a track that was inside: ``REASON: "lost"``); ``EXIT`` carries ``DWELL_S``;
* ``DWELL`` – a track stayed inside longer than the zone's ``DWELL_SECONDS`` (once per visit);
* ``COUNT_ABOVE`` / ``COUNT_NORMAL`` – the tracks inside went above the zone's ``MAX_COUNT`` / back to it;
* ``CROSS`` – a track went from one side of a line to the other across it, ``DIRECTION`` ``"IN"`` when it
  went from the left-hand to the right-hand side of the line walking from its first point to its last (for
  a line drawn left to right in the image, ``IN`` is downward), ``"OUT"`` the other way.

Totals per region, class and event are kept in :attr:`ZoneMonitor.totals` (``restore`` puts saved ones back).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

ZONE = "zone"
LINE = "line"
ANCHORS = ("bottom_center", "center")
REGION_KEYS = {"NAME", "POINTS", "RELATIVE", "CLASSES", "ANCHOR", "MARGIN", "DWELL_SECONDS", "MAX_COUNT"}


@dataclass
class Region:
    """One zone or line, parsed from config."""

    name: str
    kind: str
    points: np.ndarray  # k×2, as declared (pixels or fractions)
    relative: bool
    classes: frozenset[str] = frozenset()
    anchor: str = "bottom_center"
    margin: float = 4.0
    dwell_seconds: float = 0.0
    max_count: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # other keys, for the plugin using the region

    def accepts(self, class_id: Any, class_name: Any) -> bool:
        """Whether a detection of this class concerns the region."""
        return not self.classes or str(class_name) in self.classes or str(class_id) in self.classes

    def pixels(self, width: int, height: int) -> np.ndarray:
        """The points in pixels of a ``width`` × ``height`` frame."""
        if self.relative:
            return self.points * np.asarray([width, height], np.float64)
        return self.points


def parse_regions(items: Any, kind: str, extra_keys: Iterable[str] = ()) -> list[Region]:
    """Parse a ``ZONES`` or ``LINES`` config list; raises ``ValueError`` naming the bad entry and key."""
    if items in (None, ""):
        return []
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{kind.upper()}S must be a list of objects (got {type(items).__name__})")
    allowed = REGION_KEYS | set(extra_keys)
    regions: list[Region] = []
    for index, item in enumerate(items):
        where = f"{kind.upper()}S[{index}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be an object with NAME and POINTS (got {item!r})")
        item = {str(k).upper(): v for k, v in item.items()}
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
        name = str(item.get("NAME") or f"{kind}{index + 1}")
        where = f"{where} ({name})"
        if any(r.name == name for r in regions):
            raise ValueError(f"{where}: NAME is used twice")
        points = _points(item.get("POINTS"), 3 if kind == ZONE else 2, where)
        relative = item.get("RELATIVE")
        if relative is None:
            relative = bool(np.all((points >= 0) & (points <= 1)))
        anchor = str(item.get("ANCHOR", "bottom_center")).lower()
        if anchor not in ANCHORS:
            raise ValueError(f"{where}: ANCHOR must be one of {', '.join(ANCHORS)} (got {anchor!r})")
        classes = item.get("CLASSES") or []
        if isinstance(classes, (str, int)):
            classes = [classes]
        numbers = {}
        for key, default in (("MARGIN", 4.0), ("DWELL_SECONDS", 0.0), ("MAX_COUNT", 0)):
            value = item.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{where}: {key} must be a number >= 0 (got {value!r})")
            numbers[key] = value
        if kind == LINE and (numbers["DWELL_SECONDS"] or numbers["MAX_COUNT"]):
            raise ValueError(f"{where}: DWELL_SECONDS and MAX_COUNT apply to zones, not lines")
        regions.append(
            Region(
                name=name,
                kind=kind,
                points=points,
                relative=bool(relative),
                classes=frozenset(str(c) for c in classes),
                anchor=anchor,
                margin=float(numbers["MARGIN"]),
                dwell_seconds=float(numbers["DWELL_SECONDS"]),
                max_count=int(numbers["MAX_COUNT"]),
                options={k: v for k, v in item.items() if k not in REGION_KEYS},
            )
        )
    return regions


def _points(value: Any, minimum: int, where: str) -> np.ndarray:
    try:
        points = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        points = np.zeros((0,))
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < minimum or not np.all(np.isfinite(points)):
        raise ValueError(f"{where}: POINTS must be a list of at least {minimum} [x, y] pairs (got {value!r})")
    return points


# --- geometry (vectorised over points) -----------------------------------------------------------------------
def anchor_points(boxes: np.ndarray, anchor: str) -> np.ndarray:
    """The anchor point of each xyxy box (n×4 → n×2)."""
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    y = boxes[:, 3] if anchor == "bottom_center" else (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([x, y], axis=1)


class Segments(NamedTuple):
    """A polygon's edges or a polyline's segments, with what every distance computation reuses."""

    a: np.ndarray  # m×2 starts
    b: np.ndarray  # m×2 ends
    ab: np.ndarray  # m×2 directions
    length2: np.ndarray  # m squared lengths (never 0)
    slope: np.ndarray  # m: dx/dy of each edge (0 for horizontal ones, which never straddle a row)


def make_segments(points: np.ndarray, closed: bool) -> Segments:
    """The segments of a polygon (``closed``: last point back to the first) or of a polyline."""
    a = points if closed else points[:-1]
    b = np.roll(points, -1, axis=0) if closed else points[1:]
    ab = b - a
    dy = ab[:, 1]
    slope = np.divide(ab[:, 0], dy, out=np.zeros(len(ab)), where=dy != 0)
    return Segments(a, b, ab, np.maximum((ab**2).sum(axis=1), 1e-12), slope)


def signed_distance_to_polygon(points: np.ndarray, polygon: np.ndarray | Segments) -> np.ndarray:
    """Distance of each point to the polygon's border, positive inside, negative outside."""
    edges = polygon if isinstance(polygon, Segments) else make_segments(polygon, closed=True)
    distance = _segment_distances(points, edges).min(axis=1)
    px, py = points[:, 0:1], points[:, 1:2]
    ay, by = edges.a[:, 1][None], edges.b[:, 1][None]
    straddles = (ay > py) != (by > py)
    x_cross = edges.a[:, 0][None] + (py - ay) * edges.slope[None]
    inside = (np.count_nonzero(straddles & (px < x_cross), axis=1) % 2) == 1
    return np.where(inside, distance, -distance)


def signed_distance_to_polyline(points: np.ndarray, line: np.ndarray | Segments) -> np.ndarray:
    """Distance of each point to the polyline, positive on its right-hand side (image y pointing down)."""
    segs = line if isinstance(line, Segments) else make_segments(line, closed=False)
    distances = _segment_distances(points, segs)
    nearest = distances.argmin(axis=1)
    seg_a, seg_ab = segs.a[nearest], segs.ab[nearest]
    cross = seg_ab[:, 0] * (points[:, 1] - seg_a[:, 1]) - seg_ab[:, 1] * (points[:, 0] - seg_a[:, 0])
    return np.where(cross >= 0, 1.0, -1.0) * distances[np.arange(len(points)), nearest]


def _segment_distances(points: np.ndarray, segs: Segments) -> np.ndarray:
    """n×m distances of n points to m segments."""
    ap = points[:, None, :] - segs.a[None, :, :]
    t = (ap * segs.ab[None]).sum(axis=2) / segs.length2[None]
    np.clip(t, 0, 1, out=t)
    offset = ap - t[..., None] * segs.ab[None]
    return np.sqrt((offset * offset).sum(axis=2))


def path_crosses_polyline(p0: Sequence[float], p1: Sequence[float], line: np.ndarray) -> bool:
    """Whether the segment p0→p1 intersects the polyline (so a side change went across it, not around it)."""
    return any(_segments_intersect(np.asarray(p0), np.asarray(p1), a, b) for a, b in itertools.pairwise(line))


def _segments_intersect(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    def orient(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> float:
        return float((v[0] - u[0]) * (w[1] - u[1]) - (v[1] - u[1]) * (w[0] - u[0]))

    d1, d2 = orient(a, b, p), orient(a, b, q)
    d3, d4 = orient(p, q, a), orient(p, q, b)
    return (d1 * d2 <= 0) and (d3 * d4 <= 0) and not (d1 == d2 == 0)


# --- per-track state and events --------------------------------------------------------------------------------
@dataclass
class _Presence:
    inside: bool = False  # the monitor keeps a presence only while the track is inside
    since: float = 0.0
    dwell_reported: bool = False
    class_name: str = ""
    class_id: int = 0


class ZoneMonitor:
    """Events of tracked detections against zones and lines (see the module docstring). One per camera."""

    def __init__(self, zones: Sequence[Region] = (), lines: Sequence[Region] = ()):
        self.zones = list(zones)
        self.lines = list(lines)
        self._presence: dict[str, dict[int, _Presence]] = {z.name: {} for z in self.zones}
        self._sides: dict[str, dict[int, int]] = {line.name: {} for line in self.lines}  # +1 right, -1 left
        self._last_points: dict[str, dict[int, tuple[float, float]]] = {line.name: {} for line in self.lines}
        self._count_alert: dict[str, bool] = {z.name: False for z in self.zones}
        self._pixels: dict[tuple[str, int, int], tuple[np.ndarray, Segments]] = {}
        self.totals: dict[str, dict[str, dict[str, int]]] = {}
        self.reset_totals()

    def reset_totals(self) -> None:
        """Zero every counter (e.g. at the start of a new day)."""
        self.totals = {z.name: {"ENTER": {}, "EXIT": {}, "DWELL": {}} for z in self.zones}
        self.totals.update({line.name: {"IN": {}, "OUT": {}} for line in self.lines})

    def adopt(self, old: ZoneMonitor) -> None:
        """Take over the per-track state of ``old``'s regions that have the same name and kind here (a live
        config update: who is inside, on which side of a line, a count alert). Totals are not taken (see
        :meth:`restore`)."""
        for zone in self.zones:
            if zone.name in old._presence:
                self._presence[zone.name] = old._presence[zone.name]
                self._count_alert[zone.name] = old._count_alert.get(zone.name, False)
        for line in self.lines:
            if line.name in old._sides:
                self._sides[line.name] = old._sides[line.name]
                self._last_points[line.name] = old._last_points[line.name]

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Put saved totals back, for the regions that still exist (others are dropped)."""
        for name, events in saved.items():
            if name not in self.totals or not isinstance(events, Mapping):
                continue
            for event, per_class in events.items():
                if event in self.totals[name] and isinstance(per_class, Mapping):
                    self.totals[name][event] = {str(k): int(v) for k, v in per_class.items()}

    def occupancy(self) -> dict[str, dict[str, int]]:
        """Tracks inside each zone now, per class name."""
        result: dict[str, dict[str, int]] = {}
        for zone in self.zones:
            per_class: dict[str, int] = {}
            for state in self._presence[zone.name].values():
                if state.inside:
                    per_class[state.class_name] = per_class.get(state.class_name, 0) + 1
            result[zone.name] = per_class
        return result

    def dwelling(self, zone: str) -> int:
        """Tracks inside the zone that already stayed longer than its ``DWELL_SECONDS``."""
        return sum(1 for s in self._presence.get(zone, {}).values() if s.inside and s.dwell_reported)

    def count_alert(self, zone: str) -> bool:
        """Whether the zone is above its ``MAX_COUNT`` (between ``COUNT_ABOVE`` and ``COUNT_NORMAL``)."""
        return self._count_alert.get(zone, False)

    def inside_since(self, zone: str, track_id: int) -> float | None:
        """When the track entered the zone, or None when it is not inside."""
        state = self._presence.get(zone, {}).get(track_id)
        return state.since if state and state.inside else None

    def region_pixels(self, region: Region, width: int, height: int) -> np.ndarray:
        """The region's points in pixels of this frame size (cached)."""
        return self._geometry(region, width, height)[0]

    def _geometry(self, region: Region, width: int, height: int) -> tuple[np.ndarray, Segments]:
        key = (region.name, width, height)
        if key not in self._pixels:
            pixels = region.pixels(width, height)
            self._pixels[key] = (pixels, make_segments(pixels, closed=region.kind == ZONE))
        return self._pixels[key]

    def update(
        self,
        detections: Sequence[Mapping[str, Any]],
        timestamp: float,
        frame_size: tuple[int, int],
        frame_index: int | None = None,
        gone: Iterable[int] = (),
    ) -> list[dict[str, Any]]:
        """Events of one frame. ``detections`` carry ``track_id`` (from the tracker); ``frame_size`` is
        ``(width, height)``; ``gone`` are ids of tracks the tracker removed (they exit every zone)."""
        width, height = frame_size
        tracked = [d for d in detections if "track_id" in d]
        boxes = np.asarray([d["box"] for d in tracked], np.float64).reshape(-1, 4)
        ids = np.asarray([int(d["track_id"]) for d in tracked], np.int64)
        events: list[dict[str, Any]] = []
        base = {"TIME": round(float(timestamp), 3), "FRAME_INDEX": frame_index}
        for zone in self.zones:
            events += self._update_zone(zone, tracked, ids, boxes, timestamp, (width, height), base)
        for line in self.lines:
            events += self._update_line(line, tracked, ids, boxes, (width, height), base)
        gone_ids = set(gone)
        for zone in self.zones:
            states = self._presence[zone.name]
            for track_id in gone_ids & set(states):
                state = states.pop(track_id)
                if state.inside:
                    events.append(self._exit_event(zone, track_id, state, timestamp, base, reason="lost"))
        for line in self.lines:
            for track_id in gone_ids:
                self._sides[line.name].pop(track_id, None)
                self._last_points[line.name].pop(track_id, None)
        for zone in self.zones:
            events += self._count_events(zone, base)
        return events

    def _chosen(self, region: Region, tracked: list[Mapping[str, Any]]) -> np.ndarray:
        """Indices of the detections whose class concerns the region."""
        if not region.classes:
            return np.arange(len(tracked))
        return np.asarray(
            [i for i, d in enumerate(tracked) if region.accepts(d.get("class_id"), d.get("class_name"))], np.int64
        )

    def _update_zone(
        self,
        zone: Region,
        tracked: list[Mapping[str, Any]],
        ids: np.ndarray,
        boxes: np.ndarray,
        now: float,
        size: tuple[int, int],
        base: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """ENTER, EXIT and DWELL of one zone; only tracks whose state changes are visited one by one."""
        events: list[dict[str, Any]] = []
        chosen = self._chosen(zone, tracked)
        if len(chosen) == 0:
            return events
        distance = signed_distance_to_polygon(anchor_points(boxes[chosen], zone.anchor), self._geometry(zone, *size)[1])
        states = self._presence[zone.name]
        chosen_ids = ids[chosen].tolist()
        was_inside = np.fromiter((i in states for i in chosen_ids), bool, len(chosen_ids))
        entering = ~was_inside & (distance > zone.margin)
        leaving = was_inside & (distance < -zone.margin)
        for k in np.flatnonzero(entering | leaving).tolist():
            det, track_id = tracked[chosen[k]], chosen_ids[k]
            if entering[k]:
                state = states[track_id] = _Presence(
                    True, now, False, str(det.get("class_name", "")), int(det.get("class_id", 0))
                )
                self._add(zone.name, "ENTER", state.class_name)
                events.append({**base, "EVENT": "ENTER", "REGION": zone.name, **_who(det)})
            else:
                state = states.pop(track_id)
                events.append(self._exit_event(zone, track_id, state, now, base, det=det))
        if zone.dwell_seconds > 0:
            for k in np.flatnonzero((was_inside & ~leaving) | entering).tolist():
                state = states[chosen_ids[k]]
                if not state.dwell_reported and now - state.since >= zone.dwell_seconds:
                    state.dwell_reported = True
                    self._add(zone.name, "DWELL", state.class_name)
                    events.append(
                        {
                            **base,
                            "EVENT": "DWELL",
                            "REGION": zone.name,
                            **_who(tracked[chosen[k]]),
                            "DWELL_S": round(now - state.since, 3),
                            "SINCE": round(state.since, 3),
                        }
                    )
        return events

    def _exit_event(
        self,
        zone: Region,
        track_id: int,
        state: _Presence,
        now: float,
        base: dict[str, Any],
        det: Mapping[str, Any] | None = None,
        reason: str = "left",
    ) -> dict[str, Any]:
        self._add(zone.name, "EXIT", state.class_name)
        who = _who(det) if det else {"TRACK_ID": track_id, "CLASS_ID": state.class_id, "CLASS_NAME": state.class_name}
        return {
            **base,
            "EVENT": "EXIT",
            "REGION": zone.name,
            **who,
            "DWELL_S": round(now - state.since, 3),
            "REASON": reason,
        }

    def _count_events(self, zone: Region, base: dict[str, Any]) -> list[dict[str, Any]]:
        if zone.max_count <= 0:
            return []
        count = sum(1 for s in self._presence[zone.name].values() if s.inside)
        active = self._count_alert[zone.name]
        if not active and count > zone.max_count:
            self._count_alert[zone.name] = True
            return [{**base, "EVENT": "COUNT_ABOVE", "REGION": zone.name, "COUNT": count, "MAX_COUNT": zone.max_count}]
        if active and count <= zone.max_count:
            self._count_alert[zone.name] = False
            return [{**base, "EVENT": "COUNT_NORMAL", "REGION": zone.name, "COUNT": count, "MAX_COUNT": zone.max_count}]
        return []

    def _update_line(
        self,
        line: Region,
        tracked: list[Mapping[str, Any]],
        ids: np.ndarray,
        boxes: np.ndarray,
        size: tuple[int, int],
        base: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """CROSS events of one line; only tracks that changed side are visited one by one."""
        events: list[dict[str, Any]] = []
        chosen = self._chosen(line, tracked)
        if len(chosen) == 0:
            return events
        polyline, segments = self._geometry(line, *size)
        points = anchor_points(boxes[chosen], line.anchor)
        distance = signed_distance_to_polyline(points, segments)
        confirmed = np.abs(distance) > line.margin  # in the hysteresis band the side stays what it was
        chosen, points, distance = chosen[confirmed], points[confirmed], distance[confirmed]
        chosen_ids = ids[chosen].tolist()
        sides, last_points = self._sides[line.name], self._last_points[line.name]
        side = np.where(distance > 0, 1, -1)
        before = np.fromiter((sides.get(i, 0) for i in chosen_ids), np.int64, len(chosen_ids))
        for k in np.flatnonzero((before != 0) & (before != side)).tolist():
            here = (float(points[k][0]), float(points[k][1]))
            if not path_crosses_polyline(last_points[chosen_ids[k]], here, polyline):
                continue  # it went around the line's end
            det = tracked[chosen[k]]
            direction = "IN" if side[k] > 0 else "OUT"
            self._add(line.name, direction, str(det.get("class_name", "")))
            events.append(
                {
                    **base,
                    "EVENT": "CROSS",
                    "REGION": line.name,
                    "DIRECTION": direction,
                    **_who(det),
                    "POINT": [round(here[0], 1), round(here[1], 1)],
                }
            )
        sides.update(zip(chosen_ids, side.tolist(), strict=True))
        last_points.update(zip(chosen_ids, map(tuple, points.tolist()), strict=True))
        return events

    def _add(self, region: str, event: str, class_name: str) -> None:
        per_class = self.totals[region][event]
        per_class[class_name] = per_class.get(class_name, 0) + 1


def _who(det: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "TRACK_ID": int(det["track_id"]),
        "CLASS_ID": int(det.get("class_id", 0)),
        "CLASS_NAME": str(det.get("class_name", "")),
        "BOX": [round(float(v), 1) for v in det["box"]],
    }
