"""Tests of the built-in business plugins (motion detector, frame statistics) and the business tutorial.

Each plugin runs in the engine's own runtime through the shipped ``plugin_harness`` fixture
(:mod:`edge_engine.testing.harness`): effective config = declared defaults updated with the test's, inputs fed by
the test and every emitted payload recorded. Frames are synthetic numpy images (a noisy calm scene, a bright box
appearing, flicker) plus the repository's demo video when present; each input carries the timestamp of a camera
at ``fps`` and its frame index, as a video capture gives them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_engine.api import Input
from edge_engine.constants import KIND_BUSINESS
from edge_engine.errors import ConfigError
from edge_engine.plugin.config_keys import defaults
from edge_engine.runtime.instance import encode_jpeg
from edge_engine.testing.harness import PluginFailed, PluginHarness, Session

ROOT = Path(__file__).resolve().parents[1]
H, W = 240, 320
BOX = (200, 60, 80, 60)  # x, y, w, h of the bright box in original pixels: 4800 px = 6.25 % of the frame
T0 = 1_700_000_000.0


def frame_input(session: Session, image: Any = None, data: dict[str, Any] | None = None, fps: float = 10.0) -> Input:
    """The next input of ``session``'s camera at ``fps``: its timestamp and frame index follow the inputs fed."""
    seq = session.fed + 1
    return Input(image=image, data=data, timestamp=T0 + seq / fps, metadata={"frame_index": seq - 1})


def feed(session: Session, image: Any = None, data: dict[str, Any] | None = None, fps: float = 10.0) -> list[Any]:
    """Process one input; return the payloads' dicts it produced (emitted or returned)."""
    return [p.data for p in session.feed(frame_input(session, image, data, fps))]


def events(session: Session) -> list[str]:
    return [p.get("EVENT") for p in session.result.payloads]


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
def motion(plugin_harness: PluginHarness) -> Iterator[Session]:
    with plugin_harness.start("MOTION_DETECTOR") as session:
        yield session


def unwrapped_process(harness: PluginHarness, session: Session, signature: str, inp: Input | None) -> Any:
    """What the plugin's own ``process`` returns for ``inp`` (the harness's wrapper emits and returns None)."""
    record = harness.registry.get(KIND_BUSINESS, signature)
    assert record is not None
    return record.cls.process(session.instance._plugin, inp)


def test_calm_frames_give_no_payload(motion: Session) -> None:
    for _ in range(40):
        assert feed(motion, calm()) == []


def test_box_appearing_then_leaving_gives_one_start_and_one_end(motion: Session) -> None:
    for _ in range(10):
        feed(motion, calm())
    assert motion.result.payloads == []
    for _ in range(8):
        feed(motion, with_box())
    assert events(motion) == ["MOTION_START"]
    payload, image = motion.result.payloads[0].data, motion.result.payloads[0].image
    assert payload["FRAME_INDEX"] == 11  # ON_FRAMES=2: the second frame with the box (0-based index 11)
    assert payload["INPUT_SEQ"] == 12
    assert payload["CHANGED_FRACTION"] >= 0.02
    assert payload["BOXES"] and len(payload["BOXES"]) <= 10
    assert any(overlaps(b, BOX) for b in payload["BOXES"])
    x, y, w, h = payload["BOXES"][0]  # the largest box matches the drawn one within the downscale error
    assert abs(x - BOX[0]) <= 12 and abs(y - BOX[1]) <= 12 and abs(w - BOX[2]) <= 24 and abs(h - BOX[3]) <= 24
    assert isinstance(image, np.ndarray) and image.shape == (H, W, 3)

    off_frames = motion.config["OFF_FRAMES"]
    for i in range(off_frames - 1):
        feed(motion, calm())
        assert events(motion) == ["MOTION_START"], f"ended after only {i + 1} calm frames"
    feed(motion, calm())
    assert events(motion) == ["MOTION_START", "MOTION_END"]
    end, end_image = motion.result.payloads[1].data, motion.result.payloads[1].image
    assert end_image is None  # WITNESS_ON_END defaults to False
    assert end["DURATION_S"] == pytest.approx((8 - 2 + off_frames) / 10.0, abs=1e-6)  # start seq 12, end seq 23
    assert end["PEAK_FRACTION"] >= payload["CHANGED_FRACTION"]
    for _ in range(20):
        feed(motion, calm())
    assert events(motion) == ["MOTION_START", "MOTION_END"]


