"""The batch size a model server uses when the config leaves it to the plugin (``MAX_BATCH_SIZE: 0``, the default of the
``ONNX`` and ``YOLO`` plugins): from the model's input size, small inputs batched, full frames one at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from onnx_models import mean_model, yolo_model

from edge_engine.plugin.discovery import PluginLoader
from edge_engine.plugin.hooks import get_plugin_manager
from edge_engine.plugin.registry import PluginRegistry
from edge_engine.serving.instance_models import ServerSettings, resolve_engines
from edge_engine.serving.onnx_plugin import batch_for_input


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    registry = PluginRegistry()
    PluginLoader(registry, get_plugin_manager()).load_folder(REPO / "extensions")
    return registry


def settings(registry: PluginRegistry, signature: str, params: dict[str, object], models: Path) -> ServerSettings:
    engines, unknown, problems = resolve_engines({"AI_ENGINE": signature, "STARTUP_AI_ENGINE_PARAMS": params},
                                                 registry)  # fmt: skip
    assert not unknown and not problems
    return ServerSettings.from_engine(engines[0], models)


def test_the_batch_follows_the_input_size() -> None:
    assert batch_for_input((16, 16)) == 8  # crops: batches spread the per-call cost
    assert batch_for_input((96, 96)) == 8
    assert batch_for_input((480, 640)) == 1  # full frames: one at a time keeps every worker busy
    assert batch_for_input((640, 640)) == 1
    assert batch_for_input(None) == 1  # unknown: most likely a whole frame
    sizes = [(32, 32), (64, 64), (128, 128), (192, 192), (320, 320), (1080, 1920)]
    batches = [batch_for_input(size) for size in sizes]
    assert batches == sorted(batches, reverse=True) and all(b in (1, 2, 4, 8) for b in batches)


def test_the_onnx_plugin_batches_crops_and_not_full_frames(registry: PluginRegistry, tmp_path: Path) -> None:
    mean_model(tmp_path / "any.onnx")
    mean_model(tmp_path / "frame.onnx", 480, 640)
    small = {"ONNX_MODEL": "any.onnx", "INPUT_WIDTH": 16, "INPUT_HEIGHT": 16}
    assert settings(registry, "ONNX", small, tmp_path).max_batch == 8
    assert settings(registry, "ONNX", {"ONNX_MODEL": "frame.onnx"}, tmp_path).max_batch == 1  # the model's size
    frame = {"ONNX_MODEL": "any.onnx", "INPUT_WIDTH": 640, "INPUT_HEIGHT": 480}
    assert settings(registry, "ONNX", frame, tmp_path).max_batch == 1
    assert settings(registry, "ONNX", {**frame, "MAX_BATCH_SIZE": 4}, tmp_path).max_batch == 4  # the user's choice


def test_yolo_at_640_runs_one_frame_per_batch(registry: PluginRegistry, tmp_path: Path) -> None:
    yolo_model(tmp_path / "y.onnx", "v8", 2, [[10, 10, 4, 4, 0.9, 0.1]], size=(640, 640))
    assert settings(registry, "YOLO", {"ONNX_MODEL": "y.onnx"}, tmp_path).max_batch == 1


def test_other_plugins_keep_their_own_default(registry: PluginRegistry, tmp_path: Path) -> None:
    assert settings(registry, "PP_OCR_DIRECTION", {}, tmp_path).max_batch == 4


def test_the_direction_classifier_runs_in_one_process_by_default(registry: PluginRegistry, tmp_path: Path) -> None:
    assert settings(registry, "PP_OCR_DIRECTION", {}, tmp_path).workers == 1  # the OCR reader: one process fewer
    assert settings(registry, "PP_OCR_DIRECTION", {"WORKERS": 2}, tmp_path).workers == 2
