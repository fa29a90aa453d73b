"""Co-located cascades (``CASCADE`` ``COLOCATE``): the second model runs in the first stage's server process, and a
frame's first-stage answer comes back with its crops' results, in one round trip.

Same real parts as ``test_cascade.py`` (its plugins, the mean-colour ONNX model, real server processes): each
crop's result is the mean colour of the tile its box covers, so a result aligned with the wrong box, or from
another frame or pipeline, is caught.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from conftest import instance_state, pipeline_finished, wait_for
from onnx_models import mean_model
from test_cascade import MEAN, PLUGINS, pipeline

from edge_engine.errors import ConfigError
from edge_engine.serving.frame_slots import ShmStatus

pytest.importorskip("onnxruntime", reason="model serving needs onnxruntime (requirements.txt)")

BROKEN = """
    from edge_engine.api import Key, ServingPlugin


    class BrokenLoad(ServingPlugin):
        SIGNATURE = "BROKEN_LOAD"
        CONFIG = {"WORKERS": Key(1, type=int, min=0)}

        def on_init(self):
            raise RuntimeError("no such model here")

        def pre_process(self, inputs):
            return inputs

        def predict(self, batch):
            return batch

        def post_process(self, predictions, inputs):
            return predictions
"""


SLOW = """
    import time

    import numpy as np
    from edge_engine.api import Key, ServingPlugin


    class SlowLoad(ServingPlugin):
        SIGNATURE = "SLOW_LOAD"
        CONFIG = {"WORKERS": Key(1, type=int, min=0), "LOAD_SECONDS": Key(2.0)}

        def on_init(self):
            time.sleep(self.config["LOAD_SECONDS"])  # a model that takes its time to load

        def pre_process(self, inputs):
            return [np.asarray(i.image, float).reshape(-1, 3).mean(axis=0).tolist() for i in inputs]

        def predict(self, batch):
            return batch

        def post_process(self, predictions, inputs):
            return [{"mean": mean} for mean in predictions]
