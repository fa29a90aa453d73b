"""Soak: a real node with N video pipelines for a while; throughput, memory, open files and threads must stay flat.

Starts ``python device.py`` from a temporary working folder (linking the repository's ``extensions/``,
``plugins/``, ``pipelines/`` and ``samples/``) with a fresh cache and ``--pipelines`` copies of the demo
pipeline (``samples/demo.mp4`` looping in real time through MOTION_DETECTOR and FRAME_STATS). Unless
``--no-comms``, it also starts its own Mosquitto on a free port (never 1883), points the node at it and
counts the payloads that arrive there, so comms (signing, outbox, publishing) run too. ``_output`` is bounded
by ``--output-max-mb`` so the disk-bound pruning runs during the soak as well.

Every ``--interval`` seconds it samples: frames/s of every pipeline (from the ``capture.inputs`` counters in
``local_info.json``), RSS summed over the node's process tree, open file descriptors and threads (same tree),
payloads/s received at the broker and the size of ``_output``; it prints a table as it goes, then a summary:
for each figure the mean of the first and of the last quarter of the run (after ``--warmup``), the change,
the least-squares slope per hour, and a verdict: FLAT or GROWING (DROPPING for throughput).

    .venv/bin/python benchmarks/bench_soak.py --pipelines 4 --minutes 20 --interval 10 [--no-comms] [--check]

``--check`` exits 1 when a figure is not flat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _broker import start_mosquitto
from _results import record

REPO = Path(__file__).resolve().parent.parent
LINKED_DIRS = ("extensions", "plugins", "pipelines", "samples")
ROOT_TOPIC = "naeural"


@dataclass
class Sample:
    t: float  # seconds since the node was running
    fps: dict[str, float]
    rss_mb: float
    fds: int
    threads: int
    payloads_per_s: float | None
    output_mb: float
    cpu_ms_per_frame: float  # CPU time of the node's tree per frame read: its cost, whatever CPU the machine lends
    cpu_percent: float  # of one core, over the interval


@dataclass
class Rule:
    """When a figure counts as not flat: last-quarter mean beyond the first by more than both tolerances."""

    label: str
    unit: str
    abs_tol: float
    rel_tol: float
    lower_is_bad: bool = False  # throughput: a drop is the failure


RULES = {
    "fps": Rule("throughput (all pipelines)", "frames/s", 0.5, 0.10, lower_is_bad=True),
    "rss_mb": Rule("RSS (node + children)", "MB", 3.0, 0.03),
    "fds": Rule("open file descriptors", "", 2, 0.0),
    "threads": Rule("threads", "", 1, 0.0),
    "cpu_ms_per_frame": Rule("CPU per frame (node + children)", "ms", 0.05, 0.10),
}


class Broker:
    """A Mosquitto of our own on a free port, and a subscriber counting payloads."""

    def __init__(self, folder: Path):
        self.proc, self.port = start_mosquitto(folder, log=folder / "mosquitto.log", missing_hint=", or --no-comms")
        self.payloads = 0
        self._lock = threading.Lock()
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-counter")
        self.client.on_connect = lambda c, *_: c.subscribe(f"{ROOT_TOPIC}/payloads", 0)
        self.client.on_message = self._count
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()

    def _count(self, *_args: Any) -> None:
        with self._lock:
            self.payloads += 1

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def pipeline(index: int, realtime: bool) -> dict[str, Any]:
    demo = json.loads((REPO / "pipelines" / "demo.json").read_text())
    demo.update({"NAME": f"soak{index}", "URL": "samples/demo.mp4", "LOOP": True, "REALTIME": realtime})
    return demo


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def measure(pid: int) -> tuple[float, int, int, float]:
    """RSS (MB), open file descriptors, threads and CPU seconds (user + system) summed over the process tree."""
    rss = fds = threads = 0
    cpu = 0.0
    for proc in tree(pid):
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                fds += proc.num_fds()
                threads += proc.num_threads()
                times = proc.cpu_times()
                cpu += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return rss / 2**20, fds, threads, cpu


def folder_mb(folder: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total / 2**20


def read_info(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_bytes())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def inputs_by_pipeline(info: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["capture"]["inputs"] for p in info.get("pipelines", []) if p["name"].startswith("soak")}


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    return 0.0 if den == 0 else 3600 * sum((t - mean_t) * (v - mean_v) for t, v in points) / den


def verdict(name: str, points: list[tuple[float, float]]) -> tuple[str, str]:
    """The summary line of one figure and its verdict."""
    rule = RULES[name]
    quarter = max(1, len(points) // 4)
    first = statistics.fmean(v for _, v in points[:quarter])
    last = statistics.fmean(v for _, v in points[-quarter:])
    change = last - first
    tolerance = max(rule.abs_tol, rule.rel_tol * abs(first))
    if rule.lower_is_bad:
        word = "DROPPING" if -change > tolerance else "FLAT"
    else:
        word = "GROWING" if change > tolerance else "FLAT"
    pct = f"{100 * change / first:+.1f} %" if first else "n/a"
    line = (f"{rule.label:<28} first quarter {first:9.1f}  last quarter {last:9.1f}  change {change:+8.1f} "
            f"({pct:>8})  slope {slope_per_hour(points):+9.1f} {rule.unit}/h  {word}")  # fmt: skip
    return line, word


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", type=int, default=4, help="video pipelines (default 4)")
    parser.add_argument("--minutes", type=float, default=20.0, help="duration of the soak (default 20)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds left out of the verdict "
                        "(default: 10 %% of the run, at most 60)")  # fmt: skip
    parser.add_argument("--no-comms", action="store_true", help="no broker: EE_COMMS=0")
    parser.add_argument("--fast", action="store_true", help="read the video as fast as possible (REALTIME false)")
    parser.add_argument("--output-max-mb", type=float, default=2.0,
                        help="EE_OUTPUT_MAX_MB of the node (2: the pruning runs within minutes)")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="exit 1 when a figure is not flat")
    args = parser.parse_args()
    duration = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(60.0, 0.1 * duration)

    work = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    broker: Broker | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        for name in LINKED_DIRS:
            (work / name).symlink_to(REPO / name, target_is_directory=True)
        config = {"DEMO_PIPELINE": False, "SECONDS_LOCAL_INFO": 1,
                  "PIPELINES": [pipeline(i, not args.fast) for i in range(args.pipelines)]}  # fmt: skip
        (work / ".config_startup.json").write_text(json.dumps(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")}
        env.update({"EE_CACHE_DIR": str(work / "cache"), "EE_STATUS_PORT": "0", "EE_LOG_LEVEL": "WARNING",
                    "EE_OUTPUT_MAX_MB": str(args.output_max_mb)})  # fmt: skip
        if args.no_comms:
            env["EE_COMMS"] = "0"
        else:
            broker = Broker(work)
            env.update({"EE_COMMS": "1", "EE_MQTT_HOST": "127.0.0.1", "EE_MQTT_PORT": str(broker.port)})
        log_file = open(work / "node.log", "wb")  # noqa: SIM115 - closed with the run
        proc = subprocess.Popen([sys.executable, str(REPO / "device.py")], cwd=work, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        info_path = work / "cache" / "_data" / "local_info.json"
        deadline = time.monotonic() + 60
        while True:
            info = read_info(info_path)
            if info.get("pid") == proc.pid and info.get("status") == "running":
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the node did not start:\n{(work / 'node.log').read_text()[-3000:]}")
            time.sleep(0.1)

        comms = "off" if broker is None else f"mosquitto on 127.0.0.1:{broker.port}"
        print(f"soak: {args.pipelines} pipeline(s) of samples/demo.mp4 "
              f"({'as fast as possible' if args.fast else 'real time'}) → MOTION_DETECTOR + FRAME_STATS, "
              f"{args.minutes:g} min, a sample every {args.interval:g} s, warm-up {warmup:.0f} s, comms {comms}, "
              f"_output bounded at {args.output_max_mb:g} MB; node pid {proc.pid}, cache {work / 'cache'}")  # fmt: skip
        print(f"{'time':>6} {'fps total':>9} {'fps min':>8} {'fps max':>8} {'RSS MB':>8} {'fds':>5} {'thr':>5} "
              f"{'payl/s':>7} {'out MB':>7} {'CPU %':>6} {'ms/frame':>8}")  # fmt: skip
        started = time.monotonic()
        last_inputs = inputs_by_pipeline(read_info(info_path))
        last_payloads = broker.payloads if broker else 0
        last_t = started
        last_cpu = measure(proc.pid)[3]
        samples: list[Sample] = []
        next_at = started + args.interval
        while time.monotonic() - started < duration:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += args.interval
            if proc.poll() is not None:
                raise SystemExit(f"the node exited ({proc.returncode}):\n{(work / 'node.log').read_text()[-3000:]}")
            now = time.monotonic()
            inputs = inputs_by_pipeline(read_info(info_path))
            span = now - last_t
            fps = {name: (count - last_inputs.get(name, 0)) / span for name, count in inputs.items()}
            payloads = broker.payloads if broker else None
            rate = None if payloads is None else (payloads - last_payloads) / span
            rss, fds, threads, cpu = measure(proc.pid)
            frames = sum(fps.values()) * span
            cpu_ms = 1000 * (cpu - last_cpu) / frames if frames else 0.0
            sample = Sample(now - started, fps, rss, fds, threads, rate, folder_mb(work / "cache" / "_output"),
                            cpu_ms, 100 * (cpu - last_cpu) / span)  # fmt: skip
            samples.append(sample)
            last_inputs, last_payloads, last_t, last_cpu = inputs, payloads or 0, now, cpu
            values = list(fps.values()) or [0.0]
            clock = f"{int(sample.t // 60):3d}:{int(sample.t % 60):02d}"
            print(f"{clock} {sum(values):9.1f} {min(values):8.1f} {max(values):8.1f} {rss:8.1f} "
                  f"{fds:5d} {threads:5d} {'-' if rate is None else f'{rate:7.1f}':>7} {sample.output_mb:7.1f} "
                  f"{sample.cpu_percent:6.0f} {cpu_ms:8.3f}",
                  flush=True)  # fmt: skip

        kept = [s for s in samples if s.t >= warmup] or samples
        print(f"\nsummary over {len(kept)} samples after the warm-up ({len(samples) - len(kept)} left out):")
        words = []
        for name, getter in (("fps", lambda s: sum(s.fps.values())), ("rss_mb", lambda s: s.rss_mb),
                             ("fds", lambda s: s.fds), ("threads", lambda s: s.threads),
                             ("cpu_ms_per_frame", lambda s: s.cpu_ms_per_frame)):  # fmt: skip
            points = [(s.t, float(getter(s))) for s in kept]
            line, word = verdict(name, points)
            print(line)
            words.append(word)
            values = [v for _, v in points]
            record(f"soak, {args.pipelines} pipeline(s): {RULES[name].label}", round(statistics.median(values), 2),
                   RULES[name].unit, goal="flat", samples=values, note=f"{word} over {len(kept)} samples, "
                   f"slope {slope_per_hour(points):+.1f} {RULES[name].unit}/h")  # fmt: skip
        per_pipeline = {name: statistics.fmean(s.fps.get(name, 0.0) for s in kept) for name in kept[-1].fps}
        print("mean frames/s per pipeline: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per_pipeline.items())))
        if broker is not None:
            print(f"payloads received at the broker: {broker.payloads} "
                  f"({statistics.fmean(s.payloads_per_s or 0 for s in kept):.1f}/s)")  # fmt: skip
        print(f"_output at the end: {samples[-1].output_mb:.1f} MB (bound {args.output_max_mb:g} MB)")
        flat = all(word == "FLAT" for word in words)
        print(f"verdict: {'FLAT' if flat else 'NOT FLAT'}")
        return 0 if flat or not args.check else 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
