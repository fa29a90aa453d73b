"""``EXECUTION_PROVIDER`` of the ONNX serving plugins: the short names map to onnxruntime's providers, a provider the
installed onnxruntime build lacks is refused naming the model (never a silent fall back to another provider), and
each accelerator runs the real models where its build and hardware are there.

onnxruntime has one build per package (``onnxruntime``, ``onnxruntime-openvino``, ``onnxruntime-gpu``), all of them
the same ``onnxruntime`` module, so one venv holds one: the CI venv has the CPU build, and the OpenVINO check runs its
OpenVINO side in a small venv of its own (``tests/openvino_env.py``, made by ``scripts/run-tests.sh``) and compares
with the CPU provider here; it skips only where onnxruntime-openvino has no wheel (not x86-64). CUDA and TensorRT
need an NVIDIA GPU. Each skip says which.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import openvino_env
import pytest
from conftest import REPO, load_module
from onnx_models import yolo_model

from edge_engine.api import PluginContext
from edge_engine.plugin.config_keys import check_value, defaults
from edge_engine.plugin.kinds import Input
from edge_engine.serving import providers as execution

ort = pytest.importorskip("onnxruntime", reason="model serving needs onnxruntime (requirements-models.txt)")
AVAILABLE = ort.get_available_providers()
BUILD = execution.installed_build()
NO_GPU = "no NVIDIA GPU and onnxruntime-gpu here: {} is built and mapped (tests above) but cannot run"

yolo = load_module("extensions/serving/yolo.py")
ROWS = [[80.0, 90.0, 60.0, 40.0, 0.9, 0.1], [200.0, 150.0, 50.0, 80.0, 0.2, 0.8]]


def yolo_plugin(models: Path, **config: Any) -> Any:
    """The YOLO plugin loaded as a model-server process loads it (real onnxruntime session), in this process."""
    yolo_model(models / "y.onnx", "v8", 2, ROWS, size=(320, 320), measured_class=0)
    merged = {
        **defaults(yolo.YoloDetector.config_schema()),
        "ONNX_MODEL": "y.onnx",
        "LAYOUT": "v8",
        "WORKERS": 1,
        **config,
    }
    context = PluginContext("", "", "YOLO", None, logging.getLogger("test"), models, models, threading.Event())
    plugin = yolo.YoloDetector(merged, context)
    plugin.on_init()
    return plugin


def detect(plugin: Any) -> list[dict[str, Any]]:
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[100:160, 40:120] = 255
    inputs = [Input(image=frame, seq=1)]
    return plugin.post_process(plugin.predict(plugin.pre_process(inputs)), inputs)[0]  # type: ignore[no-any-return]


# --- the mapping (pure: every choice, whatever is installed) --------------------------------------------------
@pytest.mark.parametrize(
    ("choice", "providers"),
    [
        ("cpu", ["CPUExecutionProvider"]),
        ("openvino", [("OpenVINOExecutionProvider", {"device_type": "CPU", "precision": "FP32", "num_streams": "1",
                                                     "num_of_threads": "1"}), "CPUExecutionProvider"]),
        ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        ("tensorrt", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
    ],
)  # fmt: skip
def test_each_choice_maps_to_its_providers_with_the_cpu_last(choice: str, providers: list[Any]) -> None:
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider",
                  "CPUExecutionProvider"]  # fmt: skip
    assert execution.resolve(choice, everything, "m.onnx") == choice
    assert execution.session_providers(choice, threads=1) == providers
    _, given = execution.load({"EXECUTION_PROVIDER": choice, "INTRA_OP_THREADS": 1}, everything, "m.onnx", "b")
    assert given == providers


def test_auto_takes_cuda_on_a_gpu_build_and_the_cpu_otherwise() -> None:
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution.resolve("auto", gpu_build, "m.onnx") == "cuda"  # TensorRT only when asked
    assert execution.resolve("auto", ["OpenVINOExecutionProvider", "CPUExecutionProvider"], "m.onnx") == "cpu"
    assert execution.resolve("auto", ["AzureExecutionProvider", "CPUExecutionProvider"], "m.onnx") == "cpu"
    assert execution.uses_gpu({"EXECUTION_PROVIDER": "auto"}, "onnxruntime-gpu")
    assert not execution.uses_gpu({"EXECUTION_PROVIDER": "auto"}, "onnxruntime-openvino")
    assert execution.uses_gpu({"EXECUTION_PROVIDER": "tensorrt"}, None)
    assert yolo.YoloDetector.default_workers({"EXECUTION_PROVIDER": "cuda"}, 8) == 1  # one process feeds a GPU
    assert yolo.YoloDetector.default_workers({"EXECUTION_PROVIDER": "openvino"}, 8) == 8  # OpenVINO's CPU plugin


def test_a_choice_the_build_lacks_is_refused_naming_the_model_and_the_package() -> None:
    with pytest.raises(execution.ProviderUnavailable) as caught:
        execution.resolve("cuda", ["CPUExecutionProvider"], "yolov8n.onnx", "onnxruntime 1.32.0")
    text = str(caught.value)
    assert "'yolov8n.onnx'" in text and "CUDAExecutionProvider" in text and "onnxruntime-gpu" in text
    with pytest.raises(execution.ProviderUnavailable, match=r"'det\.onnx'.*onnxruntime-openvino"):
        execution.resolve("openvino", ["CPUExecutionProvider"], "det.onnx")
    with pytest.raises(execution.ProviderUnavailable, match=r"EXECUTION_PROVIDERS names DmlExecutionProvider"):
        execution.load({"EXECUTION_PROVIDERS": ["DmlExecutionProvider"]}, ["CPUExecutionProvider"], "m.onnx", "b")
    problem, _ = check_value(yolo.YoloDetector.config_schema()["EXECUTION_PROVIDER"], "gpu")
    assert problem is not None and "'openvino'" in problem  # a name that is no choice: refused by the key


def test_the_node_refuses_a_pipeline_whose_provider_is_not_installed(tmp_path: Path) -> None:
    """In the node process (no onnxruntime import): the installed package's name decides, before any server."""
    yolo_model(tmp_path / "y.onnx", "v8", 2, ROWS, size=(320, 320))
    config = {**defaults(yolo.YoloDetector.config_schema()), "ONNX_MODEL": "y.onnx", "LAYOUT": "v8"}
    assert yolo.YoloDetector.check_config({**config, "EXECUTION_PROVIDER": "auto"}, tmp_path) == []
    missing = [c for c in ("openvino", "cuda") if c not in execution.build_accelerators(BUILD)]
    for choice in missing:
        problems = yolo.YoloDetector.check_config({**config, "EXECUTION_PROVIDER": choice}, tmp_path)
        assert len(problems) == 1 and "'y.onnx'" in problems[0] and execution.PACKAGES[choice] in problems[0]
    assert execution.node_problems({"EXECUTION_PROVIDER": "cuda"}, "m.onnx", "onnxruntime-openvino")
    assert not execution.node_problems({"EXECUTION_PROVIDER": "openvino"}, "m.onnx", "onnxruntime-openvino")


