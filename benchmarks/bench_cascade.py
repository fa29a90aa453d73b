"""Cascade overhead: detector → crops → second model, in the engine (``CASCADE``) against a hand-written loop.

Both run in the same run, on the same frames, with the same models, sessions (one onnxruntime thread each) and
processing code (the plugins' own ``pre_process`` / ``predict`` / ``post_process``), alternately, ``--repeat`` times;
medians are reported, for several numbers of boxes per frame (``--boxes``):

* **the first stage**, ``BENCH_GRID``: a real ONNX graph (the mean colour of the frame, built here with ``onnx``)
  whose plugin returns a grid of N text-line-sized boxes in the detection format: a detector whose cost does not
  depend on N, so the box count is the only thing that changes;
* **the second stage** on each box's crop, in batches of its ``MAX_BATCH_SIZE``: the built-in ``ONNX`` plugin on a
  mean-colour model (``--second mean``, 16×16 inputs, batches of 8) or ``PP_OCR_DIRECTION`` (``--second direction``:
  the 0.6 MB PP-OCR text-direction classifier of the ``rapidocr-onnxruntime`` wheel, batches of 4).

1. **hand-written loop**: for each frame, the detector's pre-process → ``session.run`` → post-process, then
   ``crop_detection`` of every box, then the second model on the crops, batch after batch, in one thread;
2. **engine, serial**: an in-process node runs ``BENCH_FRAMES`` (the same frames) → ``BENCH_CASCADE`` (counts the
   results), the detector in ``AI_ENGINE`` and the second model in ``CASCADE`` (``MAX_CROPS`` = N), each model in ONE
   server process (``WORKERS: 1``) at the loop's priority (``PROCESS_NICE: 0``), ``MAX_IN_FLIGHT: 1``: one frame
   at a time, like the loop, plus everything the engine adds (capture thread, shared memory for frames and crops,
   batching, the processes' pipes, the instance);
3. **engine, pipelined**: the same with the default ``MAX_IN_FLIGHT`` (frames overlap: the detector runs the next
   frame while the second model runs this one's crops).
4. **engine, serial / pipelined, co-located**: the same two with ``"COLOCATE": true`` on the cascade (the second
   model runs inside the detector's server process: no server of its own, one round trip per frame).

ms/frame is the steady state: from the first frame handled to the last, divided by the frames between (for the
engine, when the business instance got them; for the loop, when it finished them), so starting a pipeline is not
counted. Reported: ms/frame for each, the overhead (engine serial − loop) per box count, and its least-squares fit
``a + b × crops`` over the box counts above 0, for the shared-server and the co-located cascade (a frame without
boxes sends nothing: its line shows the first stage's overhead alone): the per-frame and per-crop overheads.
Targets: ≤ 1 ms per frame plus ≤ 0.1 ms per crop. The
default second stage (``--second mean``) is the built-in ``ONNX`` plugin on a mean-colour model, which costs almost
nothing, so the overhead is not lost in the model's own time; ``--second direction`` runs ``PP_OCR_DIRECTION``.

    .venv/bin/python benchmarks/bench_cascade.py [--frames 200] [--boxes 0,8,16,32] [--repeat 5] [--second mean]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from _results import record
from _serving_common import REPO, make_node, print_json, print_table, wait_until

WIDTH, HEIGHT = 320, 240
SECOND_SIGNATURE = {"direction": "PP_OCR_DIRECTION", "mean": "ONNX"}
SECOND_PARAMS = {  # the second stage's config, given the folder of the built models
    "direction": lambda folder: {},
    "mean": lambda folder: {
        "ONNX_MODEL": str(folder / "mean.onnx"),
        "INPUT_WIDTH": 16,
        "INPUT_HEIGHT": 16,
        "COLOR_ORDER": "BGR",
        "SCALE": 1.0,
    },
}

GRID_DETECTOR = '''
    """Benchmark first stage: a real ONNX graph on the frame, and a grid of text-line boxes (as many as the input's
    metadata says: one server for every box count)."""

    from edge_engine.api import Key, OnnxServingPlugin, make_detection


    def grid(count, width, height):
        cols = 4
        rows = max(1, -(-count // cols))
        w, h = width / cols, height / rows
        return [[(i % cols) * w + 2, (i // cols) * h + 2, (i % cols + 1) * w - 2, (i // cols + 1) * h - 2]
                for i in range(count)]


    class BenchGrid(OnnxServingPlugin):
        SIGNATURE = "BENCH_GRID"
        CONFIG = {"MODEL": Key("", type=str)}

        @classmethod
        def model_file(cls, config, models_dir):
            from pathlib import Path

            return Path(config["MODEL"])

        def pre_process(self, inputs):
            import cv2
            import numpy as np

            return np.stack([cv2.resize(i.image, (32, 32)).transpose(2, 0, 1).astype(np.float32) for i in inputs])

        def post_process(self, predictions, inputs):
            results = []
            for index, inp in enumerate(inputs):
                height, width = inp.image.shape[:2]
                score = float(predictions[0][index][0]) / 255.0
                results.append([make_detection(box, 0.5 + 0.5 * score, 0, "text")
                                for box in grid(inp.metadata.get("boxes", 0), width, height)])
            return results
'''

FRAMES = '''
    """Benchmark capture: the frames of a .npy file, in order, once."""

    import numpy as np
    from edge_engine.api import CapturePlugin, EndOfStream, Input, Key


    class BenchFrames(CapturePlugin):
        SIGNATURE = "BENCH_FRAMES"
        CONFIG = {"FILE": Key("", type=str), "BOXES": Key(0, type=int)}

        def connect(self):
            self.frames = np.load(self.config["FILE"], mmap_mode="r")
            self.index = 0

        def read(self):
            if self.index >= len(self.frames):
                raise EndOfStream("done")
            self.index += 1
            return Input(image=np.array(self.frames[self.index - 1]), metadata={"boxes": self.config["BOXES"]})
'''

COUNTER = '''
    """Benchmark business plugin: counts frames, crop results and ServingErrors."""

    import time

    from edge_engine.api import BusinessPlugin, ServingError


    class BenchCascade(BusinessPlugin):
        SIGNATURE = "BENCH_CASCADE"

        def on_init(self):
            self.times = []  # when each frame was handled (the engine's steady state: first to last)
            self.frames = 0
            self.results = 0
            self.failed = 0

        def process(self, inp):
            self.times.append(time.perf_counter())
            self.frames += 1
            for value in inp.inferences.get("SECOND") or []:
                if isinstance(value, ServingError):
                    self.failed += 1
                elif value is not None:
                    self.results += 1
'''


def build_models(folder: Path) -> Path:
    """The detector's graph (the mean colour of a 32×32 frame, N × 3) and the cheap second stage's (the mean
    colour of a crop); returns the detector's."""
    sys.path.insert(0, str(REPO / "tests"))
    from onnx_models import mean_model

    mean_model(folder / "mean.onnx")
    return mean_model(folder / "grid.onnx", 32, 32)


