"""The OCR reader: PP-OCR's detector, direction classifier and recognizer (from the rapidocr wheel) read frames
where known text was drawn (several fonts, sizes, angles, upside down), in-process and in a node (TEXT_READER),
and a failing second stage marks lines, never the frame.
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

from edge_engine.api import crop_text_line
from edge_engine.errors import ServingError
from edge_engine.plugin.discovery import import_file
from edge_engine.plugin.kinds import Input, PluginContext
from tests.conftest import wait_for
from tests.text_frames import CASES, TextFrame, expected_text, render

REPO = Path(__file__).resolve().parent.parent
pp_ocr = import_file(REPO / "extensions" / "serving" / "pp_ocr.py", "test_ocr_pp_ocr")
reader_module = import_file(REPO / "extensions" / "business" / "text_reader.py", "test_ocr_text_reader")


def context(signature: str, infer: Any = None) -> PluginContext:
    return PluginContext("node", "p", signature, "i", logging.getLogger("test"), Path("."), Path("."),
                         threading.Event(), infer_fn=infer)  # fmt: skip


def serving(cls: type, **config: Any) -> Any:
    """A serving plugin with its model loaded, in this process (what a model server does)."""
    merged = {k: v.default for k, v in cls.config_schema().items()}
    merged.update(config)
    plugin = cls(merged, context(cls.SIGNATURE))
    plugin.on_init()
    return plugin


def run(plugin: Any, images: list[Any]) -> list[Any]:
    inputs = [Input(image=image, seq=i + 1) for i, image in enumerate(images)]
    return plugin.post_process(plugin.predict(plugin.pre_process(inputs)), inputs)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return {
        "detector": serving(pp_ocr.PpOcrDetector, **reader_module.RAPIDOCR_DETECTOR),
        "direction": serving(pp_ocr.PpOcrDirection),
        "recognizer": serving(pp_ocr.PpOcrRecognizer),
        "lines": serving(pp_ocr.PpOcrLines),
    }


# --- the models, in-process ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_three_models_read_what_was_drawn(models: dict[str, Any], case: TextFrame) -> None:
    frame = render(case)
    (regions,) = run(models["detector"], [frame])
    assert all(len(r["quad"]) == 4 and r["class_name"] == "text" for r in regions)
    crops = [crop_text_line(frame, region["quad"]) for region in regions]
    directions = run(models["direction"], crops)
    assert {d["label"] for d in directions} == ({"180"} if case.upside_down else {"0"})
    crops = [reader_module.turn_half(c) if d["label"] == "180" else c for c, d in zip(crops, directions, strict=True)]
    lines = run(models["recognizer"], crops)
    assert [line["text"] for line in lines] == expected_text(case)
    assert all(0.8 < line["score"] <= 1.0 for line in lines)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_lines_server_turns_upside_down_crops_and_reads_what_was_drawn(
    models: dict[str, Any], case: TextFrame
) -> None:
    frame = render(case)
    (regions,) = run(models["detector"], [frame])
    crops = [crop_text_line(frame, region["quad"]) for region in regions]
    lines = run(models["lines"], crops)
    assert [line["text"] for line in lines] == expected_text(case)
    assert [line["direction"] for line in lines] == ["180" if case.upside_down else "0"] * len(crops)
    assert all(0.8 < line["score"] <= 1.0 for line in lines)
    if case.upside_down:  # the caller's crops are left as they were
        assert all(np.array_equal(c, crop_text_line(frame, r["quad"])) for c, r in zip(crops, regions, strict=True))


def test_the_detector_input_is_the_normalised_frames_padded_to_the_batch_and_its_array_reused(
    models: dict[str, Any],
) -> None:
    detector = models["detector"]
    big, small = render(CASES[0]), cv2.resize(render(CASES[1]), (320, 240))
    _, sizes = detector.pre_process([Input(image=big, seq=1), Input(image=small, seq=2)])
    assert [s[:2] for s in sizes] == [(736, 992), (736, 992)]  # the shorter side enlarged to 736 either way
    tall = cv2.resize(render(CASES[2]), (480, 640))  # portrait: 992 high, 736 wide; the batch is 992 × 992
    batch, sizes = detector.pre_process([Input(image=big, seq=1), Input(image=tall, seq=2)])
    assert batch.shape == (2, 3, 992, 992) and sizes[1][:2] == (992, 736)
    batch[:] = 5.0  # what a previous batch of this shape left
    again, _ = detector.pre_process([Input(image=big, seq=3), Input(image=tall, seq=4)])
    assert again is batch  # same shape: the same array, refilled
    for index, (frame, (h, w, _, _)) in enumerate(zip([big, tall], sizes, strict=True)):
        expected = (cv2.resize(frame, (w, h)).astype(np.float32) * (2 / 255.0) - 1.0).transpose(2, 0, 1)
        assert np.array_equal(batch[index, :, :h, :w], expected)
        assert not batch[index, :, h:, :].any() and not batch[index, :, :, w:].any()  # zero padding


def test_the_lines_server_without_direction_loads_no_classifier_and_turns_nothing() -> None:
    case = next(c for c in CASES if c.upside_down)
    lines_model = serving(pp_ocr.PpOcrLines, USE_DIRECTION=False)
    detector = serving(pp_ocr.PpOcrDetector, **reader_module.RAPIDOCR_DETECTOR)
    frame = render(case)
    (regions,) = run(detector, [frame])
    lines = run(lines_model, [crop_text_line(frame, region["quad"]) for region in regions])
    assert lines_model.direction is None and {line["direction"] for line in lines} == {"0"}
    assert [line["text"] for line in lines] != expected_text(case)  # read upside down


def test_the_lines_server_defaults_to_one_process_per_four_cores() -> None:
    assert [pp_ocr.PpOcrLines.default_workers({}, cores) for cores in (1, 2, 4, 8)] == [1, 1, 1, 2]


def test_recognizer_runs_each_crop_alone_by_default(models: dict[str, Any]) -> None:
    """On one CPU thread a group of crops costs more per crop than the crops run alone (benchmarks/README.md)."""
    crops = [np.full((20, width, 3), 200, np.uint8) for width in (400, 30, 100)]
    groups = models["recognizer"].pre_process([Input(image=c, seq=i) for i, c in enumerate(crops)])
    assert [indices for indices, _ in groups] == [[1], [2], [0]]
    assert [tensor.shape for _, tensor in groups] == [(1, 3, 48, 320), (1, 3, 48, 320), (1, 3, 48, 960)]


def test_recognizer_batches_crops_of_any_width_each_as_read_alone(models: dict[str, Any]) -> None:
    frame = render(CASES[1])  # sizes: crops from 60 to 500 px wide
    (regions,) = run(models["detector"], [frame])
    crops = [crop_text_line(frame, region["quad"]) for region in regions]
    grouped = serving(pp_ocr.PpOcrRecognizer, GROUP_SIZE=6)
    alone = [run(models["recognizer"], [crop])[0]["text"] for crop in crops]
    together = [r["text"] for r in run(grouped, crops[::-1])][::-1]  # one group, in another order
    assert together == alone == expected_text(CASES[1])


def test_recognizer_groups_sort_by_width_and_pad_each_group_to_its_widest() -> None:
    crops = [np.full((20, width, 3), 200, np.uint8) for width in (400, 30, 100, 2000, 60)]
    groups = pp_ocr.recognizer_groups(crops, group_size=2)
    assert [indices for indices, _ in groups] == [[1, 4], [2, 0], [3]]
    assert [tensor.shape for _, tensor in groups] == [(2, 3, 48, 320), (2, 3, 48, 960), (1, 3, 48, 4800)]
    _, tensor = groups[0]
    assert tensor[0, :, :, 72:].max() == 0 and tensor[0, :, :, :72].min() > 0  # 30 px wide at 20 high → 72 at 48


def test_ctc_decoding_merges_repeats_drops_blanks_and_scores_the_kept_characters() -> None:
    characters = pp_ocr.ctc_characters("a\nb\nc")
    assert characters == ["", "a", "b", "c", " "]
    steps = [0, 1, 1, 0, 1, 2, 4, 3, 3]  # blank a a blank a b space c c
    probabilities = np.full((len(steps), len(characters)), 0.01, np.float32)
    for row, index in enumerate(steps):
        probabilities[row, index] = 0.9 if row != 5 else 0.6
    text, score = pp_ocr.ctc_decode(probabilities, characters)
    assert text == "aab c" and score == pytest.approx((0.9 * 4 + 0.6) / 5, abs=1e-5)
    assert pp_ocr.ctc_decode(np.eye(5, dtype=np.float32)[[0, 0, 0]], characters) == ("", 0.0)


def test_the_recognizer_model_has_its_dictionary(models: dict[str, Any]) -> None:
    characters = models["recognizer"].characters
    assert characters[0] == "" and characters[-1] == " " and len(characters) == 18710
    assert {"A", "z", "7", "/", "%"} <= set(characters)


# --- the business plugin's logic, with a stand-in infer() -------------------------------------------------------
def test_a_failing_line_in_one_server_marks_it_and_the_frame_still_reports(models: dict[str, Any]) -> None:
    frame = render(CASES[3])  # upside down, three lines
    (regions,) = run(models["detector"], [frame])
    calls: list[tuple[str, int, Any]] = []

    def infer(signature: str, crops: list[Any], params: Any, timeout: Any) -> list[Any]:
        calls.append((signature, len(crops), params))
        if signature != "PP_OCR_LINES":
            raise AssertionError(f"{signature} asked: the default reads lines in one server")
        crashed = ServingError(signature, "crashed", "its server process died during the batch")
        return [crashed if i == 2 else {"text": f"line {i}", "score": 0.97, "direction": "180"} for i in range(3)]

    emitted: list[dict[str, Any]] = []
    config = {k: v.default for k, v in reader_module.TextReader.config_schema().items()}
    config.update(COLOCATE=False, DIRECTION_THRESHOLD=0.8, RECOGNIZER_PARAMS={"GROUP_SIZE": 2})
    plugin = reader_module.TextReader(config, context("TEXT_READER", infer))
    plugin.context.emit_fn = lambda payload, image=None: emitted.append(payload)
    plugin.on_init()
    plugin.process(Input(image=frame, seq=1, inferences={"PP_OCR_DETECTOR": regions}))
    assert [(signature, count) for signature, count, _ in calls] == [("PP_OCR_LINES", 0), ("PP_OCR_LINES", 3)]
    assert calls[1][2] == {"GROUP_SIZE": 2, "USE_DIRECTION": True, "DIRECTION_THRESHOLD": 0.8}
    (payload,) = emitted
    assert payload["TEXT"] == "line 0\nline 1" and payload["FAILED_LINES"] == 1
    assert [line["direction"] for line in payload["LINES"][:2]] == ["180", "180"]
    assert payload["LINES"][2]["text"] is None and "PP_OCR_LINES: crashed" in payload["LINES"][2]["error"]


def test_the_reader_declares_its_lines_as_a_colocated_cascade_from_its_config() -> None:
    config = {k: v.default for k, v in reader_module.TextReader.config_schema().items()}
    user_cascade = {"SIGNATURE": "ONNX", "AS": "LANG", "PARAMS": {"ONNX_MODEL": "lang.onnx"}}
    config.update(CASCADE=[user_cascade], MAX_LINES=7, MIN_DETECTION_SCORE=0.6, USE_DIRECTION=False,
                  DIRECTION_THRESHOLD=0.8, RECOGNIZER_PARAMS={"GROUP_SIZE": 2},
                  STARTUP_AI_ENGINE_PARAMS={"PROCESS_NICE": 0, "PP_OCR_DETECTOR": {"LIMIT_SIDE": 960}})  # fmt: skip
    declared, own = reader_module.TextReader.cascades(config)
    assert declared == user_cascade
    assert own == {
        "SIGNATURE": "PP_OCR_LINES", "AS": "TEXT_READER_LINES", "CROP": "text_line", "MAX_SIDE": 0,
        "COLOCATE": True, "MIN_SCORE": 0.6, "MAX_CROPS": 7,
        "PARAMS": {"PROCESS_NICE": 0, "GROUP_SIZE": 2, "USE_DIRECTION": False, "DIRECTION_THRESHOLD": 0.8},
    }  # fmt: skip
    for off in ({"COLOCATE": False}, {"SEPARATE_STAGES": True}):
        assert reader_module.TextReader.cascades({**config, **off}) == [user_cascade]


def test_colocated_lines_come_with_the_detection_and_a_failed_one_marks_its_line(models: dict[str, Any]) -> None:
    frame = render(CASES[3])  # upside down, three lines
    (regions,) = run(models["detector"], [frame])
    regions = [*regions, {**regions[0], "score": 0.1}]  # a fourth region the cascade did not read (None)

    def infer(signature: str, crops: list[Any], params: Any, timeout: Any) -> list[Any]:
        raise AssertionError(f"{signature} asked: co-located lines need no call")

    emitted: list[dict[str, Any]] = []
    config = {k: v.default for k, v in reader_module.TextReader.config_schema().items()}
    plugin = reader_module.TextReader(config, context("TEXT_READER", infer))
    plugin.context.emit_fn = lambda payload, image=None: emitted.append(payload)
    plugin.on_init()
    crashed = ServingError("PP_OCR_LINES", "inference_error", "RuntimeError: out of memory")
    read = [{"text": "line 0", "score": 0.97, "direction": "180"}, crashed,
            {"text": "line 2", "score": 0.93, "direction": "0"}, None]  # fmt: skip
    plugin.process(Input(image=frame, seq=1, inferences={"PP_OCR_DETECTOR": regions, "TEXT_READER_LINES": read}))
    (payload,) = emitted
    assert payload["TEXT"] == "line 0\nline 2" and payload["TEXT_LINES"] == 2 and payload["FAILED_LINES"] == 1
    assert [line["direction"] for line in payload["LINES"]] == ["180", "0", "0"]
    assert payload["LINES"][1]["text"] is None and "PP_OCR_LINES: inference_error" in payload["LINES"][1]["error"]
    assert [line["box"] for line in payload["LINES"]] == [[round(v) for v in r["box"]] for r in regions[:3]]
    assert plugin.lines_failed == 1


def test_a_failing_second_stage_marks_its_lines_and_the_frame_still_reports(models: dict[str, Any]) -> None:
    frame = render(CASES[0])
    (regions,) = run(models["detector"], [frame])
    calls: list[tuple[str, int]] = []

    def infer(signature: str, crops: list[Any], params: Any, timeout: Any) -> list[Any]:
        calls.append((signature, len(crops)))
        if signature == "PP_OCR_DIRECTION":
            return [{"label": "0", "score": 0.99}] * len(crops)
        crashed = ServingError(signature, "crashed", "its server process died during the batch")
        return [crashed if i == 1 else {"text": f"line {i}", "score": 0.97} for i in range(len(crops))]

    emitted: list[dict[str, Any]] = []
    config = {k: v.default for k, v in reader_module.TextReader.config_schema().items()}
    config["SEPARATE_STAGES"] = True
    plugin = reader_module.TextReader(config, context("TEXT_READER", infer))
    plugin.context.emit_fn = lambda payload, image=None: emitted.append({"payload": payload, "image": image})
    plugin.on_init()
    plugin.process(Input(image=frame, seq=1, inferences={"PP_OCR_DETECTOR": regions}))
    assert calls == [
        ("PP_OCR_DIRECTION", 0),
        ("PP_OCR_RECOGNIZER", 0),
        ("PP_OCR_DIRECTION", 5),
        ("PP_OCR_RECOGNIZER", 5),
    ]
    (out,) = emitted
    payload = out["payload"]
    assert payload["TEXT_LINES"] == 4 and payload["FAILED_LINES"] == 1
    assert payload["TEXT"] == "line 0\nline 2\nline 3\nline 4"
    failed = payload["LINES"][1]
    assert (
        failed["text"] is None
        and "crashed" in failed["error"]
        and failed["box"] == [round(v) for v in regions[1]["box"]]
    )
    assert out["image"].shape[1] == 640 and plugin.lines_failed == 1
    json.dumps(payload)  # plain JSON


def test_a_failed_detector_is_the_frames_error() -> None:
    config = {k: v.default for k, v in reader_module.TextReader.config_schema().items()}
    plugin = reader_module.TextReader(config, context("TEXT_READER"))
    plugin.on_init()
    error = ServingError("PP_OCR_DETECTOR", "timeout", "the batch ran past the watchdog")
    with pytest.raises(ServingError):
        plugin.process(Input(image=render(CASES[0]), seq=1, inferences={"PP_OCR_DETECTOR": error}))


# --- TEXT_READER in a node --------------------------------------------------------------------------------------
def docs_example() -> dict[str, Any]:
    """The pipeline docs/serving.md shows for reading text."""
    text = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- text-reader-example -->\s*```json\n(.*?)```", text, re.S)
    assert match, "docs/serving.md lost its TEXT_READER example"
    return json.loads(match.group(1))  # type: ignore[no-any-return]


@pytest.mark.parametrize("colocate", [True, False], ids=["colocated", "own-server"])
def test_text_reader_in_a_node_reads_every_rendered_frame(node_factory: Any, tmp_path: Path, colocate: bool) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, case in enumerate(CASES):
        cv2.imwrite(str(folder / f"{index:02d}.png"), render(case))
    node = node_factory()
    pipeline = {**docs_example(), "NAME": "signs", "TYPE": "IMAGE_FOLDER", "PATH": str(folder), "PATTERN": "*.png"}
    pipeline.pop("URL")
    (instance,) = pipeline["PLUGINS"][0]["INSTANCES"]
    detector = {"PP_OCR_DETECTOR": {"LIMIT_TYPE": "min", "LIMIT_SIDE": 736}}  # the default, with WORKERS 1 for all
    instance.update({"INSTANCE_ID": "read", "MIN_PAYLOAD_INTERVAL": 0, "WITNESS_WIDTH": 320, "COLOCATE": colocate,
                     "STARTUP_AI_ENGINE_PARAMS": {"WORKERS": 1, **detector}})  # fmt: skip
    node.add_pipeline(pipeline)
    out = node.layout.output / "signs" / "TEXT_READER_read"

    def payloads() -> list[dict[str, Any]]:
        path = out / "payloads.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    wait_for(lambda: len(payloads()) == len(CASES), timeout=180)
    for case, raw in zip(CASES, payloads(), strict=True):
        data = raw.get("data", raw)
        assert data["TEXT"].split("\n") == expected_text(case), case.name
        assert data["FAILED_LINES"] == 0 and data["IMAGE_SIZE"] == [640, 480]
        assert [line["direction"] for line in data["LINES"]] == ["180" if case.upside_down else "0"] * len(case.lines)
        for line in data["LINES"]:
            x1, y1, x2, y2 = line["box"]
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480 and len(line["quad"]) == 4
    witnesses = sorted((out / "images").glob("*.jpg"))
    assert len(witnesses) == len(CASES) and cv2.imread(str(witnesses[0])).shape[1] == 320
    servers = {server.signature for server in node.serving.servers()}
    if colocate:  # the lines were read (as drawn, above) in the detector's process: no server of their own
        assert servers == {"PP_OCR_DETECTOR"}
    else:
        assert servers == {"PP_OCR_DETECTOR", "PP_OCR_LINES"}  # direction and recognizer in one process


def test_a_live_config_change_reaches_the_colocated_lines(node_factory: Any, tmp_path: Path) -> None:
    """The reader's own cascade is derived from its config: turning USE_DIRECTION off on the running pipeline
    reaches the lines read in the detector's processes (an upside-down frame is then read as it is)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    case = next(c for c in CASES if c.upside_down)
    cv2.imwrite(str(folder / "00.png"), render(case))
    node = node_factory()

    def pipeline(use_direction: bool) -> dict[str, Any]:
        return {
            "NAME": "turn", "TYPE": "IMAGE_FOLDER", "PATH": str(folder), "PATTERN": "*.png", "LOOP": True,
            "PLUGINS": [{"SIGNATURE": "TEXT_READER", "INSTANCES": [{
                "INSTANCE_ID": "read", "WITNESS": False, "USE_DIRECTION": use_direction, "MIN_TEXT_SCORE": 0,
                "STARTUP_AI_ENGINE_PARAMS": {"WORKERS": 1, "PP_OCR_DETECTOR": {"LIMIT_TYPE": "min", "LIMIT_SIDE": 736}},
            }]}],
        }  # fmt: skip

    path = node.layout.output / "turn" / "TEXT_READER_read" / "payloads.jsonl"

    def last() -> dict[str, Any] | None:
        lines = path.read_text().splitlines() if path.exists() else []
        data = json.loads(lines[-1]) if lines else None
        return data.get("data", data) if data else None

    node.add_pipeline(pipeline(True))
    wait_for(lambda: (data := last()) and data["TEXT"].split("\n") == expected_text(case), timeout=120)
    node.add_pipeline(pipeline(False))  # the same pipeline, updated live
    wait_for(lambda: (data := last()) and {line["direction"] for line in data["LINES"]} == {"0"}, timeout=60)
    data = last()
    assert data is not None and data["TEXT"].split("\n") != expected_text(case) and data["FAILED_LINES"] == 0
    assert {server.signature for server in node.serving.servers()} == {"PP_OCR_DETECTOR"}
    node.remove_pipeline("turn")


