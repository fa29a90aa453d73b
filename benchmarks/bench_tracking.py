"""Tracking, zones and counting: accuracy on drawn ground truth, cost per frame, and a 4-camera node's CPU.

1. **Accuracy** – the scenes of ``tests/vision_scenes.py`` (objects with known trajectories: a line crossed
   both ways, a stop in a zone, two objects crossing paths, an occlusion, jitter on a line, a crowd) go
   through the motion model (``MotionBoxes``) and through the ONNX colour-box detector, then the tracker.
   CLEAR-MOT MOTA (a hypothesis matches a ground-truth box at IoU ≥ 0.5; a match is kept while it still
   holds; FN, FP and id switches counted) and IDF1 (ground-truth ids paired one-to-one with track ids so
   that the frames they match are the most, by exhaustive search) are printed per scene and detector.
2. **Cost per frame** – ``Tracker.update`` + ``ZoneMonitor.update`` (2 lines, 2 zones) with 10, 100 and
   1,000 boxes moving on a 1920x1080 frame (each box jittered and moved every frame): median CPU µs per
   frame (``time.thread_time``: less sensitive than wall time to a busy machine, not immune to it).
3. **Pipeline CPU** – an in-process node (comms off) with 4 ``VIDEO_FILE`` pipelines (320x240 scene clip,
   looped, ``REALTIME`` at 10 fps) runs ``--seconds`` s each way: a no-op plugin (counting off),
   motion boxes only, and ``OBJECT_COUNTER`` (motion boxes, tracker, 1 line, 1 zone, payloads). CPU % of
   one core (the node process, all threads), capture rate, frames processed and payloads are printed. Then
   the same with ``ZONE_ALERT`` (dwell alert every 7.5 s per camera) without and with event clips: the
   capture rate shows whether clip encoding slows the cameras down; and one 1280x720 camera at 25 fps with
   full-width clips (the heaviest encoding).

    .venv/bin/python benchmarks/bench_tracking.py [--seconds 20] [--skip-pipeline]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
import vision_scenes as vs  # noqa: E402
from _results import record  # noqa: E402

from edge_engine.vision.boxes import box_iou  # noqa: E402
from edge_engine.vision.motion import MotionBoxes  # noqa: E402
from edge_engine.vision.tracking import Tracker, TrackerConfig  # noqa: E402
from edge_engine.vision.zones import ZoneMonitor, parse_regions  # noqa: E402

SCENES = [vs.scene_line_both_ways, vs.scene_zone_stop, vs.scene_crossing_paths, vs.scene_occlusion,
          vs.scene_jitter, vs.scene_crowd]  # fmt: skip


# --- accuracy -----------------------------------------------------------------------------------------------------
def mot_counts(scene: vs.Scene, detect: Callable[[Any], list[dict[str, Any]]]) -> dict[str, Any]:
    """FN, FP, id switches, ground-truth count and per-frame matches of one scene through the tracker."""
    tracker = Tracker(TrackerConfig())
    mapping: dict[int, int] = {}  # ground-truth id -> track id it was last matched to
    fn = fp = switches = gt_total = hyp_total = 0
    pair_frames: dict[tuple[int, int], int] = {}
    gt_count: dict[int, int] = {}
    hyp_count: dict[int, int] = {}
    for frame in range(scene.frames):
        hyps = tracker.update(detect(scene.render(frame)), frame / vs.FPS)
        truth = scene.truth(frame)
        gt_total += len(truth)
        hyp_total += len(hyps)
        for truth_id in truth:
            gt_count[truth_id] = gt_count.get(truth_id, 0) + 1
        for h in hyps:
            hyp_count[h["track_id"]] = hyp_count.get(h["track_id"], 0) + 1
        gt_ids = list(truth)
        gt_boxes = np.asarray([truth[g] for g in gt_ids]).reshape(-1, 4)
        hyp_boxes = np.asarray([h["box"] for h in hyps]).reshape(-1, 4)
        iou = box_iou(gt_boxes, hyp_boxes)
        matched: dict[int, int] = {}
        used: set[int] = set()
        for gi, g in enumerate(gt_ids):  # keep last frame's pairing when it still holds
            previous = mapping.get(g)
            for hi, h in enumerate(hyps):
                if h["track_id"] == previous and iou[gi, hi] >= 0.5 and hi not in used:
                    matched[g] = hi
                    used.add(hi)
        pairs = sorted(((iou[gi, hi], gi, hi) for gi in range(len(gt_ids)) for hi in range(len(hyps))), reverse=True)
        for value, gi, hi in pairs:
            g = gt_ids[gi]
            if value < 0.5 or g in matched or hi in used:
                continue
            matched[g] = hi
            used.add(hi)
        for g, hi in matched.items():
            track_id = hyps[hi]["track_id"]
            if g in mapping and mapping[g] != track_id:
                switches += 1
            mapping[g] = track_id
            pair_frames[(g, track_id)] = pair_frames.get((g, track_id), 0) + 1
        fn += len(gt_ids) - len(matched)
        fp += len(hyps) - len(matched)
    idtp = best_pairing(pair_frames)
    return {"fn": fn, "fp": fp, "idsw": switches, "gt": gt_total, "hyp": hyp_total, "idtp": idtp}


def best_pairing(pair_frames: dict[tuple[int, int], int]) -> int:
    """IDTP: the most frames matched by a one-to-one pairing of ground-truth ids and track ids (exhaustive
    search: the scenes have at most three objects and a handful of tracks)."""
    truth_ids = sorted({g for g, _ in pair_frames})

    def search(index: int, used: frozenset[int]) -> int:
        if index == len(truth_ids):
            return 0
        g = truth_ids[index]
        best = search(index + 1, used)  # this ground-truth id paired with no track
        for (gg, h), count in pair_frames.items():
            if gg == g and h not in used:
                best = max(best, count + search(index + 1, used | {h}))
        return best

    return search(0, frozenset())


def scores(c: dict[str, int]) -> tuple[float, float]:
    mota = 1 - (c["fn"] + c["fp"] + c["idsw"]) / max(1, c["gt"])
    idf1 = 2 * c["idtp"] / max(1, c["gt"] + c["hyp"])
    return mota, idf1


def accuracy(workdir: Path) -> None:
    model = vs.color_box_model(workdir / "color_boxes.onnx", list(vs.COLORS.values()))
    onnx = vs.ColorBoxDetector(model, ["person"] * len(vs.COLORS), [0] * len(vs.COLORS))
    print("## Accuracy on drawn ground truth (IoU >= 0.5)")
    print(f"| scene | detector | GT boxes | FN | FP | ID sw | MOTA | IDF1 |\n|{'---|' * 8}")
    totals: dict[str, dict[str, int]] = {}
    for make in SCENES:
        scene = make()
        for name, detect in (("onnx", onnx), ("motion", MotionBoxes().boxes)):
            c = mot_counts(scene, detect)
            total = totals.setdefault(name, dict.fromkeys(c, 0))
            for key, value in c.items():
                total[key] += value
            mota, idf1 = scores(c)
            row = f"| {scene.name} | {name} | {c['gt']} | {c['fn']} | {c['fp']} | {c['idsw']}"
            print(f"{row} | {mota:.3f} | {idf1:.3f} |")
    for name, c in totals.items():
        mota, idf1 = scores(c)
        row = f"| **all** | {name} | {c['gt']} | {c['fn']} | {c['fp']} | {c['idsw']}"
        print(f"{row} | **{mota:.3f}** | **{idf1:.3f}** |")
        record(f"tracking IDF1, all scenes, {name} detector", round(idf1, 3), "")
        record(f"tracking MOTA, all scenes, {name} detector", round(mota, 3), "")


# --- cost per frame -----------------------------------------------------------------------------------------------
def cost(boxes: int, frames: int = 60) -> tuple[float, float]:
    """Median µs per frame of the tracker alone and of tracker + zones, with ``boxes`` moving boxes."""
    rng = np.random.default_rng(boxes)
    width, height = 1920, 1080
    size = rng.uniform(20, 60, (boxes, 2))
    start = rng.uniform([0, 0], [width - 60, height - 60], (boxes, 2))
    velocity = rng.uniform(-4, 4, (boxes, 2))
    lines = parse_regions([{"NAME": "a", "POINTS": [[0.5, 0], [0.5, 1]]},
                           {"NAME": "b", "POINTS": [[0, 0.5], [0.3, 0.6], [1, 0.5]]}], "line")  # fmt: skip
    square = [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4], [0.1, 0.4]]
    triangle = [[0.6, 0.6], [0.9, 0.6], [0.8, 0.9]]
    zones = parse_regions([{"NAME": "z1", "POINTS": square, "DWELL_SECONDS": 1},
                           {"NAME": "z2", "POINTS": triangle, "MAX_COUNT": 5}], "zone")  # fmt: skip
    tracker, monitor = Tracker(), ZoneMonitor(zones, lines)
    track_us, total_us = [], []
    for frame in range(frames):
        centre = (start + velocity * frame) % [width, height]
        jitter = rng.normal(0, 1, (boxes, 2))
        xy = centre + jitter
        dets = [{"box": [x, y, x + w, y + h], "score": 0.9, "class_id": 0, "class_name": "person"}
                for (x, y), (w, h) in zip(xy.tolist(), size.tolist(), strict=True)]  # fmt: skip
        t0 = time.thread_time()
        tracked = tracker.update(dets, frame / 10)
        t1 = time.thread_time()
        monitor.update(tracked, frame / 10, (width, height), frame, [t.track_id for t in tracker.removed])
        t2 = time.thread_time()
        if frame >= 5:
            track_us.append((t1 - t0) * 1e6)
            total_us.append((t2 - t0) * 1e6)
    return statistics.median(track_us), statistics.median(total_us)


def costs() -> None:
    print("\n## Cost per frame (1920x1080, boxes moving and jittering; 2 lines, 2 zones)")
    print("| boxes | tracker µs | tracker + zones µs |\n|---|---|---|")
    for boxes in (10, 100, 1000):
        track_us, total_us = cost(boxes, frames=60 if boxes < 1000 else 25)
        print(f"| {boxes} | {track_us:,.0f} | {total_us:,.0f} |")
        record(f"tracker + zones per frame, {boxes} boxes", round(total_us), "µs")


# --- pipeline CPU -------------------------------------------------------------------------------------------------
NOOP = """
    from edge_engine.api import BusinessPlugin


    class BenchNoop(BusinessPlugin):
        SIGNATURE = "BENCH_NOOP"

        def process(self, inp):
            return None