def make_frames(path: Path, count: int) -> Path:
    """Deterministic frames: a texture with dark text-like strokes (the classifier sees text-ish crops)."""
    rng = np.random.default_rng(7)
    frames = rng.integers(120, 220, size=(count, HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames[:, ::12, :, :] //= 3
    np.save(path, frames)
    return path


# --- the hand-written loop ---------------------------------------------------------------------------------------
class HandLoop:
    """Detector → crop → classifier with the plugins' own code around one session each (one thread each)."""

    def __init__(self, plugin_dir: Path, model: Path, second: str) -> None:
        from edge_engine.plugin.discovery import import_file
        from edge_engine.plugin.kinds import Input, PluginContext

        grid = import_file(plugin_dir / "serving" / "bench_grid.py", "bench_grid_loop")
        ocr = import_file(REPO / "extensions" / "serving" / "pp_ocr.py", "bench_pp_ocr_loop")
        self.Input = Input

        def make(cls: Any, **overrides: Any) -> Any:
            config = {k: v.default for k, v in cls.config_schema().items() if not v.required}
            config.update({"INTRA_OP_THREADS": 1, "INTER_OP_THREADS": 1, **overrides})
            context = PluginContext("", "", cls.SIGNATURE, None, logging.getLogger("bench"), Path("."), Path("."),
                                    threading.Event())  # fmt: skip
            plugin = cls(config, context)
            plugin.on_init()
            return plugin

        self.grid_cls, self.make = grid.BenchGrid, make
        self.model = model
        onnx = import_file(REPO / "extensions" / "serving" / "onnx_model.py", "bench_onnx_loop")
        second_cls = {"direction": ocr.PpOcrDirection, "mean": onnx.OnnxModel}[second]
        self.direction = make(second_cls, **SECOND_PARAMS[second](model.parent))
        self.detector = make(grid.BenchGrid, MODEL=str(model))
        self.batch = int(self.direction.config["MAX_BATCH_SIZE"]) or second_cls.default_max_batch(
            self.direction.config, None
        )  # 0: the plugin's choice from the input size, as in its server

    def run(self, frames: Any, boxes: int) -> tuple[int, int, float]:
        from edge_engine.api import crop_detection

        detector = self.detector
        direction, make_input, batch = self.direction, self.Input, self.batch
        crops_done = 0
        times = []
        for index in range(len(frames)):
            frame = np.array(frames[index])
            inputs = [make_input(image=frame, metadata={"boxes": boxes})]
            (dets,) = detector.post_process(detector.predict(detector.pre_process(inputs)), inputs)
            crops = [make_input(image=crop_detection(frame, det, 0.0, "box", 320)) for det in dets[:boxes]]
            for start in range(0, len(crops), batch):
                chunk = crops[start : start + batch]
                crops_done += len(direction.post_process(direction.predict(direction.pre_process(chunk)), chunk))
            times.append(time.perf_counter())
        return len(frames), crops_done, (times[-1] - times[0]) / (len(times) - 1)


# --- the engine ------------------------------------------------------------------------------------------------------
def engine_run(node: Any, name: str, frames_file: Path, model: Path, boxes: int, window: int | None,
               second: str, colocate: bool = False) -> tuple[int, int, float]:  # fmt: skip
    # PROCESS_NICE 0: the servers get the loop's CPU priority (with the default 5 a loaded machine starves them)
    first = {"MODEL": str(model), "WORKERS": 1, "PROCESS_NICE": 0, **({"MAX_IN_FLIGHT": window} if window else {})}
    pipeline = {
        "NAME": name, "TYPE": "BENCH_FRAMES", "FILE": str(frames_file), "BOXES": boxes,
        "PLUGINS": [{"SIGNATURE": "BENCH_CASCADE", "INSTANCES": [{
            "INSTANCE_ID": "count", "AI_ENGINE": ["BENCH_GRID"], "STARTUP_AI_ENGINE_PARAMS": first,
            "CASCADE": [{"SIGNATURE": SECOND_SIGNATURE[second], "AS": "SECOND", "MAX_CROPS": max(1, boxes),
                         **({"COLOCATE": True} if colocate else {}),
                         "PARAMS": {**SECOND_PARAMS[second](model.parent), "WORKERS": 1, "PROCESS_NICE": 0}}]}]}],
    }  # fmt: skip
    node.add_pipeline(pipeline, source="benchmark")
    (instance,) = node.pipelines[name].instances.values()
    plugin = None
    while plugin is None:
        plugin = instance._plugin
        time.sleep(0.001)
    instance.thread.join()
    seconds = (plugin.times[-1] - plugin.times[0]) / (len(plugin.times) - 1)
    if plugin.failed:
        raise RuntimeError(f"{plugin.failed} crops got a ServingError")
    node.remove_pipeline(name)
    return plugin.frames, plugin.results, seconds


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``y = a + b × x``."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0
    return my - slope * mx, slope


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per run")
    parser.add_argument("--boxes", default="0,8,16,32", help="boxes per frame, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="alternating runs of each set-up (median)")
    parser.add_argument(
        "--second",
        choices=sorted(SECOND_SIGNATURE),
        default="mean",
        help="second stage: mean (the mean colour of each crop: a model that costs almost nothing, so "
        "the overhead shows) or direction (PP_OCR_DIRECTION, a real text-direction classifier)",
    )
    args = parser.parse_args(argv)
    counts = [int(v) for v in args.boxes.split(",")]
    setups: dict[str, tuple[int | None, bool]] = {  # label -> (MAX_IN_FLIGHT, COLOCATE)
        "engine, serial": (1, False),
        "engine, pipelined": (None, False),
        "engine, serial, co-located": (1, True),
        "engine, pipelined, co-located": (None, True),
    }
    with tempfile.TemporaryDirectory(prefix="bench_cascade_") as tmp:
        work = Path(tmp)
        model = build_models(work)
        frames_file = make_frames(work / "frames.npy", args.frames)
        frames = np.load(frames_file, mmap_mode="r")
        plugin_dir = work / "node" / "plugins"
        for relative, source in {"serving/bench_grid.py": GRID_DETECTOR, "data/bench_frames.py": FRAMES,
                                 "business/bench_cascade.py": COUNTER}.items():  # fmt: skip
            (plugin_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            (plugin_dir / relative).write_text(textwrap.dedent(source), encoding="utf-8")
        node = make_node(work / "node")
        loop = HandLoop(plugin_dir, model, args.second)
        runs: dict[tuple[str, int], list[tuple[int, int, float]]] = {}
        try:
            for window, colocate in setups.values():  # load the models once (a detector server per MAX_IN_FLIGHT)
                engine_run(node, f"warmup{window}{colocate}", frames_file, model, 4, window, args.second, colocate)
            wait_until(lambda: all(s.state == "running" for s in node.serving.servers()), 60, "servers")
            for index in range(max(1, args.repeat)):
                for boxes in counts:
                    runs.setdefault(("hand-written loop", boxes), []).append(loop.run(frames, boxes))
                    for label, (window, colocate) in setups.items():
                        measured = engine_run(
                            node, f"run{index}_{boxes}", frames_file, model, boxes, window, args.second, colocate
                        )
                        runs.setdefault((label, boxes), []).append(measured)
            second = [v.snapshot() for v in node.serving.servers() if v.signature == SECOND_SIGNATURE[args.second]]
        finally:
            node.stop("benchmark done")
    for info in second:  # where a crop's time goes in the second model's server, over all the runs
        print(
            f"second stage server: {info['results']} crops, batch sizes {info['batch_sizes']}, batch run in its "
            f"process {info['inference_ms_avg']} ms on average, crop queued → answered {info['latency_ms']} ms"
        )
    rows, results = [], []
    overheads: dict[str, list[tuple[float, float]]] = {
        "median": [],
        "best": [],
        "median, co-located": [],
        "best, co-located": [],
    }
    for boxes in counts:
        loop = [1000 * s for _, _, s in runs[("hand-written loop", boxes)]]
        for label in ("hand-written loop", *setups):
            measured = runs[(label, boxes)]
            if any(f != args.frames or c != args.frames * boxes for f, c, _ in measured):
                print(f"RESULTS LOST in {label} at {boxes} boxes: {[(f, c) for f, c, _ in measured]}")
                return 1
            times = [1000 * s for _, _, s in measured]
            ms, best = statistics.median(times), min(times)
            over, over_best = ms - statistics.median(loop), best - min(loop)
            results.append({"setup": label, "boxes": boxes, "ms_per_frame": round(ms, 3), "best_ms": round(best, 3),
                            "overhead_ms": round(over, 3), "overhead_best_ms": round(over_best, 3)})  # fmt: skip
            rows.append([label, boxes, f"{ms:.2f}", f"{over:+.2f}", f"{best:.2f}", f"{over_best:+.2f}"])
            if label.startswith("engine, serial") and boxes > 0:  # frames with a cascade (0: a frame with no box)
                suffix = ", co-located" if label.endswith("co-located") else ""
                overheads["median" + suffix].append((float(boxes), over))
                overheads["best" + suffix].append((float(boxes), over_best))
    title = f"BENCH_GRID → {SECOND_SIGNATURE[args.second]} ({args.second}) on {args.frames} frames {WIDTH}x{HEIGHT}"
    print_table(
        f"{title}, {args.repeat} alternating runs each (median, and the best run):",
        ["set-up", "boxes/frame", "ms/frame", "overhead ms", "best ms/frame", "best overhead ms"],
        rows,
    )
    summary = {}
    for kind, points in overheads.items():
        per_frame, per_crop = fit(points)
        summary[kind] = {"per_frame_ms": round(per_frame, 3), "per_crop_ms": round(per_crop, 4)}
        print(f"cascade overhead, {kind} (engine serial − hand-written loop = a + b × crops): a = {per_frame:+.3f} "
              f"ms/frame (target ≤ 1), b = {per_crop:+.4f} ms/crop (target ≤ 0.1)")  # fmt: skip
    per_frame, per_crop = summary["median"]["per_frame_ms"], summary["median"]["per_crop_ms"]
    note = f"{args.second} second stage, {args.frames} frames, {args.repeat} runs; fit over boxes {args.boxes}"
    record("cascade overhead per frame", per_frame, "ms", goal="≤ 1", note=note)
    record("cascade overhead per crop", per_crop, "ms", goal="≤ 0.1", note=note)
    per_frame, per_crop = summary["median, co-located"]["per_frame_ms"], summary["median, co-located"]["per_crop_ms"]
    record("cascade overhead per frame (COLOCATE)", per_frame, "ms", goal="≤ 1", note=note)
    record("cascade overhead per crop (COLOCATE)", per_crop, "ms", goal="≤ 0.1", note=note)
    for boxes in counts:
        loop_times = [1000 * s for _, _, s in runs[("hand-written loop", boxes)]]
        for label in setups:
            record(f"cascade {label}, {boxes} boxes/frame", round(statistics.median(
                1000 * s for _, _, s in runs[(label, boxes)]), 3), "ms/frame",
                samples=[1000 * s for _, _, s in runs[(label, boxes)]],
                baseline=round(statistics.median(loop_times), 3), baseline_name="hand-written loop")  # fmt: skip
    print_json("cascade", {"frames": args.frames, "size": [WIDTH, HEIGHT], "second": args.second, "results": results,
                           "overhead": summary})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