def test_dry_run_reads_the_bundled_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from edge_engine.cli import dry_run

    sample = REPO / "samples" / "text.png"
    case = next(c for c in CASES if c.name == "fonts")
    assert np.array_equal(cv2.imread(str(sample)), render(case)), "rebuild it: samples/make_text_sample.py"
    assert sample.stat().st_size < 200 * 1024
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EE_CACHE_DIR", raising=False)
    argv = ["--plugin", "TEXT_READER", "--source", str(sample), "--inputs", "1",
            "--plugin-folder", str(REPO / "extensions"), "--no-entry-points"]  # fmt: skip
    assert dry_run.main(argv) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (payload,) = [line for line in printed if line.get("type") == "payload"]
    assert payload["data"]["TEXT"] == "\n".join(expected_text(case))


def test_a_recognizer_that_never_answers_marks_the_lines_in_a_node(node_factory: Any, tmp_path: Path) -> None:
    """A real failing second stage: the recognizer's model is to come from a server nobody listens on."""
    import socket

    with socket.socket() as probe:  # a free port, closed again: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "00.png"), render(CASES[3]))  # upside down, three lines
    node = node_factory()
    unreachable = {"MODEL_URL": f"http://127.0.0.1:{port}/rec.onnx", "MODEL_SHA256": "0" * 64}
    node.add_pipeline({
        "NAME": "gate", "TYPE": "IMAGE_FOLDER", "PATH": str(folder), "PATTERN": "*.png",
        "PLUGINS": [{"SIGNATURE": "TEXT_READER", "INSTANCES": [{
            "INSTANCE_ID": "read", "INFER_TIMEOUT": 3, "RECOGNIZER_PARAMS": unreachable, "SEPARATE_STAGES": True,
            "STARTUP_AI_ENGINE_PARAMS": {"WORKERS": 1, "PP_OCR_DETECTOR": {"LIMIT_TYPE": "min", "LIMIT_SIDE": 736}},
        }]}],
    })  # fmt: skip
    path = node.layout.output / "gate" / "TEXT_READER_read" / "payloads.jsonl"
    wait_for(lambda: path.exists() and path.read_text().strip(), timeout=120)
    data = json.loads(path.read_text().splitlines()[0])
    data = data.get("data", data)
    assert data["TEXT_LINES"] == 0 and data["FAILED_LINES"] == 3 and data["TEXT"] == ""
    for line in data["LINES"]:
        assert line["text"] is None and line["error"].startswith("PP_OCR_RECOGNIZER: unavailable")
        assert line["direction"] == "180"  # the first two stages answered: only the failing one is marked


