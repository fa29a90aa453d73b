"""Cascades (decision 35): a second model on the boxes of a first, in the shared model servers, real processes and
real onnxruntime on models built here with ``onnx``.

The first stage, ``TILE_DETECTOR``, runs a real ONNX graph on the frame and returns a grid of boxes (the tiles
``TILE_FRAMES`` paints, each one uniform colour that changes every frame), best score first. The second stage is
the built-in ``ONNX`` plugin on the mean-colour model: a crop's result is its mean colour, so every result can be
checked against the tile its box covers: a result aligned with the wrong box, or coming from another frame or
pipeline, has the wrong colour.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest
from conftest import instance_state, pipeline_finished, wait_for
from onnx_models import mean_model

from edge_engine.errors import ConfigError
from edge_engine.serving.cascade import (
    CascadeSpec,
    CropBatch,
    CropSlots,
    crop_box,
    crop_detection,
    crop_quad,
    crop_text_line,
    select_boxes,
)
from edge_engine.serving.frame_slots import FrameReader, ShmStatus

pytest.importorskip("onnxruntime", reason="model serving needs onnxruntime (requirements.txt)")

TILE_FRAMES = """
    import numpy as np
    from edge_engine.api import CapturePlugin, EndOfStream, Input, Key


    def tile_colour(frame, tile):
        value = (frame * 37 + tile * 11) % 200 + 20
        return (value, (value + 60) % 256, (value + 120) % 256)


    class TileFrames(CapturePlugin):
        SIGNATURE = "TILE_FRAMES"
        CONFIG = {"COLS": Key(4, type=int), "ROWS": Key(3, type=int), "TILE": Key(16, type=int),
                  "COUNT": Key(20, type=int), "BASE": Key(0, type=int)}

        def connect(self):
            self.index = 0

        def read(self):
            if self.index >= self.config["COUNT"]:
                raise EndOfStream("done")
            self.index += 1
            cols, rows, tile = self.config["COLS"], self.config["ROWS"], self.config["TILE"]
            frame = np.empty((rows * tile, cols * tile, 3), np.uint8)
            for number in range(cols * rows):
                y, x = divmod(number, cols)
                frame[y * tile:(y + 1) * tile, x * tile:(x + 1) * tile] = tile_colour(self.config["BASE"] + self.index,
                                                                                     number)
            return Input(image=frame)
"""

TILE_DETECTOR = """
    from edge_engine.api import Key, OnnxServingPlugin, make_detection


    class TileDetector(OnnxServingPlugin):
        SIGNATURE = "TILE_DETECTOR"
        CONFIG = {"COLS": Key(4, type=int), "ROWS": Key(3, type=int), "TILE": Key(16, type=int),
                  "MAX_BATCH_SIZE": Key(4, type=int, min=1), "WORKERS": Key(1, type=int, min=0)}

        @classmethod
        def model_file(cls, config, models_dir):
            return models_dir / "tiles.onnx"

        def pre_process(self, inputs):
            import cv2
            import numpy as np

            return np.stack([cv2.resize(i.image, (8, 8)).transpose(2, 0, 1).astype(np.float32) for i in inputs])

        def post_process(self, predictions, inputs):
            cols, rows, tile = self.config["COLS"], self.config["ROWS"], self.config["TILE"]
            count = cols * rows
            results = []
            for _ in inputs:  # one box per tile, scores decreasing with the tile's number
                dets = []
                for number in range(count):
                    y, x = divmod(number, cols)
                    box = [x * tile, y * tile, (x + 1) * tile, (y + 1) * tile]
                    quad = [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]
                    dets.append(make_detection(box, 1.0 - number / (count + 1), number % 2, ("even", "odd")[number % 2],
                                               quad=quad if count <= 100 else None))
                results.append(dets)
            return results
"""

FAILING = """
    from edge_engine.api import Key, ServingPlugin


    class FailingCrops(ServingPlugin):
        SIGNATURE = "FAILING_CROPS"
        CONFIG = {"WORKERS": Key(1, type=int, min=0)}

        def pre_process(self, inputs):
            raise RuntimeError(f"cannot read {len(inputs)} crop(s)")

        def predict(self, batch):
            return batch

        def post_process(self, predictions, inputs):
            return predictions
