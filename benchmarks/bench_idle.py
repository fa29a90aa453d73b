"""Idle footprint of a real node process: time to the first local_info.json, memory (RSS) and CPU.

Starts ``python device.py`` the way an operator does, from a temporary working folder that links the
repository's ``extensions/``, ``plugins/``, ``pipelines/`` and ``samples/``, with a fresh cache
(``EE_CACHE_DIR`` in a temporary folder) and no config file, so every setting is the default:

1. **idle** (``EE_DEMO=0``, no pipeline): milliseconds from launch to the first ``local_info.json`` (a
   first start, so the key pair is created too), the same after a restart, then, after a short settle,
   RSS summed over the process tree (psutil; shared pages of children count twice) and CPU (user +
   system of the tree over the wall time, in % of one core), sampled every second for ``--seconds``.
2. **demo** (the zero-config demo: a 320x240 video at 12 fps through the motion detector and frame
   stats), for reference: the same figures with a pipeline running.

Budgets (the project's own): idle ≤ 120 MB RSS and ≤ 1 % of a core; first local_info.json ≤ 1 s.
Comms are left as the node chooses them (a broker answering on 127.0.0.1:1883, else its embedded broker)
unless ``--no-comms`` (``EE_COMMS=0``) or ``--embedded-broker`` (``EE_EMBEDDED_BROKER=always`` on a free
port, what a machine without a local broker gets) is given.

    .venv/bin/python benchmarks/bench_idle.py [--seconds 20] [--no-comms | --embedded-broker] [--supervisor]
        [--skip-demo] [--check]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _broker import free_port
from _results import record

REPO = Path(__file__).resolve().parent.parent
LINKED_DIRS = ("extensions", "plugins", "pipelines", "samples")
BUDGET_RSS_MB = 120.0
BUDGET_CPU_PCT = 1.0
BUDGET_FIRST_INFO_MS = 1000.0
SETTLE_SECONDS = 2.0
POLL_SECONDS = 0.005


@dataclass
class Figures:
    first_info_ms: float | None = None
    restart_info_ms: float | None = None
    rss_mb: list[float] = field(default_factory=list)
    cpu_pct: float | None = None
    window_s: float = 0.0
    threads: int = 0
    children: int = 0
    error: str | None = None


class NodeRun:
    """A node process in its own session, so the whole tree can be signalled and measured."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir = workdir
        self.env = env
        self.info = Path(env["EE_CACHE_DIR"]) / "_data" / "local_info.json"
        self.log = workdir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start_and_time(self, timeout: float = 30.0) -> float:
        """Launch the node; milliseconds until local_info.json exists."""
        self.info.unlink(missing_ok=True)
        with open(self.log, "ab") as out:
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "device.py")],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while not self.info.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node exited with code {self.proc.returncode}; see {self.log}:\n{self.tail()}")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"no local_info.json after {timeout} s; see {self.log}:\n{self.tail()}")
            time.sleep(POLL_SECONDS)
        return 1000 * (time.perf_counter() - started)

    def tree(self) -> list[psutil.Process]:
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def sample(self, seconds: float, figures: Figures) -> None:
        """RSS every second and CPU over ``seconds`` (processes that come and go are counted while alive)."""
        cpu_start: dict[int, float] = {}
        cpu_last: dict[int, float] = {}

        def cpu_of(proc: psutil.Process) -> float | None:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                return None
            return times.user + times.system + times.children_user + times.children_system

        started = time.perf_counter()
        for proc in self.tree():
            value = cpu_of(proc)
            if value is not None:
                cpu_start[proc.pid] = cpu_last[proc.pid] = value
        deadline = started + seconds
        while True:
            rss = 0
            procs = self.tree()
            for proc in procs:
                try:
                    rss += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                value = cpu_of(proc)
                if value is not None:
                    cpu_start.setdefault(proc.pid, 0.0)
                    cpu_last[proc.pid] = value
            figures.rss_mb.append(rss / 1e6)
            figures.threads = sum(p.num_threads() for p in procs if p.is_running())
            figures.children = len(procs) - 1
            now = time.perf_counter()
            if now >= deadline:
                break
            time.sleep(min(1.0, deadline - now))
        figures.window_s = time.perf_counter() - started
        used = sum(cpu_last[pid] - cpu_start[pid] for pid in cpu_last)
        figures.cpu_pct = 100 * used / figures.window_s

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return None
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(5)

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def prepare_node(label: str, root: Path, env_extra: dict[str, str]) -> NodeRun:
    """A work folder under ``root`` linked to the repository, and a clean ``EE_*`` environment for a node."""
    workdir = root / label
    workdir.mkdir()
    for name in LINKED_DIRS:
        (workdir / name).symlink_to(REPO / name, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")}
    env.pop("PYTHONPATH", None)
    env.update({"EE_CACHE_DIR": str(workdir / "_local_cache"), **env_extra})
    return NodeRun(workdir, env)


def measure(label: str, root: Path, env_extra: dict[str, str], seconds: float, restart: bool) -> Figures:
    run = prepare_node(label, root, env_extra)
    figures = Figures()
    try:
        figures.first_info_ms = run.start_and_time()
        if restart:
            run.stop()
            figures.restart_info_ms = run.start_and_time()
        time.sleep(SETTLE_SECONDS)
        run.sample(seconds, figures)
    except RuntimeError as exc:
        figures.error = str(exc)
    finally:
        run.stop()
    return figures


def verdict(ok: bool) -> str:
    return "OK" if ok else "OVER BUDGET"


def print_figures(title: str, figures: Figures, budgets: bool) -> bool:
    print(title)
    if figures.error:
        print(f"  ERROR: {figures.error}")
        return False
    ok = True
    assert figures.first_info_ms is not None and figures.cpu_pct is not None
    line = f"  first local_info.json   {figures.first_info_ms:8.0f} ms  (first start: key pair created)"
    if budgets:
        good = figures.first_info_ms <= BUDGET_FIRST_INFO_MS
        ok &= good
        line += f"   budget ≤ {BUDGET_FIRST_INFO_MS:.0f} ms  {verdict(good)}"
    print(line)
    if figures.restart_info_ms is not None:
        print(f"  after a restart         {figures.restart_info_ms:8.0f} ms")
    rss_avg, rss_max = statistics.fmean(figures.rss_mb), max(figures.rss_mb)
    line = f"  RSS, process tree       {rss_avg:8.1f} MB avg, {rss_max:.1f} MB max"
    if budgets:
        good = rss_max <= BUDGET_RSS_MB
        ok &= good
        line += f"   budget ≤ {BUDGET_RSS_MB:.0f} MB  {verdict(good)}"
    print(line)
    line = f"  CPU                     {figures.cpu_pct:8.2f} % of one core over {figures.window_s:.1f} s"
    if budgets:
        good = figures.cpu_pct <= BUDGET_CPU_PCT
        ok &= good
        line += f"   budget ≤ {BUDGET_CPU_PCT:.0f} %  {verdict(good)}"
    print(line)
    print(f"  threads {figures.threads}, child processes {figures.children}")
    label = title.split(" (")[0]
    record(f"{label}: first local_info.json", round(figures.first_info_ms), "ms",
           goal=f"≤ {BUDGET_FIRST_INFO_MS:.0f}" if budgets else None)  # fmt: skip
    record(f"{label}: RSS of the process tree (max)", round(rss_max, 1), "MB",
           goal=f"≤ {BUDGET_RSS_MB:.0f}" if budgets else None)  # fmt: skip
    record(f"{label}: CPU", round(figures.cpu_pct, 2), "% of a core",
           goal=f"≤ {BUDGET_CPU_PCT:.0f}" if budgets else None)  # fmt: skip
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="sampling window per scenario (default 20)")
    comms_mode = parser.add_mutually_exclusive_group()
    comms_mode.add_argument("--no-comms", action="store_true", help="run the node with EE_COMMS=0")
    comms_mode.add_argument(
        "--embedded-broker", action="store_true", help="make the node start its embedded broker on a free port"
    )
    parser.add_argument("--skip-demo", action="store_true", help="measure the idle node only")
    parser.add_argument(
        "--supervisor", action="store_true", help="EE_SUPERVISOR=1: the node also publishes NET_MON_01 every 3 s"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the idle node misses a budget")
    args = parser.parse_args(argv)
    comms: dict[str, str] = {}
    comms_label = "node default"
    if args.no_comms:
        comms, comms_label = {"EE_COMMS": "0"}, "off"
    elif args.embedded_broker:
        comms, comms_label = {"EE_EMBEDDED_BROKER": "always"}, "embedded broker"
    if args.supervisor:
        comms["EE_SUPERVISOR"] = "1"
        comms_label += ", supervisor"
    print(f"python {sys.version.split()[0]}, {psutil.cpu_count()} CPU(s); comms: {comms_label}")
    with tempfile.TemporaryDirectory(prefix="bench_idle_") as tmp:
        root = Path(tmp)
        if args.embedded_broker:
            comms["EE_MQTT_PORT"] = str(free_port())
        idle = measure("idle", root, {"EE_DEMO": "0", **comms}, args.seconds, restart=True)
        ok = print_figures("idle node (EE_DEMO=0, no pipeline)", idle, budgets=True)
        if not args.skip_demo:
            if args.embedded_broker:
                comms["EE_MQTT_PORT"] = str(free_port())
            demo = measure("demo", root, {"EE_DEMO": "1", **comms}, args.seconds, restart=False)
            print_figures("demo node (reference: the zero-config demo pipeline running)", demo, budgets=False)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