@pytest.mark.parametrize("colocate", [True, False], ids=["colocated", "own-server"])
def test_a_wrong_key_for_a_second_stage_is_refused_naming_it(node_factory: Any, tmp_path: Path, colocate: bool) -> None:
    """Co-located lines are a cascade of the pipeline: checked with it, so the pipeline is refused; lines in a server
    of their own fail the instance's start."""
    from edge_engine.errors import ConfigError

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "00.png"), render(CASES[0]))
    node = node_factory()
    pipeline = {
        "NAME": "typo", "TYPE": "IMAGE_FOLDER", "PATH": str(folder), "PATTERN": "*.png",
        "PLUGINS": [{"SIGNATURE": "TEXT_READER", "INSTANCES": [{
            "INSTANCE_ID": "read", "RECOGNIZER_PARAMS": {"GROUP_SIZ": 4}, "COLOCATE": colocate,
            "STARTUP_AI_ENGINE_PARAMS": {"WORKERS": 1, "PP_OCR_DETECTOR": {"LIMIT_TYPE": "min", "LIMIT_SIDE": 736}},
        }]}],
    }  # fmt: skip
    if colocate:
        with pytest.raises(ConfigError) as refused:
            node.add_pipeline(pipeline)
        text = str(refused.value)
        assert "typo" not in node.pipelines
    else:
        node.add_pipeline(pipeline)
        (instance,) = node.pipelines["typo"].instances.values()
        wait_for(lambda: instance.stats.last_error and instance.status in ("error", "flapping"), timeout=30)  # start
        text = instance.stats.last_error
    assert "PP_OCR_LINES" in text and "'GROUP_SIZ'" in text and "GROUP_SIZE" in text, text
