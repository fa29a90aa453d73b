"""Cost of the status page and the Prometheus endpoint on a real idle node: RSS and CPU with and without them.

Starts ``python device.py`` like ``bench_idle.py`` does (its ``NodeRun`` is reused: a temporary working folder
linking the repository's ``extensions/``, ``plugins/``, ``pipelines/`` and ``samples/``, a fresh cache,
``EE_COMMS=0``, ``EE_DEMO=0``) in three runs:

1. **off**: ``EE_STATUS_PORT=0`` (no status page, no metrics listener);
2. **on, nobody watching**: ``EE_STATUS_PORT`` and ``EE_METRICS_PORT`` on free loopback ports;
3. **on, watched**: the same while a client (in this process, so not counted) polls ``/api/status`` every 2 s
   and ``/metrics`` every 15 s, as an open status page and a Prometheus scraper would.

Each run settles, then RSS (process tree, psutil) and CPU (% of one core, user + system of the tree over the
window) are sampled for ``--seconds``. Budget (issue 10): with nobody watching, the page and the metrics add
≤ 15 MB RSS and no measurable CPU (here: ≤ 0.5 % of a core more than off, the noise of an idle node).

    .venv/bin/python benchmarks/bench_observability.py [--seconds 15] [--check]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record
from bench_idle import SETTLE_SECONDS, Figures, free_port, prepare_node

BUDGET_RSS_MB = 15.0
BUDGET_CPU_PCT = 0.5
STATUS_EVERY = 2.0
METRICS_EVERY = 15.0


@dataclass
class Poller:
    """Polls the status API and /metrics from a thread; counts answers and failures."""

    status_url: str
    metrics_url: str
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _get(self, url: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                answer.read()
            self.ok += 1
        except (urllib.error.URLError, OSError) as exc:
            self.failed += 1
            if len(self.errors) < 3:
                self.errors.append(f"{url}: {exc}")

    def _loop(self) -> None:
        next_metrics = time.monotonic()
        while not self._stop.is_set():
            self._get(self.status_url)
            if time.monotonic() >= next_metrics:
                self._get(self.metrics_url)
                next_metrics += METRICS_EVERY
            self._stop.wait(STATUS_EVERY)


def run_node(
    label: str, root: Path, env_extra: dict[str, str], seconds: float, poller: Poller | None = None
) -> Figures:
    """Start a node with ``env_extra``, settle, optionally start ``poller``, then sample for ``seconds``."""
    run = prepare_node(label, root, {"EE_COMMS": "0", "EE_DEMO": "0", **env_extra})
    figures = Figures()
    try:
        figures.first_info_ms = run.start_and_time()
        time.sleep(SETTLE_SECONDS)
        if poller is not None:
            poller.start()
            time.sleep(1.0)  # the first requests import and warm the handlers: measure the steady state
        run.sample(seconds, figures)
    except RuntimeError as exc:
        figures.error = str(exc)
    finally:
        if poller is not None:
            poller.stop()
        run.stop()
    return figures


def line(label: str, figures: Figures) -> str:
    if figures.error:
        return f"  {label:<26} ERROR: {figures.error}"
    assert figures.cpu_pct is not None
    rss_avg, rss_max = statistics.fmean(figures.rss_mb), max(figures.rss_mb)
    return (
        f"  {label:<26} RSS {rss_avg:7.1f} MB avg, {rss_max:7.1f} MB max   CPU {figures.cpu_pct:5.2f} % "
        f"of one core over {figures.window_s:.1f} s   threads {figures.threads}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="sampling window per run (default 15)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the idle cost misses the budget")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {psutil.cpu_count()} CPU(s); comms off, no pipeline")
    with tempfile.TemporaryDirectory(prefix="bench_observe_") as tmp:
        root = Path(tmp)
        off = run_node("off", root, {"EE_STATUS_PORT": "0", "EE_METRICS_PORT": "0"}, args.seconds)
        ports = {"EE_STATUS_PORT": str(free_port()), "EE_METRICS_PORT": str(free_port())}
        on = run_node("on", root, ports, args.seconds)
        ports = {"EE_STATUS_PORT": str(free_port()), "EE_METRICS_PORT": str(free_port())}
        poller = Poller(
            f"http://127.0.0.1:{ports['EE_STATUS_PORT']}/api/status",
            f"http://127.0.0.1:{ports['EE_METRICS_PORT']}/metrics",
        )
        watched = run_node("watched", root, ports, args.seconds, poller)
    print(line("off (EE_STATUS_PORT=0)", off))
    print(line("on, nobody watching", on))
    print(line("on, polled", watched))
    print(f"  poller: {poller.ok} answers, {poller.failed} failures" + "".join(f"\n    {e}" for e in poller.errors))
    if off.error or on.error:
        return 1
    assert off.cpu_pct is not None and on.cpu_pct is not None
    d_rss = statistics.fmean(on.rss_mb) - statistics.fmean(off.rss_mb)
    d_cpu = on.cpu_pct - off.cpu_pct
    ok_rss, ok_cpu = d_rss <= BUDGET_RSS_MB, d_cpu <= BUDGET_CPU_PCT
    print("cost of the status page + metrics, nobody watching (on - off):")
    print(f"  RSS {d_rss:+7.1f} MB   budget ≤ {BUDGET_RSS_MB:.0f} MB  {'OK' if ok_rss else 'OVER BUDGET'}")
    print(f"  CPU {d_cpu:+7.2f} %    budget ≤ {BUDGET_CPU_PCT} %  {'OK' if ok_cpu else 'OVER BUDGET'}")
    record("status page + metrics, nobody watching: RSS", round(d_rss, 1), "MB", goal=f"≤ {BUDGET_RSS_MB:.0f}",
           note="on - off")  # fmt: skip
    record("status page + metrics, nobody watching: CPU", round(d_cpu, 2), "% of a core",
           goal=f"≤ {BUDGET_CPU_PCT}", note="on - off")  # fmt: skip
    if not watched.error and watched.cpu_pct is not None:
        w_rss = statistics.fmean(watched.rss_mb) - statistics.fmean(off.rss_mb)
        print(f"while polled (watched - off): RSS {w_rss:+.1f} MB, CPU {watched.cpu_pct - off.cpu_pct:+.2f} %")
    if poller.failed and not poller.ok:
        print("  the status page / metrics did not answer: are EE_STATUS_PORT / EE_METRICS_PORT supported yet?")
    return 1 if args.check and not (ok_rss and ok_cpu) else 0


if __name__ == "__main__":
    sys.exit(main())