"""

CHECKER = """
    import numpy as np
    from edge_engine.api import BusinessPlugin, Key, ServingError, crop_detection


    class CascadeChecker(BusinessPlugin):
        SIGNATURE = "CASCADE_CHECKER"
        CONFIG = {"AI_ENGINE": ["TILE_DETECTOR"], "NAMES": Key(["ONNX"], type=list), "CALL": Key({}, type=dict),
                  "OWN": Key({}, type=dict)}
        BY_PIPELINE = {}

        @classmethod
        def cascades(cls, config):
            own = config["OWN"]
            if own.get("RAISE"):
                raise KeyError("OWN_PARAMS")
            return [*super().cascades(config), own] if own else super().cascades(config)

        def on_init(self):
            type(self).BY_PIPELINE[self.context.pipeline] = self
            self.frames = 0
            self.results = {name: 0 for name in self.config["NAMES"]}
            self.nones = {name: [] for name in self.config["NAMES"]}
            self.errors = {name: [] for name in self.config["NAMES"]}
            self.wrong = []
            self.called = []
            self.seconds = []

        def process(self, inp):
            dets = inp.inferences["TILE_DETECTOR"]
            assert isinstance(dets, list) and dets, dets
            self.frames += 1
            for name in self.config["NAMES"]:
                values = inp.inferences.get(name)
                if values is None:  # a frame in flight when a live update added the cascade
                    self.missing = getattr(self, "missing", 0) + 1
                    continue
                for store in (self.results, self.nones, self.errors):
                    store.setdefault(name, 0 if store is self.results else [])
                assert len(values) == len(dets), (name, len(values), len(dets))
                for index, (det, value) in enumerate(zip(dets, values)):
                    assert "cascade" not in det  # the detections stay as the detector made them
                    if value is None:
                        self.nones[name].append(index)
                    elif isinstance(value, ServingError):
                        self.errors[name].append((index, value.kind, value.signature))
                    else:
                        self.check(inp.image, det, value["mean"], (inp.seq, name, index))
                        self.results[name] += 1
            if self.config["CALL"]:
                self.call(inp, dets)

        def check(self, image, det, mean, where):
            x1, y1, x2, y2 = (int(v) for v in det["box"])
            expected = image[(y1 + y2) // 2, (x1 + x2) // 2].astype(float)
            if np.abs(np.asarray(mean, float) - expected).max() > 0.01:
                self.wrong.append((where, list(mean), expected.tolist()))

        def call(self, inp, dets):
            call = self.config["CALL"]
            crops = [crop_detection(inp.image, d, mode="quad") for d in dets[: call["COUNT"]]]
            started = __import__("time").perf_counter()
            try:
                values = self.infer(call["SIGNATURE"], crops, params=call["PARAMS"])
            except ValueError as exc:
                self.called.append(("ValueError", str(exc)))
                return
            self.seconds.append(__import__("time").perf_counter() - started)
            assert len(values) == len(crops)
            for index, (det, value) in enumerate(zip(dets, values)):
                if isinstance(value, ServingError):
                    self.called.append((index, value.kind))
                else:
                    self.check(inp.image, det, value["mean"], (inp.seq, "infer", index))
                    self.called.append((index, "ok"))
"""

PLUGINS = {
    "data/tile_frames.py": TILE_FRAMES,
    "serving/tile_detector.py": TILE_DETECTOR,
    "serving/failing.py": FAILING,
    "business/checker.py": CHECKER,
}
MEAN = {"ONNX_MODEL": "mean.onnx", "INPUT_WIDTH": 8, "INPUT_HEIGHT": 8, "COLOR_ORDER": "BGR", "SCALE": 1.0,
        "WORKERS": 1, "MAX_BATCH_SIZE": 16}  # fmt: skip


def pipeline(name: str, cascades: list[dict[str, Any]], capture: dict[str, Any] | None = None,
             **instance: Any) -> dict[str, Any]:  # fmt: skip
    grid = {k: v for k, v in (capture or {}).items() if k in ("COLS", "ROWS", "TILE")}
    return {
        "NAME": name, "TYPE": "TILE_FRAMES", **(capture or {}),
        "PLUGINS": [{"SIGNATURE": "CASCADE_CHECKER", "INSTANCES": [
            {"INSTANCE_ID": "check", "STARTUP_AI_ENGINE_PARAMS": grid, "CASCADE": cascades, **instance}]}],
    }  # fmt: skip


def crop_segments() -> list[str]:
    """This process's cascade crop segments still in /dev/shm."""
    prefix = f"eec{os.getpid()}_"
    return [name for name in os.listdir("/dev/shm") if name.startswith(prefix)] if os.path.isdir("/dev/shm") else []


@pytest.fixture
def cascade_node(node_factory: Any) -> Any:
    node = node_factory(plugins=PLUGINS, start=False)
    mean_model(node.layout.models / "mean.onnx")
    mean_model(node.layout.models / "tiles.onnx", 8, 8)
    node.start()
    return node


# --- in the node ---------------------------------------------------------------------------------------------------
def test_pipelines_share_the_servers_and_every_crop_result_is_its_own_box(cascade_node: Any) -> None:
    node = cascade_node
    cascade = {"SIGNATURE": "ONNX", "CLASSES": ["even"], "MIN_SCORE": 0.2, "MAX_CROPS": 8, "PARAMS": MEAN}
    names = [f"cam{i}" for i in range(3)]
    for index, name in enumerate(names):
        node.add_pipeline(pipeline(name, [cascade], {"COUNT": 30, "BASE": 100 * index}))
    # a fourth pipeline runs the same model (same config) on whole frames AND as a cascade: still the same server
    whole = {**cascade, "ON": "TILE_DETECTOR", "AS": "CROPS"}
    engines = {"AI_ENGINE": ["TILE_DETECTOR", "ONNX"], "STARTUP_AI_ENGINE_PARAMS": {"ONNX": MEAN}}
    node.add_pipeline(pipeline("cam3", [whole], {"COUNT": 30, "BASE": 7}, NAMES=["CROPS"], **engines))
    wait_for(lambda: all(pipeline_finished(node, n) for n in [*names, "cam3"]), timeout=90)
    whole_frames = instance_state(node, "cam3")
    assert whole_frames.frames == 30 and whole_frames.wrong == [] and whole_frames.results["CROPS"] == 30 * 6
    for name in names:
        rec = instance_state(node, name)
        assert rec.frames == 30 and rec.wrong == [] and rec.errors["ONNX"] == [], name
        # 12 tiles scoring 1 - n/13 (all >= 0.2): the 6 even ones are cropped, odd tiles never
        assert rec.results["ONNX"] == 30 * 6, name
        assert all(index % 2 == 1 for index in rec.nones["ONNX"]), name
    servers = {s.signature: s for s in node.serving.servers()}
    assert sorted(servers) == ["ONNX", "TILE_DETECTOR"]  # one server per model, whatever the number of pipelines
    assert len(node.serving.pids()) == 2  # one process (model copy) each
    crops = servers["ONNX"].snapshot()
    assert crops["results"] == 4 * 30 * 6 + 30 and crops["errors"] == 0  # the crops of 4 pipelines and 30 frames
    # a frame has 6 crops: a bigger batch holds crops of several frames (of one pipeline or more)
    assert max(int(size) for size in crops["batch_sizes"]) > 6, crops["batch_sizes"]
    assert crop_segments() == []  # the finished pipelines unlinked their crops' shared memory


def test_a_failing_second_stage_marks_its_boxes_never_the_frame(cascade_node: Any) -> None:
    node = cascade_node
    cascades = [
        {"SIGNATURE": "FAILING_CROPS", "AS": "BAD", "CLASSES": ["odd"]},
        {"SIGNATURE": "ONNX", "AS": "GOOD", "MAX_CROPS": 4, "PARAMS": MEAN},
    ]
    node.add_pipeline(pipeline("cam", cascades, {"COUNT": 10}, NAMES=["BAD", "GOOD"]))
    wait_for(lambda: pipeline_finished(node, "cam"), timeout=60)
    rec = instance_state(node, "cam")
    assert rec.frames == 10 and rec.wrong == []  # every frame reached the instance
    assert len(rec.errors["BAD"]) == 10 * 6  # each odd box of each frame is marked...
    assert {(index % 2, kind, sig) for index, kind, sig in rec.errors["BAD"]} == {(1, "inference_error",
                                                                                    "FAILING_CROPS")}  # fmt: skip
    assert rec.results["GOOD"] == 10 * 4 and rec.errors["GOOD"] == []  # ...and the other cascade is not affected
    stage = node.pipelines["cam"].serving
    assert stage.errors == 0 and stage.cascade_errors == 10 * 6  # counted (local_info.json shows them)


def test_a_frame_with_5000_boxes_sends_max_crops_and_keeps_flowing(cascade_node: Any) -> None:
    node = cascade_node
    grid = {"COLS": 100, "ROWS": 50, "TILE": 4}
    cascade = {"SIGNATURE": "ONNX", "MAX_CROPS": 16, "PARAMS": MEAN}
    started = time.monotonic()
    node.add_pipeline(pipeline("crowd", [cascade], {"COUNT": 10, **grid}))
    wait_for(lambda: pipeline_finished(node, "crowd"), timeout=90)
    rec = instance_state(node, "crowd")
    assert rec.frames == 10 and rec.wrong == [] and rec.errors["ONNX"] == []
    assert rec.results["ONNX"] == 10 * 16  # the 16 best boxes of each frame (tiles 0-15), no more
    assert len(rec.nones["ONNX"]) == 10 * (5000 - 16) and min(rec.nones["ONNX"]) == 16
    stage = node.pipelines["crowd"].serving
    assert stage.cascade_crops == 10 * 16 and stage.cascade_skipped == 10 * (5000 - 16)
    print(f"10 frames of 5,000 boxes: {time.monotonic() - started:.1f} s")


def test_crops_go_through_pipes_when_shared_memory_is_too_small(node_factory: Any, monkeypatch: Any) -> None:
    small = ShmStatus(False, 64 * 2**20, 60 * 2**20, "/dev/shm is 64 MB: frames go through pipes")
    monkeypatch.setattr("edge_engine.serving.manager.check_shm", lambda: small)
    node = node_factory(plugins=PLUGINS, start=False)
    mean_model(node.layout.models / "mean.onnx")
    mean_model(node.layout.models / "tiles.onnx", 8, 8)
    node.start()
    node.add_pipeline(pipeline("piped", [{"SIGNATURE": "ONNX", "PADDING": 0.0, "PARAMS": MEAN}], {"COUNT": 5}))
    wait_for(lambda: pipeline_finished(node, "piped"), timeout=60)
    rec = instance_state(node, "piped")
    assert rec.frames == 5 and rec.wrong == [] and rec.errors["ONNX"] == [] and rec.results["ONNX"] == 5 * 12
    assert crop_segments() == []  # none was made


def test_a_live_update_adds_and_removes_a_cascade(cascade_node: Any) -> None:
    node = cascade_node
    node.add_pipeline(pipeline("live", [], {"COUNT": 100000}, NAMES=[]))
    rec = wait_for(lambda: instance_state(node, "live"), timeout=20)
    wait_for(lambda: rec.frames >= 3, timeout=30)
    cascade = {"SIGNATURE": "ONNX", "CLASSES": ["odd"], "PARAMS": MEAN}
    node.add_pipeline(pipeline("live", [cascade], {"COUNT": 100000}, NAMES=["ONNX"]))  # the same pipeline, updated
    wait_for(lambda: rec.results.get("ONNX", 0) >= 60, timeout=30)
    assert rec.wrong == [] and rec.errors["ONNX"] == [] and node.pipelines["live"].serving.cascade_crops >= 60
    (server,) = [s for s in node.serving.servers() if s.signature == "ONNX"]
    assert server.client_count == 1
    node.add_pipeline(pipeline("live", [], {"COUNT": 100000}, NAMES=[]))  # and removed again: its client goes
    wait_for(lambda: server.client_count == 0, timeout=30)
    assert rec.wrong == [] and node.pipelines["live"].instances  # the pipeline kept running throughout
    node.remove_pipeline("live")


def test_a_business_plugin_runs_a_model_on_its_own_crops(cascade_node: Any) -> None:
    node = cascade_node
    call = {"SIGNATURE": "ONNX", "COUNT": 5, "PARAMS": MEAN}
    node.add_pipeline(pipeline("calls", [], {"COUNT": 8}, NAMES=[], CALL=call))
    node.add_pipeline(pipeline("typo", [], {"COUNT": 2}, NAMES=[], CALL={**call, "SIGNATURE": "ONX"}))
    failing = {"SIGNATURE": "FAILING_CROPS", "COUNT": 3, "PARAMS": {}}
    node.add_pipeline(pipeline("failing", [], {"COUNT": 2}, NAMES=[], CALL=failing))
    wait_for(lambda: all(pipeline_finished(node, n) for n in ("calls", "typo", "failing")), timeout=60)
    assert instance_state(node, "failing").called == [(i, "inference_error") for _ in range(2) for i in range(3)]
    rec = instance_state(node, "calls")
    assert rec.wrong == [] and rec.called == [(i, "ok") for _ in range(8) for i in range(5)]
    (error,) = set(instance_state(node, "typo").called)
    assert error[0] == "ValueError" and "'ONX'" in error[1] and "did you mean 'ONNX'" in error[1]
    # the calls used the same shared server as any pipeline would
    assert [s.signature for s in node.serving.servers()].count("ONNX") == 1


def test_cascade_config_errors_name_the_place(cascade_node: Any) -> None:
    node = cascade_node
    bad = [
        ({"SIGNATURE": "ONNX", "MIN_SCORE": 2, "PARAMS": MEAN}, "entry 0 (ONNX) › key 'MIN_SCORE': must be <= 1"),
        ({"SIGNATURE": "ONX", "PARAMS": MEAN}, "no serving plugin has the signature 'ONX'; did you mean 'ONNX'?"),
        ({"SIGNATURE": "ONNX", "ON": "YOLO", "PARAMS": MEAN}, "key 'ON': 'YOLO' is not in the instance's AI_ENGINE"),
        ({"SIGNATURE": "ONNX", "PARAMS": {**MEAN, "ONNX_MODEL": "gone.onnx"}}, "'gone.onnx': file not found"),
        ({"SIGNATURE": "ONNX", "PARAMS": {**MEAN, "INPUT_WIDHT": 8}}, "did you mean 'INPUT_WIDTH'?"),
        ({"SIGNATURE": "ONNX", "AS": "TILE_DETECTOR", "PARAMS": MEAN}, "'TILE_DETECTOR' is already an AI_ENGINE"),
        ({"SIGNATURE": "ONNX", "MAX_CROP": 3, "PARAMS": MEAN}, "did you mean 'MAX_CROPS'?"),
    ]
    for cascade, expected in bad:
        with pytest.raises(ConfigError) as caught:
            node.add_pipeline(pipeline("bad", [cascade]))
        text = str(caught.value)
        assert "pipeline 'bad' › plugin 'CASCADE_CHECKER' › instance 'check' › key 'CASCADE'" in text, text
        assert expected in text, text
    assert "bad" not in node.pipelines


def test_a_plugin_declares_its_own_cascade_from_its_config(cascade_node: Any) -> None:
    node = cascade_node
    own = {"SIGNATURE": "ONNX", "AS": "MEANS", "CLASSES": ["even"], "COLOCATE": True, "PARAMS": MEAN}
    node.add_pipeline(pipeline("own", [], {"COUNT": 10}, NAMES=["MEANS"], OWN=own))
    wait_for(lambda: pipeline_finished(node, "own"), timeout=90)
    rec = instance_state(node, "own")
    assert rec.frames == 10 and rec.wrong == [] and rec.results["MEANS"] == 10 * 6 and rec.errors["MEANS"] == []
    assert [s.signature for s in node.serving.servers()] == ["TILE_DETECTOR"]  # co-located: no server of its own
    with pytest.raises(ConfigError) as caught:  # the plugin's entries are checked like declared ones
        node.add_pipeline(pipeline("own2", [], NAMES=["MEANS"], OWN={**own, "MIN_SCORE": 2}))
    assert "instance 'check' › key 'CASCADE': entry 0 (ONNX) › key 'MIN_SCORE': must be <= 1" in str(caught.value)
    with pytest.raises(ConfigError) as caught:  # a plugin's cascades() that raises refuses its pipeline, clearly
        node.add_pipeline(pipeline("own3", [], OWN={"RAISE": True}))
    assert "key 'CASCADE': the plugin's cascades() raised KeyError: 'OWN_PARAMS'" in str(caught.value)
    assert "own2" not in node.pipelines and "own3" not in node.pipelines


# --- pieces ----------------------------------------------------------------------------------------------------------
def spec(**kw: Any) -> CascadeSpec:
    base = {"name": "X", "on": "D", "engine": None, "classes": (), "min_score": 0.0, "padding": 0.0,
            "max_crops": 32, "crop": "box", "max_side": 0}  # fmt: skip
    return CascadeSpec(**{**base, **kw})


def test_select_boxes_filters_then_keeps_the_best_in_list_order() -> None:
    rows = [(0.9, 0, "car"), (0.3, 1, "bus"), (0.95, 0, "car"), (0.5, 0, "car"), (0.7, 1, "bus")]
    dets = [{"box": [0, 0, 1, 1], "score": s, "class_id": c, "class_name": n} for s, c, n in rows]
    assert select_boxes(dets, spec()) == ([0, 1, 2, 3, 4], 0)
    assert select_boxes(dets, spec(classes=("car",))) == ([0, 2, 3], 0)
    assert select_boxes(dets, spec(classes=("1",))) == ([1, 4], 0)  # ids work too
    assert select_boxes(dets, spec(min_score=0.6, max_crops=2)) == ([0, 2], 1)  # 0.95 and 0.9; 0.7 left out
    many = [{"box": [0, 0, 1, 1], "score": (i * 7919) % 5000 / 5000, "class_id": 0, "class_name": "x"}
            for i in range(5000)]  # fmt: skip
    chosen, skipped = select_boxes(many, spec(max_crops=10))
    assert skipped == 4990 and len(chosen) == 10 and chosen == sorted(chosen)
    assert min(many[i]["score"] for i in chosen) >= sorted(d["score"] for d in many)[-10]


def test_crops_are_clipped_padded_downscaled_and_warped() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 40:120] = 200
    assert crop_box(image, [40, 20, 120, 60]).shape == (40, 80, 3) and crop_box(image, [40, 20, 120, 60]).min() == 200
    assert crop_box(image, [40, 20, 120, 60], padding=0.1).shape == (48, 96, 3)  # 8 and 4 px more on each side
    assert crop_box(image, [-50, -50, 500, 500]).shape == (100, 200, 3)  # clipped to the frame
    assert crop_box(image, [199.5, 99.5, 300, 300]).shape == (1, 1, 3)  # never empty
    assert crop_box(image, [0, 0, 200, 100], max_side=50).shape == (25, 50, 3)
    # a rotated rectangle: the warp gives it upright, the right size, and only its own pixels
    rotated = np.zeros((200, 200, 3), np.uint8)
    quad = [[60, 40], [140, 80], [120, 120], [40, 80]]  # clockwise from the top-left
    import cv2

    cv2.fillConvexPoly(rotated, np.array(quad, np.int32), (0, 255, 0))
    warped = crop_quad(rotated, quad)
    assert warped.shape[:2] == (45, 89)  # |(40,80)-(60,40)| = 44.7, |(140,80)-(60,40)| = 89.4
    assert warped[5:-5, 5:-5, 1].min() == 255 and warped[5:-5, 5:-5, 0].max() == 0
    det = {"box": [40, 40, 140, 120], "score": 1.0, "class_id": 0, "class_name": "text", "quad": quad}
    assert crop_detection(rotated, det, mode="quad").shape == warped.shape
    assert crop_detection(rotated, det).shape == (80, 100, 3)  # the box
    with pytest.raises(ValueError):
        crop_detection(rotated, det, mode="circle")


