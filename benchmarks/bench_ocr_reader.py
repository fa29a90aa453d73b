"""OCR reader benchmark: ``TEXT_READER`` in the node against RapidOCR's own pipeline (its Python API).

Both read the same frames (``tests/text_frames.py``: known text in several fonts, sizes, angles, one frame
upside down; 640×480), with the same model files (the PP-OCRv6 det/rec "small" and the mobile direction
classifier inside the installed ``rapidocr`` wheel) and the same settings (RapidOCR's defaults: detector
shorter side 736, direction threshold 0.9, text score 0.5), on the same cores:

* **baseline**: ``S`` independent RapidOCR engines, one process each (no GIL between them), each with
  ``intra_op_num_threads = max(1, cores // S)``; every process loops over the frames for ``--seconds``.
  RapidOCR needs its dependencies, so it runs in its own virtualenv (``--baseline-venv``; created on first use
  with ``pip install rapidocr==3.10.0`` and the project's own onnxruntime, OpenCV and numpy versions).
* **node**: one node (in this process, comms off) with ``S`` pipelines, each an ``IMAGE_FOLDER`` looping over
  the frames into a ``TEXT_READER`` (its defaults, no witness image: the baseline draws none; queues of 1); the
  detector runs in the node's shared ``PP_OCR_DETECTOR`` server (one process per core, one thread each, at the
  baseline's priority: ``PROCESS_NICE`` 0) and the reader's co-located cascade reads each frame's lines in the
  same processes (``PP_OCR_LINES``: direction classifier and recognizer), frames of all streams batched
  together. ``--separate-lines`` gives the lines a server process of their own instead (``COLOCATE: false``,
  the default before). Each stream keeps as many frames in the detector as its processes need between the
  streams (:func:`in_flight`), no more: a deeper queue adds latency, not throughput.

Each side first reads every frame once (warm-up, not timed), then runs ``--seconds``; ``--rounds N`` repeats
the pair (baseline, then node) N times and reports the median ratio (the other figures: that round's).
Printed: frames/s, ms per frame (wall time / frames), CPU ms per frame (the node's also by part: this process
and each model server), p99 latency per frame (baseline: the engine call; node:
from capture to the end of ``process``, which includes the time the frame waits in flight), RSS of the process
tree (the node with its model servers; the baseline's processes), and whether every frame's text equals what
was drawn and what the other side read. Run from the repository root::

    .venv/bin/python benchmarks/bench_ocr_reader.py                  # 1 and 4 streams, 60 s each
    .venv/bin/python benchmarks/bench_ocr_reader.py --streams 1 --seconds 20
    .venv/bin/python benchmarks/bench_ocr_reader.py --streams 1,4 --seconds 30 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path.home() / ".cache" / "edge-node-bench" / "rapidocr-venv"
PINNED = ("onnxruntime", "opencv-python-headless", "numpy")
DETECTOR = {"LIMIT_TYPE": "min", "LIMIT_SIDE": 736}  # TEXT_READER's default: RapidOCR's
DETECTOR_FRAMES = 2  # frames in the detector's servers at once: one per process (2 cores), no queue behind them


def in_flight(streams: int) -> int:
    """Frames of one stream in the detector at once: together enough for its processes, no more (each frame
    beyond them waits in the server's queue, which only adds latency): 2 on one stream, 1 from two streams."""
    return max(1, -(-DETECTOR_FRAMES // streams))


# --- frames ---------------------------------------------------------------------------------------------------------
def write_frames(folder: Path) -> dict[str, list[str]]:
    """The test frames as PNG files; file name → the text drawn, in reading order."""
    import cv2

    sys.path.insert(0, str(REPO))
    from tests.text_frames import CASES, expected_text, render

    expected = {}
    for index, case in enumerate(CASES):
        name = f"{index:02d}.png"
        cv2.imwrite(str(folder / name), render(case))
        expected[name] = expected_text(case)
    return expected


def models_dir() -> Path:
    from edge_engine.plugin.discovery import import_file

    return import_file(REPO / "extensions" / "serving" / "pp_ocr.py", "bench_pp_ocr").rapidocr_models_dir()


# --- baseline: RapidOCR's Python API, in its own virtualenv ------------------------------------------------------
def baseline_python(venv: Path) -> Path:
    """The baseline virtualenv's interpreter, created (rapidocr with its dependencies) when missing."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import rapidocr, onnxruntime"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    from importlib.metadata import version

    print(f"creating the baseline virtualenv {venv} (rapidocr 3.10.0 with its dependencies)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = [f"{name}=={version(name)}" for name in PINNED]
    subprocess.run([str(python), "-m", "pip", "install", "-q", "rapidocr==3.10.0", *pins], check=True)
    return python


def baseline_child(streams: int, threads: int, folder: Path, models: Path, seconds: float) -> None:
    """Runs in the baseline virtualenv: ``streams`` RapidOCR processes; prints one JSON line."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    ready = ctx.Barrier(streams + 1)
    args = (threads, str(folder), str(models), seconds, ready, results)
    processes = [ctx.Process(target=baseline_stream, args=args) for _ in range(streams)]
    for process in processes:
        process.start()
    ready.wait(timeout=600)  # every engine loaded and warmed up
    peak = _tree_rss_mb(os.getpid())
    got = []
    deadline = time.monotonic() + seconds + 600
    while len(got) < streams:
        got.append(results.get(timeout=max(1.0, deadline - time.monotonic())))
        peak = max(peak, _tree_rss_mb(os.getpid()))
    for process in processes:
        process.join(10)
    print(json.dumps({"streams": got, "rss_mb": peak}))


def baseline_stream(threads: int, folder: str, models: str, seconds: float, ready: Any, results: Any) -> None:
    import cv2
    from rapidocr import RapidOCR

    engine = RapidOCR(params={
        "Det.model_path": f"{models}/PP-OCRv6_det_small.onnx", "Rec.model_path": f"{models}/PP-OCRv6_rec_small.onnx",
        "Cls.model_path": f"{models}/ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1, "Global.log_level": "warning",
    })  # fmt: skip
    frames = [(p.name, cv2.imread(str(p))) for p in sorted(Path(folder).glob("*.png"))]
    texts: dict[str, set[str]] = {}
    for name, image in frames:  # warm-up (its text is checked too)
        texts.setdefault(name, set()).add("\n".join(engine(image).txts or ()))
    ready.wait(timeout=600)
    latencies = []
    cpu_started = time.process_time()  # every thread of this process
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        name, image = frames[count % len(frames)]
        began = time.perf_counter()
        out = engine(image)
        latencies.append(time.perf_counter() - began)
        texts.setdefault(name, set()).add("\n".join(out.txts or ()))
        count += 1
    cpu = time.process_time() - cpu_started
    results.put(
        {"frames": count, "latencies": latencies, "cpu_s": cpu, "texts": {k: sorted(v) for k, v in texts.items()}}
    )


def _tree_rss_mb(pid: int) -> float:
    """RSS (MB) of a process and its children, from /proc (the baseline's virtualenv has no psutil)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, StopIteration, ValueError):
            continue
        pids.extend(int(child) for child in children)
    return total / 1024


def run_baseline(python: Path, streams: int, cores: int, folder: Path, seconds: float) -> dict[str, Any]:
    threads = max(1, cores // streams)
    command = [str(python), __file__, "--baseline-child", str(streams), str(threads), str(folder), str(models_dir()),
               str(seconds)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 1800)
    if done.returncode != 0:
        raise RuntimeError(f"the baseline failed: {done.stderr[-2000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    frames = sum(s["frames"] for s in data["streams"])
    latencies = sorted(latency for s in data["streams"] for latency in s["latencies"])
    texts: dict[str, set[str]] = {}
    for stream in data["streams"]:
        for name, seen in stream["texts"].items():
            texts.setdefault(name, set()).update(seen)
    return {"threads_per_engine": threads, "frames": frames, "seconds": seconds, "latencies": latencies,
            "texts": texts, "rss_mb": data["rss_mb"], "cpu_s": sum(s["cpu_s"] for s in data["streams"])}  # fmt: skip


# --- the node ------------------------------------------------------------------------------------------------------
class Recorder:
    """Wraps a TEXT_READER's ``process``: when each frame was done, its latency, the text it emitted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: list[tuple[float, float]] = []  # (perf_counter at the end, seconds since capture)
        self.texts: dict[str, set[str]] = {}
        self.frames_read = 0
        self.closed = False  # set before the pipelines are removed: frames cut short then are not counted

    def wrap(self, plugin: Any) -> None:
        original, emit = plugin.process, plugin.emit
        current: dict[str, Any] = {}

        def emit_recorded(payload: Any, image: Any = None) -> None:
            errors = sorted({line["error"] for line in payload["LINES"] if "error" in line})
            current["text"] = payload["TEXT"] + (f" (failed lines: {errors})" if errors else "")
            emit(payload, image)

        def process(inp: Any) -> Any:
            current.clear()
            failed_before = plugin.lines_failed
            try:
                return original(inp)
            except Exception as exc:
                current["text"] = f"(error: {exc})"
                raise
            finally:
                if inp is not None:
                    failed = plugin.lines_failed - failed_before
                    self.record(inp, current.get("text", f"(no payload; {failed} lines failed)"))

        plugin.emit = emit_recorded
        plugin.process = process

    def record(self, inp: Any, text: str) -> None:
        with self.lock:
            if self.closed:
                return
            self.done.append((time.perf_counter(), time.time() - inp.timestamp))
            self.texts.setdefault(inp.metadata.get("file", "?"), set()).add(text)
            self.frames_read += 1


def run_node(
    node: Any, streams: int, folder: Path, frames_per_pass: int, seconds: float, colocate: bool = True
) -> dict[str, Any]:
    from _serving_common import tree_memory, wait_until

    names = [f"ocr{streams}_{i}" for i in range(streams)]
    recorder = Recorder()
    for name in names:
        node.add_pipeline({
            "NAME": name, "TYPE": "IMAGE_FOLDER", "PATH": str(folder), "PATTERN": "*.png", "LOOP": True,
            "MAX_INPUTS_QUEUE_SIZE": 1,
            "PLUGINS": [{"SIGNATURE": "TEXT_READER", "INSTANCES": [{
                "INSTANCE_ID": "read", "WITNESS": False, "MAX_INPUTS_QUEUE_SIZE": 1, "COLOCATE": colocate,
                "STARTUP_AI_ENGINE_PARAMS": {"PROCESS_NICE": 0,  # the baseline's priority (default: 5, below the node)
                                             "PP_OCR_DETECTOR": {**DETECTOR, "MAX_IN_FLIGHT": in_flight(streams)}}}]}],
        }, source="benchmark")  # fmt: skip
    wait_until(lambda: all(_plugin(node, n) is not None for n in names), 120, "the readers to start")
    for name in names:
        recorder.wrap(_plugin(node, name))
    wait_until(lambda: recorder.frames_read >= 2 * streams * frames_per_pass, 1800, "two warm-up passes")
    cpu_before = tree_cpu_by_pid()
    started = time.perf_counter()
    with recorder.lock:
        first = len(recorder.done)
    time.sleep(seconds)
    with recorder.lock:
        window = [d for d in recorder.done[first:] if d[0] <= started + seconds]
        recorder.closed = True
    cpu_after = tree_cpu_by_pid()
    cpu_each = {pid: seconds - cpu_before.get(pid, 0.0) for pid, seconds in cpu_after.items()}
    cpu = sum(cpu_each.values())
    by_part = cpu_by_part(node, cpu_each)
    memory = tree_memory(os.getpid())
    for name in names:
        node.remove_pipeline(name)
    return {"frames": len(window), "seconds": seconds, "latencies": sorted(lat for _, lat in window),
            "texts": recorder.texts, "rss_mb": memory["rss_mb"], "processes": memory["processes"],
            "cpu_s": cpu, "cpu_s_by_part": by_part, "rss_each_mb": memory["rss_each_mb"]}  # fmt: skip


def cpu_by_part(node: Any, cpu_each: dict[int, float]) -> dict[str, float]:
    """The window's CPU seconds by part of the node: ``node`` (this process: sources, plugins, the serving
    clients) and each model server by signature (its processes together); ``other`` for any other child."""
    parts: dict[str, float] = {"node": cpu_each.pop(os.getpid(), 0.0)}
    for server in node.serving.servers():
        for pid in server.pids():
            parts[server.signature] = parts.get(server.signature, 0.0) + cpu_each.pop(pid, 0.0)
    parts["other"] = sum(cpu_each.values())
    return parts


def tree_cpu_by_pid() -> dict[int, float]:
    """User + system CPU seconds of this process (all its threads) and of each child (the model servers), by pid.

    The window's CPU is taken per process: a model server of an earlier run that exits during this window would
    otherwise take its whole lifetime's CPU out of the sum (a negative CPU per frame was printed once).
    """
    import psutil

    root = psutil.Process(os.getpid())
    seconds: dict[int, float] = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def _plugin(node: Any, pipeline: str) -> Any:
    runner = node.pipelines.get(pipeline)
    if runner is None or not runner.instances:
        return None
    (instance,) = runner.instances.values()
    return instance._plugin


# --- report --------------------------------------------------------------------------------------------------------
def summary(result: dict[str, Any], expected: dict[str, list[str]]) -> dict[str, Any]:
    latencies = result["latencies"]
    wrong = {name: sorted(texts) for name, texts in result["texts"].items() if texts != {"\n".join(expected[name])}}
    return {
        "frames": result["frames"],
        "fps": result["frames"] / result["seconds"],
        "ms_per_frame": 1000 * result["seconds"] / max(1, result["frames"]),
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "cpu_ms_per_frame": 1000 * result["cpu_s"] / max(1, result["frames"]),
        "cpu_ms_per_frame_by_part": {
            part: round(1000 * seconds / max(1, result["frames"]), 1)
            for part, seconds in result.get("cpu_s_by_part", {}).items()
        },
        "rss_mb": round(result["rss_mb"]),
        "rss_each_mb": result.get("rss_each_mb"),
        "processes": result.get("processes"),
        "text_as_drawn": not wrong and len(result["texts"]) == len(expected),
        "wrong": wrong,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,4", help="stream counts, comma-separated (default 1,4)")
    parser.add_argument("--seconds", type=float, default=60.0, help="timed seconds per run (default 60)")
    parser.add_argument("--rounds", type=int, default=1, help="baseline/node pairs per stream count (medians)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="the thread budget (default: cores)")
    parser.add_argument("--baseline-venv", type=Path, default=DEFAULT_VENV, help=f"default {DEFAULT_VENV}")
    parser.add_argument("--baseline-child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument(
        "--separate-lines",
        action="store_true",
        help="each round also runs the node with the lines in a server of their own (COLOCATE false)",
    )
    args = parser.parse_args()
    if args.baseline_child:
        streams, threads, folder, models, seconds = args.baseline_child
        baseline_child(int(streams), int(threads), Path(folder), Path(models), float(seconds))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the node's side only (not the baseline's venv)
    from _results import record
    from _serving_common import make_node, print_json, print_table

    counts = [int(s) for s in args.streams.split(",")]
    python = baseline_python(args.baseline_venv)
    print(f"load before: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f} "
          f"on {os.cpu_count()} cores", flush=True)  # fmt: skip
    rows, report = [], []
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        folder = Path(tmp) / "frames"
        folder.mkdir()
        expected = write_frames(folder)
        node = make_node(Path(tmp) / "node")
        try:
            for streams in counts:
                pairs, separate = [], []
                for round_index in range(args.rounds):
                    load_before = os.getloadavg()[0]
                    base = summary(run_baseline(python, streams, args.cores, folder, args.seconds), expected)
                    ours = summary(run_node(node, streams, folder, len(expected), args.seconds), expected)
                    ratio = ours["fps"] / base["fps"] if base["fps"] else float("nan")
                    cpu_ratio = base["cpu_ms_per_frame"] / ours["cpu_ms_per_frame"] if ours["frames"] else float("nan")
                    pairs.append((base, ours, ratio, cpu_ratio))
                    tag = f" r{round_index + 1}" if args.rounds > 1 else ""
                    sides = [("RapidOCR", base), ("TEXT_READER", ours)]
                    if args.separate_lines:
                        apart = summary(run_node(node, streams, folder, len(expected), args.seconds, False), expected)
                        separate.append(apart["fps"] / base["fps"] if base["fps"] else float("nan"))
                        sides.append(("TEXT_READER lines apart", apart))
                        print(f"{streams} stream(s), round {round_index + 1}: lines in their own server: ratio "
                              f"{separate[-1]:.2f}, node CPU ms/frame by part {apart['cpu_ms_per_frame_by_part']}, "
                              f"RSS {apart['rss_each_mb']}", flush=True)  # fmt: skip
                    for side, data in sides:
                        rows.append([f"{streams} x {side}{tag}", data["frames"], data["fps"], data["ms_per_frame"],
                                     data["cpu_ms_per_frame"], data["p50_ms"], data["p99_ms"], data["rss_mb"],
                                     data["text_as_drawn"]])  # fmt: skip
                    print(f"{streams} stream(s), round {round_index + 1}: ratio {ratio:.2f} (CPU {cpu_ratio:.2f}), "
                          f"load {load_before:.1f} -> {os.getloadavg()[0]:.1f}; node CPU ms/frame by part "
                          f"{ours['cpu_ms_per_frame_by_part']}", flush=True)  # fmt: skip
                pairs_by_ratio = sorted(pairs, key=lambda p: p[2])  # the (lower) median round gives the other figures
                base, ours = pairs_by_ratio[(len(pairs) - 1) // 2][:2]
                ratio = statistics.median(p[2] for p in pairs)
                cpu_ratio = statistics.median(p[3] for p in pairs)
                same = all(p[0]["text_as_drawn"] and p[1]["text_as_drawn"] for p in pairs)
                label = "median " if args.rounds > 1 else ""
                rows.append([f"{streams} stream(s): {label}node vs RapidOCR", "", ratio, "", cpu_ratio, "", "", "",
                             same])  # fmt: skip
                if separate:
                    apart_ratio = statistics.median(separate)
                    rows.append([f"{streams} stream(s): {label}lines apart vs RapidOCR", "", apart_ratio, "", "", "",
                                 "", "", ""])  # fmt: skip
                report.append({"streams": streams, "baseline": base, "node": ours, "throughput_ratio": ratio,
                               "cpu_efficiency_ratio": cpu_ratio, "ratios": [p[2] for p in pairs],
                               "separate_lines_ratios": separate,
                               "in_flight": in_flight(streams)})  # fmt: skip
                goal = "≥ 1.0" if streams == 1 else "≥ 1.3"
                print(f"{streams} stream(s): node processes' RSS (MB, node first) {ours['rss_each_mb']}", flush=True)
                record(f"OCR reader {streams} stream(s) throughput vs RapidOCR", round(ratio, 3), "×", goal=goal,
                       samples=[p[2] for p in pairs],
                       baseline=base["fps"], baseline_name=f"{streams} independent RapidOCR", note="text as drawn"
                       if same else "TEXT DIFFERS")  # fmt: skip
                record(f"OCR reader {streams} stream(s) ms/frame", ours["ms_per_frame"], "ms",
                       baseline=base["ms_per_frame"], baseline_name="RapidOCR")  # fmt: skip
                record(f"OCR reader {streams} stream(s) p99 latency", ours["p99_ms"], "ms",
                       baseline=base["p99_ms"], baseline_name="RapidOCR")  # fmt: skip
                record(f"OCR reader {streams} stream(s) RSS of the node's tree", ours["rss_mb"], "MB",
                       baseline=base["rss_mb"], baseline_name="RapidOCR processes",
                       note=f"{ours.get('processes')} processes")  # fmt: skip
        finally:
            node.stop()
    load = os.getloadavg()
    print_table(
        f"OCR reader, {len(expected)} frames 640x480 looped, {args.seconds:g} s per run, {args.cores} cores "
        f"(load after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})",
        ["run", "frames", "frames/s", "ms/frame", "CPU ms/frame", "p50 ms", "p99 ms", "RSS MB", "text as drawn"],
        rows,
    )  # fmt: skip
    print_json("ocr_reader", {"cores": args.cores, "seconds": args.seconds, "load_after": load, "runs": report})
    return 0


if __name__ == "__main__":
    sys.exit(main())
