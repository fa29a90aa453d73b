"""Tests of the built-in capture plugins (extensions/data), the data tutorial and the sample video.

Each plugin is built directly, as the engine would: its schema's defaults merged with overrides, a
PluginContext with a logger, temporary output/models folders and a stop event; then connect(),
read() in a loop and release(). Real files are decoded: the committed ``samples/demo.mp4``, PNGs
written here. The whole file runs in a few seconds.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import load_module

from edge_engine.api import EndOfStream, Input, PluginContext
from edge_engine.plugin.config_keys import check_value, defaults, validate_mapping

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "demo.mp4"
MODULE_FILES = {
    "video_file": ROOT / "extensions/data/video_file.py",
    "video_stream": ROOT / "extensions/data/video_stream.py",
    "image_folder": ROOT / "extensions/data/image_folder.py",
    "synthetic": ROOT / "extensions/data/synthetic.py",
    "void": ROOT / "extensions/data/void.py",
    "counter_source": ROOT / "plugins/data/tutorials/counter_source.py",
    "make_demo_video": ROOT / "samples/make_demo_video.py",
}


VideoFile = load_module(MODULE_FILES["video_file"]).VideoFile
VideoStream = load_module(MODULE_FILES["video_stream"]).VideoStream
redact_url = load_module(MODULE_FILES["video_stream"]).redact_url
ImageFolder = load_module(MODULE_FILES["image_folder"]).ImageFolder
Synthetic = load_module(MODULE_FILES["synthetic"]).Synthetic
Void = load_module(MODULE_FILES["void"]).Void
CounterSource = load_module(MODULE_FILES["counter_source"]).CounterSource
demo = load_module(MODULE_FILES["make_demo_video"])


def make(cls: type, tmp_path: Path, **overrides: Any) -> Any:
    """A plugin object configured like the engine would: validated defaults ← overrides."""
    schema = cls.config_schema()
    issues = validate_mapping(overrides, schema, where={"plugin": cls.SIGNATURE})
    assert not issues, [str(i) for i in issues]
    config = defaults(schema)
    config.update(overrides)
    context = PluginContext(
        node_alias="test-node",
        pipeline="test",
        signature=cls.SIGNATURE,
        instance_id=None,
        log=logging.getLogger(f"test.{cls.SIGNATURE}"),
        output_dir=tmp_path / "output",
        models_dir=tmp_path / "models",
        stop_event=threading.Event(),
    )
    return cls(config, context)


def drain(plugin: Any, limit: int = 10_000) -> list[Any]:
    """read() until EndOfStream (at most ``limit`` inputs); the list of what was read."""
    out = []
    with pytest.raises(EndOfStream):
        for _ in range(limit):
            out.append(plugin.read())
    return out


# --- module contract ---------------------------------------------------------------------------------
def test_modules_import_without_cv2_or_numpy() -> None:
    code = (
        "import importlib.util, sys\n"
        f"for i, p in enumerate({[str(p) for k, p in MODULE_FILES.items() if k != 'make_demo_video']!r}):\n"
        "    spec = importlib.util.spec_from_file_location(f'm{i}', p)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "heavy = [m for m in ('cv2', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)


@pytest.mark.parametrize(
    ("cls", "signature", "aliases"),
    [
        (VideoFile, "VIDEO_FILE", ("VideoFile",)),
        (VideoStream, "VIDEO_STREAM", ("VideoStream",)),
        (ImageFolder, "IMAGE_FOLDER", ()),
        (Synthetic, "SYNTHETIC", ()),
        (Void, "VOID", ("Void",)),
        (CounterSource, "TUTORIAL_COUNTER", ()),
    ],
)
def test_declarations(cls: type, signature: str, aliases: tuple[str, ...]) -> None:
    assert (signature, aliases) == (cls.SIGNATURE, cls.ALIASES)
    assert not cls.ABSTRACT and cls.DESCRIPTION
    schema = cls.config_schema()
    assert "CAP_RESOLUTION" in schema and "LIVE_FEED" in schema  # inherited from CapturePlugin
    for name, key in schema.items():
        assert key.doc or name not in cls.CONFIG, name  # every key a plugin declares is documented
        if not key.required:
            assert check_value(key, key.default) is None, name


def test_live_feed_defaults() -> None:
    assert defaults(VideoFile.config_schema())["LIVE_FEED"] is False
    assert defaults(VideoStream.config_schema())["LIVE_FEED"] is True
    assert VideoFile.config_schema()["URL"].required and VideoStream.config_schema()["URL"].required


# --- sample video ------------------------------------------------------------------------------------
def test_sample_video_is_small_and_decodes() -> None:
    assert SAMPLE.is_file() and SAMPLE.stat().st_size < 1_000_000
    cap = cv2.VideoCapture(str(SAMPLE))
    assert cap.isOpened()
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.int16))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(demo.FPS)
    cap.release()
    assert len(frames) == demo.FRAMES and 8 <= demo.FRAMES / demo.FPS <= 12
    assert frames[0].shape == (demo.HEIGHT, demo.WIDTH) == (240, 320)
    # Calm between events, motion during them: count the bursts of changed frames.
    moving = [int((np.abs(b - a) > 25).sum()) > 300 for a, b in itertools.pairwise(frames)]
    bursts = sum(1 for prev, cur in itertools.pairwise([False, *moving]) if cur and not prev)
    assert bursts >= 3
    assert not any(moving[:10]) and not any(moving[-10:])  # calm at both ends: looping is seamless
    assert int(np.abs(frames[0] - frames[-1]).max()) <= 10


# --- VIDEO_FILE --------------------------------------------------------------------------------------
def test_video_file_decodes_sample_then_ends(tmp_path: Path) -> None:
    plugin = make(VideoFile, tmp_path, URL=str(SAMPLE))
    plugin.connect()
    try:
        inputs = drain(plugin)
        with pytest.raises(EndOfStream):  # stays ended
            plugin.read()
    finally:
        plugin.release()
    plugin.release()  # safe twice
    assert len(inputs) == demo.FRAMES
    assert all(isinstance(i, Input) for i in inputs)
    assert inputs[0].image.shape == (240, 320, 3) and inputs[0].image.dtype == np.uint8
    assert [i.metadata["frame_index"] for i in inputs] == list(range(demo.FRAMES))
    assert inputs[-1].metadata == {"frame_index": demo.FRAMES - 1, "fps": 12.0, "source": str(SAMPLE), "loop": 0}


def test_video_file_loops(tmp_path: Path) -> None:
    plugin = make(VideoFile, tmp_path, URL=str(SAMPLE), LOOP=True)
    plugin.connect()
    try:
        inputs = [plugin.read() for _ in range(2 * demo.FRAMES + 3)]
    finally:
        plugin.release()
    first, second = inputs[0], inputs[demo.FRAMES]
    assert (second.metadata["frame_index"], second.metadata["loop"]) == (0, 1)
    assert inputs[demo.FRAMES - 1].metadata["frame_index"] == demo.FRAMES - 1
    assert (inputs[-1].metadata["frame_index"], inputs[-1].metadata["loop"]) == (2, 2)
    assert np.array_equal(first.image, second.image)
    assert np.array_equal(inputs[20].image, inputs[demo.FRAMES + 20].image)


def test_video_file_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    plugin = make(VideoFile, tmp_path, URL="samples/demo.mp4")
    plugin.connect()
    try:
        assert plugin.read().image.shape == (240, 320, 3)
    finally:
        plugin.release()


def test_video_file_missing_file(tmp_path: Path) -> None:
    plugin = make(VideoFile, tmp_path, URL=str(tmp_path / "nope.mp4"))
    with pytest.raises(FileNotFoundError, match=r"nope\.mp4"):
        plugin.connect()
    plugin.release()


def test_video_file_not_a_video(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_text("this is not a video")
    plugin = make(VideoFile, tmp_path, URL=str(bogus))
    with pytest.raises(RuntimeError, match="cannot open video file"):
        plugin.connect()


def test_video_file_realtime_pacing(tmp_path: Path) -> None:
    plugin = make(VideoFile, tmp_path, URL=str(SAMPLE), REALTIME=True)
    plugin.connect()
    try:
        start = time.monotonic()
        frames = [plugin.read() for _ in range(5)]
        elapsed = time.monotonic() - start
        assert all(f is not None for f in frames)
        assert 0.8 * 4 / 12 <= elapsed < 1.5  # 4 intervals at 12 fps = 0.333 s
        plugin.context.stop_event.set()  # a stop interrupts the wait at once
        start = time.monotonic()
        assert plugin.read() is None
        assert time.monotonic() - start < 0.05
    finally:
        plugin.release()


def test_video_file_realtime_waits_before_decoding(tmp_path: Path) -> None:
    """A paced camera holds no decoded frame while it waits: frame k is decoded at its slot, not one slot early."""
    plugin = make(VideoFile, tmp_path, URL=str(SAMPLE), REALTIME=True)
    plugin.connect()
    decoded: list[float] = []
    cap = plugin._cap

    class Recording:
        def read(self) -> Any:
            decoded.append(time.monotonic())
            return cap.read()

        def __getattr__(self, name: str) -> Any:
            return getattr(cap, name)

    plugin._cap = Recording()
    try:
        for _ in range(4):
            assert plugin.read() is not None
        start, interval = decoded[0], 1 / 12  # the sample's fps
        for k, when in enumerate(decoded):
            assert when - start >= k * interval - 0.01, f"frame {k} decoded {when - start:.3f} s in"
    finally:
        plugin._cap = cap
        plugin.release()


def test_video_file_not_paced_by_default(tmp_path: Path) -> None:
    plugin = make(VideoFile, tmp_path, URL=str(SAMPLE))
    plugin.connect()
    try:
        start = time.monotonic()
        for _ in range(24):
            plugin.read()
        assert time.monotonic() - start < 1.0  # 2 s of video, decoded much faster than real time
    finally:
        plugin.release()


# --- VIDEO_STREAM ------------------------------------------------------------------------------------
def test_redact_url() -> None:
    assert redact_url("rtsp://admin:hunter2@10.0.0.5:554/live") == "rtsp://***@10.0.0.5:554/live"
    assert redact_url("http://u:p@ss@cam/x@y.mjpg") == "http://***@cam/x@y.mjpg"
    assert redact_url("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"
    assert redact_url("/videos/a@b.mp4") == "/videos/a@b.mp4"
    assert redact_url(0) == "0"


def test_video_stream_unreachable_url_fails_fast_without_secret(tmp_path: Path) -> None:
    plugin = make(VideoStream, tmp_path, URL="rtsp://user:secret@127.0.0.1:9/x", OPEN_TIMEOUT_MS=500)
    start = time.monotonic()
    with pytest.raises(ConnectionError) as info:
        plugin.connect()
    assert time.monotonic() - start < 5
    assert "secret" not in str(info.value) and "***@127.0.0.1" in str(info.value)
    plugin.release()


def test_video_stream_missing_device(tmp_path: Path) -> None:
    plugin = make(VideoStream, tmp_path, URL="97", OPEN_TIMEOUT_MS=500)
    with pytest.raises(ConnectionError, match="97"):
        plugin.connect()


def test_video_stream_reads_local_file(tmp_path: Path) -> None:
    plugin = make(VideoStream, tmp_path, URL=str(SAMPLE))
    plugin.connect()
    try:
        inputs = []
        with pytest.raises(ConnectionError):  # a stream that ends is a lost stream: the engine reconnects
            for _ in range(demo.FRAMES + 1):
                inputs.append(plugin.read())
    finally:
        plugin.release()
    assert len(inputs) == demo.FRAMES
    assert inputs[0].image.shape == (240, 320, 3)
    assert inputs[5].metadata == {"frame_index": 5, "source": str(SAMPLE), "fps": 12.0}
    # Same pixels as VIDEO_FILE decodes.
    reference = make(VideoFile, tmp_path, URL=str(SAMPLE))
    reference.connect()
    try:
        assert np.array_equal(reference.read().image, inputs[0].image)
    finally:
        reference.release()


# --- IMAGE_FOLDER ------------------------------------------------------------------------------------
def _png(path: Path, value: int) -> None:
    assert cv2.imwrite(str(path), np.full((12, 16, 3), value, np.uint8))


def test_image_folder_in_order_skipping_corrupt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    _png(folder / "b.png", 20)
    _png(folder / "a.png", 10)
    _png(folder / "c.PNG", 30)  # patterns match case-insensitively
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("not an image")
    plugin = make(ImageFolder, tmp_path, PATH=str(folder))
    plugin.connect()
    with caplog.at_level(logging.WARNING):
        inputs = drain(plugin)
    plugin.release()
    assert [i.metadata["file"] for i in inputs] == ["a.png", "b.png", "c.PNG"]
    assert [i.metadata["index"] for i in inputs] == [0, 1, 2]
    assert [int(i.image[0, 0, 0]) for i in inputs] == [10, 20, 30]
    assert inputs[0].image.shape == (12, 16, 3)
    assert "broken.png" in caplog.text


def test_image_folder_pattern_and_loop(tmp_path: Path) -> None:
    _png(tmp_path / "x1.png", 1)
    _png(tmp_path / "x2.png", 2)
    assert cv2.imwrite(str(tmp_path / "x3.jpg"), np.zeros((8, 8, 3), np.uint8))
    plugin = make(ImageFolder, tmp_path, PATH=str(tmp_path), PATTERN="*.png", LOOP=True)
    plugin.connect()
    inputs = [plugin.read() for _ in range(5)]
    plugin.release()
    assert [i.metadata["file"] for i in inputs] == ["x1.png", "x2.png", "x1.png", "x2.png", "x1.png"]
    assert [(i.metadata["index"], i.metadata["loop"]) for i in inputs[1:3]] == [(1, 0), (0, 1)]


def test_image_folder_watch_picks_up_new_files(tmp_path: Path) -> None:
    _png(tmp_path / "001.png", 1)
    plugin = make(ImageFolder, tmp_path, PATH=str(tmp_path), WATCH=True, POLL_SECONDS=0.05)
    plugin.connect()
    assert plugin.read().metadata["file"] == "001.png"
    start = time.monotonic()
    assert plugin.read() is None  # nothing new: waited one poll
    assert 0.03 <= time.monotonic() - start < 1.0
    _png(tmp_path / "002.png", 2)
    (tmp_path / "003.png").write_bytes(b"half-written")  # not decodable yet: retried at the next poll
    got = None
    for _ in range(20):
        got = plugin.read()
        if got is not None:
            break
    assert got is not None and got.metadata["file"] == "002.png"
    _png(tmp_path / "003.png", 3)  # now complete
    names = [x.metadata["file"] for x in (plugin.read() for _ in range(5)) if x is not None]
    assert names == ["003.png"]
    plugin.context.stop_event.set()
    start = time.monotonic()
    assert plugin.read() is None
    assert time.monotonic() - start < 0.05
    plugin.release()


def test_image_folder_missing(tmp_path: Path) -> None:
    plugin = make(ImageFolder, tmp_path, PATH=str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="absent"):
        plugin.connect()


# --- SYNTHETIC ---------------------------------------------------------------------------------------
def test_synthetic_count_and_determinism(tmp_path: Path) -> None:
    runs = []
    for _ in range(2):
        plugin = make(Synthetic, tmp_path, COUNT=5)
        plugin.connect()
        runs.append(drain(plugin))
        plugin.release()
    first, second = runs
    assert len(first) == 5
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, second, strict=True))
    frame = first[3].image
    assert frame.shape == (240, 320, 3)
    x, y, side = Synthetic.box_position(3, 320, 240)
    assert (frame[y : y + side, x : x + side] == 255).all()
    assert int((frame == 255).all(axis=2).sum()) == side * side  # the box and nothing else is white
    assert frame[0, 0].tolist() == [24, 24, 24]
    assert not np.array_equal(first[0].image, first[1].image)  # it moves
    assert [i.metadata["frame_index"] for i in first] == [0, 1, 2, 3, 4]


def test_synthetic_other_modes(tmp_path: Path) -> None:
    plugin = make(Synthetic, tmp_path, MODE="messages", COUNT=3)
    plugin.connect()
    messages = drain(plugin)
    assert messages == [{"index": i, "value": pytest.approx(np.sin(i / 10))} for i in range(3)]

    static = make(Synthetic, tmp_path, MODE="static", WIDTH=64, HEIGHT=32)
    static.connect()
    a, b = static.read().image, static.read().image
    assert a.shape == (32, 64, 3) and np.array_equal(a, b) and a is not b and a.std() > 10

    noises = []
    for _ in range(2):
        noise = make(Synthetic, tmp_path, MODE="noise", SEED=7, WIDTH=16, HEIGHT=16)
        noise.connect()
        noises.append([noise.read().image for _ in range(2)])
    assert np.array_equal(noises[0][1], noises[1][1]) and not np.array_equal(noises[0][0], noises[0][1])


def test_synthetic_rejects_unknown_mode() -> None:
    issues = validate_mapping({"MODE": "plasma"}, Synthetic.config_schema(), where={})
    assert len(issues) == 1 and "must be one of" in str(issues[0])


# --- VOID --------------------------------------------------------------------------------------------
def test_void_returns_none_promptly_on_stop(tmp_path: Path) -> None:
    plugin = make(Void, tmp_path)
    plugin.connect()
    timer = threading.Timer(0.1, plugin.context.stop_event.set)
    timer.start()
    start = time.monotonic()
    assert plugin.read() is None
    assert 0.05 <= time.monotonic() - start < 0.6  # woke on the stop, not after the full second
    start = time.monotonic()
    assert plugin.read() is None
    assert time.monotonic() - start < 0.05
    plugin.release()
    assert "ALLOW_EMPTY_INPUTS" in Void.DESCRIPTION


# --- tutorial ----------------------------------------------------------------------------------------
def test_tutorial_counter(tmp_path: Path) -> None:
    plugin = make(CounterSource, tmp_path, RATE=50.0, LIMIT=5, START=10)
    plugin.connect()
    start = time.monotonic()
    messages = drain(plugin)
    elapsed = time.monotonic() - start
    plugin.release()
    assert messages == [{"count": n} for n in range(10, 15)]
    assert 0.8 * 4 / 50 <= elapsed < 1.0
    endless = make(CounterSource, tmp_path, RATE=0.5)
    endless.connect()
    assert endless.read() == {"count": 0}
    endless.context.stop_event.set()
    start = time.monotonic()
    assert endless.read() is None  # waiting for the next slot (2 s away), interrupted by the stop
    assert time.monotonic() - start < 0.05