def test_text_line_crops_are_cut_as_ocr_reads_them_and_vertical_lines_turned_a_quarter() -> None:
    import cv2

    image = np.zeros((200, 200, 3), np.uint8)
    quad = [[60, 40], [140, 80], [120, 120], [40, 80]]
    cv2.fillConvexPoly(image, np.array(quad, np.int32), (0, 255, 0))
    line = crop_text_line(image, quad)
    assert line.shape[:2] == (44, 89)  # 44.7 and 89.4 truncated, as PP-OCR's crop does
    assert line[5:-5, 5:-5, 1].min() >= 250 and line[5:-5, 5:-5, 0].max() == 0
    det = {"box": [40, 40, 140, 120], "score": 1.0, "class_id": 0, "class_name": "text", "quad": quad}
    assert np.array_equal(crop_detection(image, det, mode="text_line"), line)
    # a vertical line (three times taller than wide), its top marked: turned a quarter counter-clockwise
    column = np.zeros((200, 200, 3), np.uint8)
    column[20:170, 80:130] = 255
    column[20:40, 80:130] = (0, 0, 255)
    upright = crop_text_line(column, [[80, 20], [130, 20], [130, 170], [80, 170]])
    assert upright.shape[:2] == (50, 150)
    assert upright[25, 5].tolist() == [0, 0, 255] and upright[25, -5].tolist() == [255, 255, 255]  # the top: left
    no_quad = {**det, "quad": None, "box": [80, 20, 130, 170]}
    assert np.array_equal(crop_detection(column, no_quad, mode="text_line"), upright)  # the box's corners
    assert crop_text_line(column, [[80, 20], [130, 20], [130, 170], [80, 170]], max_side=75).shape[:2] == (25, 75)


