"""Many cameras on one node: 1, 8, 32 and 64 camera-like pipelines, each a motion detector plus frame statistics.

Each pipeline is a camera stand-in: ``VIDEO_FILE`` on a generated 640x480 clip (a moving texture and shapes) at
5 or 15 fps, ``LOOP``, ``REALTIME`` (frames come at the clip's fps) and ``LIVE_FEED`` (a slow consumer loses the
oldest frames, counted), with two business instances: the shipped ``MOTION_DETECTOR`` and ``BENCH_FRAME_STATS``
(written by this script: per frame, brightness and sharpness of a 320-pixel gray copy as the shipped
``FRAME_STATS`` measures them, and every ``--report-every`` frames a payload stamped with the frame's capture time,
so that frame → payload latency can be measured in the node's ``edge_payload`` hook).

One in-process node (comms off) runs, for each fps and each pipeline count N: start N pipelines, let them warm up,
then measure for ``--seconds``: the process's CPU seconds per second, frames taken by each instance, drops,
latency, threads and RSS; then remove them. The node idle (no pipeline) is measured first: its CPU is the floor
under every figure. Printed per N:

- **CPU ratio** = (CPU(N) − idle) / (N × (CPU(1) − idle)): the cost of N pipelines against N times the cost of one
  (goal ≤ 1.1, meaningful below saturation, where every frame is processed);
- **fairness**: Jain's index over the frames each pipeline's instances took (1.0: all alike; goal ≥ 0.95);
- **p99 latency** from a frame's capture to its payload (goal ≤ 50 ms below saturation);
- **delivered**: frames processed / frames the cameras offered, and the drops (capture and instances) with the
  fairness of drops across pipelines (past saturation frames must drop evenly, oldest first);
- threads of the process and RSS (goal ≤ 300 MB at 64).

Saturation: the node is saturated when it cannot take every frame (delivered < 0.98); the CPU ratio and latency
goals hold below it. On a 2-core machine shared with other work, keep ``--seconds`` short and read ratios, not
absolute rates; the load average is printed.

    .venv/bin/python benchmarks/bench_many_cameras.py [--counts 1,8,32,64] [--fps 5,15] [--seconds 5] [--warmup 2]
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import record  # noqa: E402
from bench_video_pipeline import generate_video  # noqa: E402

from edge_engine.api import hookimpl  # noqa: E402
from edge_engine.config.node_settings import load_settings  # noqa: E402
from edge_engine.node.core import Node  # noqa: E402

CPU_RATIO_GOAL = 1.1
FAIRNESS_GOAL = 0.95
P99_GOAL_MS = 50.0
RSS_GOAL_MB = 300.0
SATURATED_BELOW = 0.98  # delivered fraction under which the node is saturated

STATS_PLUGIN = '''
    """Benchmark plugin: frame statistics per frame (as FRAME_STATS measures them), a payload every REPORT_EVERY
    frames stamped with that frame's capture time (for frame -> payload latency)."""

    from typing import Any, ClassVar

    import cv2

    from edge_engine.api import BusinessPlugin, Key


    class BenchFrameStats(BusinessPlugin):
        SIGNATURE = "BENCH_FRAME_STATS"
        CONFIG: ClassVar[dict[str, Any]] = {"REPORT_EVERY": Key(5, type=int, min=1, doc="frames per payload")}

        def on_init(self):
            self._frames = 0
            self._brightness = 0.0
            self._sharpness = 0.0

        def process(self, inp):
            if inp is None or inp.image is None:
                return None
            frame = inp.image
            height, width = frame.shape[:2]
            small = cv2.resize(frame, (320, max(1, round(height * 320 / width))), interpolation=cv2.INTER_AREA)
            gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
            mean, _ = cv2.meanStdDev(gray)
            self._frames += 1
            self._brightness += float(mean[0][0])
            self._sharpness += float(cv2.Laplacian(gray, cv2.CV_64F).var())
            if self._frames < int(self.config["REPORT_EVERY"]):
                return None
            report = {"FRAMES": self._frames, "MEAN_BRIGHTNESS": round(self._brightness / self._frames, 3),
                      "MEAN_SHARPNESS": round(self._sharpness / self._frames, 3), "CAPTURED_AT": inp.timestamp}
            self.on_init()
            return report