# --- the real onnxruntime of this venv ----------------------------------------------------------------------
def test_cpu_and_auto_run_the_model_on_the_cpu_provider(tmp_path: Path) -> None:
    for choice in ("cpu", "auto"):
        if choice == "auto" and "CUDAExecutionProvider" in AVAILABLE:
            continue  # auto means CUDA there
        plugin = yolo_plugin(tmp_path, EXECUTION_PROVIDER=choice)
        info = plugin.model_info()
        assert info["providers"] == ["CPUExecutionProvider"] and info["execution_provider"] == "cpu"
        assert [d["class_id"] for d in detect(plugin)] == [0, 0, 1]


@pytest.mark.parametrize("choice", ["openvino", "cuda", "tensorrt"])
def test_the_server_refuses_to_load_on_a_provider_onnxruntime_lacks(tmp_path: Path, choice: str) -> None:
    if all(p in AVAILABLE for p in execution.PROVIDERS[choice]):
        pytest.skip(f"this onnxruntime build has {choice}: the test needs one without it")
    with pytest.raises(execution.ProviderUnavailable) as caught:
        yolo_plugin(tmp_path, EXECUTION_PROVIDER=choice)
    text = str(caught.value)
    assert "model 'y.onnx'" in text and execution.PROVIDERS[choice][0] in text and ort.__version__ in text
    assert str(tmp_path) not in text  # no local path in what goes on the wire (decision 37)