def test_crops_of_one_request_share_one_segment_and_read_back_at_their_offsets() -> None:
    import threading

    slots = CropSlots(1, use_shm=True)
    reader = FrameReader()
    try:
        crops = [np.full((3, 5, 3), 7, np.uint8), np.arange(24, dtype=np.float32).reshape(4, 6), np.eye(3)[::2]]
        slot = slots.acquire()
        refs = slots.put_many(slot, crops)
        assert len({ref[0] for ref in refs}) == 1 and [ref[3] % 64 for ref in refs] == [0, 0, 0]
        for crop, ref in zip(crops, refs, strict=True):
            assert np.array_equal(reader.array(ref), crop)
        batch = CropBatch(len(refs), threading.Condition(), slot, slots.release)
        for index in (2, 0):
            batch.answer(index, f"r{index}")
        assert not batch.done and slots.free == 0  # a crop is still unanswered: its segment is held
        batch.answer(1, "r1")
        assert batch.done and batch.results == ["r0", "r1", "r2"] and slots.free == 1
        piped = CropSlots(1, use_shm=False).put_many(0, crops)
        assert all(np.array_equal(FrameReader().array(ref), crop) for crop, ref in zip(crops, piped, strict=True))
    finally:
        reader.close()
        slots.close()


def test_a_frame_without_image_or_an_on_model_without_detections_gives_config_errors() -> None:
    from types import SimpleNamespace

    from edge_engine.errors import ServingError
    from edge_engine.plugin.kinds import Input
    from edge_engine.runtime.serving_stage import CascadeRun, ServingStage

    engine = SimpleNamespace(signature="ONNX", model="mean.onnx")
    run = CascadeRun(spec(engine=engine, max_crops=2), on_key="D", client=None)  # type: ignore[arg-type]
    stage = ServingStage(None, "p")
    dets = [{"box": [0, 0, 4, 4], "score": s, "class_id": 0, "class_name": "x"} for s in (0.9, 0.8, 0.7)]
    no_image = SimpleNamespace(results={"D": dets}, inp=Input(data={"reading": 1}))
    aligned = stage._start_cascade(no_image, run).aligned()  # type: ignore[arg-type]
    assert [getattr(v, "kind", v) for v in aligned] == ["config", "config", None]  # the 2 selected boxes are marked
    not_detections = SimpleNamespace(results={"D": {"mean": [1, 2, 3]}}, inp=Input(image=np.zeros((4, 4, 3))))
    value = stage._start_cascade(not_detections, run).aligned()  # type: ignore[arg-type]
    assert isinstance(value, ServingError) and value.kind == "config" and "list of detections" in value.message
    failed = SimpleNamespace(results={"D": ServingError("D", "crashed", "gone")}, inp=Input(image=np.zeros((4, 4, 3))))
    assert stage._start_cascade(failed, run).aligned() == []  # type: ignore[arg-type]
    assert stage.cascade_skipped == 1 and stage.cascade_errors == 2
