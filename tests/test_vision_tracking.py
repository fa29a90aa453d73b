"""Tracker, zones and lines: unit tests of the logic, then ground truth from drawn scenes.

The ground-truth tests render scenes with known trajectories (tests/vision_scenes.py), detect the objects
with the motion detector's background model and with a real ONNX colour-box detector, track them and run
the zones and lines, then assert exact counts, event frames (±1) and that no track id switches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import vision_scenes as vs

from edge_engine.api import MotionBoxes, Tracker, TrackerConfig, ZoneMonitor, box_iou, make_detection, parse_regions
from edge_engine.vision.tracking import LOST, TENTATIVE, TRACKED, greedy_assign


def det(x1: float, y1: float, x2: float, y2: float, score: float = 0.9, class_id: int = 0) -> dict[str, Any]:
    return dict(make_detection([x1, y1, x2, y2], score, class_id, f"c{class_id}"))


# --- tracker logic ---------------------------------------------------------------------------------------------------
def test_box_iou_and_greedy_assignment() -> None:
    a = np.asarray([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    b = np.asarray([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], float)
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(1.0) and iou[0, 1] == pytest.approx(50 / 150) and iou[1].max() == 0
    rows, cols = greedy_assign(iou, 0.3)
    assert (rows, cols) == ([0], [0])  # best pair first; row 1 has no partner above the gate
    rows, cols = greedy_assign(np.asarray([[0.5, 0.9], [0.4, 0.45]]), 0.3)
    assert sorted(zip(rows, cols, strict=True)) == [(0, 1), (1, 0)]


def test_constant_velocity_keeps_the_id_of_a_fast_object() -> None:
    tracker = Tracker(TrackerConfig(distance_gate=0))
    ids = set()
    for frame in range(10):  # 20 px boxes: 10 px, then 16 px per frame (IoU of two raw frames 0.11 < MATCH_IOU)
        x = 10.0 * min(frame, 1) + 16.0 * max(0, frame - 1)
        (tracked,) = tracker.update([det(x, 0, x + 20, 20)], frame)
        ids.add(tracked["track_id"])
    assert ids == {1}


def test_low_score_boxes_extend_tracks_but_never_start_them() -> None:
    tracker = Tracker(TrackerConfig(high_score=0.6, low_score=0.1))
    assert tracker.update([det(0, 0, 10, 10, 0.9)])[0]["track_id"] == 1
    tracked = tracker.update([det(1, 0, 11, 10, 0.3), det(200, 200, 210, 210, 0.3)])
    assert [d["track_id"] for d in tracked] == [1]  # the weak box far away started nothing
    assert len(tracker.tracks) == 1


def test_lost_then_removed_after_max_lost_and_tentative_until_min_hits() -> None:
    tracker = Tracker(TrackerConfig(max_lost=2, min_hits=2))
    assert tracker.update([det(0, 0, 10, 10)]) == []  # tentative: not reported yet
    assert tracker.tracks[0].state == TENTATIVE
    assert tracker.update([det(0, 0, 10, 10)])[0]["track_id"] == 1
    assert tracker.tracks[0].state == TRACKED
    tracker.update([])
    tracker.update([])
    assert tracker.tracks[0].state == LOST and tracker.tracks[0].frames_lost == 2
    tracker.update([])
    assert tracker.tracks == [] and [t.track_id for t in tracker.removed] == [1]
    assert tracker.update([det(0, 0, 10, 10)]) == []  # a new object gets a new id
    assert tracker.tracks[0].track_id == 2


def test_classes_are_not_mixed_and_bad_settings_are_refused() -> None:
    tracker = Tracker()
    tracker.update([det(0, 0, 10, 10, class_id=0)])
    (tracked,) = tracker.update([det(0, 0, 10, 10, class_id=1)])
    assert tracked["track_id"] == 2
    with pytest.raises(ValueError, match="unknown tracker setting 'MAX_LOSST'"):
        TrackerConfig.from_mapping({"MAX_LOSST": 3})
    with pytest.raises(ValueError, match="LOW_SCORE <= HIGH_SCORE"):
        TrackerConfig.from_mapping({"LOW_SCORE": 0.8, "HIGH_SCORE": 0.5})


# --- zones and lines -------------------------------------------------------------------------------------------------
def test_regions_parse_relative_points_and_refuse_bad_entries() -> None:
    (zone,) = parse_regions([{"NAME": "z", "POINTS": [[0, 0], [0.5, 0], [0.5, 0.5]], "CLASSES": "car"}], "zone")
    assert zone.relative and zone.classes == {"car"}
    assert zone.pixels(200, 100).tolist() == [[0, 0], [100, 0], [100, 50]]
    assert zone.accepts(2, "car") and not zone.accepts(0, "person")
    with pytest.raises(ValueError, match=r"ZONES\[0\] \(z\): POINTS must be a list of at least 3"):
        parse_regions([{"NAME": "z", "POINTS": [[0, 0], [1, 1]]}], "zone")
    with pytest.raises(ValueError, match=r"LINES\[0\]: unknown key\(s\) POINT"):
        parse_regions([{"NAME": "l", "POINT": [[0, 0], [1, 1]]}], "line")
    with pytest.raises(ValueError, match="DWELL_SECONDS and MAX_COUNT apply to zones"):
        parse_regions([{"POINTS": [[0, 0], [1, 1]], "DWELL_SECONDS": 5}], "line")
    with pytest.raises(ValueError, match="NAME is used twice"):
        parse_regions([{"NAME": "a", "POINTS": [[0, 0], [1, 1]]}, {"NAME": "a", "POINTS": [[0, 1], [1, 0]]}], "line")


def test_signed_distances_to_a_concave_polygon_and_a_polyline() -> None:
    from edge_engine.vision.zones import signed_distance_to_polygon, signed_distance_to_polyline

    l_shape = np.asarray([[0, 0], [100, 0], [100, 40], [40, 40], [40, 100], [0, 100]], float)
    points = np.asarray([[20, 20], [70, 20], [70, 70], [20, 90], [120, 20], [40, 40]], float)
    distance = signed_distance_to_polygon(points, l_shape)
    assert distance.tolist() == pytest.approx([20, 20, -30, 10, -20, 0])  # (70, 70) is in the notch: outside
    bent = np.asarray([[0, 50], [50, 50], [50, 100]], float)  # right, then down: its right-hand side is below-left
    assert signed_distance_to_polyline(np.asarray([[20, 60], [20, 40], [60, 80], [40, 80]], float), bent).tolist() == (
        pytest.approx([10, -10, -10, 10])
    )


def test_jitter_on_a_zone_border_enters_once() -> None:
    zones = parse_regions([{"NAME": "z", "POINTS": [[100, 0], [200, 0], [200, 100], [100, 100]], "MARGIN": 4}], "zone")
    monitor = ZoneMonitor(zones)
    events = []
    for frame, x in enumerate([80, 90, 99, 101, 98, 102, 97, 103, 99, 110, 120]):
        box = [x - 5, 40, x + 5, 50]
        detection = {**det(*box), "track_id": 7}
        events += monitor.update([detection], frame, (300, 100), frame)
    # the anchor (bottom centre) is at x; inside by more than the margin only from x=110 (frame 9)
    assert [(e["EVENT"], e["FRAME_INDEX"]) for e in events] == [("ENTER", 9)]
    assert monitor.occupancy() == {"z": {"c0": 1}}
    events = monitor.update([], 11, (300, 100), 11, gone=[7])
    assert [(e["EVENT"], e["REASON"]) for e in events] == [("EXIT", "lost")]
    assert monitor.totals["z"]["ENTER"] == {"c0": 1} and monitor.totals["z"]["EXIT"] == {"c0": 1}


def test_going_around_the_end_of_a_line_is_not_a_crossing() -> None:
    monitor = ZoneMonitor(lines=parse_regions([{"NAME": "l", "POINTS": [[100, 50], [100, 100]]}], "line"))
    path = [(80, 120), (90, 140), (110, 140), (120, 120)]  # below the line's lower end
    events = []
    for frame, (x, y) in enumerate(path):
        events += monitor.update([{**det(x - 5, y - 10, x + 5, y), "track_id": 1}], frame, (300, 200), frame)
    assert events == []


# --- ground truth -----------------------------------------------------------------------------------------------------
LINE = [{"NAME": "door", "POINTS": [[vs.LINE_X, 0], [vs.LINE_X, vs.HEIGHT]]}]
x1, y1, x2, y2 = vs.ZONE
ZONE = [{"NAME": "area", "POINTS": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], "DWELL_SECONDS": 2, "MAX_COUNT": 2}]


@pytest.fixture(scope="module")
def onnx_detector(tmp_path_factory: pytest.TempPathFactory) -> vs.ColorBoxDetector:
    model = vs.color_box_model(tmp_path_factory.mktemp("model") / "color_boxes.onnx", list(vs.COLORS.values()))
    return vs.ColorBoxDetector(model, ["person"] * len(vs.COLORS), [0] * len(vs.COLORS))  # one class: ids must hold


def run_scene(scene: vs.Scene, detect: Any, lines: list[Any] = (), zones: list[Any] = ()) -> dict[str, Any]:
    """Detect, track and watch zones over the scene; events and per-ground-truth-object track ids."""
    tracker = Tracker(TrackerConfig())
    monitor = ZoneMonitor(parse_regions(list(zones), "zone"), parse_regions(list(lines), "line"))
    events: list[dict[str, Any]] = []
    ids_of_truth: dict[int, list[int]] = {}
    for frame in range(scene.frames):
        tracked = tracker.update(detect(scene.render(frame)), frame / vs.FPS)
        gone = [t.track_id for t in tracker.removed]
        events += monitor.update(tracked, frame / vs.FPS, (vs.WIDTH, vs.HEIGHT), frame, gone)
        for truth_id, box in scene.truth(frame).items():
            if not tracked:
                continue
            overlaps = box_iou(np.asarray([box]), np.asarray([d["box"] for d in tracked]))[0]
            if overlaps.max() >= 0.5:  # the track that covers this object best
                ids_of_truth.setdefault(truth_id, []).append(tracked[int(overlaps.argmax())]["track_id"])
    return {"events": events, "ids": ids_of_truth, "monitor": monitor}


def detectors(onnx_detector: vs.ColorBoxDetector) -> dict[str, Any]:
    return {"onnx": onnx_detector, "motion": MotionBoxes().boxes}


def crossing_frame(scene: vs.Scene, obj: int, rightward: bool, start: int = 0) -> int:
    """Ground truth: the first frame the box's anchor (bottom centre) is beyond the line."""
    if rightward:
        return vs.first_frame(scene, obj, lambda b: (b[0] + b[2]) / 2 > vs.LINE_X, start)
    return vs.first_frame(scene, obj, lambda b: (b[0] + b[2]) / 2 < vs.LINE_X, start)


