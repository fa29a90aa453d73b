"""Sharing one small model across pipelines: the batched model server against independent sessions.

For 1, 2, 4 and 8 pipelines, three set-ups process the same frames (``SYNTHETIC`` 192×48 text-line-sized
images) through the same model (``PP_OCR_DIRECTION``, the PP-OCR text-direction classifier, 0.6 MB) with
the same pre-processing, for ``--seconds`` each, one after the other in this run:

1. **engine**: one node, N pipelines ``SYNTHETIC → BENCH_INFER`` (a business plugin that counts), all using
   the one shared, batching model server (one process per core, set with ``WORKERS`` since the classifier's
   own default is one process; one onnxruntime thread each, ``MAX_BATCH_SIZE`` 4);
2. **naive**: N independent processes, each with its own session at onnxruntime's default threads (what
   one model per pipeline gives out of the box), batch 1;
3. **tuned**: N independent processes, each session with one intra- and one inter-op thread (the best
   hand-tuned independent set-up on a small box), batch 1.

Reported per N: aggregate images/s of each, the engine's ratios to both baselines, fairness (slowest
pipeline's share / fastest's), the engine's p99 latency (input handed to the serving stage → result back)
and the p99 *added* latency: engine p99 minus the tuned baseline's p99 per-image time (pre-process + run).
**CPU per image** is also measured in the same run: the engine's node process plus its model processes, against
the tuned processes' own; their quotient (*CPU ×tuned*, tuned ms over engine ms) is what the throughput ratio
tends to once both set-ups have the cores to themselves, and moves far less with other work on the box than the
throughput ratio, which then mostly says how the scheduler shared the cores.
The JSON line also has ``errors`` (inputs that got no result while measuring) and ``teardown_errors``
(inputs the model server answered with an error while the pipelines were removed one by one, the others
still running, over all rounds: must be 0; the inputs a removed pipeline stops waiting for are not errors).
Targets (issue 3 and DECISIONS 13): ≥ 1.6× naive (≥ 2× in DECISIONS) and ≥ 0.95× tuned at 4 pipelines,
fairness ≥ 0.95.

    .venv/bin/python benchmarks/bench_serving_sharing.py [--pipelines 1,2,4,8] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record
from _serving_common import REPO, instance_plugin, make_node, print_json, print_table, wait_until

ENGINE = "PP_OCR_DIRECTION"
#: the engine's model server gets one process per core, as the N independent baseline processes have the cores
CORES = os.cpu_count() or 1
WIDTH, HEIGHT = 192, 48


# --- baselines (each in its own process) ---------------------------------------------------------------------
def _frames() -> Any:
    """The same generator the engine's pipelines use: the SYNTHETIC capture plugin, 192×48 moving box."""
    import logging
    import threading

    from edge_engine.plugin.discovery import import_file
    from edge_engine.plugin.kinds import PluginContext

    module = import_file(REPO / "extensions" / "data" / "synthetic.py", "bench_synthetic")
    context = PluginContext("", "", "SYNTHETIC", None, logging.getLogger("bench"), Path("."), Path("."),
                            threading.Event())  # fmt: skip
    config = {"WIDTH": WIDTH, "HEIGHT": HEIGHT, "MODE": "moving_box", "COUNT": 0, "SEED": 0}
    source = module.Synthetic(config, context)
    source.connect()
    return source


def baseline_worker(tuned: bool, start_at: float, seconds: float, results: Any) -> None:
    import onnxruntime as ort

    from edge_engine.plugin.discovery import import_file

    ocr = import_file(REPO / "extensions" / "serving" / "pp_ocr.py", "bench_pp_ocr")
    options = ort.SessionOptions()
    if tuned:
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
    path = ocr.rapidocr_models_dir() / ocr.PpOcrDirection.MODEL_FILE
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    source = _frames()
    for _ in range(50):  # warm-up
        session.run(None, {name: ocr.direction_batch([source.read().image])})
    latencies = []
    perf = time.perf_counter
    while time.time() < start_at:
        time.sleep(0.001)
    end = perf() + seconds
    count = 0
    cpu_started = time.process_time()
    while True:
        frame = source.read().image
        began = perf()
        session.run(None, {name: ocr.direction_batch([frame])})
        done = perf()
        latencies.append(done - began)
        count += 1
        if done >= end:
            break
    cpu = time.process_time() - cpu_started
    latencies.sort()
    results.put((count, latencies[int(0.99 * (len(latencies) - 1))], cpu))


