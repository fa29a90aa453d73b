"""Model serving: shared model servers in real processes, real onnxruntime, real models.

Models are the PP-OCR ones shipped in the rapidocr-onnxruntime wheel and tiny ones built here with ``onnx``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, instance_state, pipeline_finished, wait_for
from onnx_models import mean_model

from edge_engine.errors import ConfigError, ServingError
from edge_engine.plugin.discovery import PluginLoader
from edge_engine.plugin.hooks import get_plugin_manager
from edge_engine.plugin.registry import PluginRegistry
from edge_engine.serving import batcher
from edge_engine.serving.frame_slots import ShmStatus
from edge_engine.serving.instance_models import check_engines, resolve_engines
from edge_engine.serving.onnx_info import read_onnx_io

pytest.importorskip("onnxruntime", reason="model serving needs onnxruntime (requirements.txt)")

CONST_SOURCE = """
    import os

    import numpy as np
    from edge_engine.api import CapturePlugin, EndOfStream, Input, Key


    class ConstFrames(CapturePlugin):
        SIGNATURE = "CONST_FRAMES"
        CONFIG = {"BASE": Key(0, type=int), "COUNT": Key(100, type=int), "WIDTH": Key(64, type=int),
                  "HEIGHT": Key(48, type=int),
                  "GO_FILE": Key("", type=str, doc="after COUNT, wait until this file exists, then as many again")}

        def connect(self):
            self.index = 0

        def read(self):
            count, go = self.config["COUNT"], self.config["GO_FILE"]
            while self.index == count and go and not os.path.exists(go):
                if self.context.stop_event.wait(0.02):
                    return None
            if self.index >= (2 * count if go else count):
                raise EndOfStream("done")
            self.index += 1
            value = self.config["BASE"] + self.index % 50
            frame = np.full((self.config["HEIGHT"], self.config["WIDTH"], 3), value, np.uint8)
            return Input(image=frame, metadata={"value": value})
"""

RECORDER = """
    from edge_engine.api import BusinessPlugin, Key, ServingError


    class Recorder(BusinessPlugin):
        SIGNATURE = "RECORDER"
        CONFIG = {"ENGINE": Key("ONNX", type=str)}
        BY_PIPELINE = {}  # the test reads the instances here (the engine drops them when they finish)

        def on_init(self):
            type(self).BY_PIPELINE[self.context.pipeline] = self
            self.ok = []
            self.wrong = []
            self.errors = []

        def process(self, inp):
            value = inp.inferences.get(self.config["ENGINE"])
            if isinstance(value, ServingError):
                self.errors.append((inp.seq, value.kind, str(value)))
            elif isinstance(value, dict) and "mean" in value:
                got = float(value["mean"][0])
                if abs(got - inp.metadata["value"]) > 1e-3:
                    self.wrong.append((inp.seq, got, inp.metadata["value"]))
                else:
                    self.ok.append(inp.seq)
            else:
                self.ok.append(inp.seq)
