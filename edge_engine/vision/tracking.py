"""Multi-object tracking: turn each frame's detections (decision 34) into tracks with stable ids.

:class:`Tracker` follows the ByteTrack recipe with a constant-velocity motion model, in plain numpy:

1. every live track predicts its box for this frame (last box + velocity × frames since it was seen);
2. detections scoring ``high_score`` or more are matched to all live tracks (tracked and lost) by IoU;
3. detections between ``low_score`` and ``high_score`` are matched to the tracked ones still unmatched (a
   partly hidden object keeps its track instead of starting a new one);
4. optionally, what is still unmatched is matched by centre distance (``distance_gate`` box diagonals), for
   small fast objects whose predicted box does not overlap the detection yet;
5. unmatched high detections start new tracks (``tentative`` until ``min_hits`` frames, ``tracked`` after);
   unmatched tracks become ``lost`` and are ``removed`` after ``max_lost`` frames without a match.

Matching is greedy by best IoU (or nearest centre) among the pairs that pass the gate: the same answer as an
optimal assignment whenever objects do not overlap ambiguously, and O(pairs · log pairs) instead of O(n³).
Only detections of the same ``class_id`` are matched unless ``class_aware`` is off.

    tracker = Tracker(TrackerConfig(max_lost=30))
    for frame_detections in stream:
        tracked = tracker.update(frame_detections, timestamp)  # the detections, each with "track_id"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from edge_engine.vision.detections import Detection

TENTATIVE = "tentative"
TRACKED = "tracked"
LOST = "lost"
REMOVED = "removed"


@dataclass
class TrackerConfig:
    """How a :class:`Tracker` associates detections; every field is per tracker instance."""

    high_score: float = 0.5  # first-pass detections; below it, second pass only
    low_score: float = 0.1  # detections below this are ignored
    match_iou: float = 0.2  # smallest IoU of a first-pass match (predicted box vs detection)
    low_match_iou: float = 0.4  # smallest IoU of a second-pass (low score) match
    distance_gate: float = 1.0  # third pass: centre distance ≤ this × the track's box diagonal; 0 = off
    min_hits: int = 1  # frames a new track must be matched before it is reported (tentative before)
    max_lost: int = 30  # frames a lost track is kept (predicted forward) before it is removed
    class_aware: bool = True  # match only detections of the track's class_id
    velocity_smoothing: float = 0.5  # weight of the newest displacement in the velocity estimate (0..1]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrackerConfig:
        """Build from a plugin config dict with UPPER or lower keys (``{"MAX_LOST": 50}``); unknown keys raise."""
        names = {f.lower() for f in cls.__dataclass_fields__}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).lower()
            if name not in names:
                known = ", ".join(sorted(n.upper() for n in names))
                raise ValueError(f"unknown tracker setting {key!r}; known: {known}")
            kwargs[name] = value
        config = cls(**kwargs)
        config.check()
        return config

    def check(self) -> None:
        """Raise ``ValueError`` when the settings do not make sense together."""
        if not 0 <= self.low_score <= self.high_score <= 1:
            raise ValueError(
                f"tracker needs 0 <= LOW_SCORE <= HIGH_SCORE <= 1 (got {self.low_score}, {self.high_score})"
            )
        if not 0 <= self.match_iou < 1 or not 0 <= self.low_match_iou < 1:
            raise ValueError("tracker needs 0 <= MATCH_IOU < 1 and 0 <= LOW_MATCH_IOU < 1")
        if self.min_hits < 1 or self.max_lost < 0 or self.distance_gate < 0:
            raise ValueError("tracker needs MIN_HITS >= 1, MAX_LOST >= 0 and DISTANCE_GATE >= 0")
        if not 0 < self.velocity_smoothing <= 1:
            raise ValueError(f"tracker needs 0 < VELOCITY_SMOOTHING <= 1 (got {self.velocity_smoothing})")


@dataclass
class Track:
    """One tracked object. ``box`` is the last matched box, ``predicted`` where it is expected this frame."""

    track_id: int
    box: np.ndarray  # x1, y1, x2, y2 (float64)
    score: float
    class_id: int
    class_name: str
    first_time: float
    last_time: float
    first_frame: int
    state: str = TENTATIVE
    hits: int = 1
    frames_lost: int = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(4))
    # the last matched detection, tagged with track_id (the tracker passes the first one; empty only if built by hand)
    detection: Detection = field(default_factory=lambda: cast(Detection, {}))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for payloads and overlays)."""
        return {
            "track_id": self.track_id,
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 3),
            "class_id": self.class_id,
            "class_name": self.class_name,
            "state": self.state,
            "hits": self.hits,
            "frames_lost": self.frames_lost,
            "age_s": round(self.last_time - self.first_time, 3),
        }