"""
MOTION_ONLY = """
    from edge_engine.api import BusinessPlugin


    class BenchMotion(BusinessPlugin):
        SIGNATURE = "BENCH_MOTION"

        def on_init(self):
            from edge_engine.api import MotionBoxes

            self.motion = MotionBoxes()

        def process(self, inp):
            self.motion.boxes(inp.image)
"""


def pipeline_cpu(workdir: Path, seconds: float) -> None:
    from edge_engine.config.node_settings import load_settings
    from edge_engine.node.core import Node

    video = vs.scene_line_both_ways().write_video(workdir / "scene.avi")
    plugins = workdir / "plugins" / "business"
    plugins.mkdir(parents=True)
    (plugins / "bench_noop.py").write_text(textwrap.dedent(NOOP), encoding="utf-8")
    (plugins / "bench_motion.py").write_text(textwrap.dedent(MOTION_ONLY), encoding="utf-8")
    config = {"PLUGIN_FOLDERS": [str(REPO / "extensions"), str(workdir / "plugins")], "DEMO_PIPELINE": False,
              "LOG_LEVEL": "WARNING"}  # fmt: skip
    (workdir / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
    env = {"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0", "EE_STATUS_PORT": "0"}
    node = Node(load_settings(workdir, workdir / "_local_cache", env))
    node.start()
    counter = {"SIGNATURE": "OBJECT_COUNTER", "INSTANCES": [{
        "INSTANCE_ID": "count", "DETECTIONS_FROM": "MOTION",
        "LINES": [{"NAME": "door", "POINTS": [[0.5, 0], [0.5, 1]]}],
        "ZONES": [{"NAME": "area", "POINTS": [[0.55, 0.25], [0.95, 0.25], [0.95, 0.85], [0.55, 0.85]]}],
        "REPORT_SECONDS": 10}]}  # fmt: skip
    variants = {
        "counting off (no-op plugin)": {"SIGNATURE": "BENCH_NOOP", "INSTANCES": [{"INSTANCE_ID": "noop"}]},
        "motion boxes only": {"SIGNATURE": "BENCH_MOTION", "INSTANCES": [{"INSTANCE_ID": "motion"}]},
        "OBJECT_COUNTER (motion + tracker + line + zone)": counter,
    }
    print(f"\n## 4 cameras (320x240 at 10 fps, VIDEO_FILE REALTIME LOOP), {seconds:.0f} s each, node process CPU")
    print("| plugin | CPU % of one core | capture fps (4 cameras) | frames processed | payloads |")
    print("|---|---|---|---|---|")
    try:
        for label, plugin in variants.items():
            run_variant(node, video, label, plugin, seconds)
        zone_video = vs.scene_zone_stop().write_video(workdir / "zone.avi")
        alert = {"INSTANCE_ID": "alert", "DETECTIONS_FROM": "MOTION", "TIME_SOURCE": "capture",
                 "ZONES": [{"NAME": "lot", "POINTS": [[180, 60], [300, 60], [300, 200], [180, 200]],
                            "DWELL_SECONDS": 1.5}]}  # fmt: skip
        print("\n## Clip encoding and the capture rate (4 cameras as above, ZONE_ALERT, an alert every 7.5 s each)")
        print("| clips | CPU % of one core | capture fps (4 cameras) | frames processed | payloads |")
        print("|---|---|---|---|---|")
        for label, extra in (
            ("off", {}),
            ("2 s before + 2 s after", {"CLIP_SECONDS_BEFORE": 2, "CLIP_SECONDS_AFTER": 2}),
        ):
            plugin = {"SIGNATURE": "ZONE_ALERT", "INSTANCES": [{**alert, **extra}]}
            run_variant(node, zone_video, label, plugin, seconds)
        clip_stress(node, workdir, seconds)
    finally:
        node.stop("benchmark done")


def hd_video(path: Path, seconds: float = 12.8, fps: int = 25) -> Path:
    """A 1280x720 MJPG clip: a white square crossing the frame left to right every 6.4 s (8 px per frame)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (1280, 720))
    try:
        for index in range(int(seconds * fps)):
            frame = np.full((720, 1280, 3), 30, np.uint8)
            x = (index * 8) % 1280 - 60
            frame[300:420, max(0, x) : max(0, x + 120)] = 255
            writer.write(frame)
    finally:
        writer.release()
    return path