"""


@pytest.fixture
def colocated_node(node_factory: Any) -> Any:
    plugins = {**PLUGINS, "serving/broken_load.py": BROKEN, "serving/slow_load.py": SLOW}
    node = node_factory(plugins=plugins, start=False)
    mean_model(node.layout.models / "mean.onnx")
    mean_model(node.layout.models / "tiles.onnx", 8, 8)
    node.start()
    return node


def test_a_colocated_cascade_runs_in_the_first_stage_process_and_results_match_their_boxes(
    colocated_node: Any,
) -> None:
    node = colocated_node
    cascade = {"SIGNATURE": "ONNX", "CLASSES": ["even"], "MIN_SCORE": 0.2, "MAX_CROPS": 8, "PARAMS": MEAN}
    names = ["cam0", "cam1"]
    for index, name in enumerate(names):
        node.add_pipeline(pipeline(name, [{**cascade, "COLOCATE": True}], {"COUNT": 30, "BASE": 100 * index}))
    wait_for(lambda: all(pipeline_finished(node, n) for n in names), timeout=90)
    for name in names:
        rec = instance_state(node, name)
        assert rec.frames == 30 and rec.wrong == [] and rec.errors["ONNX"] == [], name
        assert rec.results["ONNX"] == 30 * 6, name  # the 6 even tiles of each frame, aligned with their boxes
        assert all(index % 2 == 1 for index in rec.nones["ONNX"]), name
        stage = node.pipelines[name].serving
        assert stage.cascade_crops == 30 * 6 and stage.cascade_errors == 0
    # no server of its own: the second model ran in the detector's process (one round trip per frame)
    assert [s.signature for s in node.serving.servers()] == ["TILE_DETECTOR"]
    assert len(node.serving.pids()) == 1


def test_colocated_and_shared_server_cascades_of_one_detector_agree(colocated_node: Any) -> None:
    node = colocated_node
    cascade = {"SIGNATURE": "ONNX", "MAX_CROPS": 5, "PARAMS": MEAN}
    node.add_pipeline(pipeline("near", [{**cascade, "COLOCATE": True}], {"COUNT": 20, "BASE": 3}))
    node.add_pipeline(pipeline("far", [cascade], {"COUNT": 20, "BASE": 50}))
    wait_for(lambda: pipeline_finished(node, "near") and pipeline_finished(node, "far"), timeout=90)
    for name in ("near", "far"):
        rec = instance_state(node, name)
        assert rec.frames == 20 and rec.wrong == [] and rec.errors["ONNX"] == [] and rec.results["ONNX"] == 20 * 5
        assert sorted(set(rec.nones["ONNX"])) == list(range(5, 12))  # the 5 best boxes, the others not cropped
    servers = {s.signature: s.snapshot() for s in node.serving.servers()}
    assert servers["ONNX"]["results"] == 20 * 5  # only the shared-server pipeline's crops went there


def test_a_failing_colocated_second_stage_marks_its_boxes_never_the_frame(colocated_node: Any) -> None:
    node = colocated_node
    cascades = [
        {"SIGNATURE": "FAILING_CROPS", "AS": "BAD", "CLASSES": ["odd"], "COLOCATE": True},
        {"SIGNATURE": "BROKEN_LOAD", "AS": "UNLOADED", "MAX_CROPS": 2, "COLOCATE": True},
        {"SIGNATURE": "ONNX", "AS": "GOOD", "MAX_CROPS": 4, "PARAMS": MEAN, "COLOCATE": True},
    ]
    node.add_pipeline(pipeline("cam", cascades, {"COUNT": 10}, NAMES=["BAD", "UNLOADED", "GOOD"]))
    wait_for(lambda: pipeline_finished(node, "cam"), timeout=60)
    rec = instance_state(node, "cam")
    assert rec.frames == 10 and rec.wrong == []  # every frame reached the instance, with its detections
    assert len(rec.errors["BAD"]) == 10 * 6
    assert {(i % 2, kind, sig) for i, kind, sig in rec.errors["BAD"]} == {(1, "inference_error", "FAILING_CROPS")}
    assert sorted({(i, kind, sig) for i, kind, sig in rec.errors["UNLOADED"]}) == [
        (0, "load_failed", "BROKEN_LOAD"),
        (1, "load_failed", "BROKEN_LOAD"),
    ]
    assert len(rec.errors["UNLOADED"]) == 10 * 2
    assert rec.results["GOOD"] == 10 * 4 and rec.errors["GOOD"] == []  # the other cascade is not affected
    stage = node.pipelines["cam"].serving
    assert stage.errors == 0 and stage.cascade_errors == 10 * (6 + 2)
    assert [s.signature for s in node.serving.servers()] == ["TILE_DETECTOR"]


def test_a_colocated_frame_with_5000_boxes_sends_max_crops(colocated_node: Any) -> None:
    node = colocated_node
    grid = {"COLS": 100, "ROWS": 50, "TILE": 4}
    cascade = {"SIGNATURE": "ONNX", "MAX_CROPS": 16, "PARAMS": MEAN, "COLOCATE": True}
    node.add_pipeline(pipeline("crowd", [cascade], {"COUNT": 10, **grid}))
    wait_for(lambda: pipeline_finished(node, "crowd"), timeout=90)
    rec = instance_state(node, "crowd")
    assert rec.frames == 10 and rec.wrong == [] and rec.errors["ONNX"] == []
    assert rec.results["ONNX"] == 10 * 16  # the 16 best boxes of each frame, no more
    assert len(rec.nones["ONNX"]) == 10 * (5000 - 16) and min(rec.nones["ONNX"]) == 16
    stage = node.pipelines["crowd"].serving
    assert stage.cascade_crops == 10 * 16 and stage.cascade_skipped == 10 * (5000 - 16)


def test_colocate_refuses_a_second_model_fetched_from_model_url(colocated_node: Any) -> None:
    node = colocated_node
    fetched = {**MEAN, "ONNX_MODEL": "", "MODEL_URL": "http://127.0.0.1:9/mean.onnx", "MODEL_SHA256": "0" * 64}
    with pytest.raises(ConfigError) as caught:
        node.add_pipeline(pipeline("bad", [{"SIGNATURE": "ONNX", "COLOCATE": True, "PARAMS": fetched}]))
    text = str(caught.value)
    assert "entry 0 (ONNX) › key 'COLOCATE': the second model comes from MODEL_URL" in text, text
    assert "bad" not in node.pipelines


def test_a_colocated_model_may_load_longer_than_the_first_stage_inference_timeout(colocated_node: Any) -> None:
    node = colocated_node
    cascade = {"SIGNATURE": "SLOW_LOAD", "AS": "SLOW", "MAX_CROPS": 3, "COLOCATE": True, "PARAMS": {"LOAD_SECONDS": 2}}
    quick = {"INFERENCE_TIMEOUT": 0.5}  # the detector's batches: the second model's load is given its own time
    node.add_pipeline(pipeline("cam", [cascade], {"COUNT": 5}, NAMES=["SLOW"], STARTUP_AI_ENGINE_PARAMS=quick))
    wait_for(lambda: pipeline_finished(node, "cam"), timeout=60)
    rec = instance_state(node, "cam")
    assert rec.frames == 5 and rec.wrong == [] and rec.errors["SLOW"] == [] and rec.results["SLOW"] == 5 * 3
    (server,) = node.serving.servers()
    info = server.snapshot()
    assert info["errors"] == 0 and info["restarts"] == 0, info  # its process was never killed as stuck


def test_a_colocated_cascade_works_when_frames_go_through_pipes(node_factory: Any, monkeypatch: Any) -> None:
    small = ShmStatus(False, 64 * 2**20, 60 * 2**20, "/dev/shm is 64 MB: frames go through pipes")
    monkeypatch.setattr("edge_engine.serving.manager.check_shm", lambda: small)
    node = node_factory(plugins=PLUGINS, start=False)
    mean_model(node.layout.models / "mean.onnx")
    mean_model(node.layout.models / "tiles.onnx", 8, 8)
    node.start()
    cascade = {"SIGNATURE": "ONNX", "PADDING": 0.0, "PARAMS": MEAN, "COLOCATE": True}
    node.add_pipeline(pipeline("piped", [cascade], {"COUNT": 5}))
    wait_for(lambda: pipeline_finished(node, "piped"), timeout=60)
    rec = instance_state(node, "piped")
    assert rec.frames == 5 and rec.wrong == [] and rec.errors["ONNX"] == [] and rec.results["ONNX"] == 5 * 12


def test_the_pipeline_snapshot_says_which_cascades_are_colocated(colocated_node: Any) -> None:
    node = colocated_node
    cascades = [
        {"SIGNATURE": "ONNX", "AS": "NEAR", "MAX_CROPS": 2, "PARAMS": MEAN, "COLOCATE": True},
        {"SIGNATURE": "ONNX", "AS": "FAR", "MAX_CROPS": 2, "PARAMS": MEAN},
    ]
    node.add_pipeline(pipeline("live", cascades, {"COUNT": 100000}, NAMES=["NEAR", "FAR"]))
    rec = wait_for(lambda: instance_state(node, "live"), timeout=20)
    wait_for(lambda: rec.results.get("NEAR", 0) >= 10 and rec.results.get("FAR", 0) >= 10, timeout=30)
    shown = node.pipelines["live"].serving.snapshot()["cascades"]  # what local_info.json shows
    assert shown["names"] == ["FAR", "NEAR"] and shown["colocated"] == ["NEAR"]
    assert rec.wrong == [] and rec.errors == {"NEAR": [], "FAR": []}
    node.remove_pipeline("live")


class CropMean:
    """A second model in numpy (created by the worker's own plugin loader): each crop's mean colour."""

    loads = 0
    closes = 0

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        self.config = config

    def on_init(self) -> None:
        type(self).loads += 1

    def on_close(self) -> None:
        type(self).closes += 1

    def pre_process(self, inputs: list[Any]) -> list[Any]:
        return [inp.image.reshape(-1, 3).mean(axis=0).tolist() for inp in inputs]

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch

    def post_process(self, predictions: list[Any], inputs: list[Any]) -> list[Any]:
        return [{"mean": mean} for mean in predictions]


class BoxesFromMetadata:
    """A first stage whose detections are the ones each input's metadata names."""

    def pre_process(self, inputs: list[Any]) -> list[Any]:
        return inputs

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch

    def post_process(self, predictions: list[Any], inputs: list[Any]) -> list[Any]:
        return [list(inp.metadata["boxes"]) for inp in inputs]


def test_a_frame_without_detections_comes_back_plain_and_loads_no_second_model(tmp_path: Any) -> None:
    from edge_engine.plugin.kinds import Input
    from edge_engine.serving.colocated import Cascaded, ColocatedCascade, SecondStages
    from edge_engine.serving.frame_slots import FrameReader, FrameSlots
    from edge_engine.serving.worker import FrameItem, WorkerSpec, _run_batch

    spec = WorkerSpec.for_class(CropMean, {}, tmp_path, 0)
    cascade = ColocatedCascade("k", "crop-mean", spec, "numpy", (), 0.0, 0.0, 8, "box", 0, 8)
    slots = FrameSlots(2, use_shm=False)  # pipe mode: the frame's bytes travel in its reference
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[:4, :4] = (10, 20, 30)
    box = {"box": [0, 0, 4, 4], "score": 0.9, "class_id": 0, "class_name": "x"}
    ref = slots.put(slots.acquire(), frame)
    reader, stages = FrameReader(), SecondStages(logging.getLogger("test"))
    empty = [FrameItem(ref, None, {"boxes": []}, 0, 0.0, (cascade,))]
    results, lost = _run_batch(BoxesFromMetadata(), reader, empty, Input, stages)
    assert results == [[]] and type(results[0]) is list and lost == {}
    assert CropMean.loads == 0  # nothing to crop: the second model is not even loaded
    items = [*empty, FrameItem(ref, None, {"boxes": [box]}, 1, 0.0, (cascade,))]
    results, lost = _run_batch(BoxesFromMetadata(), reader, items, Input, stages)
    assert results[0] == [] and type(results[1]) is Cascaded and CropMean.loads == 1
    assert results[1].first == [box] and results[1].outcomes["k"].aligned == [{"mean": [10.0, 20.0, 30.0]}]
    stages.close()
    reader.close()
    slots.close()


def test_a_first_stage_process_keeps_a_bounded_number_of_second_models_least_recently_used_first(
    tmp_path: Any,
) -> None:
    """Each live change of a co-located model's config is a new model key: old copies are closed, not kept."""
    from edge_engine.plugin.kinds import Input
    from edge_engine.serving.colocated import ColocatedCascade, SecondStages
    from edge_engine.serving.frame_slots import FrameReader, FrameSlots
    from edge_engine.serving.worker import FrameItem, WorkerSpec, _run_batch

    spec = WorkerSpec.for_class(CropMean, {}, tmp_path, 0)
    cascades = {n: ColocatedCascade(n, f"crop-mean:{n}", spec, "numpy", (), 0.0, 0.0, 8, "box", 0, 8) for n in "abc"}
    slots = FrameSlots(2, use_shm=False)
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[:4, :4] = (10, 20, 30)
    box = {"box": [0, 0, 4, 4], "score": 0.9, "class_id": 0, "class_name": "x"}
    ref = slots.put(slots.acquire(), frame)
    reader, stages = FrameReader(), SecondStages(logging.getLogger("test"), max_loaded=2)
    loads, closes = CropMean.loads, CropMean.closes

    def run(name: str) -> None:
        item = FrameItem(ref, None, {"boxes": [box]}, 1, 0.0, (cascades[name],))
        (result,), _ = _run_batch(BoxesFromMetadata(), reader, [item], Input, stages)
        assert result.outcomes[name].aligned == [{"mean": [10.0, 20.0, 30.0]}]

    for name in "abc":
        run(name)
    assert (CropMean.loads - loads, CropMean.closes - closes) == (3, 1)  # c made room by closing a
    run("b")  # still loaded: used again, now the most recent
    assert (CropMean.loads - loads, CropMean.closes - closes) == (3, 1)
    run("a")  # loaded again, closing c (the least recently used)
    assert (CropMean.loads - loads, CropMean.closes - closes) == (4, 2)
    stages.close()
    assert CropMean.closes - closes == 4  # the two still loaded
    reader.close()
    slots.close()