class Tracker:
    """ByteTrack-style multi-object tracker (see the module docstring). One per camera; not thread-safe."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.config.check()
        self.tracks: list[Track] = []  # tentative, tracked and lost
        self.removed: list[Track] = []  # tracks removed by the last update (read them before the next)
        self.frame = 0
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (ids keep increasing, so an old id never names a new object)."""
        self.tracks, self.removed, self.frame = [], [], 0

    def update(self, detections: Iterable[Detection | Mapping[str, Any]], timestamp: float = 0.0) -> list[Detection]:
        """Associate one frame's detections; returns the confirmed tracks' detections with ``track_id`` added.

        A tracked object that was not detected in this frame is not in the returned list (see :attr:`tracks`
        for every live track, with its state and predicted box).
        """
        cfg = self.config
        self.frame += 1
        self.removed = []
        dets = [d for d in detections if float(d.get("score", 1.0)) >= cfg.low_score]
        boxes = _boxes_array(dets)
        scores = np.asarray([float(d.get("score", 1.0)) for d in dets], np.float64)
        classes = np.asarray([int(d.get("class_id", 0)) for d in dets], np.int64)
        self._predict()
        high = np.flatnonzero(scores >= cfg.high_score)
        low = np.flatnonzero(scores < cfg.high_score)
        all_tracks = np.arange(len(self.tracks))
        matches, free_tracks, free_high = self._match(all_tracks, high, boxes, classes, cfg.match_iou)
        not_lost = np.asarray([self.tracks[t].state != LOST for t in free_tracks], bool).reshape(-1)
        low_matches, _, _ = self._match(free_tracks[not_lost], low, boxes, classes, cfg.low_match_iou)
        matches += low_matches
        if cfg.distance_gate > 0:
            matched = np.zeros(len(self.tracks), bool)
            matched[[t for t, _ in matches]] = True
            rest = free_tracks[~matched[free_tracks]]
            near, _, free_high = self._match_by_distance(rest, free_high, boxes, classes)
            matches += near
        self._refresh(matches, dets, boxes, timestamp)
        matched_ids = {t for t, _ in matches}
        for t, track in enumerate(self.tracks):
            if t not in matched_ids:
                self._miss(track)
        for d in free_high:
            self._start(dets[int(d)], boxes[int(d)], timestamp)
        self.removed = [t for t in self.tracks if t.state == REMOVED]
        self.tracks = [t for t in self.tracks if t.state != REMOVED]
        return [t.detection for t in self.tracks if t.state == TRACKED and t.frames_lost == 0]

    def _predict(self) -> None:
        """Every track's expected box this frame: last box + velocity × frames since it was seen."""
        if not self.tracks:
            self._boxes = self._velocity = self._predicted = np.zeros((0, 4))
            self._steps = np.zeros(0)
            self._classes = np.zeros(0, np.int64)
            return
        self._boxes = np.stack([t.box for t in self.tracks])
        self._velocity = np.stack([t.velocity for t in self.tracks])
        self._steps = np.asarray([t.frames_lost + 1 for t in self.tracks], np.float64)
        self._predicted = self._boxes + self._velocity * self._steps[:, None]
        self._classes = np.asarray([t.class_id for t in self.tracks], np.int64)
        for track, predicted in zip(self.tracks, self._predicted, strict=True):
            track.predicted = predicted

    # --- association ------------------------------------------------------------------------------------------
    def _match(
        self, track_idx: np.ndarray, det_idx: np.ndarray, boxes: np.ndarray, classes: np.ndarray, min_iou: float
    ) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
        """Greedy IoU matching of tracks (predicted boxes) and detections; returns matches and the unmatched."""
        if len(track_idx) == 0 or len(det_idx) == 0:
            return [], track_idx, det_idx
        rows, cols, ious = overlapping_pairs(self._predicted[track_idx], boxes[det_idx])
        if self.config.class_aware:
            same = self._classes[track_idx][rows] == classes[det_idx][cols]
            rows, cols, ious = rows[same], cols[same], ious[same]
        return self._split(*greedy_pairs(rows, cols, ious, min_iou, larger_is_better=True), track_idx, det_idx)

    def _match_by_distance(
        self, track_idx: np.ndarray, det_idx: np.ndarray, boxes: np.ndarray, classes: np.ndarray
    ) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
        """Nearest-centre matching within ``distance_gate`` diagonals of the track's predicted box."""
        if len(track_idx) == 0 or len(det_idx) == 0:
            return [], track_idx, det_idx
        predicted = self._predicted[track_idx]
        det_boxes = boxes[det_idx]
        centres_t = (predicted[:, :2] + predicted[:, 2:]) / 2
        centres_d = (det_boxes[:, :2] + det_boxes[:, 2:]) / 2
        diagonal = np.hypot(predicted[:, 2] - predicted[:, 0], predicted[:, 3] - predicted[:, 1])
        distance = (
            np.linalg.norm(centres_t[:, None, :] - centres_d[None, :, :], axis=2) / np.maximum(diagonal, 1e-6)[:, None]
        )
        if self.config.class_aware:
            distance[self._classes[track_idx][:, None] != classes[det_idx][None, :]] = np.inf
        rows, cols = np.nonzero(distance <= self.config.distance_gate)
        chosen = greedy_pairs(rows, cols, distance[rows, cols], self.config.distance_gate, larger_is_better=False)
        return self._split(*chosen, track_idx, det_idx)

    @staticmethod
    def _split(
        rows: np.ndarray, cols: np.ndarray, track_idx: np.ndarray, det_idx: np.ndarray
    ) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
        """Matches as (track, detection) indices, and the tracks and detections left over."""
        matches = list(zip(track_idx[rows].tolist(), det_idx[cols].tolist(), strict=True))
        free_rows = np.ones(len(track_idx), bool)
        free_rows[rows] = False
        free_cols = np.ones(len(det_idx), bool)
        free_cols[cols] = False
        return matches, track_idx[free_rows], det_idx[free_cols]

    # --- track life -------------------------------------------------------------------------------------------
    def _refresh(self, matches: list[tuple[int, int]], dets: list[Any], boxes: np.ndarray, timestamp: float) -> None:
        """Matched tracks take their detection's box; velocities are updated (vectorised)."""
        if not matches:
            return
        ti = np.asarray([t for t, _ in matches])
        di = np.asarray([d for _, d in matches])
        displacement = (boxes[di] - self._boxes[ti]) / self._steps[ti][:, None]
        first = np.asarray([self.tracks[t].hits == 1 for t in ti.tolist()])[:, None]
        alpha = self.config.velocity_smoothing
        velocity = np.where(first, displacement, alpha * displacement + (1 - alpha) * self._velocity[ti])
        new_boxes = boxes[di]
        min_hits = self.config.min_hits
        for k, (t, d) in enumerate(matches):
            track, det = self.tracks[t], dets[d]
            track.box, track.velocity = new_boxes[k], velocity[k]
            track.score = float(det.get("score", 1.0))
            track.hits += 1
            track.frames_lost = 0
            track.last_time = timestamp
            if track.state != TRACKED and track.hits >= min_hits:
                track.state = TRACKED
            track.detection = _tagged(det, track.track_id)

    def _miss(self, track: Track) -> None:
        track.frames_lost += 1
        if track.state == TENTATIVE or track.frames_lost > self.config.max_lost:
            track.state = REMOVED
        else:
            track.state = LOST

    def _start(self, det: Mapping[str, Any], box: np.ndarray, timestamp: float) -> None:
        track = Track(
            track_id=self._next_id,
            box=box.copy(),
            score=float(det.get("score", 1.0)),
            class_id=int(det.get("class_id", 0)),
            class_name=str(det.get("class_name", "")),
            first_time=timestamp,
            last_time=timestamp,
            first_frame=self.frame,
            state=TRACKED if self.config.min_hits <= 1 else TENTATIVE,
            detection=_tagged(det, self._next_id),
        )
        track.predicted = track.box.copy()
        self._next_id += 1
        self.tracks.append(track)


