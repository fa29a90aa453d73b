"""OBJECT_COUNTER and ZONE_ALERT: payloads from drawn scenes with known trajectories.

In the harness the frames go in as inputs carrying ``frame_index`` and ``fps`` (``TIME_SOURCE: video``), the
objects found by the motion model (``DETECTIONS_FROM: MOTION``). End to end, a node reads the scene as a video
file, a real ONNX colour-box detector runs in its model server (``AI_ENGINE``), and the day's counts survive a
restart of the node.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import vision_scenes as vs
from conftest import EmitTap, wait_for

from edge_engine.api import Input

LINE = {"NAME": "door", "POINTS": [[0.5, 0.0], [0.5, 1.0]]}  # relative: x = 160 of 320
x1, y1, x2, y2 = vs.ZONE
ZONE_POINTS = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
MOTION = {"DETECTIONS_FROM": "MOTION", "TIME_SOURCE": "video"}


def scene_inputs(scene: vs.Scene) -> list[Input]:
    return [
        Input(image=scene.render(f), metadata={"frame_index": f, "fps": vs.FPS}, seq=f + 1, timestamp=1000.0 + f)
        for f in range(scene.frames)
    ]


def test_object_counter_counts_a_line_both_ways_with_witnesses_and_totals(plugin_harness: Any) -> None:
    config = {**MOTION, "LINES": [LINE], "REPORT_SECONDS": 3}
    result = plugin_harness.run("OBJECT_COUNTER", config=config, inputs=scene_inputs(vs.scene_line_both_ways()))
    crosses = [p for p in result.payloads if p["EVENT"] == "CROSS"]
    assert [(p["DIRECTION"], p["FRAME_INDEX"]) for p in crosses] == [("OUT", 18), ("IN", 51)]
    assert crosses[0]["COUNTS"] == {"door": {"IN": {}, "OUT": {"motion": 1}}}
    assert crosses[1]["COUNTS"] == {"door": {"IN": {"motion": 1}, "OUT": {"motion": 1}}}
    assert crosses[0]["TRACK_ID"] == crosses[1]["TRACK_ID"]
    assert all(p.image is not None and p.image.shape[1] == vs.WIDTH for p in crosses)
    # the witness shows the line (magenta) and the counted track (red box)
    witness = crosses[0].image
    assert (abs(witness[5:230, 158:163].astype(int) - (255, 0, 255)).sum(axis=2) < 90).any()
    assert (abs(witness.astype(int) - (0, 0, 255)).sum(axis=2) < 90).sum() > 50
    totals = [p for p in result.payloads if p["EVENT"] == "TOTALS"]
    assert len(totals) == (vs.scene_line_both_ways().frames - 1) // (3 * vs.FPS)  # every 3 s of video
    assert totals[-1]["COUNTS"]["door"] == {"IN": {"motion": 1}, "OUT": {"motion": 1}} and totals[-1]["DAY"]
    assert result.errors == []


def test_zone_alert_raises_on_dwell_and_lowers_when_the_object_leaves(plugin_harness: Any) -> None:
    zone = {"NAME": "no-parking", "POINTS": ZONE_POINTS, "DWELL_SECONDS": 2}
    inputs = scene_inputs(vs.scene_zone_stop())
    result = plugin_harness.run("ZONE_ALERT", config={**MOTION, "ZONES": [zone]}, inputs=inputs)
    events = [(p["EVENT"], p["FRAME_INDEX"]) for p in result.payloads]
    assert events == [("DWELL", 37), ("ALERT_END", 61)]  # entry at frame 17 (+2 s), exit at 61-62
    raised, lowered = result.payloads
    assert raised["IS_ALERT"] and raised["IS_NEW_RAISE"] and raised["IS_ALERT_STATUS_CHANGED"]
    assert raised["DWELL_S"] == pytest.approx(2.0) and raised["ZONE"] == "no-parking"
    assert raised["OCCUPANCY"] == {"motion": 1} and raised.image is not None
    assert not lowered["IS_ALERT"] and lowered["IS_NEW_LOWER"] and lowered["OCCUPANCY"] == {}
    assert lowered["LAST_ALERT_DURATION"] == pytest.approx((61 - 37) / vs.FPS)


def test_zone_alert_intrusion_and_crowding(plugin_harness: Any) -> None:
    zones = [
        {"NAME": "fence", "POINTS": ZONE_POINTS},  # neither DWELL_SECONDS nor MAX_COUNT: any entry alerts
        {"NAME": "room", "POINTS": ZONE_POINTS, "MAX_COUNT": 2, "INTRUSION": False},
    ]
    result = plugin_harness.run("ZONE_ALERT", config={**MOTION, "ZONES": zones}, inputs=scene_inputs(vs.scene_crowd()))
    fence = [(p["EVENT"], p["IS_NEW_RAISE"]) for p in result.payloads if p["ZONE"] == "fence"]
    assert fence == [("ENTER", True), ("ENTER", False), ("ENTER", False)]  # one alert, three intruders
    room = [p for p in result.payloads if p["ZONE"] == "room"]
    assert [(p["EVENT"], p["COUNT"], p["IS_NEW_RAISE"]) for p in room] == [("COUNT_ABOVE", 3, True)]


def test_bad_zone_config_is_refused_with_the_entry_named(plugin_harness: Any) -> None:
    zones = [{"NAME": "z", "POINTS": [[0, 0], [1, 1]]}]
    result = plugin_harness.run("ZONE_ALERT", config={**MOTION, "ZONES": zones}, inputs=[], raise_errors=False)
    assert result.errors and result.errors[0].stage == "on_init"
    assert "ZONES[0] (z): POINTS must be a list of at least 3" in str(result.errors[0].exception)
    result = plugin_harness.run("OBJECT_COUNTER", config={"LINES": [LINE]}, inputs=[], raise_errors=False)
    assert "set AI_ENGINE" in str(result.errors[0].exception)


# --- end to end: video file → ONNX detector in a model server → counter; counts survive a restart --------------------
def counter_pipeline(video: Path) -> dict[str, Any]:
    return {
        "NAME": "cam", "TYPE": "VIDEO_FILE", "URL": str(video),
        "PLUGINS": [{"SIGNATURE": "OBJECT_COUNTER", "INSTANCES": [{
            "INSTANCE_ID": "door", "AI_ENGINE": "COLOR_BOXES", "TIME_SOURCE": "video", "LINES": [LINE],
            "CLASSES": ["person"], "REPORT_SECONDS": 0, "PERSIST_SECONDS": 0,
            "STARTUP_AI_ENGINE_PARAMS": {"CLASS_NAMES": ["person"] * 4, "CLASS_IDS": [0] * 4},
        }]}],
    }  # fmt: skip


def run_node(node_factory: Any, video: Path) -> tuple[Any, EmitTap]:
    node = node_factory(plugins={"serving/color_boxes.py": vs.COLOR_BOX_SERVING}, start=False)
    vs.color_box_model(node.layout.models / "color_boxes.onnx", list(vs.COLORS.values()))
    tap = EmitTap()
    node.pm.register(tap, name="test-tap")
    node.start()
    node.add_pipeline(counter_pipeline(video))
    return node, tap


def test_video_through_the_onnx_detector_counts_and_the_day_survives_a_restart(
    node_factory: Any, tmp_path: Path
) -> None:
    video = vs.scene_line_both_ways().write_video(tmp_path / "line.avi")
    node, tap = run_node(node_factory, video)
    wait_for(lambda: len([p for p in tap.payloads if p.data.get("EVENT") == "CROSS"]) >= 2, timeout=60)
    first = [p.data for p in tap.payloads if p.data.get("EVENT") == "CROSS"]
    assert [(p["DIRECTION"], p["CLASS_NAME"]) for p in first] == [("OUT", "person"), ("IN", "person")]
    assert abs(first[0]["FRAME_INDEX"] - 18) <= 1 and abs(first[1]["FRAME_INDEX"] - 51) <= 1
    state = node.layout.output / "cam" / "OBJECT_COUNTER_door" / "counters.json"
    wait_for(lambda: state.is_file() and json.loads(state.read_text())["COUNTS"]["door"]["IN"] == {"person": 1})
    node.stop("restart")

    node, tap = run_node(node_factory, video)  # same local cache: the day's totals come back
    wait_for(lambda: len([p for p in tap.payloads if p.data.get("EVENT") == "CROSS"]) >= 2, timeout=60)
    second = [p.data for p in tap.payloads if p.data.get("EVENT") == "CROSS"]
    assert second[-1]["COUNTS"]["door"] == {"IN": {"person": 2}, "OUT": {"person": 2}}


# --- event clips -----------------------------------------------------------------------------------------------------
def test_zone_alert_keeps_a_clip_of_the_seconds_around_the_alert(plugin_harness: Any) -> None:
    import cv2

    zone = {"NAME": "no-parking", "POINTS": ZONE_POINTS, "DWELL_SECONDS": 2}
    config = {**MOTION, "ZONES": [zone], "CLIP_SECONDS_BEFORE": 1.0, "CLIP_SECONDS_AFTER": 1.5, "CLIP_WIDTH": 160}
    result = plugin_harness.run("ZONE_ALERT", config=config, inputs=scene_inputs(vs.scene_zone_stop()))
    raised = next(p for p in result.payloads if p["EVENT"] == "DWELL")
    clip = next(p for p in result.payloads if p["EVENT"] == "CLIP")
    assert clip["CLIP_ID"] == raised["CLIP_ID"] and clip["ZONE"] == "no-parking" and clip["ALERT_EVENT"] == "DWELL"
    assert clip["CLIP_START"] == pytest.approx(3.7 - 1.0)  # DWELL at frame 37 (3.7 s of video), 1 s of pre-roll
    assert clip["CLIP_SECONDS"] == pytest.approx(2.5) and clip["CLIP_FRAMES"] == 26 and clip["CLIP_FRAMES_SKIPPED"] == 0
    path = Path(clip["CLIP_URL"])
    assert path.name == clip["CLIP_ID"] and path.stat().st_size == clip["CLIP_BYTES"]
    video = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame)
    video.release()
    assert len(frames) == 26 and frames[0].shape == (120, 160, 3)
    # the object (cyan, drawn at x 228..252 of 320 while it stands still) is in the clip's middle frame
    middle = frames[13]
    assert (abs(middle[:, 114:126].astype(int) - (255, 255, 0)).sum(axis=2) < 120).sum() > 20


def test_alert_clip_is_uploaded_through_the_s3_queue(s3_server: Any, node_factory: Any, tmp_path: Path) -> None:
    import hashlib

    video = vs.scene_zone_stop().write_video(tmp_path / "zone.avi")
    node = node_factory(environ=dict(s3_server.env), start=False)
    tap = EmitTap()
    node.pm.register(tap, name="test-tap")
    node.start()
    zone = {"NAME": "no-parking", "POINTS": ZONE_POINTS, "DWELL_SECONDS": 2}
    node.add_pipeline({
        "NAME": "cam", "TYPE": "VIDEO_FILE", "URL": str(video),
        "PLUGINS": [{"SIGNATURE": "ZONE_ALERT", "INSTANCES": [{
            "INSTANCE_ID": "lot", **MOTION, "ZONES": [zone], "CLIP_SECONDS_BEFORE": 1, "CLIP_SECONDS_AFTER": 1}]}],
    })  # fmt: skip
    clip = wait_for(lambda: next((p.data for p in tap.payloads if p.data.get("EVENT") == "CLIP"), None), timeout=30)
    (local,) = (node.layout.output / "cam" / "ZONE_ALERT_lot" / "files").glob("*.mp4")
    data = local.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert clip["CLIP_URL"].split("?")[0].endswith(f"/{s3_server.bucket}/{sha}.mp4")
    assert clip["CLIP_BYTES"] == len(data) and local.name == clip["CLIP_ID"]
    wait_for(lambda: node.storage.snapshot()["pending"] == 0, timeout=30)
    assert s3_server.get(f"{sha}.mp4") == data
    raised = next(p for p in tap.payloads if p.data.get("EVENT") == "DWELL")
    assert raised.data["CLIP_ID"] == clip["CLIP_ID"] and raised.image_url  # the witness image went the same way


# --- live overlay on the status page ----------------------------------------------------------------------------------
PALETTE = ((60, 180, 75), (255, 130, 0), (0, 130, 255), (200, 60, 200), (0, 200, 200), (128, 128, 255))  # track boxes


def test_status_page_shows_the_live_annotated_frame(node_factory: Any, tmp_path: Path) -> None:
    import urllib.request

    import cv2
    import numpy as np
    from mqtt_broker import free_port

    video = vs.scene_line_both_ways().write_video(tmp_path / "line.avi")
    node = node_factory(environ={"EE_STATUS_PORT": str(free_port())})
    node.add_pipeline({
        "NAME": "cam", "TYPE": "VIDEO_FILE", "URL": str(video), "REALTIME": True, "LOOP": True,
        "PLUGINS": [{"SIGNATURE": "OBJECT_COUNTER", "INSTANCES": [{
            "INSTANCE_ID": "door", **MOTION, "LINES": [LINE], "EVENT_PAYLOADS": False, "LIVE_OVERLAY_SECONDS": 0.2}]}],
    })  # fmt: skip
    url = f"http://127.0.0.1:{node.observe.port()}/api/witness/cam/OBJECT_COUNTER_door"

    def frame_with_a_track() -> Any:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                image = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
        except OSError:
            return None
        line = (abs(image[5:230, 157:164].astype(int) - (255, 0, 255)).sum(axis=2) < 120).sum() > 50
        boxes = [c for c in PALETTE if (abs(image.astype(int) - c).sum(axis=2) < 90).sum() > 30]
        return [image] if line and boxes else None  # (a list: wait_for tests the result's truth)

    (first,) = wait_for(frame_with_a_track, timeout=30, interval=0.2)  # the line and a tracked box with its id
    assert first.shape == (vs.HEIGHT, vs.WIDTH, 3)
    # refreshed live: the object moves, so a later view differs
    wait_for(lambda: (lambda later: later is not None and not np.array_equal(later[0], first))(frame_with_a_track()),
             timeout=10, interval=0.2)  # fmt: skip


def test_detections_from_any_serving_result_and_a_malformed_one_is_named(plugin_harness: Any) -> None:
    import numpy as np

    frame = np.zeros((vs.HEIGHT, vs.WIDTH, 3), np.uint8)
    good = [Input(image=frame, seq=f + 1, metadata={"frame_index": f, "fps": 10},
                  inferences={"MY_DETECTOR": [{"box": [np.float32(20 + 10 * f), 100, np.float32(40 + 10 * f), 140],
                                               "score": np.float32(0.9), "class_id": 0, "class_name": "person"}]})
            for f in range(25)]  # fmt: skip
    bad = Input(image=frame, seq=26, inferences={"MY_DETECTOR": [{"box": [1, 2, 3], "score": 0.9}]})
    config = {"DETECTIONS_FROM": "MY_DETECTOR", "TIME_SOURCE": "video", "LINES": [LINE]}
    result = plugin_harness.run("OBJECT_COUNTER", config=config, inputs=[*good, bad], raise_errors=False)
    assert [(p["EVENT"], p["DIRECTION"], p["CLASS_NAME"]) for p in result.payloads] == [("CROSS", "OUT", "person")]
    (error,) = result.errors
    assert error.stage == "process" and error.input_seq == 26
    assert "MY_DETECTOR gave a malformed detection #0" in str(error.exception) and "[x1, y1, x2, y2]" in str(error)


def test_counts_start_again_at_midnight_utc_after_a_last_totals_of_the_day(
    plugin_harness: Any, edge_plugin_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the class's own module globals (other tests' nodes may have loaded the module again under the same name)
    module = edge_plugin_registry.get("business", "OBJECT_COUNTER").cls.on_events.__globals__
    monkeypatch.setitem(module, "_utc_day", lambda: "2026-12-07")
    inputs = scene_inputs(vs.scene_line_both_ways())
    with plugin_harness.start("OBJECT_COUNTER", config={**MOTION, "LINES": [LINE], "REPORT_SECONDS": 0}) as session:
        crossed = session.feed(inputs[:40])  # the first crossing (frame 18)
        assert [(p["EVENT"], p["DAY"]) for p in crossed] == [("CROSS", "2026-12-07")]
        monkeypatch.setitem(module, "_utc_day", lambda: "2026-12-08")
        after = session.feed(inputs[40:])  # midnight passes, then the way back (frame 51)
        closed, back = after
        assert closed["EVENT"] == "TOTALS" and closed["DAY_CLOSED"] and closed["DAY"] == "2026-12-07"
        assert closed["COUNTS"]["door"]["OUT"] == {"motion": 1}
        assert back["EVENT"] == "CROSS" and back["DAY"] == "2026-12-08"
        assert back["COUNTS"]["door"] == {"IN": {"motion": 1}, "OUT": {}}
        assert session.command("COUNTS")["DAY"] == "2026-12-08"


def test_clip_encoder_is_bounded_at_close_and_never_outlives_its_instance() -> None:
    import numpy as np

    from edge_engine.api import ClipRecorder

    frame = np.random.default_rng(0).integers(0, 255, (540, 960, 3), np.uint8)  # noise: slow to encode
    recorder = ClipRecorder(pre_seconds=10, post_seconds=0, max_width=960, max_ring_bytes=2**30)
    for index in range(100):
        recorder.add(frame, index / 25)
    recorder.trigger("long.mp4", 100 / 25)
    recorder.add(frame, 101 / 25)  # post-roll done: the clip goes to the encoder (seconds of work)
    started = time.monotonic()
    clips = recorder.close(timeout=0.1)
    assert time.monotonic() - started < 1.5  # it stopped at a frame boundary instead of finishing 100 frames
    assert recorder._thread is None and clips == []
    small = ClipRecorder(pre_seconds=1, post_seconds=0.2, max_width=64)
    for index in range(12):
        small.add(frame[:64, :64], index / 10)
        if index == 5:
            small.trigger("short.mp4", 0.5, ZONE="z")
    (clip,) = small.close()
    assert clip.name == "short.mp4" and clip.tags == {"ZONE": "z"} and clip.data[4:8] == b"ftyp"  # an MP4
    assert clip.start == 0.0 and clip.frames == 8  # frames 0..7: 0.5 s before and 0.2 s after


def test_live_update_of_lines_keeps_the_counts_of_lines_that_keep_their_name(plugin_harness: Any) -> None:
    inputs = scene_inputs(vs.scene_line_both_ways())
    config = {**MOTION, "LINES": [LINE], "REPORT_SECONDS": 0, "EVENT_PAYLOADS": True}
    with plugin_harness.start("OBJECT_COUNTER", config=config) as session:
        assert [p["DIRECTION"] for p in session.feed(inputs[:40])] == ["OUT"]
        moved = {"NAME": "door", "POINTS": [[0.55, 0.0], [0.55, 1.0]]}  # same name, moved a little
        session.update_config(LINES=[moved, {"NAME": "side", "POINTS": [[0.2, 0.0], [0.2, 1.0]]}])
        back = session.feed(inputs[40:])
        assert [(p["REGION"], p["DIRECTION"]) for p in back] == [("door", "IN"), ("side", "IN")]
        assert {p["TRACK_ID"] for p in back} == {1}
        assert back[-1]["COUNTS"] == {"door": {"IN": {"motion": 1}, "OUT": {"motion": 1}},
                                      "side": {"IN": {"motion": 1}, "OUT": {}}}  # fmt: skip


def test_tracks_and_region_state_survive_a_live_update(plugin_harness: Any) -> None:
    from edge_engine.api import ZoneAnalyticsPlugin

    class TrackProbe(ZoneAnalyticsPlugin):
        SIGNATURE = "TRACK_PROBE"

        def on_command(self, command: Any, **params: Any) -> Any:
            return {"tracks": [t.track_id for t in self.tracker.tracks], "occupancy": self.monitor.occupancy()}

    inputs = scene_inputs(vs.scene_zone_stop())
    zone = {"NAME": "z", "POINTS": ZONE_POINTS}
    with plugin_harness.start(TrackProbe, config={**MOTION, "ZONES": [zone]}) as session:
        session.feed(inputs[:30])  # the object walked in (frame 17) and stands inside
        assert session.command("STATUS") == {"tracks": [1], "occupancy": {"z": {"motion": 1}}}
        session.update_config(ZONES=[zone, {"NAME": "other", "POINTS": [[0, 0], [50, 0], [50, 50]]}])
        # the same track, still inside "z" (no second ENTER), and the new zone starts empty
        assert session.command("STATUS") == {"tracks": [1], "occupancy": {"z": {"motion": 1}, "other": {}}}


def test_clips_are_bounded_by_the_output_size_limit(node_factory: Any, tmp_path: Path) -> None:
    from edge_engine.node.disk_bounds import folder_files

    video = vs.scene_zone_stop().write_video(tmp_path / "zone.avi")
    node = node_factory(environ={"EE_OUTPUT_MAX_MB": "0.12"})
    zone = {"NAME": "lot", "POINTS": ZONE_POINTS, "DWELL_SECONDS": 1}
    node.add_pipeline({
        "NAME": "cam", "TYPE": "VIDEO_FILE", "URL": str(video), "LOOP": True,
        "PLUGINS": [{"SIGNATURE": "ZONE_ALERT", "INSTANCES": [{
            "INSTANCE_ID": "lot", **MOTION, "ZONES": [zone], "CLIP_SECONDS_BEFORE": 2, "CLIP_SECONDS_AFTER": 2,
            "LIVE_OVERLAY_SECONDS": 0, "WITNESS": False}]}],
    })  # fmt: skip
    files = node.layout.output / "cam" / "ZONE_ALERT_lot" / "files"
    # one clip per loop of the video (a looping file's video time keeps increasing), about 7.5 KB each
    wait_for(lambda: len(list(files.glob("*.mp4"))) + node.disk.pruned_files >= 25, timeout=90)
    node.pipelines["cam"].stop()
    node.pipelines["cam"].join(time.monotonic() + 5)
    node.disk.prune_output()
    assert sum(size for _, size, _ in folder_files(node.layout.output)) <= 0.12 * 2**20
    kept = sorted(files.glob("*.mp4"), key=lambda p: p.stat().st_mtime)
    assert node.disk.pruned_files > 0 and 3 <= len(kept) < 25  # the oldest clips went first, the newest stayed
    payloads = [json.loads(line)["data"] for line in (files.parent / "payloads.jsonl").read_text().splitlines()]
    assert kept[-1].name == [p["CLIP_ID"] for p in payloads if p.get("EVENT") == "CLIP"][-1]


def test_the_documented_pipelines_are_valid_and_their_zones_parse(edge_plugin_registry: Any) -> None:
    import re

    from edge_engine.api import parse_regions
    from edge_engine.config.pipelines import validate_pipeline

    text = (Path(__file__).resolve().parent.parent / "docs" / "analytics.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.DOTALL) if '"PLUGINS"' in b]
    assert {b["PLUGINS"][0]["SIGNATURE"] for b in blocks} == {"OBJECT_COUNTER", "ZONE_ALERT"}
    for block in blocks:
        spec, issues = validate_pipeline(block, edge_plugin_registry)
        assert issues == [] and spec is not None, issues
        (instance,) = spec.instances
        assert parse_regions(instance.config["ZONES"], "zone") or parse_regions(instance.config["LINES"], "line")