def test_witness_is_a_copy_with_boxes_drawn(motion: Session) -> None:
    for _ in range(5):
        feed(motion, calm())
    frames = [with_box() for _ in range(3)]
    originals = [f.copy() for f in frames]
    for f in frames:
        feed(motion, f)
    witness = motion.result.payloads[0].image_jpeg
    assert all(np.array_equal(f, o) for f, o in zip(frames, originals, strict=True))  # input untouched
    assert witness != encode_jpeg(frames[1])  # boxes drawn on the copy (the frame itself would encode the same)


def test_single_frame_blip_does_not_start(motion: Session) -> None:
    for _ in range(5):
        feed(motion, calm())
    feed(motion, with_box())
    for _ in range(10):
        feed(motion, calm())
    assert motion.result.payloads == []


def test_flicker_does_not_chatter(motion: Session) -> None:
    for _ in range(10):
        feed(motion, calm())
    for i in range(60):
        feed(motion, with_box() if i % 2 == 0 else calm())
    seen = events(motion)
    assert seen.count("MOTION_START") <= 1
    assert "MOTION_END" not in seen  # never calm for OFF_FRAMES in a row while flickering
    for _ in range(30):
        feed(motion, calm())
    seen = events(motion)
    assert seen.count("MOTION_START") <= 1 and seen.count("MOTION_END") == seen.count("MOTION_START")


def test_hysteresis_band_keeps_state(plugin_harness: PluginHarness) -> None:
    """A fraction between OFF and ON neither starts a calm scene nor ends a changed one."""
    small_box = (20, 20, 40, 30)  # 1200 px = 1.6 %: between OFF_THRESHOLD 0.5 % and ON_THRESHOLD 2 %
    with plugin_harness.start("MOTION_DETECTOR", {"FOREGROUND_ALPHA": 0.0}) as h:
        for _ in range(5):
            feed(h, calm())
        for _ in range(10):
            feed(h, with_box(small_box))
        assert h.result.payloads == []
        for _ in range(5):
            feed(h, calm())
        for _ in range(3):
            feed(h, with_box())
        assert events(h) == ["MOTION_START"]
        for _ in range(20):  # the large box leaves, the small one stays: still "changed"
            feed(h, with_box(small_box))
        assert events(h) == ["MOTION_START"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"ON_THRESHOLD": 0.01, "OFF_THRESHOLD": 0.02},
        {"ON_THRESHOLD": 0.02, "OFF_THRESHOLD": 0.02},
    ],
)
def test_invalid_settings_fail_on_init(plugin_harness: PluginHarness, overrides: dict[str, Any]) -> None:
    with plugin_harness.start("MOTION_DETECTOR", overrides) as h, pytest.raises(PluginFailed) as failed:
        feed(h, calm())
    error = failed.value.error
    assert error.stage == "on_init"
    assert isinstance(error.exception, ValueError) and "MOTION_DETECTOR" in str(error.exception)


def test_background_alpha_zero_is_refused(plugin_harness: PluginHarness) -> None:
    """The node refuses it by the key's bounds; the plugin's own on_init check refuses it too (a config that
    bypassed validation)."""
    with pytest.raises(ConfigError, match="BACKGROUND_ALPHA"):
        plugin_harness.start("MOTION_DETECTOR", {"BACKGROUND_ALPHA": 0.0})
    record = plugin_harness.registry.get(KIND_BUSINESS, "MOTION_DETECTOR")
    assert record is not None
    config = {**defaults(record.cls.config_schema()), "BACKGROUND_ALPHA": 0.0}
    with pytest.raises(ValueError, match="MOTION_DETECTOR"):
        record.cls._read_settings(config)


def test_inputs_without_image_are_ignored(plugin_harness: PluginHarness, motion: Session) -> None:
    assert feed(motion, data={"temperature": 21}) == []
    assert unwrapped_process(plugin_harness, motion, "MOTION_DETECTOR", None) is None


def test_on_config_width_change_resets_background(motion: Session) -> None:
    for _ in range(5):
        feed(motion, calm())
    motion.update_config(ANALYSIS_WIDTH=80)
    for _ in range(10):
        feed(motion, calm())
    assert motion.result.payloads == []
    for _ in range(3):
        feed(motion, with_box())
    assert events(motion) == ["MOTION_START"]
    assert any(overlaps(b, BOX) for b in motion.result.payloads[0]["BOXES"])


def test_on_config_rejects_invalid_thresholds_and_keeps_working(motion: Session) -> None:
    with pytest.raises(PluginFailed) as refused:
        motion.update_config(OFF_THRESHOLD=0.5)
    assert refused.value.error.stage == "on_config" and isinstance(refused.value.error.exception, ValueError)
    for _ in range(5):
        feed(motion, calm())
    for _ in range(3):
        feed(motion, with_box())
    assert events(motion) == ["MOTION_START"]


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