def _tagged(det: Mapping[str, Any], track_id: int) -> Detection:
    return cast(Detection, {**det, "track_id": track_id})  # det is a Detection; the tracker only adds track_id


def _boxes_array(dets: Sequence[Mapping[str, Any]]) -> np.ndarray:
    if not dets:
        return np.zeros((0, 4), np.float64)
    boxes = np.asarray([d["box"] for d in dets], np.float64).reshape(-1, 4)
    return boxes


def overlapping_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs (row of ``a``, row of ``b``) of xyxy boxes that overlap, with their IoU.

    Boxes of ``b`` are sorted by left edge; each box of ``a`` only looks at those whose left edge lies
    within its own x-range widened by the widest box of ``b`` (a sweep, not an n×m matrix), so the cost
    follows the number of nearby pairs: about linear for objects spread over a frame.
    """
    empty = np.zeros(0, np.int64)
    if len(a) == 0 or len(b) == 0:
        return empty, empty, np.zeros(0, np.float32)
    order = np.argsort(b[:, 0], kind="stable")
    left = b[order, 0]
    widest = float(np.max(b[:, 2] - b[:, 0]))
    lo = np.searchsorted(left, a[:, 0] - widest, side="left")
    hi = np.searchsorted(left, a[:, 2], side="left")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if total == 0:
        return empty, empty, np.zeros(0, np.float32)
    rows = np.repeat(np.arange(len(a)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = order[np.repeat(lo, counts) + offsets]
    pa, pb = a[rows], b[cols]
    width = np.minimum(pa[:, 2], pb[:, 2]) - np.maximum(pa[:, 0], pb[:, 0])
    height = np.minimum(pa[:, 3], pb[:, 3]) - np.maximum(pa[:, 1], pb[:, 1])
    inter = np.maximum(width, 0) * np.maximum(height, 0)
    keep = inter > 0
    rows, cols, inter, pa, pb = rows[keep], cols[keep], inter[keep], pa[keep], pb[keep]
    union = (pa[:, 2] - pa[:, 0]) * (pa[:, 3] - pa[:, 1]) + (pb[:, 2] - pb[:, 0]) * (pb[:, 3] - pb[:, 1]) - inter
    return rows, cols, (inter / np.maximum(union, 1e-9)).astype(np.float32)


def greedy_pairs(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, gate: float, larger_is_better: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Pick candidate pairs best first, each row and column at most once, among those that pass ``gate``
    (``value >= gate`` with ``larger_is_better``, else ``value <= gate``); returns the chosen rows and cols."""
    passing = values >= gate if larger_is_better else values <= gate
    rows, cols, values = rows[passing], cols[passing], values[passing]
    order = np.argsort(-values if larger_is_better else values, kind="stable")
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    out_rows: list[int] = []
    out_cols: list[int] = []
    for r, c in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
        if r in used_rows or c in used_cols:
            continue
        used_rows.add(r)
        used_cols.add(c)
        out_rows.append(r)
        out_cols.append(c)
    return np.asarray(out_rows, np.int64), np.asarray(out_cols, np.int64)


def greedy_assign(scores: np.ndarray, gate: float, larger_is_better: bool = True) -> tuple[list[int], list[int]]:
    """:func:`greedy_pairs` over a dense matrix (cells at exactly 0 never pass an IoU gate)."""
    passing = scores >= gate if larger_is_better else scores <= gate
    if larger_is_better:
        passing &= scores > 0
    rows, cols = np.nonzero(passing)
    chosen_rows, chosen_cols = greedy_pairs(rows, cols, scores[rows, cols], gate, larger_is_better)
    return chosen_rows.tolist(), chosen_cols.tolist()