def clip_stress(node: Any, workdir: Path, seconds: float) -> None:
    """One 1280x720 camera at 25 fps (VIDEO_FILE REALTIME): an intrusion alert every 6.4 s, with and without
    3 s + 3 s clips at full width (the heaviest encoding), while the capture rate is watched."""
    video = hd_video(workdir / "hd.avi")
    zone = {"NAME": "right", "POINTS": [[0.6, 0], [1, 0], [1, 1], [0.6, 1]], "ANCHOR": "center"}
    alert = {"INSTANCE_ID": "alert", "DETECTIONS_FROM": "MOTION", "ZONES": [zone]}
    print(f"\n## Clip encoding at 1280x720, 25 fps (one camera, VIDEO_FILE REALTIME LOOP), {seconds:.0f} s each")
    print("| clips | CPU % of one core | capture fps | frames processed | payloads |")
    print("|---|---|---|---|---|")
    clips = {"CLIP_SECONDS_BEFORE": 3, "CLIP_SECONDS_AFTER": 3, "CLIP_WIDTH": 1280}
    for label, extra in (("off", {}), ("3 s before + 3 s after, 1280 wide", clips)):
        plugin = {"SIGNATURE": "ZONE_ALERT", "INSTANCES": [{**alert, **extra}]}
        run_variant(node, video, label, plugin, seconds, cameras=1)


