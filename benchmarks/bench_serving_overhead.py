"""Engine overhead on a model pipeline: video file → PP-OCR text detector → business plugin, against a bare loop.

Both run in this process's run, on the same generated video (text moving over a textured background), with
the same model and the same pre- and post-processing code (the ``PP_OCR_DETECTOR`` plugin's functions),
alternately, ``--repeat`` times; medians are reported:

1. **bare loop**: ``cv2.VideoCapture.read`` → pre-process → ``session.run`` → post-process, one frame after
   the other, in one thread, with onnxruntime's default threads (one per core);
2. **engine, same session**: an in-process node runs ``VIDEO_FILE`` → ``BENCH_INFER`` (counts) with the
   detector served by ONE server process whose session has onnxruntime's default threads: the same compute
   as the bare loop, plus everything the engine adds (capture thread, shared memory, batching, the
   processes' pipes, the business instance);
3. **engine, default**: the same pipeline with the serving defaults (one server process per core, one
   onnxruntime thread each, up to ``MAX_IN_FLIGHT`` frames in flight).

Reported: frames/s, ms/frame, the overhead in ms/frame (engine − bare) and the throughput ratio (engine /
bare), plus the node process's CPU per frame. Targets: overhead ≤ 1 ms/frame, ratio ≥ 0.97. The engine
timings start at ``add_pipeline`` and end when the business instance has handled the last frame (the
model is loaded before: a server that stays up between runs).

    .venv/bin/python benchmarks/bench_serving_overhead.py [--frames 300] [--size 320x240] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cv2
import numpy as np
from _results import record
from _serving_common import REPO, make_node, print_json, print_table, wait_until

LIMIT_SIDE = 320


def generate_video(path: Path, width: int, height: int, frames: int) -> Path:
    """A deterministic clip: a moving texture with two lines of text sliding across."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    for i in range(frames):
        base = 150 + 40 * np.sin(xx / 29.0 + i / 9.0) * np.cos(yy / 21.0)
        frame = np.clip(np.stack([base, base * 0.9, base * 0.8], axis=-1), 0, 255).astype(np.uint8)
        x = int((i * 3) % max(1, width // 2))
        cv2.putText(frame, "EDGE NODE 42", (x, height // 3), cv2.FONT_HERSHEY_SIMPLEX, width / 400, (20, 20, 20), 2)
        cv2.putText(frame, f"frame {i:04d}", (width // 4, 2 * height // 3), cv2.FONT_HERSHEY_SIMPLEX, width / 500,
                    (30, 30, 160), 2)  # fmt: skip
        writer.write(frame)
    writer.release()
    return path


# --- the bare loop --------------------------------------------------------------------------------------------
class BareLoop:
    """The detector without the engine: the plugin's own processing code around one session."""

    def __init__(self) -> None:
        import logging
        import threading

        import onnxruntime as ort

        from edge_engine.plugin.discovery import import_file
        from edge_engine.plugin.kinds import PluginContext

        module = import_file(REPO / "extensions" / "serving" / "pp_ocr.py", "bench_pp_ocr")
        config = {k: v.default for k, v in module.PpOcrDetector.config_schema().items()}
        config.update({"LIMIT_SIDE": LIMIT_SIDE, "INTRA_OP_THREADS": 0, "INTER_OP_THREADS": 0})
        context = PluginContext("", "", "PP_OCR_DETECTOR", None, logging.getLogger("bench"), Path("."), Path("."),
                                threading.Event())  # fmt: skip
        self.plugin = module.PpOcrDetector(config, context)
        self.plugin.on_init()  # builds the session: onnxruntime's default threads (INTRA_OP_THREADS 0)
        self.Input = __import__("edge_engine.plugin.kinds", fromlist=["Input"]).Input
        self.ort_version = ort.__version__

    def run(self, video: Path) -> tuple[int, float]:
        plugin, make_input = self.plugin, self.Input
        started = time.perf_counter()
        cap = cv2.VideoCapture(str(video))
        frames = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            inputs = [make_input(image=frame)]
            plugin.post_process(plugin.predict(plugin.pre_process(inputs)), inputs)
            frames += 1
        cap.release()
        return frames, time.perf_counter() - started


# --- the engine -------------------------------------------------------------------------------------------------
def engine_run(node: Any, video: Path, params: dict[str, Any], name: str) -> tuple[int, float, float]:
    """Frames, wall seconds and node-process CPU seconds of one pass over the video."""
    pipeline = {
        "NAME": name, "TYPE": "VIDEO_FILE", "URL": str(video),
        "PLUGINS": [{"SIGNATURE": "BENCH_INFER", "INSTANCES": [{
            "INSTANCE_ID": "count", "ENGINE": "PP_OCR_DETECTOR", "AI_ENGINE": "PP_OCR_DETECTOR",
            "STARTUP_AI_ENGINE_PARAMS": params}]}],
    }  # fmt: skip
    cpu = time.process_time()
    started = time.perf_counter()
    node.add_pipeline(pipeline, source="benchmark")
    runner = node.pipelines[name]
    (instance,) = runner.instances.values()
    plugin = None
    while plugin is None:
        plugin = instance._plugin
        time.sleep(0.001)
    instance.thread.join()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    if plugin.failed or plugin.missing:
        raise RuntimeError(f"{plugin.failed} frames got a ServingError, {plugin.missing} no result")
    node.remove_pipeline(name)
    return plugin.seen, seconds, cpu


def warm(node: Any, video: Path, params: dict[str, Any]) -> None:
    """Start the server (load the model) with a short first pass, so runs measure the steady state."""
    engine_run(node, video, params, "warmup")
    wait_until(lambda: all(s.state == "running" for s in node.serving.servers()), 30, "servers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames of the generated clip")
    parser.add_argument("--size", default="320x240", help="frame size of the generated clip, WxH")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each set-up (median)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    setups = {
        "engine, same session": {"WORKERS": 1, "INTRA_OP_THREADS": 0, "INTER_OP_THREADS": 0, "LIMIT_SIDE": LIMIT_SIDE},
        "engine, default": {"LIMIT_SIDE": LIMIT_SIDE},
    }
    runs: dict[str, list[tuple[int, float, float]]] = {"bare loop": [], **{k: [] for k in setups}}
    with tempfile.TemporaryDirectory(prefix="bench_overhead_") as tmp:
        video = generate_video(Path(tmp) / "text.mp4", width, height, args.frames)
        short = generate_video(Path(tmp) / "short.mp4", width, height, 10)
        bare = BareLoop()
        node = make_node(Path(tmp) / "node")
        try:
            for params in setups.values():
                warm(node, short, params)
            bare.run(short)
            for index in range(max(1, args.repeat)):
                frames, seconds = bare.run(video)
                runs["bare loop"].append((frames, seconds, seconds))
                for label, params in setups.items():
                    runs[label].append(engine_run(node, video, params, f"run{index}"))
        finally:
            node.stop("benchmark done")
    frames = runs["bare loop"][0][0]
    bare_ms = statistics.median(1000 * s / f for f, s, _ in runs["bare loop"])
    rows, results = [], []
    for label, measured in runs.items():
        if any(f != frames for f, _, _ in measured):
            print(f"FRAMES LOST in {label}: {[f for f, _, _ in measured]} (expected {frames})")
            return 1
        ms = statistics.median(1000 * s / f for f, s, _ in measured)
        cpu_ms = statistics.median(1000 * c / f for f, _, c in measured) if label != "bare loop" else None
        result = {
            "setup": label, "frames": frames, "fps": round(1000 / ms, 2), "ms_per_frame": round(ms, 3),
            "overhead_ms": round(ms - bare_ms, 3), "ratio": round(bare_ms / ms, 3),
            "node_cpu_ms_per_frame": None if cpu_ms is None else round(cpu_ms, 3),
        }  # fmt: skip
        results.append(result)
        rows.append([label, f"{result['fps']:.1f}", f"{ms:.2f}", f"{result['overhead_ms']:+.2f}", result["ratio"],
                     "-" if cpu_ms is None else f"{cpu_ms:.2f}"])  # fmt: skip
    print_table(
        f"PP_OCR_DETECTOR on {frames} frames {width}x{height} (LIMIT_SIDE {LIMIT_SIDE}), median of {args.repeat}, "
        f"onnxruntime {bare.ort_version}:",
        ["set-up", "frames/s", "ms/frame", "overhead ms", "ratio", "node CPU ms/frame"],
        rows,
    )
    same = next(r for r in results if r["setup"] == "engine, same session")
    print(f"engine overhead (same session): {same['overhead_ms']:+.3f} ms/frame (target ≤ 1), ratio {same['ratio']} "
          "(target ≥ 0.97)")  # fmt: skip
    bare_row = next(r for r in results if r["setup"] == "bare loop")
    record("engine (same session) per frame", same["ms_per_frame"], "ms", baseline=bare_row["ms_per_frame"],
           baseline_name="bare onnxruntime loop")  # fmt: skip
    record("serving overhead, engine same session", same["overhead_ms"], "ms/frame", goal="≤ 1")
    record("serving throughput ratio (bare / engine)", same["ratio"], "", goal="≥ 0.97")
    print_json("serving_overhead", {"model": "PP_OCR_DETECTOR", "size": [width, height], "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