"""

MEAN_PARAMS = {"ONNX_MODEL": "mean.onnx", "INPUT_WIDTH": 16, "INPUT_HEIGHT": 16, "COLOR_ORDER": "BGR", "SCALE": 1.0,
               "WORKERS": 1}  # fmt: skip
PLUGINS = {"data/const_frames.py": CONST_SOURCE, "business/recorder.py": RECORDER}


def const_pipeline(name: str, params: dict[str, Any], **capture: Any) -> dict[str, Any]:
    return {
        "NAME": name, "TYPE": "CONST_FRAMES", **capture,
        "PLUGINS": [{"SIGNATURE": "RECORDER", "INSTANCES": [
            {"INSTANCE_ID": "rec", "AI_ENGINE": "ONNX", "STARTUP_AI_ENGINE_PARAMS": params}]}],
    }  # fmt: skip


@pytest.fixture
def mean_node(node_factory: Any) -> Any:
    def make(**kwargs: Any) -> Any:
        node = node_factory(plugins=PLUGINS, start=False, **kwargs)
        mean_model(node.layout.models / "mean.onnx")
        node.start()
        return node

    return make


# --- sharing, batching, routing ------------------------------------------------------------------------------
def test_four_pipelines_share_one_server_batch_and_get_their_own_results(mean_node: Any) -> None:
    node = mean_node()
    sizes = [(64, 48), (80, 60), (96, 72), (128, 96)]
    for index, (width, height) in enumerate(sizes):
        node.add_pipeline(const_pipeline(f"cam{index}", MEAN_PARAMS, BASE=60 * index, COUNT=300, WIDTH=width,
                                         HEIGHT=height))  # fmt: skip
    names = [f"cam{i}" for i in range(4)]
    wait_for(lambda: all(pipeline_finished(node, n) for n in names), timeout=30)
    for name in names:
        rec = instance_state(node, name)
        assert rec.wrong == [] and rec.errors == [], name  # each input got the result of its own frame
        assert len(rec.ok) == 300, name
    (server,) = node.serving.servers()  # one model server for the four pipelines
    assert len(server.pids()) == 1
    models = node.snapshot()["models"]
    (info,) = models["servers"]
    assert models["transport"] == "shared_memory"
    assert info["signature"] == "ONNX" and info["model"] == "mean.onnx"
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["results"] == 1200 and info["errors"] == 0
    assert max(int(size) for size in info["batch_sizes"]) > 1, info["batch_sizes"]  # batches across pipelines
    assert info["latency_ms"]["p99"] is not None and info["inference_ms_avg"] is not None
    assert info["pipelines"] == []  # finished pipelines let go of the model


def test_frames_go_through_pipes_when_shared_memory_is_too_small(mean_node: Any, monkeypatch: Any) -> None:
    small = ShmStatus(False, 64 * 2**20, 60 * 2**20, "/dev/shm is 64 MB: frames go through pipes")
    monkeypatch.setattr("edge_engine.serving.manager.check_shm", lambda: small)
    node = mean_node()
    node.add_pipeline(const_pipeline("piped", MEAN_PARAMS, COUNT=40))
    wait_for(lambda: pipeline_finished(node, "piped"), timeout=20)
    rec = instance_state(node, "piped")
    assert len(rec.ok) == 40 and not rec.wrong and not rec.errors
    assert node.snapshot()["models"]["transport"] == "pipe"


def test_server_processes_stop_when_idle_and_start_again_on_demand(mean_node: Any, tmp_path: Path) -> None:
    node = mean_node()
    go = tmp_path / "second-burst"  # the capture waits for it after the first burst: the server's idle time
    params = {**MEAN_PARAMS, "IDLE_STOP_SECONDS": 0.3}
    node.add_pipeline(const_pipeline("bursts", params, COUNT=10, GO_FILE=str(go)))
    rec = wait_for(lambda: instance_state(node, "bursts"), timeout=10)
    wait_for(lambda: len(rec.ok) == 10, timeout=30)
    (server,) = node.serving.servers()
    pipeline = next(p for p in node.snapshot()["pipelines"] if p["name"] == "bursts")
    assert pipeline["serving"]["engines"] == ["ONNX"] and server.stats.batches > 0
    wait_for(lambda: server.pids() == [] and server.state == "idle", timeout=10)  # idle: its process stopped
    restarts = server.stats.restarts
    go.touch()
    wait_for(lambda: pipeline_finished(node, "bursts"), timeout=30)  # the second burst started it again
    assert len(rec.ok) == 20 and not rec.errors and not rec.wrong
    assert server.stats.restarts == restarts  # started on demand, not counted as a restart after a failure
    node.remove_pipeline("bursts")
    wait_for(lambda: node.serving.servers() == [], timeout=10)  # no pipeline uses it any more: forgotten


# --- failures ---------------------------------------------------------------------------------------------------
def test_invalid_model_path_is_a_config_error_naming_plugin_and_model(mean_node: Any) -> None:
    node = mean_node()
    with pytest.raises(ConfigError) as caught:
        node.add_pipeline(const_pipeline("bad", {**MEAN_PARAMS, "ONNX_MODEL": "missing.onnx"}))
    text = str(caught.value)
    assert "serving plugin 'ONNX'" in text and "'missing.onnx'" in text and "file not found" in text
    assert "instance 'rec'" in text and "STARTUP_AI_ENGINE_PARAMS" in text
    assert "bad" not in node.pipelines and node.serving.servers() == []


def test_model_input_shape_mismatch_is_a_config_error_naming_both_shapes(mean_node: Any) -> None:
    node = mean_node()
    mean_model(node.layout.models / "fixed.onnx", 32, 32)
    params = {**MEAN_PARAMS, "ONNX_MODEL": "fixed.onnx", "INPUT_WIDTH": 64, "INPUT_HEIGHT": 64}
    with pytest.raises(ConfigError) as caught:
        node.add_pipeline(const_pipeline("mismatch", params))
    text = str(caught.value)
    assert "serving plugin 'ONNX'" in text and "'fixed.onnx'" in text
    assert "[N, 3, 32, 32]" in text and "[N, 3, 64, 64]" in text, text
    # the model's own size is taken when the config gives none
    node.add_pipeline(const_pipeline("fits", {**params, "INPUT_WIDTH": 0, "INPUT_HEIGHT": 0}, COUNT=5))
    wait_for(lambda: pipeline_finished(node, "fits"), timeout=20)
    assert len(instance_state(node, "fits").ok) == 5


def test_killed_model_server_is_restarted_and_its_inputs_get_the_error_marker(node_factory: Any) -> None:
    detector = """
        from edge_engine.api import BusinessPlugin, ServingError


        class DetectorProbe(BusinessPlugin):
            SIGNATURE = "DETECTOR_PROBE"
            CONFIG = {"AI_ENGINE": ["PP_OCR_DETECTOR"]}

            BY_PIPELINE = {}

            def on_init(self):
                type(self).BY_PIPELINE[self.context.pipeline] = self
                self.ok = 0
                self.errors = []

            def process(self, inp):
                value = inp.inferences["PP_OCR_DETECTOR"]
                if isinstance(value, ServingError):
                    self.errors.append(value.kind)
                else:
                    assert isinstance(value, list)
                    self.ok += 1
    """
    node = node_factory(plugins={"business/probe.py": detector})
    node.add_pipeline({
        "NAME": "cam", "TYPE": "SYNTHETIC", "WIDTH": 640, "HEIGHT": 480,
        "PLUGINS": [{"SIGNATURE": "DETECTOR_PROBE", "INSTANCES": [
            {"INSTANCE_ID": "probe", "STARTUP_AI_ENGINE_PARAMS": {"WORKERS": 1}}]}],
    })  # fmt: skip
    probe = wait_for(lambda: instance_state(node, "cam"), timeout=10)
    wait_for(lambda: probe.ok >= 2, timeout=30)
    (server,) = node.serving.servers()
    for _attempt in range(3):
        wait_for(lambda: server.state == "running" and any(w.state == "busy" for w in server._workers), timeout=30)
        (old_pid,) = server.pids()
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda old=old_pid: server.pids() and server.pids() != [old], timeout=30)  # restarted
        if "crashed" in probe.errors:
            break
    assert "crashed" in probe.errors  # the inputs it held got the explicit marker
    ok_after = probe.ok
    wait_for(lambda: probe.ok > ok_after + 2, timeout=30)  # and the pipeline goes on with the new process
    assert node.status == "running" and node.pipelines["cam"].status() == "running"
    assert server.stats.restarts >= 1
    assert node.env.supervisor.state(f"{server.part}/worker0").restarts >= 1
    info = node.snapshot()["models"]["servers"][0]
    assert info["state"] == "running" and info["restarts"] >= 1 and info["errors"] >= 1


def test_hung_batch_is_killed_by_the_watchdog(node_factory: Any) -> None:
    sleepy = """
        import time
        from edge_engine.api import Key, ServingPlugin


        class Sleepy(ServingPlugin):
            SIGNATURE = "SLEEPY"
            CONFIG = {"HANG_SEQ": Key(5, type=int)}

            def pre_process(self, inputs):
                return [inp.seq for inp in inputs]

            def predict(self, batch):
                if self.config["HANG_SEQ"] in batch:
                    time.sleep(60)  # a hang: the watchdog must kill this process
                return batch

            def post_process(self, predictions, inputs):
                return [{"seq": seq} for seq in predictions]
    """
    node = node_factory(plugins={**PLUGINS, "serving/sleepy.py": sleepy})
    params = {"WORKERS": 1, "MAX_IN_FLIGHT": 1, "INFERENCE_TIMEOUT": 1.0}
    node.add_pipeline({
        "NAME": "hang", "TYPE": "CONST_FRAMES", "COUNT": 12,
        "PLUGINS": [{"SIGNATURE": "RECORDER", "INSTANCES": [
            {"INSTANCE_ID": "rec", "ENGINE": "SLEEPY", "AI_ENGINE": "SLEEPY", "STARTUP_AI_ENGINE_PARAMS": params}]}],
    })  # fmt: skip
    wait_for(lambda: pipeline_finished(node, "hang"), timeout=30)
    rec = instance_state(node, "hang")
    assert [(seq, kind) for seq, kind, _ in rec.errors if kind == "timeout"] == [(5, "timeout")]
    assert {kind for _, kind, _ in rec.errors} <= {"timeout", "unavailable"}
    assert 12 in rec.ok and len(rec.ok) + len(rec.errors) == 12
    assert "INFERENCE_TIMEOUT" in rec.errors[0][2]


def test_an_unknown_ai_engine_gives_a_marker_and_starts_nothing(node_factory: Any) -> None:
    node = node_factory(plugins=PLUGINS)
    node.add_pipeline({
        "NAME": "ratio1", "TYPE": "CONST_FRAMES", "COUNT": 3,
        "PLUGINS": [{"SIGNATURE": "RECORDER", "INSTANCES": [
            {"INSTANCE_ID": "rec", "ENGINE": "lowres_general_detector", "AI_ENGINE": "lowres_general_detector"}]}],
    })  # fmt: skip
    wait_for(lambda: pipeline_finished(node, "ratio1"), timeout=10)
    assert {kind for _, kind, _ in instance_state(node, "ratio1").errors} == {"unknown_engine"}
    assert node.serving.servers() == [] and node.serving.pids() == []


# --- the built-in text detector ---------------------------------------------------------------------------------
TEXT_SOURCE = """
    import cv2
    import numpy as np
    from edge_engine.api import CapturePlugin, EndOfStream, Input


    class TextFrames(CapturePlugin):
        SIGNATURE = "TEXT_FRAMES"

        def connect(self):
            self.index = 0

        def read(self):
            if self.index >= 3:
                raise EndOfStream("done")
            self.index += 1
            frame = np.full((480, 640, 3), 235, np.uint8)
            cv2.putText(frame, "HELLO EDGE 2026", (40, 120), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (20, 20, 20), 3)
            return Input(image=frame, metadata={"frame_index": self.index})