def inside_zone(box: list[float]) -> bool:
    x, y = (box[0] + box[2]) / 2, box[3]
    return x1 < x < x2 and y1 < y < y2


@pytest.mark.parametrize("source", ["onnx", "motion"])
def test_line_crossed_both_ways_counts_one_each_at_the_right_frames(source: str, onnx_detector: Any) -> None:
    scene = vs.scene_line_both_ways()
    result = run_scene(scene, detectors(onnx_detector)[source], lines=LINE)
    crosses = [e for e in result["events"] if e["EVENT"] == "CROSS"]
    assert [e["DIRECTION"] for e in crosses] == ["OUT", "IN"]  # rightward across a top-to-bottom line is OUT
    right = crossing_frame(scene, 0, rightward=True)
    left = crossing_frame(scene, 0, rightward=False, start=right + 5)
    assert abs(crosses[0]["FRAME_INDEX"] - right) <= 1 and abs(crosses[1]["FRAME_INDEX"] - left) <= 1
    assert result["monitor"].totals["door"] == {
        "IN": {crosses[0]["CLASS_NAME"]: 1},
        "OUT": {crosses[0]["CLASS_NAME"]: 1},
    }
    assert len(set(result["ids"][1])) == 1


@pytest.mark.parametrize("source", ["onnx", "motion"])
def test_zone_enter_dwell_and_exit_at_the_right_frames(source: str, onnx_detector: Any) -> None:
    scene = vs.scene_zone_stop()
    result = run_scene(scene, detectors(onnx_detector)[source], zones=ZONE)
    events = [(e["EVENT"], e["FRAME_INDEX"]) for e in result["events"]]
    assert [name for name, _ in events] == ["ENTER", "DWELL", "EXIT"]
    enter = vs.first_frame(scene, 0, inside_zone)
    leave = vs.first_frame(scene, 0, lambda b: not inside_zone(b), enter)
    assert abs(events[0][1] - enter) <= 1
    assert abs(events[1][1] - (events[0][1] + 2 * vs.FPS)) <= 1  # DWELL_SECONDS 2 after the entry
    assert abs(events[2][1] - leave) <= 1
    assert result["events"][2]["DWELL_S"] == pytest.approx((events[2][1] - events[0][1]) / vs.FPS)