def run_baseline(pipelines: int, tuned: bool, seconds: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 3.0 + 0.3 * pipelines  # time for every process to load its session
    processes = [
        ctx.Process(target=baseline_worker, args=(tuned, start_at, seconds, results)) for _ in range(pipelines)
    ]
    for process in processes:
        process.start()
    got = [results.get(timeout=60 + seconds) for _ in processes]
    for process in processes:
        process.join(10)
    counts = [c for c, _, _ in got]
    return {
        "throughput": sum(counts) / seconds,
        "counts": counts,
        "p99_ms": 1000 * max(p for _, p, _ in got),
        "cpu_ms": 1000 * sum(c for _, _, c in got) / max(1, sum(counts)),
    }


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (all their threads) so far."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


# --- the engine -------------------------------------------------------------------------------------------------
def run_engine(node: Any, pipelines: int, seconds: float, warmup: float) -> dict[str, Any]:
    names = [f"p{i}" for i in range(pipelines)]
    for name in names:
        node.add_pipeline({
            "NAME": name, "TYPE": "SYNTHETIC", "WIDTH": WIDTH, "HEIGHT": HEIGHT, "MODE": "moving_box",
            "PLUGINS": [{"SIGNATURE": "BENCH_INFER", "INSTANCES": [{"INSTANCE_ID": "count", "ENGINE": ENGINE,
                                                                     "AI_ENGINE": ENGINE,
                                                                     "STARTUP_AI_ENGINE_PARAMS": {"WORKERS": CORES}}]}],
        }, source="benchmark")  # fmt: skip
    wait_until(lambda: all(instance_plugin(node, n) is not None and instance_plugin(node, n).seen for n in names),
               60, "every pipeline's first inference")  # fmt: skip
    time.sleep(warmup)
    (server,) = node.serving.servers()
    before = {n: instance_plugin(node, n).seen for n in names}
    histogram = dict(server.stats.batch_sizes)
    server.stats.latencies.clear()
    pids = [os.getpid(), *server.pids()]  # the node (this process) and its model processes
    cpu_before = _cpu_seconds(pids)
    started = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds(pids) - cpu_before
    counts = [instance_plugin(node, n).seen - before[n] for n in names]
    latencies = sorted(server.stats.latencies)
    batches = {k: v - histogram.get(k, 0) for k, v in server.stats.batch_sizes.items()}
    failed = sum(instance_plugin(node, n).failed + instance_plugin(node, n).missing for n in names)
    errors_before = server.stats.errors
    for name in names:  # one by one, the others still running: no batch may fail (issue 14 item 16)
        node.remove_pipeline(name)
    teardown_errors = server.stats.errors - errors_before
    total_batches = sum(batches.values()) or 1
    return {
        "throughput": sum(counts) / elapsed,
        "counts": counts,
        "fairness": min(counts) / max(counts) if max(counts) else 0.0,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "batch_avg": sum(k * v for k, v in batches.items()) / total_batches,
        "errors": failed,
        "teardown_errors": teardown_errors,
        "cpu_ms": 1000 * cpu / max(1, sum(counts)),
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput (its other figures come with it)."""
    return sorted(runs, key=lambda r: r["throughput"])[len(runs) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pipelines", default="1,2,4,8", help="pipeline counts to measure")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per set-up")
    parser.add_argument("--warmup", type=float, default=1.5, help="engine warm-up seconds per pipeline count")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per pipeline count (median)")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.pipelines.split(",") if x.strip()]
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench_sharing_") as tmp:
        node = make_node(Path(tmp))
        try:
            for pipelines in counts:
                rounds = [
                    (
                        run_engine(node, pipelines, args.seconds, args.warmup),
                        run_baseline(pipelines, tuned=False, seconds=args.seconds),
                        run_baseline(pipelines, tuned=True, seconds=args.seconds),
                    )
                    for _ in range(max(1, args.rounds))
                ]
                engine, naive, tuned = (_median_run([r[i] for r in rounds]) for i in range(3))
                round_ratios = [r[0]["throughput"] / r[2]["throughput"] for r in rounds]
                cpu_ratios = sorted(r[2]["cpu_ms"] / r[0]["cpu_ms"] for r in rounds)
                result = {
                    "pipelines": pipelines,
                    "engine_ips": round(engine["throughput"], 1),
                    "naive_ips": round(naive["throughput"], 1),
                    "tuned_ips": round(tuned["throughput"], 1),
                    "vs_naive": round(engine["throughput"] / naive["throughput"], 3),
                    "vs_tuned": round(engine["throughput"] / tuned["throughput"], 3),
                    "vs_tuned_rounds": [round(x, 3) for x in round_ratios],
                    "engine_cpu_ms": round(sorted(r[0]["cpu_ms"] for r in rounds)[len(rounds) // 2], 3),
                    "tuned_cpu_ms": round(sorted(r[2]["cpu_ms"] for r in rounds)[len(rounds) // 2], 3),
                    "cpu_vs_tuned": round(cpu_ratios[len(cpu_ratios) // 2], 3),
                    "fairness": round(engine["fairness"], 3),
                    "engine_p99_ms": round(engine["p99_ms"], 2) if engine["p99_ms"] is not None else None,
                    "tuned_p99_ms": round(tuned["p99_ms"], 2),
                    "added_p99_ms": round(engine["p99_ms"] - tuned["p99_ms"], 2) if engine["p99_ms"] else None,
                    "batch_avg": round(engine["batch_avg"], 2),
                    "errors": engine["errors"],
                    "teardown_errors": sum(r[0]["teardown_errors"] for r in rounds),
                    "per_pipeline": engine["counts"],
                }
                results.append(result)
                rows.append([result[k] for k in ("pipelines", "engine_ips", "naive_ips", "tuned_ips", "vs_naive",
                                                  "vs_tuned", "fairness", "engine_p99_ms", "added_p99_ms",
                                                  "batch_avg", "engine_cpu_ms", "tuned_cpu_ms",
                                                  "cpu_vs_tuned")])  # fmt: skip
        finally:
            node.stop("benchmark done")
    import os

    print_table(
        f"sharing {ENGINE} ({WIDTH}x{HEIGHT} frames), {args.seconds:g} s per set-up, {os.cpu_count()} cores:",
        ["pipelines", "engine img/s", "naive img/s", "tuned img/s", "×naive", "×tuned", "fairness",
         "p99 ms", "added p99 ms", "batch avg", "CPU ms/img", "tuned CPU ms/img", "CPU ×tuned"],
        rows,
    )  # fmt: skip
    at4 = next((r for r in results if r["pipelines"] == 4), None)
    if at4:
        print(
            f"at 4 pipelines: {at4['vs_naive']}× naive (target ≥ 1.6), {at4['vs_tuned']}× tuned (target ≥ 0.95), "
            f"fairness {at4['fairness']} (target ≥ 0.95); per round ×tuned {at4['vs_tuned_rounds']}, "
            f"CPU per image {at4['engine_cpu_ms']} ms against {at4['tuned_cpu_ms']} tuned: {at4['cpu_vs_tuned']}×"
        )
    for r in results:
        record(f"{ENGINE} shared by {r['pipelines']} pipeline(s)", r["engine_ips"], "img/s",
               goal="≥ 1.6 × naive" if r["pipelines"] == 4 else None, baseline=r["naive_ips"],
               baseline_name="naive: one session per pipeline", note=f"fairness {r['fairness']}")  # fmt: skip
    print_json("serving_sharing", {"model": ENGINE, "cores": os.cpu_count(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