"""


def test_text_detector_reports_boxes_scores_and_a_witness(node_factory: Any) -> None:
    node = node_factory(plugins={"data/text_frames.py": TEXT_SOURCE})
    node.add_pipeline({
        "NAME": "signs", "TYPE": "TEXT_FRAMES",
        "PLUGINS": [{"SIGNATURE": "TEXT_DETECTOR", "INSTANCES": [
            {"INSTANCE_ID": "main", "MIN_PAYLOAD_INTERVAL": 0, "STARTUP_AI_ENGINE_PARAMS": {"WORKERS": 1}}]}],
    })  # fmt: skip
    wait_for(lambda: pipeline_finished(node, "signs"), timeout=30)
    folder = node.layout.output / "signs" / "TEXT_DETECTOR_main"
    payloads = [json.loads(line) for line in (folder / "payloads.jsonl").read_text().splitlines()]
    assert len(payloads) == 3
    data = payloads[0].get("data", payloads[0])
    assert data["TEXT_REGIONS"] == 1 and data["IMAGE_SIZE"] == [640, 480]
    x, y, w, h = data["BOXES"][0]
    assert 25 <= x <= 55 and 75 <= y <= 100 and 380 <= w <= 520 and 25 <= h <= 60, data["BOXES"]
    assert 0.5 <= data["SCORES"][0] <= 1.0
    assert len(list((folder / "images").glob("*.jpg"))) == 3
    (region,) = data["DETECTIONS"]  # the one detection format (decision 34), read as PP_OCR_DETECTOR gave it
    assert set(region) == {"box", "quad", "score", "class_id", "class_name"}
    assert (region["class_id"], region["class_name"], region["score"]) == (0, "text", data["SCORES"][0])
    x1, y1, x2, y2 = region["box"]
    assert [x1, y1, x2 - x1, y2 - y1] == data["BOXES"][0] and region["quad"] == data["POLYGONS"][0]
    assert [x1, y1] == [min(p[0] for p in region["quad"]), min(p[1] for p in region["quad"])]
    assert all(isinstance(v, int) for v in data["BOXES"][0]) and all(
        isinstance(v, int) for p in data["POLYGONS"][0] for v in p
    )


def test_the_serving_tutorial_runs(node_factory: Any) -> None:
    folders = [str(REPO / "extensions"), str(REPO / "plugins")]
    node = node_factory(startup={"PLUGIN_FOLDERS": folders})
    node.add_pipeline({
        "NAME": "colours", "TYPE": "SYNTHETIC", "MODE": "static", "WIDTH": 320, "HEIGHT": 240, "COUNT": 10,
        "PLUGINS": [{"SIGNATURE": "TUTORIAL_MEAN_COLOR_REPORT", "INSTANCES": [{"INSTANCE_ID": "main", "EVERY": 5}]}],
    })  # fmt: skip
    wait_for(lambda: pipeline_finished(node, "colours"), timeout=30)
    folder = node.layout.output / "colours" / "TUTORIAL_MEAN_COLOR_REPORT_main"
    payloads = [json.loads(line) for line in (folder / "payloads.jsonl").read_text().splitlines()]
    assert [p.get("data", p)["FRAMES"] for p in payloads] == [5, 10]
    red, green, blue = payloads[0].get("data", payloads[0])["MEAN_RGB"]  # the static frame: a gray-blue ramp
    assert abs(red - 130) < 3 and abs(green - 100) < 3 and abs(blue - 125) < 3


# --- the node process never imports onnxruntime by itself -------------------------------------------------------
def test_an_idle_node_imports_no_onnxruntime_and_starts_no_server(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(REPO)!r})
        import psutil
        from edge_engine.node.core import Node
        from edge_engine.config.node_settings import load_settings

        base = __import__("pathlib").Path({str(tmp_path)!r})
        (base / ".config_startup.json").write_text(json.dumps({{
            "PLUGIN_FOLDERS": [{str(REPO / "extensions")!r}, {str(REPO / "plugins")!r}], "DEMO_PIPELINE": False}}))
        node = Node(load_settings(base, base / "_local_cache", {{"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0"}}))
        node.start()
        node.add_pipeline({{"NAME": "plain", "TYPE": "SYNTHETIC", "COUNT": 20,
                            "PLUGINS": [{{"SIGNATURE": "FRAME_STATS", "INSTANCES": [{{"INSTANCE_ID": "s"}}]}}]}})
        (stage,) = node.pipelines["plain"].instances.values()
        while stage.stats.inputs < 1:  # the pipeline runs
            time.sleep(0.02)
        snapshot = node.snapshot()
        print(json.dumps({{"ort": "onnxruntime" in sys.modules, "children": len(psutil.Process().children()),
                          "servers": snapshot["models"]["servers"]}}))
        node.stop()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"ort": False, "children": 0, "servers": []}


# --- units: config resolution, the ONNX reader, the fair queue ----------------------------------------------------
@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    registry = PluginRegistry()
    PluginLoader(registry, get_plugin_manager()).load_folder(REPO / "extensions")
    return registry


def test_engine_params_apply_per_signature_or_to_every_engine(registry: PluginRegistry) -> None:
    config = {
        "AI_ENGINE": ["PP_OCR_DETECTOR", "pp_ocr_direction"],
        "STARTUP_AI_ENGINE_PARAMS": {"WORKERS": 1, "PP_OCR_DETECTOR": {"LIMIT_SIDE": 320, "MAX_BATCH_SIZE": 2}},
    }
    engines, unknown, problems = resolve_engines(config, registry)
    assert unknown == [] and problems == []
    by_name = {e.signature: e for e in engines}
    assert by_name["PP_OCR_DETECTOR"].config["LIMIT_SIDE"] == 320
    assert by_name["PP_OCR_DETECTOR"].config["MAX_BATCH_SIZE"] == 2
    assert by_name["PP_OCR_DIRECTION"].config["MAX_BATCH_SIZE"] == 4  # its own default
    assert all(e.config["WORKERS"] == 1 for e in engines)
    same = resolve_engines({"AI_ENGINE": "PP_OCR_DIRECTION", "STARTUP_AI_ENGINE_PARAMS": {"WORKERS": 1}}, registry)
    assert same[0][0].key == by_name["PP_OCR_DIRECTION"].key  # equal configs share one server


def test_engine_param_typos_and_types_are_reported(registry: PluginRegistry) -> None:
    where = {"file": "f.json", "pipeline": "p", "plugin": "TEXT_DETECTOR", "instance": "i"}
    config = {"AI_ENGINE": ["PP_OCR_DETECTOR"],
              "STARTUP_AI_ENGINE_PARAMS": {"PP_OCR_DETECTOR": {"LIMIT_SIDES": 320, "THRESH": "0.4"}}}  # fmt: skip
    texts = [str(issue) for issue in check_engines(config, registry, where, None)]
    assert any("'LIMIT_SIDES': unknown key; did you mean 'LIMIT_SIDE'?" in t for t in texts), texts
    assert any("'THRESH': expected number" in t and "remove the quotes" in t for t in texts), texts
    assert all(t.startswith("f.json › pipeline 'p' › plugin 'TEXT_DETECTOR' › instance 'i'") for t in texts)
    onnx = {"AI_ENGINE": "ONNX", "STARTUP_AI_ENGINE_PARAMS": {"INPUT_WIDTH": 64}}
    texts = [str(issue) for issue in check_engines(onnx, registry, where, None)]
    assert any("set ONNX_MODEL (a file in _models/) or MODEL_URL and MODEL_SHA256" in t for t in texts), texts


def test_onnx_reader_gives_the_graph_inputs_and_outputs(tmp_path: Path) -> None:
    io = read_onnx_io(mean_model(tmp_path / "m.onnx", 32, "W"))
    (image,) = io.inputs
    assert (image.name, image.element_type, image.shape) == ("image", "float32", ("N", 3, 32, "W"))
    assert image.shape_text() == "[N, 3, 32, ?]"
    assert [o.name for o in io.outputs] == ["mean"]


def test_fair_queue_serves_pipelines_in_turn() -> None:
    class Req:
        def __init__(self, client: int, n: int):
            self.client, self.n, self.submitted = client, n, time.monotonic()

    queue = batcher.FairQueue()
    for n in range(10):
        queue.push(0, Req(0, n))  # type: ignore[arg-type]
    for n in range(2):
        queue.push(1, Req(1, n))  # type: ignore[arg-type]
        queue.push(2, Req(2, n))  # type: ignore[arg-type]
    first = queue.take(3)
    assert [(r.client, r.n) for r in first] == [(0, 0), (1, 0), (2, 0)]  # type: ignore[attr-defined]
    second = queue.take(4, quantum=2)
    assert [(r.client, r.n) for r in second] == [(0, 1), (0, 2), (1, 1), (2, 1)]  # type: ignore[attr-defined]
    assert [r.client for r in queue.take(4)] == [0, 0, 0, 0]  # type: ignore[attr-defined]
    assert queue.size == 3 and len(queue.drop(0)) == 3 and queue.size == 0


def test_batch_rule() -> None:
    assert batcher.batch_target(capacity=16, workers=2, max_batch=4) == 4
    assert batcher.batch_target(capacity=2, workers=2, max_batch=8) == 1  # one pipeline: use both workers
    assert batcher.batch_ready(pending=4, target=4, waited=0, max_wait=0.005, outstanding=6, capacity=16)
    assert not batcher.batch_ready(pending=2, target=4, waited=0.001, max_wait=0.005, outstanding=6, capacity=16)
    assert batcher.batch_ready(pending=2, target=4, waited=0.006, max_wait=0.005, outstanding=6, capacity=16)
    assert batcher.batch_ready(pending=2, target=4, waited=0.0, max_wait=0.005, outstanding=16, capacity=16)


def test_serving_error_is_an_exception_and_pickles() -> None:
    import pickle

    error = ServingError("ONNX", "crashed", "server process exited", "m.onnx")
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, Exception) and (again.kind, again.model) == ("crashed", "m.onnx")
    assert str(again) == "serving plugin 'ONNX' › model 'm.onnx': crashed: server process exited"