@pytest.mark.parametrize("source", ["onnx", "motion"])
def test_jitter_on_the_line_counts_once(source: str, onnx_detector: Any) -> None:
    scene = vs.scene_jitter()
    result = run_scene(scene, detectors(onnx_detector)[source], lines=LINE)
    crosses = [e for e in result["events"] if e["EVENT"] == "CROSS"]
    assert len(crosses) == 1 and crosses[0]["DIRECTION"] == "OUT"
    assert abs(crosses[0]["FRAME_INDEX"] - 36) <= 1  # it leaves the ±3 px jitter at frame 35, x = 162 then 170


def test_crossing_paths_keep_their_ids(onnx_detector: Any) -> None:
    scene = vs.scene_crossing_paths()
    result = run_scene(scene, onnx_detector, lines=LINE)
    ids = result["ids"]
    assert len(set(ids[1])) == 1 and len(set(ids[2])) == 1 and ids[1][0] != ids[2][0]  # no id switch
    crosses = sorted((e["TRACK_ID"], e["DIRECTION"]) for e in result["events"] if e["EVENT"] == "CROSS")
    assert crosses == [(ids[1][0], "OUT"), (ids[2][0], "IN")]


@pytest.mark.parametrize("source", ["onnx", "motion"])
def test_occluded_object_keeps_its_id_and_counts_once(source: str, onnx_detector: Any) -> None:
    scene = vs.scene_occlusion()
    hidden = [f for f in range(scene.frames) if scene.objects[0].box(f) and 1 not in scene.truth(f)]
    assert len(hidden) >= 4  # the object really is hidden for several frames
    line = [{"NAME": "exit", "POINTS": [[230, 0], [230, vs.HEIGHT]]}]
    result = run_scene(scene, detectors(onnx_detector)[source], lines=line)
    assert len(set(result["ids"][1])) == 1
    crosses = [e for e in result["events"] if e["EVENT"] == "CROSS"]
    assert len(crosses) == 1
    assert abs(crosses[0]["FRAME_INDEX"] - vs.first_frame(scene, 0, lambda b: (b[0] + b[2]) / 2 > 230)) <= 1


@pytest.mark.parametrize("source", ["onnx", "motion"])
def test_count_above_fires_once_when_the_third_object_enters(source: str, onnx_detector: Any) -> None:
    scene = vs.scene_crowd()
    result = run_scene(scene, detectors(onnx_detector)[source], zones=ZONE)
    enters = [e["FRAME_INDEX"] for e in result["events"] if e["EVENT"] == "ENTER"]
    above = [e for e in result["events"] if e["EVENT"] == "COUNT_ABOVE"]
    assert len(enters) == 3 and len(above) == 1
    assert above[0]["FRAME_INDEX"] == enters[2] and above[0]["COUNT"] == 3
    assert abs(enters[2] - vs.first_frame(scene, 2, inside_zone)) <= 1


def test_color_box_model_reports_the_drawn_boxes(onnx_detector: Any, tmp_path: Path) -> None:
    scene = vs.scene_crossing_paths()
    found = onnx_detector(scene.render(5))
    truth = scene.truth(5)
    assert len(found) == 2
    for box in truth.values():
        assert max(box_iou(np.asarray([box]), np.asarray([d["box"] for d in found]))[0]) > 0.9