def test_openvino_runs_the_models_as_the_cpu_provider_does(tmp_path: Path) -> None:
    """The OpenVINO side runs in the OpenVINO venv (tests/openvino_env.py), as a separate process: the plugins'
    ``predict`` there on the tensors ``pre_process`` made here; both outputs post-processed here, then compared."""
    if openvino_env.no_wheel_reason():
        pytest.skip(openvino_env.no_wheel_reason())
    reference = yolo_plugin(tmp_path, EXECUTION_PROVIDER="cpu")
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[100:160, 40:120] = 255
    pp_ocr = load_module("extensions/serving/pp_ocr.py")
    text = np.full((480, 640, 3), 255, np.uint8)
    import cv2

    cv2.putText(text, "OPENVINO 2026", (40, 200), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (0, 0, 0), 4)
    context = PluginContext("", "", "PP", None, logging.getLogger("test"), tmp_path, tmp_path, threading.Event())
    config = {**defaults(pp_ocr.PpOcrDetector.config_schema()), "WORKERS": 1}
    detector = pp_ocr.PpOcrDetector({**config, "EXECUTION_PROVIDER": "cpu"}, context)
    detector.on_init()
    cases = [("yolo", reference, "extensions/serving/yolo.py", "YoloDetector", frame),
             ("pp_ocr", detector, "extensions/serving/pp_ocr.py", "PpOcrDetector", text)]  # fmt: skip
    runs, batches = [], {}
    for name, plugin, file, class_name, image in cases:
        inputs = [Input(image=image, seq=1)]
        batch = plugin.pre_process(inputs)
        batches[name] = (plugin, inputs, batch)
        np.save(tmp_path / f"{name}.npy", batch[0])
        runs.append({"plugin": file, "class": class_name, "config": {**plugin.config, "EXECUTION_PROVIDER": "openvino"},
                     "models_dir": str(tmp_path), "tensor": str(tmp_path / f"{name}.npy"),
                     "output": str(tmp_path / f"{name}-openvino.npy")})  # fmt: skip
    runs[1]["rapidocr_models"] = str(pp_ocr.rapidocr_models_dir())
    try:
        answers = openvino_env.run_predict({"work": str(tmp_path), "runs": runs})
    except openvino_env.InstallFailed as failed:
        pytest.fail(f"the OpenVINO venv could not be made (tests/openvino_env.py): {failed}")
    found: dict[str, list[Any]] = {}
    for answer, (name, (plugin, inputs, batch)) in zip(answers, batches.items(), strict=True):
        assert answer["providers"][0] == "OpenVINOExecutionProvider" and answer["execution_provider"] == "openvino"
        cpu_output, extra = plugin.predict(batch)
        openvino_output = np.load(tmp_path / f"{name}-openvino.npy")
        assert openvino_output.shape == cpu_output.shape
        assert np.allclose(openvino_output, cpu_output, atol=1e-2), np.abs(openvino_output - cpu_output).max()
        found[name] = [plugin.post_process((out, extra), inputs)[0] for out in (openvino_output, cpu_output)]
    got, want = found["yolo"]
    assert [d["class_id"] for d in got] == [d["class_id"] for d in want] == [0, 0, 1]
    assert np.allclose([d["box"] for d in got], [d["box"] for d in want], atol=0.5)
    got, want = found["pp_ocr"]
    assert len(got) == len(want) >= 1
    assert np.allclose([d["box"] for d in got], [d["box"] for d in want], atol=2)


@pytest.mark.skipif("CUDAExecutionProvider" not in AVAILABLE, reason=NO_GPU.format("CUDA"))
def test_cuda_runs_the_model_on_the_gpu(tmp_path: Path) -> None:
    plugin = yolo_plugin(tmp_path, EXECUTION_PROVIDER="cuda")
    assert plugin.model_info()["providers"][0] == "CUDAExecutionProvider"
    assert [d["class_id"] for d in detect(plugin)] == [0, 0, 1]


@pytest.mark.skipif("TensorrtExecutionProvider" not in AVAILABLE, reason=NO_GPU.format("TensorRT"))
def test_tensorrt_runs_the_model_on_the_gpu(tmp_path: Path) -> None:
    plugin = yolo_plugin(tmp_path, EXECUTION_PROVIDER="tensorrt")
    assert plugin.model_info()["providers"][0] == "TensorrtExecutionProvider"
    assert [d["class_id"] for d in detect(plugin)] == [0, 0, 1]


def test_a_pipeline_naming_a_missing_provider_is_refused_at_once(tmp_path: Path) -> None:
    """Through the node's check of an instance's engines: the issue names the serving plugin, the model and the
    package to install."""
    from edge_engine.plugin.discovery import PluginLoader
    from edge_engine.plugin.hooks import get_plugin_manager
    from edge_engine.plugin.registry import PluginRegistry
    from edge_engine.serving.instance_models import check_engines

    choice = next((c for c in ("openvino", "cuda") if c not in execution.build_accelerators(BUILD)), None)
    if choice is None:
        pytest.skip("this onnxruntime build has every provider tried here")
    registry = PluginRegistry()
    PluginLoader(registry, get_plugin_manager()).load_folder(REPO / "extensions")
    yolo_model(tmp_path / "y.onnx", "v8", 2, ROWS, size=(320, 320))
    params = {"ONNX_MODEL": "y.onnx", "LAYOUT": "v8", "EXECUTION_PROVIDER": choice}
    issues = check_engines({"AI_ENGINE": "YOLO", "STARTUP_AI_ENGINE_PARAMS": params}, registry, {}, tmp_path)
    assert len(issues) == 1
    text = str(issues[0])
    assert "serving plugin 'YOLO'" in text and "'y.onnx'" in text and execution.PACKAGES[choice] in text
    assert check_engines({"AI_ENGINE": "YOLO", "STARTUP_AI_ENGINE_PARAMS": {**params, "EXECUTION_PROVIDER": "auto"}},
                         registry, {}, tmp_path) == []  # fmt: skip


def test_the_openvino_image_variant_installs_its_build_and_is_amd64_only() -> None:
    """``docker/build.sh --openvino``: VARIANT=openvino swaps onnxruntime-openvino in (never both builds in the
    image's venv); there is no aarch64 wheel, so an arm64 OpenVINO image is refused before anything is built."""
    import subprocess

    done = subprocess.run(["bash", "docker/build.sh", "--openvino", "--platform", "linux/arm64"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "OpenVINO image is amd64 only" in done.stderr, done.stderr
    install = (REPO / "docker" / "install-requirements.sh").read_text(encoding="utf-8")
    assert "openvino) ort=onnxruntime-openvino ;;" in install
    assert "onnxruntime-openvino" in (REPO / "requirements-openvino.txt").read_text(encoding="utf-8")