'''


class PayloadClock:
    """The node's ``edge_payload`` hook: frame → payload latency of the stamped payloads, per pipeline."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.recording = False

    @hookimpl
    def edge_payload(self, payload: Any) -> None:
        captured = payload.data.get("CAPTURED_AT")
        if not self.recording or not captured:
            return
        latency = payload.created - float(captured)
        with self.lock:
            self.latencies.append(latency)


@dataclass
class Step:
    """One measurement: N pipelines at one fps."""

    fps: float
    count: int
    seconds: float = 0.0
    cpu: float = 0.0  # CPU seconds per second of the whole process
    processed: list[int] = field(default_factory=list)  # frames each pipeline's instances took (sum of both)
    dropped: list[int] = field(default_factory=list)  # frames each pipeline dropped (capture and instances)
    latencies_ms: list[float] = field(default_factory=list)
    threads: int = 0
    rss_mb: float = 0.0

    @property
    def offered(self) -> float:
        """Frames the cameras offered to the instances in the window (2 instances per pipeline)."""
        return 2 * self.count * self.fps * self.seconds

    @property
    def delivered(self) -> float:
        return sum(self.processed) / self.offered if self.offered else 0.0

    @property
    def p99_ms(self) -> float | None:
        if len(self.latencies_ms) < 2:
            return None
        return statistics.quantiles(self.latencies_ms, n=100)[98]

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None


def jain(values: list[int] | list[float]) -> float:
    """Jain's fairness index: 1.0 when all values are equal, 1/n when one takes everything."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return 1.0 if squares == 0 else total * total / (len(values) * squares)


def rss_and_threads() -> tuple[float, int]:
    rss, threads = 0.0, 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


class Bench:
    def __init__(self, workdir: Path, report_every: int, decode_threads: int):
        plugins = workdir / "plugins" / "business"
        plugins.mkdir(parents=True)
        (plugins / "bench_frame_stats.py").write_text(textwrap.dedent(STATS_PLUGIN), encoding="utf-8")
        config = {
            "PLUGIN_FOLDERS": [str(REPO / "extensions"), str(workdir / "plugins")],
            "DEMO_PIPELINE": False,
            "LOG_LEVEL": "WARNING",
        }
        (workdir / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
        settings = load_settings(workdir, workdir / "_local_cache", {"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0"})
        self.node = Node(settings)
        self.clock = PayloadClock()
        self.node.pm.register(self.clock, name="bench_many_cameras.clock")
        self.node.start()
        self.report_every = report_every
        self.decode_threads = decode_threads

    def pipeline(self, name: str, clip: Path) -> dict[str, Any]:
        return {
            "NAME": name,
            "TYPE": "VIDEO_FILE",
            "URL": str(clip),
            "LOOP": True,
            "REALTIME": True,
            "LIVE_FEED": True,
            **({"DECODE_THREADS": self.decode_threads} if self.decode_threads else {}),
            "PLUGINS": [
                {"SIGNATURE": "MOTION_DETECTOR", "INSTANCES": [{"INSTANCE_ID": "motion"}]},
                {"SIGNATURE": "BENCH_FRAME_STATS", "INSTANCES": [{"INSTANCE_ID": "stats",
                                                                   "REPORT_EVERY": self.report_every}]},
            ],
        }  # fmt: skip

    def counters(self, names: list[str]) -> tuple[list[int], list[int]]:
        processed, dropped = [], []
        for name in names:
            runner = self.node.pipelines[name]
            instances = tuple(runner.instances.values())
            processed.append(sum(r.stats.inputs for r in instances))
            dropped.append(runner.capture.stats.dropped + sum(r.stats.dropped for r in instances))
        return processed, dropped

    def measure(self, fps: float, count: int, clip: Path | None, seconds: float, warmup: float) -> Step:
        names = [f"cam{i:03d}" for i in range(count)]
        if clip is not None:
            for name in names:
                self.node.add_pipeline(self.pipeline(name, clip), source="benchmark")
        time.sleep(warmup)  # a benchmark: let every camera reach its pace before the window opens
        step = Step(fps, count)
        before_p, before_d = self.counters(names) if clip else ([], [])
        with self.clock.lock:
            self.clock.latencies.clear()
        self.clock.recording = True
        cpu, started = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        step.cpu = (time.process_time() - cpu) / (time.perf_counter() - started)
        step.seconds = time.perf_counter() - started
        self.clock.recording = False
        if clip is not None:
            after_p, after_d = self.counters(names)
            step.processed = [a - b for a, b in zip(after_p, before_p, strict=True)]
            step.dropped = [a - b for a, b in zip(after_d, before_d, strict=True)]
        with self.clock.lock:
            step.latencies_ms = [1000 * x for x in self.clock.latencies]
        step.rss_mb, step.threads = rss_and_threads()
        for name in names if clip else ():
            self.node.remove_pipeline(name)
        return step

    def close(self) -> None:
        self.node.stop("benchmark done")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--counts", default="1,8,32,64", help="pipeline counts (comma-separated)")
    parser.add_argument("--fps", default="5,15", help="camera frame rates (comma-separated)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window per step")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each window")
    parser.add_argument("--report-every", type=int, default=5, help="frames per frame-stats payload")
    parser.add_argument("--decode-threads", type=int, default=1, help="VIDEO_FILE DECODE_THREADS (0: OpenCV's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    counts = [int(c) for c in args.counts.split(",")]
    rates = [float(f) for f in args.fps.split(",")]
    load = os.getloadavg()
    print(
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPU(s); "
        f"DECODE_THREADS {args.decode_threads}, MALLOC_ARENA_MAX {os.environ.get('MALLOC_ARENA_MAX', 'unset')}"
    )

    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="bench_cameras_") as tmp:
        workdir = Path(tmp)
        clips = {fps: generate_video(workdir / f"cam_{fps:g}.mp4", frames=int(4 * fps), fps=fps) for fps in rates}
        bench = Bench(workdir / "node", args.report_every, args.decode_threads)
        try:
            idle = bench.measure(0, 0, None, args.seconds, 0.5)
            rss0, threads0 = idle.rss_mb, idle.threads
            print(f"idle node: CPU {100 * idle.cpu:.1f} % of a core, {threads0} threads, RSS {rss0:.0f} MB")
            for fps in rates:
                for count in counts:
                    step = bench.measure(fps, count, clips[fps], args.seconds, args.warmup)
                    steps.append(step)
                    print_step(step, idle.cpu, steps)
            time.sleep(1.0)  # the watchdog hands the removed pipelines' memory back to the system
            rss_end, threads_end = rss_and_threads()
            print(f"every pipeline removed: {threads_end} threads, RSS {rss_end:.0f} MB (idle node {rss0:.0f} MB)")
        finally:
            bench.close()
    return summarize(steps, idle.cpu, threads0)


def single_cost(steps: list[Step], fps: float, idle: float) -> float | None:
    ones = [s for s in steps if s.fps == fps and s.count == 1]
    return max(1e-6, ones[0].cpu - idle) if ones else None


def print_step(step: Step, idle: float, steps: list[Step]) -> None:
    one = single_cost(steps, step.fps, idle)
    ratio = (step.cpu - idle) / (step.count * one) if one else None
    p99 = step.p99_ms
    print(
        f"{step.fps:>4g} fps x {step.count:>3}: CPU {100 * step.cpu:6.1f} %"
        f"  ratio {ratio if ratio is None else round(ratio, 3)!s:>6}"
        f"  delivered {step.delivered:6.3f}  fairness {jain(step.processed):.3f}"
        f"  dropped {sum(step.dropped):>6} (fairness {jain(step.dropped):.3f})"
        f"  latency p50 {step.p50_ms or 0:6.1f} p99 {p99 or 0:6.1f} ms ({len(step.latencies_ms)})"
        f"  threads {step.threads:>4}  RSS {step.rss_mb:5.0f} MB"
    )


def summarize(steps: list[Step], idle: float, threads0: int) -> int:
    print("goals (below saturation: delivered ≥ 0.98): CPU ratio ≤ 1.1, fairness ≥ 0.95, p99 ≤ 50 ms; RSS ≤ 300 MB")
    for step in steps:
        one = single_cost(steps, step.fps, idle)
        ratio = (step.cpu - idle) / (step.count * one) if one else None
        saturated = step.delivered < SATURATED_BELOW
        tag = f"{step.count} pipelines at {step.fps:g} fps"
        note = "saturated" if saturated else "below saturation"
        if step.count > 1 and ratio is not None:
            record(f"cameras: CPU ratio, {tag}", round(ratio, 3), "× N·single", goal=f"≤ {CPU_RATIO_GOAL}",
                   note=note)  # fmt: skip
        record(f"cameras: fairness, {tag}", round(jain(step.processed), 3), "Jain", goal=f"≥ {FAIRNESS_GOAL}",
               note=note)  # fmt: skip
        if step.p99_ms is not None:
            record(f"cameras: p99 frame→payload, {tag}", round(step.p99_ms, 1), "ms", goal=f"≤ {P99_GOAL_MS:g}",
                   note=note)  # fmt: skip
        record(f"cameras: delivered, {tag}", round(step.delivered, 3), "of offered", note=(
            f"{sum(step.dropped)} dropped, drop fairness {jain(step.dropped):.3f}"))  # fmt: skip
        if step.count == max(s.count for s in steps):
            record(f"cameras: RSS, {tag}", round(step.rss_mb, 1), "MB", goal=f"≤ {RSS_GOAL_MB:g}")
            record(f"cameras: threads, {tag}", step.threads, "threads", note=f"idle node {threads0}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
