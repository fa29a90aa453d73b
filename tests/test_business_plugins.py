"""Tests of the built-in business plugins (motion detector, frame statistics) and the business tutorial.

Plugins are built directly, as the engine would: effective config = declared defaults updated with overrides,
and a :class:`PluginContext` whose ``emit_fn`` records every ``(payload, image)``. Frames are synthetic numpy
images (a noisy calm scene, a bright box appearing, flicker) plus the repository's demo video when present.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge_engine.api import BusinessPlugin, Input, PluginContext  # noqa: E402
from edge_engine.plugin.config_keys import defaults  # noqa: E402

H, W = 240, 320
BOX = (200, 60, 80, 60)  # x, y, w, h of the bright box in original pixels: 4800 px = 6.25 % of the frame


def _load(relpath: str) -> Any:
    """Import a plugin module by path, as the engine does (plugin folders are not packages)."""
    path = ROOT / relpath
    name = "_test_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MotionDetector = _load("extensions/business/motion_detector.py").MotionDetector
FrameStats = _load("extensions/business/frame_stats.py").FrameStats
HelloCounter = _load("plugins/business/tutorials/hello_counter.py").HelloCounter


class Harness:
    """A plugin built as the engine builds it, with its emitted and returned payloads recorded."""

    def __init__(self, cls: type[BusinessPlugin], tmp_path: Path, **overrides: Any):
        config = defaults(cls.config_schema())
        config.update(overrides)
        self.out: list[tuple[dict[str, Any], Any]] = []
        context = PluginContext(
            node_alias="t",
            pipeline="p",
            signature=cls.SIGNATURE,
            instance_id="i",
            log=logging.getLogger("t"),
            output_dir=tmp_path,
            models_dir=tmp_path,
            stop_event=threading.Event(),
            emit_fn=lambda payload, image: self.out.append((payload, image)),
        )
        self.plugin = cls(config, context)
        self.seq = 0

    def feed(self, image: Any = None, data: dict[str, Any] | None = None, fps: float = 10.0) -> list[dict[str, Any]]:
        """Process one input; return the payloads it produced (emitted or returned)."""
        self.seq += 1
        before = len(self.out)
        inp = Input(
            image=image,
            data=data,
            seq=self.seq,
            timestamp=1_700_000_000.0 + self.seq / fps,
            metadata={"frame_index": self.seq - 1},
        )
        result = self.plugin.process(inp)
        if result is not None:
            self.out.append((dict(result), None))
        return [payload for payload, _ in self.out[before:]]

    def events(self) -> list[str]:
        return [payload.get("EVENT") for payload, _ in self.out]


# --- synthetic frames ---------------------------------------------------------------------------------
_RNG = np.random.default_rng(0)
_SCENE = np.clip(
    np.linspace(60, 120, W, dtype=np.float32)[None, :, None] + np.zeros((H, W, 3), np.float32), 0, 255
).astype(np.uint8)


def calm() -> np.ndarray:
    """The static scene with a little sensor noise."""
    noise = _RNG.normal(0, 3, size=(H, W, 3))
    return np.clip(_SCENE + noise, 0, 255).astype(np.uint8)


def with_box(box: tuple[int, int, int, int] = BOX) -> np.ndarray:
    """The scene with a bright rectangle."""
    frame = calm()
    x, y, w, h = box
    frame[y : y + h, x : x + w] = 240
    return frame


def overlaps(a: list[int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


# --- motion detector ----------------------------------------------------------------------------------
@pytest.fixture
def motion(tmp_path: Path) -> Harness:
    h = Harness(MotionDetector, tmp_path)
    h.plugin.on_init()
    return h


def test_calm_frames_give_no_payload(motion: Harness) -> None:
    for _ in range(40):
        assert motion.feed(calm()) == []


def test_box_appearing_then_leaving_gives_one_start_and_one_end(motion: Harness) -> None:
    for _ in range(10):
        motion.feed(calm())
    assert motion.out == []
    for _ in range(8):
        motion.feed(with_box())
    assert motion.events() == ["MOTION_START"]
    payload, image = motion.out[0]
    assert payload["FRAME_INDEX"] == 11  # ON_FRAMES=2: the second frame with the box (0-based index 11)
    assert payload["INPUT_SEQ"] == 12
    assert payload["CHANGED_FRACTION"] >= 0.02
    assert payload["BOXES"] and len(payload["BOXES"]) <= 10
    assert any(overlaps(b, BOX) for b in payload["BOXES"])
    x, y, w, h = payload["BOXES"][0]  # the largest box matches the drawn one within the downscale error
    assert abs(x - BOX[0]) <= 12 and abs(y - BOX[1]) <= 12 and abs(w - BOX[2]) <= 24 and abs(h - BOX[3]) <= 24
    assert isinstance(image, np.ndarray) and image.shape == (H, W, 3)

    off_frames = motion.plugin.config["OFF_FRAMES"]
    for i in range(off_frames - 1):
        motion.feed(calm())
        assert motion.events() == ["MOTION_START"], f"ended after only {i + 1} calm frames"
    motion.feed(calm())
    assert motion.events() == ["MOTION_START", "MOTION_END"]
    end, end_image = motion.out[1]
    assert end_image is None  # WITNESS_ON_END defaults to False
    assert end["DURATION_S"] == pytest.approx((8 - 2 + off_frames) / 10.0, abs=1e-6)  # start seq 12, end seq 23
    assert end["PEAK_FRACTION"] >= payload["CHANGED_FRACTION"]
    for _ in range(20):
        motion.feed(calm())
    assert motion.events() == ["MOTION_START", "MOTION_END"]


def test_witness_is_a_copy_with_boxes_drawn(motion: Harness) -> None:
    for _ in range(5):
        motion.feed(calm())
    frames = [with_box() for _ in range(3)]
    originals = [f.copy() for f in frames]
    for f in frames:
        motion.feed(f)
    _, witness = motion.out[0]
    assert all(np.array_equal(f, o) for f, o in zip(frames, originals, strict=True))  # input untouched
    assert not np.array_equal(witness, frames[1])  # boxes drawn on the copy


def test_single_frame_blip_does_not_start(motion: Harness) -> None:
    for _ in range(5):
        motion.feed(calm())
    motion.feed(with_box())
    for _ in range(10):
        motion.feed(calm())
    assert motion.out == []


def test_flicker_does_not_chatter(motion: Harness) -> None:
    for _ in range(10):
        motion.feed(calm())
    for i in range(60):
        motion.feed(with_box() if i % 2 == 0 else calm())
    events = motion.events()
    assert events.count("MOTION_START") <= 1
    assert "MOTION_END" not in events  # never calm for OFF_FRAMES in a row while flickering
    for _ in range(30):
        motion.feed(calm())
    events = motion.events()
    assert events.count("MOTION_START") <= 1 and events.count("MOTION_END") == events.count("MOTION_START")


def test_hysteresis_band_keeps_state(tmp_path: Path) -> None:
    """A fraction between OFF and ON neither starts a calm scene nor ends a changed one."""
    small_box = (20, 20, 40, 30)  # 1200 px = 1.6 %: between OFF_THRESHOLD 0.5 % and ON_THRESHOLD 2 %
    h = Harness(MotionDetector, tmp_path, FOREGROUND_ALPHA=0.0)
    h.plugin.on_init()
    for _ in range(5):
        h.feed(calm())
    for _ in range(10):
        h.feed(with_box(small_box))
    assert h.out == []
    for _ in range(5):
        h.feed(calm())
    for _ in range(3):
        h.feed(with_box())
    assert h.events() == ["MOTION_START"]
    for _ in range(20):  # the large box leaves, the small one stays: still "changed"
        h.feed(with_box(small_box))
    assert h.events() == ["MOTION_START"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"ON_THRESHOLD": 0.01, "OFF_THRESHOLD": 0.02},
        {"ON_THRESHOLD": 0.02, "OFF_THRESHOLD": 0.02},
        {"BACKGROUND_ALPHA": 0.0},
    ],
)
def test_invalid_settings_fail_on_init(tmp_path: Path, overrides: dict[str, Any]) -> None:
    h = Harness(MotionDetector, tmp_path, **overrides)
    with pytest.raises(ValueError, match="MOTION_DETECTOR"):
        h.plugin.on_init()


def test_inputs_without_image_are_ignored(motion: Harness) -> None:
    assert motion.feed(data={"temperature": 21}) == []
    assert motion.plugin.process(None) is None


def test_on_config_width_change_resets_background(motion: Harness) -> None:
    for _ in range(5):
        motion.feed(calm())
    changed = {"ANALYSIS_WIDTH": 80}
    motion.plugin._apply_config(changed)
    motion.plugin.on_config(changed)
    for _ in range(10):
        motion.feed(calm())
    assert motion.out == []
    for _ in range(3):
        motion.feed(with_box())
    assert motion.events() == ["MOTION_START"]
    assert any(overlaps(b, BOX) for b in motion.out[0][0]["BOXES"])


def test_on_config_rejects_invalid_thresholds_and_keeps_working(motion: Harness) -> None:
    changed = {"OFF_THRESHOLD": 0.5}
    motion.plugin._apply_config(changed)
    with pytest.raises(ValueError):
        motion.plugin.on_config(changed)
    for _ in range(5):
        motion.feed(calm())
    for _ in range(3):
        motion.feed(with_box())
    assert motion.events() == ["MOTION_START"]


def _video_frames(tmp_path: Path, limit: int = 600) -> list[np.ndarray]:
    """Frames of samples/demo.* if readable, else of a short clip written here (calm, box, calm, box, calm)."""
    import cv2

    for name in ("demo.mp4", "demo.avi"):
        path = ROOT / "samples" / name
        if path.exists():
            frames = _decode(cv2, path, limit)
            if len(frames) >= 20:
                return frames
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert writer.isOpened()
    for i in range(80):
        moving = 15 <= i < 30 or 50 <= i < 60
        writer.write(with_box((40 + 8 * (i % 20), 80, 60, 60)) if moving else calm())
    writer.release()
    return _decode(cv2, path, limit)


def _decode(cv2: Any, path: Path, limit: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while len(frames) < limit:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    return frames


def test_video_fires_and_events_alternate(motion: Harness, tmp_path: Path) -> None:
    frames = _video_frames(tmp_path)
    assert frames, "no frames decoded"
    for frame in frames:
        motion.feed(frame)
    events = motion.events()
    assert events.count("MOTION_START") >= 1
    assert all(e == ("MOTION_START" if i % 2 == 0 else "MOTION_END") for i, e in enumerate(events)), events
    for payload, image in motion.out:
        if payload["EVENT"] == "MOTION_START":
            assert image.shape == frames[0].shape
            for x, y, w, h in payload["BOXES"]:
                assert x >= 0 and y >= 0 and x + w <= frames[0].shape[1] + 2 and y + h <= frames[0].shape[0] + 2


# --- frame statistics ---------------------------------------------------------------------------------
def test_frame_stats_exact_brightness_and_period(tmp_path: Path) -> None:
    h = Harness(FrameStats, tmp_path, REPORT_EVERY=4)
    h.plugin.on_init()
    reports = []
    for value in (10, 20, 30, 40, 100, 100, 100, 100):
        reports += h.feed(np.full((H, W, 3), value, np.uint8), fps=25.0)
    assert len(reports) == 2
    first, second = reports
    assert first["FRAMES"] == 4 and first["INPUTS"] == 4
    assert first["MEAN_BRIGHTNESS"] == 25.0
    assert first["MIN_BRIGHTNESS"] == 10.0 and first["MAX_BRIGHTNESS"] == 40.0
    assert first["MEAN_SHARPNESS"] == 0.0 and first["MEAN_CONTRAST"] == 0.0
    assert (first["WIDTH"], first["HEIGHT"]) == (W, H)
    assert first["INPUT_FPS"] == pytest.approx(25.0, rel=1e-3)
    assert second["MEAN_BRIGHTNESS"] == 100.0 and second["FRAMES"] == 4  # reset after each report
    assert "MESSAGES" not in first


def test_frame_stats_sharpness_orders_sharp_and_blurred(tmp_path: Path) -> None:
    import cv2

    sharp = np.zeros((H, W, 3), np.uint8)
    sharp[:, ::8] = 255  # fine stripes
    blurred = cv2.GaussianBlur(sharp, (21, 21), 0)
    results = []
    for frame in (sharp, blurred):
        h = Harness(FrameStats, tmp_path, REPORT_EVERY=1)
        h.plugin.on_init()
        results.append(h.feed(frame)[0]["MEAN_SHARPNESS"])
    assert results[0] > 10 * results[1] > 0


def test_frame_stats_structured_messages(tmp_path: Path) -> None:
    h = Harness(FrameStats, tmp_path, REPORT_EVERY=3)
    h.plugin.on_init()
    messages = [
        {"temp": 20.0, "hum": 40, "ok": True, "name": "a", "pos": {"x": 1}},
        {"temp": 22.0, "hum": 50, "ok": False, "pos": {"x": 3}},
        {"temp": 24.0, "name": "c"},
    ]
    reports = []
    for m in messages:
        reports += h.feed(data=m, fps=2.0)
    assert len(reports) == 1
    report = reports[0]
    assert report["MESSAGES"] == 3
    assert report["MEANS"] == {"temp": 22.0, "hum": 45.0, "pos.x": 2.0}
    assert report["INPUT_FPS"] == pytest.approx(2.0, rel=1e-3)
    assert "FRAMES" not in report
    assert h.plugin.process(None) is None


def test_frame_stats_commands(tmp_path: Path) -> None:
    h = Harness(FrameStats, tmp_path, REPORT_EVERY=10)
    h.plugin.on_init()
    h.feed(np.full((H, W, 3), 50, np.uint8))
    assert h.plugin.on_command("REPORT")["MEAN_BRIGHTNESS"] == 50.0
    assert h.plugin.on_command("reset") == {"reset": True}
    assert h.plugin.on_command("REPORT") == {"INPUTS": 0, "INPUT_FPS": None}


# --- tutorial -----------------------------------------------------------------------------------------
def test_tutorial_reports_every_n_and_resets(tmp_path: Path) -> None:
    h = Harness(HelloCounter, tmp_path, EVERY=3)
    h.plugin.on_init()
    reports = []
    for _ in range(7):
        reports += h.feed(np.full((8, 8, 3), 60, np.uint8))
    assert reports == [
        {"MESSAGE": "hello", "SEEN": 3, "MEAN_BRIGHTNESS": 60.0},
        {"MESSAGE": "hello", "SEEN": 6, "MEAN_BRIGHTNESS": 60.0},
    ]
    assert h.plugin.on_command("RESET") == {"reset": True}
    assert h.feed(data={"x": 1}) == [] and h.feed(data={"x": 1}) == []
    assert h.feed(data={"x": 1}) == [{"MESSAGE": "hello", "SEEN": 3}]
    changed = {"EVERY": 1}
    h.plugin._apply_config(changed)
    h.plugin.on_config(changed)
    assert h.feed() == [{"MESSAGE": "hello", "SEEN": 4}]
    assert "error" in h.plugin.on_command("DANCE")
    h.plugin.on_close()


def test_plugin_modules_do_not_import_heavy_libraries_at_top_level() -> None:
    """Every plugin module is imported at node start: importing one must not pull in cv2 or numpy."""
    import subprocess

    code = (
        "import sys, importlib.util\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "for rel in ('extensions/business/motion_detector.py', 'extensions/business/frame_stats.py',"
        " 'plugins/business/tutorials/hello_counter.py'):\n"
        f"    spec = importlib.util.spec_from_file_location('m', {str(ROOT)!r} + '/' + rel)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in ('cv2', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"