def test_video_fires_and_events_alternate(motion: Session, tmp_path: Path) -> None:
    frames = _video_frames(tmp_path)
    assert frames, "no frames decoded"
    for frame in frames:  # all queued at once (none lost), each with its timestamp and frame index
        motion.feed(frame_input(motion, frame), wait=False)
    motion.wait_processed(timeout=60)
    seen = events(motion)
    assert seen.count("MOTION_START") >= 1
    assert all(e == ("MOTION_START" if i % 2 == 0 else "MOTION_END") for i, e in enumerate(seen)), seen
    for emitted in motion.result.payloads:
        if emitted["EVENT"] == "MOTION_START":
            assert emitted.image.shape == frames[0].shape
            for x, y, w, h in emitted["BOXES"]:
                assert x >= 0 and y >= 0 and x + w <= frames[0].shape[1] + 2 and y + h <= frames[0].shape[0] + 2


# --- frame statistics ---------------------------------------------------------------------------------
def test_frame_stats_exact_brightness_and_period(plugin_harness: PluginHarness) -> None:
    with plugin_harness.start("FRAME_STATS", {"REPORT_EVERY": 4}) as h:
        reports = []
        for value in (10, 20, 30, 40, 100, 100, 100, 100):
            reports += feed(h, np.full((H, W, 3), value, np.uint8), fps=25.0)
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


def test_frame_stats_sharpness_orders_sharp_and_blurred(plugin_harness: PluginHarness) -> None:
    import cv2

    sharp = np.zeros((H, W, 3), np.uint8)
    sharp[:, ::8] = 255  # fine stripes
    blurred = cv2.GaussianBlur(sharp, (21, 21), 0)
    results = []
    for frame in (sharp, blurred):
        with plugin_harness.start("FRAME_STATS", {"REPORT_EVERY": 1}) as h:
            results.append(feed(h, frame)[0]["MEAN_SHARPNESS"])
    assert results[0] > 10 * results[1] > 0


def test_frame_stats_structured_messages(plugin_harness: PluginHarness) -> None:
    messages = [
        {"temp": 20.0, "hum": 40, "ok": True, "name": "a", "pos": {"x": 1}},
        {"temp": 22.0, "hum": 50, "ok": False, "pos": {"x": 3}},
        {"temp": 24.0, "name": "c"},
    ]
    reports = []
    with plugin_harness.start("FRAME_STATS", {"REPORT_EVERY": 3}) as h:
        for m in messages:
            reports += feed(h, data=m, fps=2.0)
        assert unwrapped_process(plugin_harness, h, "FRAME_STATS", None) is None
    assert len(reports) == 1
    report = reports[0]
    assert report["MESSAGES"] == 3
    assert report["MEANS"] == {"temp": 22.0, "hum": 45.0, "pos.x": 2.0}
    assert report["INPUT_FPS"] == pytest.approx(2.0, rel=1e-3)
    assert "FRAMES" not in report


def test_frame_stats_commands(plugin_harness: PluginHarness) -> None:
    with plugin_harness.start("FRAME_STATS", {"REPORT_EVERY": 10}) as h:
        feed(h, np.full((H, W, 3), 50, np.uint8))
        assert h.command("REPORT")["MEAN_BRIGHTNESS"] == 50.0
        assert h.command("reset") == {"reset": True}
        assert h.command("REPORT") == {"INPUTS": 0, "INPUT_FPS": None}


# --- tutorial -----------------------------------------------------------------------------------------
def test_tutorial_reports_every_n_and_resets(plugin_harness: PluginHarness) -> None:
    h = plugin_harness.start("TUTORIAL_HELLO", {"EVERY": 3})
    reports = []
    for _ in range(7):
        reports += feed(h, np.full((8, 8, 3), 60, np.uint8))
    assert reports == [
        {"MESSAGE": "hello", "SEEN": 3, "MEAN_BRIGHTNESS": 60.0},
        {"MESSAGE": "hello", "SEEN": 6, "MEAN_BRIGHTNESS": 60.0},
    ]
    assert h.command("RESET") == {"reset": True}
    assert feed(h, data={"x": 1}) == [] and feed(h, data={"x": 1}) == []
    assert feed(h, data={"x": 1}) == [{"MESSAGE": "hello", "SEEN": 3}]
    h.update_config(EVERY=1)
    assert feed(h) == [{"MESSAGE": "hello", "SEEN": 4}]
    assert "error" in h.command("DANCE")
    h.finish()  # on_close runs, and raises here if it fails


def test_plugin_modules_do_not_import_heavy_libraries_at_top_level() -> None:
    """Every plugin module is imported at node start: importing one must not pull in cv2 or numpy."""
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
