"""Engine overhead on a video pipeline: VIDEO_FILE → no-op business plugin against a bare OpenCV decode loop.

Both are measured in the same run, on the same file, alternately (raw, engine, raw, engine, ...), after
one untimed warm-up of each; the median of ``--repeat`` runs is reported:

1. **raw**: ``cv2.VideoCapture(path)`` then ``read()`` until the end, no engine at all;
2. **engine**: an in-process :class:`~edge_engine.node.core.Node` (comms off) runs the pipeline
   ``VIDEO_FILE`` (no ``LOOP``, no ``REALTIME``: file back-pressure, no frame may be lost) →
   ``BENCH_NOOP`` (a business plugin whose ``process()`` returns None, written by this script into a
   temporary plugins folder). Timed from ``add_pipeline`` (which starts the pipeline) until the
   instance has taken the last frame and its thread has ended.

Both timings include opening the file; CPU time per frame (all threads of this process) is shown too, and the
median of the per-pair ratios (raw and engine runs taken one after the other), which a loaded machine disturbs
less than the ratio of the medians. The budget is engine ≥ 0.9 × raw at each size. Without ``--video`` clips of
``--sizes`` (default 320x240, 640x480 and 1920x1080; ``mp4v``, a moving texture and shapes, a camera-like bitrate,
about a second of decoding each) are generated in a temporary folder; ``--noise SIGMA`` adds Gaussian noise (a
much higher bitrate, slower decoding); ``--repeat-video N`` instead concatenates ``samples/demo.mp4`` (320x240) N
times. Small frames decode so fast that the per-frame hand-off between threads shows: that is why a pipeline
without models hands each input from the capture thread straight to its instances (see docs/performance.md).

    .venv/bin/python benchmarks/bench_video_pipeline.py [--sizes WxH,... | --video PATH | --repeat-video N] [--repeat 5]
        [--frames N] [--check]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from _results import record  # noqa: E402

from edge_engine.config.node_settings import load_settings  # noqa: E402
from edge_engine.node.core import Node  # noqa: E402

TARGET_RATIO = 0.9
NOOP_PLUGIN = '''
    """Benchmark plugin: receives every input and does nothing with it."""

    from edge_engine.api import BusinessPlugin


    class BenchNoop(BusinessPlugin):
        SIGNATURE = "BENCH_NOOP"

        def process(self, inp):
            return None
'''

Run = tuple[int, float, float]  # frames, wall seconds, CPU seconds


# --- the video --------------------------------------------------------------------------------------------
def generate_video(
    path: Path, width: int = 640, height: int = 480, frames: int = 1200, fps: float = 30.0, noise: float = 0.0
) -> Path:
    """A deterministic clip: a moving texture and two moving shapes, optionally with Gaussian noise."""
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v to {path}")
    textures = [  # the texture's phase cycles through 8 precomputed states (cheap to make at 1920x1080)
        np.clip(110 + 60 * np.sin(xx / 23.0 + k / 1.3) * np.cos(yy / 17.0 - k / 2.6), 0, 255).astype(np.uint8)
        for k in range(8)
    ]
    try:
        for i in range(frames):
            base = textures[i % len(textures)]
            frame = np.stack([base, np.roll(base, i * 3, axis=1), 255 - base], axis=-1)
            if noise > 0:
                frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
            x = int((i * 7) % (width + 120)) - 60
            radius = max(8, height // 10)
            cv2.circle(frame, (x, height // 2), radius, (30, 200, 240), -1)
            cv2.rectangle(frame, (width - x - radius, height // 8), (width - x + radius, height // 8 + 2 * radius),
                          (200, 40, 90), -1)  # fmt: skip
            writer.write(frame)
    finally:
        writer.release()
    return path


def concat_video(source: Path, times: int, path: Path) -> Path:
    """``source`` played ``times`` times in a row (re-encoded as mp4v at the source's size and fps)."""
    cap = cv2.VideoCapture(str(source))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.release()
    if not frames:
        raise RuntimeError(f"cannot read {source}")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for _ in range(times):
        for frame in frames:
            writer.write(frame)
    writer.release()
    return path


# --- the two measurements -------------------------------------------------------------------------------------
def raw_decode(path: Path) -> Run:
    """Frames decoded, wall and CPU seconds of a bare OpenCV read loop (open included)."""
    cpu = time.process_time()
    started = time.perf_counter()
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f"cannot open {path}")
    count = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        count += 1
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    cap.release()
    return count, seconds, cpu


