"""Batch size and onnxruntime memory settings of a model server, measured on a real convolutional network.

The model is the PP-OCRv6 text detector of the ``rapidocr`` wheel (a convnet whose input size is free), run the way a
model-server process runs it (one onnxruntime session, ``INTRA_OP_THREADS`` 1). Each measurement runs in a fresh
process, and the set-ups alternate over ``--rounds`` rounds (medians), so the machine's load hits them alike.

1. **Batch size by input size**: ms per image for batches of 1, 2, 4 and 8 at several input sizes. What it shows:
   on a CPU, batching pays for small inputs (the per-call cost is spread) and not for big ones (one image already
   keeps the core busy), while a batch's activations grow with it. This is where the ``ONNX`` plugin's default
   ``MAX_BATCH_SIZE`` (0 = from the input size, see ``extensions/serving/onnx_model.py``) comes from.
2. **Memory settings**: the peak and final RSS of a process that runs 640×480 frames (batches of 1, then one
   batch of 4: a server sees mixed sizes), and ms per image, with onnxruntime's CPU arena (the default), the arena
   shrunk after every run, no arena, and no memory pattern.

    .venv/bin/python benchmarks/bench_serving_batch.py [--rounds 3] [--images 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record
from _serving_common import REPO, print_json, print_table

SIZES = ((96, 96), (192, 192), (320, 320), (480, 640))  # (height, width), multiples of 32
BATCHES = (1, 2, 4, 8)
MEMORY = {  # set-up -> (session options, shrink the arena after each run)
    "arena (default)": ({}, False),
    "arena, shrunk after each run": ({}, True),
    "no arena": ({"enable_cpu_mem_arena": False}, False),
    "no memory pattern": ({"enable_mem_pattern": False}, False),
    "no arena, no memory pattern": ({"enable_cpu_mem_arena": False, "enable_mem_pattern": False}, False),
}

CHILD = r"""
import json, resource, sys, time
import numpy as np
import onnxruntime as ort

job = json.loads(sys.argv[1])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.log_severity_level = 3
for name, value in job.get("options", {}).items():
    setattr(options, name, value)
session = ort.InferenceSession(job["model"], options, providers=["CPUExecutionProvider"])
run_options = ort.RunOptions()
if job.get("shrink"):
    run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
name = session.get_inputs()[0].name
rng = np.random.default_rng(1)


def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


out = {"base_mb": rss_mb()}
if job["kind"] == "batch":
    height, width, batch = job["height"], job["width"], job["batch"]
    data = rng.random((batch, 3, height, width), dtype=np.float32)
    session.run(None, {name: data}, run_options)  # warm-up: the first run allocates
    runs = max(2, -(-job["images"] // batch))
    started = time.perf_counter()
    for _ in range(runs):
        session.run(None, {name: data}, run_options)
    out["ms_per_image"] = 1000 * (time.perf_counter() - started) / (runs * batch)
else:
    frames = rng.random((4, 3, 480, 640), dtype=np.float32)
    times = []
    for _ in range(job["images"]):
        started = time.perf_counter()
        session.run(None, {name: frames[:1]}, run_options)
        times.append(time.perf_counter() - started)
    session.run(None, {name: frames}, run_options)  # one batch of 4 (a burst)
    for _ in range(4):
        session.run(None, {name: frames[:1]}, run_options)
    out["ms_per_image"] = 1000 * sorted(times)[len(times) // 2]
    out["final_mb"] = rss_mb()
out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def model_path() -> Path:
    from edge_engine.plugin.discovery import import_file

    return import_file(REPO / "extensions" / "serving" / "pp_ocr.py", "bench_pp_ocr_batch").rapidocr_models_dir() / (
        "PP-OCRv6_det_small.onnx"
    )


def child(job: dict[str, Any]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--images", type=int, default=16, help="images per measurement")
    parser.add_argument("--part", choices=("all", "batch", "memory"), default="all")
    args = parser.parse_args(argv)
    model = str(model_path())
    loads = [load()]
    batch_runs: dict[tuple[int, int, int], list[float]] = {}
    memory_runs: dict[str, list[dict[str, float]]] = {}
    started = time.monotonic()
    for _ in range(max(1, args.rounds)):
        if args.part in ("all", "batch"):
            for height, width in SIZES:
                for batch in BATCHES:
                    job = {"kind": "batch", "model": model, "height": height, "width": width, "batch": batch,
                           "images": args.images}  # fmt: skip
                    batch_runs.setdefault((height, width, batch), []).append(child(job)["ms_per_image"])
        if args.part in ("all", "memory"):
            for label, (options, shrink) in MEMORY.items():
                job = {"kind": "memory", "model": model, "options": options, "shrink": shrink, "images": args.images}
                memory_runs.setdefault(label, []).append(child(job))
        loads.append(load())
    print(f"{args.rounds} rounds in {time.monotonic() - started:.0f} s; load average (1, 5, 15 min) per round: "
          f"{' | '.join(loads)}")  # fmt: skip
    summary: dict[str, Any] = {"load": loads}
    if batch_runs:
        rows, table = [], []
        for height, width in SIZES:
            one = statistics.median(batch_runs[(height, width, 1)])
            row: list[Any] = [f"{width}x{height}"]
            for batch in BATCHES:
                ms = statistics.median(batch_runs[(height, width, batch)])
                row.append(f"{ms:.2f} ({one / ms:.2f}x)")
                table.append({"width": width, "height": height, "batch": batch, "ms_per_image": round(ms, 3),
                              "speedup_vs_1": round(one / ms, 3)})  # fmt: skip
                record(f"detector {width}x{height} batch {batch}", round(ms, 3), "ms/image",
                       samples=batch_runs[(height, width, batch)], baseline=round(one, 3),
                       baseline_name="batch 1")  # fmt: skip
            rows.append(row)
        print_table("ms per image (speed-up against batch 1), median:", ["input", *map(str, BATCHES)], rows)
        summary["batch"] = table
    if memory_runs:
        rows, table = [], []
        for label, runs in memory_runs.items():
            peak = statistics.median(r["peak_mb"] for r in runs)
            final = statistics.median(r["final_mb"] for r in runs)
            ms = statistics.median(r["ms_per_image"] for r in runs)
            rows.append([label, f"{peak:.0f}", f"{final:.0f}", f"{ms:.1f}"])
            table.append({"setup": label, "peak_mb": round(peak, 1), "final_mb": round(final, 1),
                          "ms_per_image": round(ms, 2)})  # fmt: skip
            record(f"detector 640x480 RSS peak, {label}", round(peak, 1), "MB", samples=[r["peak_mb"] for r in runs])
        print_table("one process, 640x480 frames (batches of 1 and one of 4), median:",
                    ["set-up", "peak RSS MB", "final RSS MB", "ms/image"], rows)  # fmt: skip
        summary["memory"] = table
    print_json("serving_batch", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
