"""Many cores: a CPU-bound pure-Python business plugin on N pipelines, in the node's process against worker
processes (pipeline key ``PROCESS``, issue 19 item 3).

Each pipeline is a ``SYNTHETIC`` message source as fast as the consumer takes it (no ``LIVE_FEED``: the capture
waits for room, so every input is processed) into one ``BENCH_BURN`` instance, which spends ``--work`` iterations
of a pure-Python loop per input (a few milliseconds, holding the GIL throughout) and returns a payload per input.
One in-process node (comms off) runs the N pipelines with ``PROCESS: "node"`` (all in the node's interpreter, one
GIL: at most one core of Python) and then with ``PROCESS: "worker"`` (one spawned process each); the payloads that
reach the node's ``edge_payload`` hook during ``--seconds`` (after the workers are up and ``--warmup``) give the
throughput. Modes alternate for ``--rounds`` rounds; the ratio worker / node of each round, and its median, is the
figure (goal ≥ 1.7 with 2 pipelines on 2 cores). On a shared machine the ratio is bounded by the cores the others
leave free: the load average is printed with it.

    .venv/bin/python benchmarks/bench_process_pipelines.py [--pipelines 2] [--rounds 3] [--seconds 6] [--work 20000]
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import record  # noqa: E402

from edge_engine.api import hookimpl  # noqa: E402
from edge_engine.config.node_settings import load_settings  # noqa: E402
from edge_engine.node.core import Node  # noqa: E402

RATIO_GOAL = 1.7
BURN_PLUGIN = textwrap.dedent(
    """
    from typing import Any, ClassVar

    from edge_engine.api import BusinessPlugin, Key


    class BenchBurn(BusinessPlugin):
        SIGNATURE = "BENCH_BURN"
        CONFIG: ClassVar[dict[str, Any]] = {"WORK": Key(20000, type=int, min=1, doc="loop iterations per input")}

        def process(self, inp):
            if inp is None:
                return None
            total = 0
            for i in range(int(self.config["WORK"])):
                total += (i * i) % 7
            return {"I": inp.seq, "T": total}
    """
)


class Counter:
    """The node's ``edge_payload`` hook: arrival times of payloads, per pipeline."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    @hookimpl
    def edge_payload(self, payload: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self.times.setdefault(str(payload.path[1]), []).append(now)

    def count(self, start: float, end: float) -> dict[str, int]:
        with self._lock:
            return {name: sum(1 for t in times if start <= t < end) for name, times in self.times.items()}


def pipeline(name: str, mode: str, work: int) -> dict[str, Any]:
    return {
        "NAME": name,
        "TYPE": "SYNTHETIC",
        "MODE": "messages",
        "PROCESS": mode,
        "PLUGINS": [{"SIGNATURE": "BENCH_BURN", "INSTANCES": [{"INSTANCE_ID": "b", "WORK": work}]}],
    }


def worker_cpu(node: Node) -> float:
    """CPU seconds (user + system) of the node's worker processes so far, from ``/proc/<pid>/stat``."""
    total = 0.0
    for runner in list(node.pipelines.values()):
        pid = getattr(runner, "pid", None)
        if pid is None:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def worker_rss_mb(node: Node) -> list[float]:
    """Resident memory of each worker process (MB), from ``/proc/<pid>/status``."""
    sizes = []
    for runner in list(node.pipelines.values()):
        pid = getattr(runner, "pid", None)
        try:
            status = Path(f"/proc/{pid}/status").read_text() if pid is not None else ""
        except OSError:
            continue
        sizes.extend(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
    return sizes


@dataclass
class Run:
    rate: float  # inputs/s over every pipeline
    per_pipeline: list[int]
    node_cores: float  # CPU of the node's process during the window, in cores
    worker_cores: float  # CPU of its worker processes (0 in the node mode)
    worker_rss: list[float]  # MB per worker process
    ready_seconds: float  # from the node's start to a payload from every pipeline

    @property
    def cpu_per_input_ms(self) -> float:
        return 1000 * (self.node_cores + self.worker_cores) / self.rate if self.rate else 0.0

    @property
    def node_cpu_per_input_us(self) -> float:
        return 1e6 * self.node_cores / self.rate if self.rate else 0.0


def run_once(mode: str, pipelines: int, work: int, seconds: float, warmup: float) -> Run:
    """Throughput over every pipeline, per-pipeline counts, and the CPU of the node and of its workers."""
    with tempfile.TemporaryDirectory(prefix="bench_process_") as tmp:
        base = Path(tmp)
        (base / "plugins" / "business").mkdir(parents=True)
        (base / "plugins" / "business" / "burn.py").write_text(BURN_PLUGIN, encoding="utf-8")
        names = [f"burn{i}" for i in range(pipelines)]
        config = {
            "PLUGIN_FOLDERS": [str(REPO / "extensions"), str(base / "plugins")],
            "DEMO_PIPELINE": False,
            "PIPELINES": [pipeline(n, mode, work) for n in names],
        }
        (base / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
        env = {"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0", "EE_STATUS_PORT": "0"}
        node = Node(load_settings(base, base / "_local_cache", env))
        counter = Counter()
        node.pm.register(counter, name="bench_process_pipelines.counter")
        began = time.monotonic()
        node.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(counter.times) < pipelines:
                time.sleep(0.05)  # a benchmark polls; the engine's tests wait on conditions
            ready = time.monotonic() - began
            time.sleep(warmup)
            cpu0, workers0, start = time.process_time(), worker_cpu(node), time.monotonic()
            time.sleep(seconds)
            cpu1, workers1, end = time.process_time(), worker_cpu(node), time.monotonic()
            counts = counter.count(start, end)
            rss = worker_rss_mb(node)
        finally:
            node.stop("benchmark")
        per_pipeline = [counts.get(n, 0) for n in names]
        span = end - start
        return Run(
            sum(per_pipeline) / span, per_pipeline, (cpu1 - cpu0) / span, (workers1 - workers0) / span, rss, ready
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--work", type=int, default=20000, help="loop iterations per input")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {os.cpu_count()} cores; load average at start {os.getloadavg()}")
    print(f"{args.pipelines} pipelines, WORK {args.work}, {args.seconds:g} s per run, {args.rounds} rounds\n")
    node_rates: list[float] = []
    worker_rates: list[float] = []
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    parent_us: list[float] = []
    for r in range(args.rounds):
        runs: dict[str, Run] = {}
        for mode in ("node", "worker"):
            run = runs[mode] = run_once(mode, args.pipelines, args.work, args.seconds, args.warmup)
            print(
                f"round {r + 1} {mode:6s}: {run.rate:8.1f} inputs/s  per pipeline {run.per_pipeline}  cores: node "
                f"{run.node_cores:.2f} workers {run.worker_cores:.2f}  CPU/input {run.cpu_per_input_ms:.2f} ms  "
                f"ready {run.ready_seconds:.1f} s  worker RSS {[round(m) for m in run.worker_rss]} MB  "
                f"load {os.getloadavg()[0]:.1f}"
            )
        node_rates.append(runs["node"].rate)
        worker_rates.append(runs["worker"].rate)
        ratios.append(runs["worker"].rate / runs["node"].rate if runs["node"].rate else 0.0)
        if runs["node"].cpu_per_input_ms:
            cpu_ratios.append(runs["worker"].cpu_per_input_ms / runs["node"].cpu_per_input_ms)
        parent_us.append(runs["worker"].node_cpu_per_input_us)
        print(
            f"round {r + 1} ratio worker/node: throughput {ratios[-1]:.2f}, CPU per input "
            f"{cpu_ratios[-1] if cpu_ratios else 0:.2f}; the node's CPU per worker payload "
            f"{parent_us[-1]:.0f} us\n"
        )
    load = os.getloadavg()
    median_ratio = statistics.median(ratios)
    print(
        f"CPU per input, worker / node: median {statistics.median(cpu_ratios or [0]):.2f}; the node process's "
        f"CPU per payload from a worker: median {statistics.median(parent_us):.0f} us"
    )
    print(
        f"in the node: median {statistics.median(node_rates):.1f} inputs/s; worker processes: median "
        f"{statistics.median(worker_rates):.1f} inputs/s"
    )
    print(
        f"ratio worker/node: median {median_ratio:.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); "
        f"goal >= {RATIO_GOAL} with 2 pipelines on 2 cores; load average at the end {load}"
    )
    tag = f"{args.pipelines} pipelines"
    note = f"load {load[0]:.1f} on {os.cpu_count()} cores"
    record(
        f"processes: worker / node throughput, {tag}",
        round(median_ratio, 2),
        "×",
        goal=f"≥ {RATIO_GOAL}",
        samples=[round(r, 3) for r in ratios],
        note=note,
    )
    record(
        f"processes: CPU-bound inputs/s in worker processes, {tag}",
        round(statistics.median(worker_rates), 1),
        "inputs/s",
        samples=worker_rates,
        baseline=round(statistics.median(node_rates), 1),
        baseline_name="in the node's process",
        note=note,
    )
    record(
        f"processes: CPU per input, worker / node, {tag}",
        round(statistics.median(cpu_ratios or [0]), 2),
        "×",
        goal="≈ 1",
        samples=[round(r, 3) for r in cpu_ratios],
        note=note,
    )
    record(
        f"processes: node CPU per payload from a worker, {tag}",
        round(statistics.median(parent_us)),
        "µs",
        samples=parent_us,
        note=note,
    )


if __name__ == "__main__":
    main()