class EngineBench:
    """One node, started once; each run adds the pipeline, waits for the instance to finish, removes it."""

    def __init__(self, workdir: Path):
        plugins = workdir / "plugins" / "business"
        plugins.mkdir(parents=True)
        (plugins / "bench_noop.py").write_text(textwrap.dedent(NOOP_PLUGIN), encoding="utf-8")
        config = {
            "PLUGIN_FOLDERS": [str(REPO / "extensions"), str(workdir / "plugins")],
            "DEMO_PIPELINE": False,
            "LOG_LEVEL": "WARNING",
        }
        (workdir / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
        env = {"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0"}
        settings = load_settings(workdir, workdir / "_local_cache", env)
        self.node = Node(settings)
        self.node.start()

    def run(self, path: Path) -> Run:
        """Frames the no-op instance received, wall and CPU seconds from pipeline start to the last one."""
        pipeline = {
            "NAME": "bench",
            "TYPE": "VIDEO_FILE",
            "URL": str(path),
            "PLUGINS": [{"SIGNATURE": "BENCH_NOOP", "INSTANCES": [{"INSTANCE_ID": "noop"}]}],
        }
        cpu = time.process_time()
        started = time.perf_counter()
        self.node.add_pipeline(pipeline, source="benchmark")
        runner = self.node.pipelines["bench"]
        (instance,) = runner.instances.values()
        instance.thread.join()
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        frames = instance.stats.inputs
        if runner.capture.status != "finished" or instance.stats.errors:
            raise RuntimeError(f"pipeline did not finish cleanly: {runner.snapshot()}")
        self.node.remove_pipeline("bench")
        return frames, seconds, cpu

    def close(self) -> None:
        self.node.stop("benchmark done")


def report(label: str, runs: list[Run]) -> float:
    """Print one line (median of the runs) and return the median rate."""
    frames = max(f for f, _, _ in runs)
    seconds = statistics.median(s for _, s, _ in runs)
    cpu_us = statistics.median(1e6 * c / f for f, _, c in runs)
    fps = frames / seconds
    spread = ", ".join(f"{f / s:.0f}" for f, s, _ in runs)
    print(
        f"{label:<27} {frames:>6} frames  {seconds:7.3f} s  {fps:8.1f} fps  "
        f"CPU {cpu_us:6.1f} µs/frame  (runs, fps: {spread})"
    )
    return fps


# --- main -------------------------------------------------------------------------------------------------------
DEFAULT_SIZES = "320x240,640x480,1920x1080"
FRAMES_FOR = {320 * 240: 3000, 640 * 480: 1200, 1920 * 1080: 240}  # about a second of decoding each, here


def frames_for(width: int, height: int, override: int | None) -> int:
    if override:
        return override
    pixels = width * height
    return FRAMES_FOR.get(pixels) or max(60, int(1200 * 640 * 480 / pixels))


def measure(engine: EngineBench, video: Path, repeat: int) -> tuple[list[Run], list[Run]]:
    """Raw and engine runs, alternately, after one untimed warm-up of each."""
    raw_runs: list[Run] = []
    engine_runs: list[Run] = []
    raw_decode(video)  # warm-up: page cache, codec initialisation
    engine.run(video)
    for _ in range(max(1, repeat)):
        raw_runs.append(raw_decode(video))
        engine_runs.append(engine.run(video))
    return raw_runs, engine_runs


def judge(size: str, raw_runs: list[Run], engine_runs: list[Run], repeat: int) -> float | None:
    """Print the medians and the ratio for one clip and record them; None when frames were lost."""
    print(f"{size}: median of {len(raw_runs)} run(s):")
    raw_fps = report("raw cv2.VideoCapture.read", raw_runs)
    engine_fps = report("engine VIDEO_FILE → no-op", engine_runs)
    raw_frames, engine_frames = {f for f, _, _ in raw_runs}, {f for f, _, _ in engine_runs}
    if engine_frames != raw_frames:
        print(f"FRAMES LOST: raw decoded {sorted(raw_frames)}, the instance received {sorted(engine_frames)}")
        return None
    ratio = engine_fps / raw_fps
    pairs = zip(raw_runs, engine_runs, strict=True)
    paired = statistics.median((fe / se) / (fr / sr) for (fr, sr, _), (fe, se, _) in pairs)
    cpu_raw = statistics.median(c / f for f, _, c in raw_runs)
    cpu_engine = statistics.median(c / f for f, _, c in engine_runs)
    verdict = "OK" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"{size}: ratio engine/raw {ratio:.3f} (median of paired runs {paired:.3f}; CPU per frame "
          f"{cpu_engine / cpu_raw:.3f}× raw)  (target ≥ {TARGET_RATIO})  {verdict}")  # fmt: skip
    record(f"engine VIDEO_FILE → no-op instance, {size}", round(engine_fps, 1), "fps", goal=f"≥ {TARGET_RATIO} × raw",
           samples=[round(f / s, 1) for f, s, _ in engine_runs], baseline=round(raw_fps, 1),
           baseline_name="raw cv2.VideoCapture.read", note=f"paired-run ratio {paired:.3f}")  # fmt: skip
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--video", type=Path, help="video file to use (default: generate clips of --sizes)")
    source.add_argument("--repeat-video", type=int, metavar="N", help="use samples/demo.mp4 concatenated N times")
    source.add_argument("--sizes", default=DEFAULT_SIZES, help=f"generated clips, WxH,... (default {DEFAULT_SIZES})")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each measurement (median reported)")
    parser.add_argument("--frames", type=int, default=0, help="frames of each generated clip (default: by size)")
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise sigma of the generated clips")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if a ratio is below {TARGET_RATIO}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    load = os.getloadavg()
    print(f"python {sys.version.split()[0]}, OpenCV {cv2.__version__}, cv2 threads {cv2.getNumThreads()}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip

    ratios: list[float | None] = []
    with tempfile.TemporaryDirectory(prefix="bench_video_") as tmp:
        workdir = Path(tmp)
        if args.video:
            videos = [args.video.resolve()]
        elif args.repeat_video:
            videos = [concat_video(REPO / "samples" / "demo.mp4", args.repeat_video, workdir / "demo_x.mp4")]
        else:
            videos = []
            for size in args.sizes.split(","):
                width, height = (int(v) for v in size.lower().split("x"))
                frames = frames_for(width, height, args.frames)
                videos.append(generate_video(workdir / f"bench_{size}.mp4", width, height, frames, noise=args.noise))
        engine = EngineBench(workdir / "node")
        try:
            for video in videos:
                cap = cv2.VideoCapture(str(video))
                size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
                cap.release()
                print(f"video: {video.name} ({size}, {video.stat().st_size / 1e6:.1f} MB)")
                raw_runs, engine_runs = measure(engine, video, args.repeat)
                ratios.append(judge(size, raw_runs, engine_runs, args.repeat))
        finally:
            engine.close()
    if any(r is None for r in ratios):
        return 1
    return 1 if args.check and any(r is not None and r < TARGET_RATIO for r in ratios) else 0


if __name__ == "__main__":
    sys.exit(main())
