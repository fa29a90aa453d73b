"""The ``YOLO`` serving plugin and the ``OBJECT_DETECTOR`` business plugin, on real ONNX models built with ``onnx``.

The models (``onnx_models.yolo_model``) output known boxes in both Ultralytics layouts, plus one box they
*measure* from the input (the bright rectangle a test draws), so decoding, the letterbox and its inverse are
checked end to end on non-square frames. NMS is checked against OpenCV's ``cv2.dnn.NMSBoxes`` on random sets.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import REPO, load_module, wait_for
from onnx_models import yolo_model

from edge_engine.api import PluginContext, letterbox, non_max_suppression
from edge_engine.errors import ConfigError
from edge_engine.plugin.config_keys import defaults
from edge_engine.plugin.kinds import Input

pytest.importorskip("onnxruntime", reason="model serving needs onnxruntime (requirements.txt)")

NAMES = {0: "person", 1: "car", 2: "sign"}


yolo = load_module("extensions/serving/yolo.py")


def v8_row(box: tuple[float, float, float, float], scores: list[float]) -> list[float]:
    """``[cx, cy, w, h, scores...]`` from an xyxy box in model-input pixels."""
    x1, y1, x2, y2 = box
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, *scores]


def v5_row(box: tuple[float, float, float, float], objectness: float, scores: list[float]) -> list[float]:
    return [*v8_row(box, [])[:4], objectness, *scores]


def server_plugin(models: Path, **config: Any) -> Any:
    """A YOLO plugin loaded as a model-server process loads it (real onnxruntime session), in this process."""
    merged = {**defaults(yolo.YoloDetector.config_schema()), "WORKERS": 1, **config}
    context = PluginContext("", "", "YOLO", None, logging.getLogger("test"), models, models, threading.Event())
    plugin = yolo.YoloDetector(merged, context)
    plugin.on_init()
    return plugin


def run(plugin: Any, frames: list[np.ndarray]) -> list[list[dict[str, Any]]]:
    inputs = [Input(image=frame, seq=i + 1) for i, frame in enumerate(frames)]
    return plugin.post_process(plugin.predict(plugin.pre_process(inputs)), inputs)  # type: ignore[no-any-return]


def frame_with_rect(width: int, height: int, rect: tuple[int, int, int, int]) -> np.ndarray:
    """A dark frame with a white filled rectangle covering pixels x1..x2-1, y1..y2-1."""
    frame = np.full((height, width, 3), 30, np.uint8)
    x1, y1, x2, y2 = rect
    frame[y1:y2, x1:x2] = 255
    return frame


def to_frame(box: tuple[float, ...], frame: tuple[int, int], model: tuple[int, int]) -> np.ndarray:
    """Where a model-input box lands in a ``frame`` (w, h) letterboxed, centred, into ``model`` (h, w)."""
    (width, height), (model_h, model_w) = frame, model
    ratio = min(model_w / width, model_h / height)
    new_w, new_h = round(width * ratio), round(height * ratio)
    pad_x, pad_y = (model_w - new_w) // 2, (model_h - new_h) // 2
    x1, y1, x2, y2 = box
    return np.array([(x1 - pad_x) * width / new_w, (y1 - pad_y) * height / new_h,
                     (x2 - pad_x) * width / new_w, (y2 - pad_y) * height / new_h])  # fmt: skip


def by_class(detections: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for det in detections:
        grouped.setdefault(det["class_name"], []).append(det)
    return grouped


# --- decoding: both layouts, non-square frames and inputs, overlapping boxes of one and two classes --------------
LAYOUT_CASES = [
    ("v8", (320, 320), (640, 360)),
    ("v8", (256, 384), (300, 500)),
    ("v5", (320, 320), (360, 640)),
    ("v5", (384, 256), (800, 450)),
]


@pytest.mark.parametrize(("layout", "model_size", "frame_size"), LAYOUT_CASES)
def test_decoding_gives_frame_boxes_with_class_aware_nms(
    tmp_path: Path, layout: str, model_size: tuple[int, int], frame_size: tuple[int, int]
) -> None:
    model_h, model_w = model_size
    first = (0.30 * model_w, 0.40 * model_h, 0.50 * model_w, 0.60 * model_h)
    overlapping = (first[0] + 4, first[1] + 2, first[2] + 4, first[3] + 2)  # IoU ≈ 0.8 with the first
    if layout == "v8":
        rows = [v8_row(first, [0.85, 0.05, 0.0]), v8_row(overlapping, [0.70, 0.0, 0.0]),
                v8_row(overlapping, [0.0, 0.60, 0.0]), v8_row((10, 10, 30, 30), [0.2, 0.0, 0.0])]  # fmt: skip
    else:
        rows = [v5_row(first, 0.85, [1.0, 0.05, 0.0]), v5_row(overlapping, 0.8, [0.9, 0.0, 0.0]),
                v5_row(overlapping, 1.0, [0.0, 0.6, 0.0]), v5_row((10, 10, 30, 30), 0.5, [0.4, 0.0, 0.0])]  # fmt: skip
    yolo_model(tmp_path / "m.onnx", layout, 3, rows, size=model_size, measured_class=2, names=NAMES)
    width, height = frame_size
    rect = (width // 5, height // 3, width // 5 + width // 4, height // 3 + height // 5)
    plugin = server_plugin(tmp_path, ONNX_MODEL="m.onnx")

    (detections,) = run(plugin, [frame_with_rect(width, height, rect)])

    groups = by_class(detections)
    assert sorted(groups) == ["car", "person", "sign"] and all(len(g) == 1 for g in groups.values()), detections
    assert [d["score"] for d in detections] == sorted((d["score"] for d in detections), reverse=True)
    (person,) = groups["person"]  # the overlapping, lower-scored person box is suppressed; the car box is not
    assert person["score"] == pytest.approx(0.85, abs=1e-3) and person["class_id"] == 0
    assert np.allclose(person["box"], to_frame(first, frame_size, model_size), atol=0.02)
    assert np.allclose(groups["car"][0]["box"], to_frame(overlapping, frame_size, model_size), atol=0.02)
    ratio = min(model_w / width, model_h / height)
    tolerance = 1.5 / ratio + 1  # one model pixel of resize blur at each edge, in frame pixels
    assert np.abs(np.array(groups["sign"][0]["box"]) - np.array(rect)).max() <= tolerance, (groups["sign"], rect)
    assert all(set(d) == {"box", "score", "class_id", "class_name"} for d in detections)  # the one format
    assert all(type(v) is float for d in detections for v in d["box"]) and json.loads(json.dumps(detections))


def test_agnostic_nms_class_filters_thresholds_and_limit(tmp_path: Path) -> None:
    box = (100.0, 100.0, 200.0, 180.0)
    shifted = (105.0, 102.0, 205.0, 182.0)
    rows = [v8_row(box, [0.9, 0.0, 0.0]), v8_row(shifted, [0.0, 0.8, 0.0]), v8_row((10, 10, 50, 50), [0.0, 0.0, 0.5]),
            v8_row((250, 250, 300, 300), [0.0, 0.3, 0.0])]  # fmt: skip
    yolo_model(tmp_path / "m.onnx", "v8", 3, rows, names=NAMES)
    frame = np.zeros((320, 320, 3), np.uint8)
    names = lambda dets: [d["class_name"] for d in dets]  # noqa: E731

    assert names(run(server_plugin(tmp_path, ONNX_MODEL="m.onnx"), [frame])[0]) == ["person", "car", "sign", "car"]
    agnostic = server_plugin(tmp_path, ONNX_MODEL="m.onnx", AGNOSTIC_NMS=True)
    assert names(run(agnostic, [frame])[0]) == ["person", "sign", "car"]
    strict = server_plugin(tmp_path, ONNX_MODEL="m.onnx", CONF_THRESHOLD=0.5)  # 0.5 itself is dropped
    assert names(run(strict, [frame])[0]) == ["person", "car"]
    cars = server_plugin(tmp_path, ONNX_MODEL="m.onnx", CLASSES=["Car", 2])
    assert names(run(cars, [frame])[0]) == ["car", "sign", "car"]
    assert names(run(server_plugin(tmp_path, ONNX_MODEL="m.onnx", MAX_DETECTIONS=2), [frame])[0]) == ["person", "car"]


def test_a_box_wholly_in_the_letterbox_padding_is_dropped(tmp_path: Path) -> None:
    rows = [v8_row((100, 5, 150, 40), [0.9, 0, 0]), v8_row((100, 60, 150, 100), [0.8, 0, 0])]  # band: y < 70
    yolo_model(tmp_path / "m.onnx", "v8", 3, rows, names=NAMES)
    (detections,) = run(server_plugin(tmp_path, ONNX_MODEL="m.onnx"), [np.zeros((360, 640, 3), np.uint8)])
    assert [d["box"] for d in detections] == [[200.0, 0.0, 300.0, 60.0]]  # the second, clipped at the top


def test_a_batch_of_frames_of_different_sizes_each_gets_its_own_boxes(tmp_path: Path) -> None:
    """float16 model, dynamic batch, three frames at once: each result is the rectangle of its own frame."""
    yolo_model(tmp_path / "h.onnx", "v8", 3, [], size=(320, 320), measured_class=1, names=NAMES, dtype="float16")
    plugin = server_plugin(tmp_path, ONNX_MODEL="h.onnx")
    cases = [((640, 480), (100, 50, 300, 200)), ((480, 640), (40, 300, 200, 600)), ((320, 320), (0, 0, 64, 32))]
    frames = [frame_with_rect(w, h, rect) for (w, h), rect in cases]

    results = run(plugin, frames)

    for ((width, height), rect), detections in zip(cases, results, strict=True):
        (det,) = detections
        tolerance = 1.5 * max(width, height) / 320 + 1
        assert det["class_name"] == "car" and np.abs(np.array(det["box"]) - rect).max() <= tolerance, (det, rect)


def test_a_model_fixed_at_batch_one_and_without_names_uses_the_layout_heuristic(tmp_path: Path) -> None:
    rows = [v5_row((50, 60, 150, 160), 0.9, [0.1, 0.9])] + [[0.0] * 7] * 9  # 10 boxes × 7 columns: v5 by shape
    yolo_model(tmp_path / "b1.onnx", "v5", 2, rows, batch=1)
    plugin = server_plugin(tmp_path, ONNX_MODEL="b1.onnx")
    results = run(plugin, [np.zeros((320, 320, 3), np.uint8)] * 2)
    assert [[(d["class_id"], d["class_name"]) for d in r] for r in results] == [[(1, "1")], [(1, "1")]]
    assert results[0][0]["score"] == pytest.approx(0.81, abs=1e-3)


def test_a_labels_file_names_the_classes(tmp_path: Path) -> None:
    yolo_model(tmp_path / "m.onnx", "v8", 3, [v8_row((0, 0, 40, 40), [0.1, 0.1, 0.9])], names=NAMES)
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    (tmp_path / "labels.json").write_text(json.dumps({"0": "a", "1": "b", "2": "c"}))
    frame = np.zeros((320, 320, 3), np.uint8)
    for labels, expected in (("labels.txt", "bird"), ("labels.json", "c")):
        plugin = server_plugin(tmp_path, ONNX_MODEL="m.onnx", LABELS_FILE=labels)
        assert run(plugin, [frame])[0][0]["class_name"] == expected


# --- configuration errors: at once, naming the model ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"CLASSES": ["persn"]}, "model 'm.onnx': key 'CLASSES': no class named 'persn'; did you mean 'person'?"),
        ({"CLASSES": [7]}, "class id 7 is out of range (the model has 3 classes)"),
        (
            {"LABELS_FILE": "two.txt"},
            "with the 2 class names (C = 2); segmentation and pose exports are not supported "
            "(names from LABELS_FILE 'two.txt')",
        ),
        ({"LABELS_FILE": "absent.txt"}, "model 'm.onnx': LABELS_FILE 'absent.txt' not found"),
        ({"LAYOUT": "v5"}, "the output [N, 7, 12] in the v5 layout has 7 classes, not 3 (names from the model's"),
        ({"INPUT_WIDTH": 640}, "expects shape [N, 3, 320, 320] but the config"),
        ({"ONNX_MODEL": "yolov9000.onnx"}, "model 'yolov9000.onnx': file not found"),
    ],
)
def test_config_problems_name_the_model(tmp_path: Path, config: dict[str, Any], expected: str) -> None:
    yolo_model(tmp_path / "m.onnx", "v8", 3, [v8_row((0, 0, 10, 10), [0.5, 0, 0])] * 12, names=NAMES)
    (tmp_path / "two.txt").write_text("a\nb\n")
    merged = {**defaults(yolo.YoloDetector.config_schema()), "ONNX_MODEL": "m.onnx", **config}
    problems = yolo.YoloDetector.check_config(merged, tmp_path)
    assert any(expected in p for p in problems), problems


def test_an_output_of_neither_layout_is_refused(tmp_path: Path) -> None:
    rows = [v8_row((0, 0, 10, 10), [0.5, 0, 0, 0])] * 12  # 4 class scores but 3 names
    yolo_model(tmp_path / "m.onnx", "v8", 4, rows, names=NAMES)
    merged = {**defaults(yolo.YoloDetector.config_schema()), "ONNX_MODEL": "m.onnx"}
    (problem,) = yolo.YoloDetector.check_config(merged, tmp_path)
    assert "fits neither v8 [N, 4+C, boxes] nor v5 [N, boxes, 5+C] with the 3 class names" in problem
    with pytest.raises(ValueError, match="fits neither"):
        server_plugin(tmp_path, ONNX_MODEL="m.onnx")


# --- NMS against OpenCV -------------------------------------------------------------------------------------------
def test_nms_keeps_what_opencv_keeps_on_random_sets() -> None:
    """Across classes against ``cv2.dnn.NMSBoxes``, per class against ``cv2.dnn.NMSBoxesBatched``."""
    rng = np.random.default_rng(16)
    for trial in range(204):
        count = int(rng.integers(1, 120)) if trial < 200 else 1500  # the last ones: more than MATRIX_NMS_MAX
        corner = rng.uniform(0, 600, (count, 2))
        size = rng.uniform(2, 220, (count, 2))
        scores = rng.uniform(0, 1, count)
        classes = rng.integers(0, 4, count)
        threshold = float(rng.uniform(0.05, 0.95))
        xyxy, xywh = np.hstack([corner, corner + size]), np.hstack([corner, size]).tolist()

        expected = np.asarray(cv2.dnn.NMSBoxes(xywh, scores.tolist(), 0.0, threshold)).reshape(-1).tolist()
        assert non_max_suppression(xyxy, scores, threshold) == expected
        batched = cv2.dnn.NMSBoxesBatched(xywh, scores.tolist(), classes.tolist(), 0.0, threshold)
        expected = np.asarray(batched).reshape(-1).tolist()
        assert non_max_suppression(xyxy, scores, threshold, class_ids=classes) == expected
        assert non_max_suppression(xyxy, scores, threshold, class_ids=classes, max_keep=5) == expected[:5]


def test_letterbox_centres_the_frame_and_maps_boxes_back() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    canvas, placement = letterbox(frame, 320, 320)
    assert canvas.shape == (320, 320, 3) and (placement.pad_x, placement.pad_y) == (0, 70)
    assert canvas[0, 0, 0] == 114 and canvas[160, 160, 0] == 0 and canvas[319, 319, 0] == 114
    assert placement.to_frame([[0, 70, 320, 250]]).tolist() == [[0, 0, 640, 360]]
    assert placement.to_frame([[-5, 0, 400, 400]]).tolist() == [[0, 0, 640, 360]]  # clipped to the frame


# --- in a node: the documented example, OBJECT_DETECTOR payloads and witness images --------------------------------
def docs_example() -> dict[str, Any]:
    """The pipeline docs/serving.md shows for "drop yolov8n.onnx into _models/"."""
    text = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- yolo-example -->\s*```json\n(.*?)```", text, re.S)
    assert match, "docs/serving.md lost its YOLO example"
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def test_the_documented_yolov8n_pipeline_reports_objects_with_a_witness(node_factory: Any, tmp_path: Path) -> None:
    example = docs_example()
    node = node_factory(start=False)
    coco_like = {i: f"class{i}" for i in range(80)} | {0: "person", 2: "car"}
    rows = [v8_row((40, 300, 120, 500), [0.0] * 2 + [0.8] + [0.0] * 77)] * 30  # a car, repeated: NMS keeps one
    yolo_model(node.layout.models / "yolov8n.onnx", "v8", 80, rows, size=(640, 640), measured_class=0,
               names=coco_like)  # fmt: skip
    images = tmp_path / "frames"
    images.mkdir()
    for index in range(3):  # 1280 × 720: letterboxed into 640 × 640 with 140 px bands
        cv2.imwrite(str(images / f"f{index}.png"), frame_with_rect(1280, 720, (600, 200 + 50 * index, 700, 500)))
    node.start()
    pipeline = {**example, "TYPE": "IMAGE_FOLDER", "PATH": str(images)}
    pipeline.pop("URL", None)
    for plugin in pipeline["PLUGINS"]:
        for instance in plugin["INSTANCES"]:
            instance["MIN_PAYLOAD_INTERVAL"] = 0
    node.add_pipeline(pipeline)
    folder = node.layout.output / pipeline["NAME"] / "OBJECT_DETECTOR_people"
    payloads_file = folder / "payloads.jsonl"
    wait_for(lambda: payloads_file.is_file() and len(payloads_file.read_text().splitlines()) == 3, timeout=60)

    payloads = [json.loads(line) for line in payloads_file.read_text().splitlines()]
    for index, payload in enumerate(payloads):
        data = payload.get("data", payload)
        assert data["OBJECTS"] == 1 and data["COUNTS"] == {"person": 1} and data["ENGINE"] == "YOLO", data
        (det,) = data["DETECTIONS"]  # CLASSES ["person"]: the car is not reported
        assert det["class_name"] == "person" and det["class_id"] == 0 and det["score"] == pytest.approx(0.9)
        assert np.abs(np.array(det["box"]) - (600, 200 + 50 * index, 700, 500)).max() <= 4, det
        assert data["IMAGE_SIZE"] == [1280, 720]
    assert len(list((folder / "images").glob("*.jpg"))) == 3
    witness = cv2.imread(str(next((folder / "images").glob("*.jpg"))))
    assert witness.shape[1] == 640  # WITNESS_WIDTH
    (server,) = node.serving.snapshot()["servers"]
    assert server["model"] == "yolov8n.onnx" and server["signature"] == "YOLO"


def test_a_class_name_typo_refuses_the_pipeline_naming_model_and_instance(node_factory: Any) -> None:
    node = node_factory(start=False)
    yolo_model(node.layout.models / "yolov8n.onnx", "v8", 3, [v8_row((0, 0, 9, 9), [0.5, 0, 0])] * 9, names=NAMES)
    node.start()
    params = {"ONNX_MODEL": "yolov8n.onnx", "CLASSES": ["cra"]}
    instance = {"INSTANCE_ID": "cars", "STARTUP_AI_ENGINE_PARAMS": params}
    pipeline = {"NAME": "gate", "TYPE": "VOID", "PLUGINS": [{"SIGNATURE": "OBJECT_DETECTOR", "INSTANCES": [instance]}]}
    with pytest.raises(ConfigError) as caught:
        node.add_pipeline(pipeline)
    message = str(caught.value)
    assert "instance 'cars'" in message and "serving plugin 'YOLO' › model 'yolov8n.onnx'" in message, message
    assert "no class named 'cra'; did you mean 'car'?" in message, message


# --- OBJECT_DETECTOR's own logic (unit: detections given by hand) ---------------------------------------------------
def object_detector(**config: Any) -> tuple[Any, list[tuple[dict[str, Any], Any]]]:
    module = load_module("extensions/business/object_detector.py")
    emitted: list[tuple[dict[str, Any], Any]] = []

    def emit(payload: dict[str, Any], image: Any = None) -> None:
        emitted.append((payload, image))

    log = logging.getLogger("test")
    context = PluginContext("", "cam", "OBJECT_DETECTOR", "i", log, Path("."), Path("."), threading.Event(), emit)
    plugin = module.ObjectDetector({**defaults(module.ObjectDetector.config_schema()), **config}, context)
    plugin.on_init()
    return plugin, emitted


def test_object_detector_filters_counts_and_draws() -> None:
    from edge_engine.api import ServingError, make_detection

    plugin, emitted = object_detector(CLASSES=["Person", 2], MIN_SCORE=0.3, MIN_OBJECTS=2, MIN_PAYLOAD_INTERVAL=0)
    frame = np.zeros((90, 160, 3), np.uint8)
    detections = [
        make_detection((10, 10, 40, 60), 0.9, 0, "person"),
        make_detection((50, 10, 90, 60), 0.2, 0, "person"),  # under MIN_SCORE
        make_detection((100, 20, 150, 80), 0.8, 2, "car"),  # class 2 is wanted by id
        make_detection((0, 0, 5, 5), 0.99, 1, "bicycle"),  # not wanted
    ]
    plugin.process(Input(image=frame, seq=7, inferences={"YOLO": detections}))
    plugin.process(Input(image=frame, seq=8, inferences={"YOLO": detections[:2]}))  # one left: under MIN_OBJECTS
    ((payload, witness),) = emitted
    assert payload["OBJECTS"] == 2 and payload["COUNTS"] == {"car": 1, "person": 1} and payload["FRAME_INDEX"] == 7
    assert payload["DETECTIONS"] == [detections[0], detections[2]] and payload["IMAGE_SIZE"] == [160, 90]
    assert witness.shape == frame.shape and witness[10, 10:40].any()  # the person's box is drawn
    with pytest.raises(ServingError):
        plugin.process(Input(image=frame, inferences={"YOLO": ServingError("YOLO", "crashed", "gone")}))