def run_variant(
    node: Any, video: Path, label: str, plugin: dict[str, Any], seconds: float,
    cameras: int = 4,
) -> None:  # fmt: skip
    """Looping real-time pipelines with ``plugin``; one table row of CPU, capture rate and outputs."""
    names = [f"cam{i}" for i in range(cameras)]
    source = {"TYPE": "VIDEO_FILE", "URL": str(video), "LOOP": True, "REALTIME": True}
    for name in names:
        node.add_pipeline({"NAME": name, **source, "PLUGINS": [plugin]}, source="benchmark")
    time.sleep(2.0)  # warm-up: first frames, imports
    captures = [node.pipelines[n].capture for n in names]
    instances = [i for n in names for i in node.pipelines[n].instances.values()]
    read0 = sum(c.stats.inputs for c in captures)
    inputs0 = sum(i.stats.inputs for i in instances)
    payloads0 = sum(i.stats.outputs for i in instances)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    read = sum(c.stats.inputs for c in captures) - read0
    frames = sum(i.stats.inputs for i in instances) - inputs0
    payloads = sum(i.stats.outputs for i in instances) - payloads0
    print(f"| {label} | {100 * cpu / wall:.1f} | {read / wall:.1f} | {frames} | {payloads} |", flush=True)
    record(f"node CPU, {cameras} camera(s), {label}", round(100 * cpu / wall, 1), "% of a core",
           note=f"capture {read / wall:.1f} fps")  # fmt: skip
    for name in names:
        node.remove_pipeline(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per pipeline variant")
    parser.add_argument("--skip-pipeline", action="store_true", help="only accuracy and cost per frame")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_tracking_") as tmp:
        workdir = Path(tmp)
        accuracy(workdir)
        costs()
        if not args.skip_pipeline:
            pipeline_cpu(workdir / "node", args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
