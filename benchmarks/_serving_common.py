"""Shared parts of the serving benchmarks: an in-process node with a counting business plugin, process trees'
memory, and the one-line JSON + table output every benchmark prints."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edge_engine.config.node_settings import load_settings  # noqa: E402
from edge_engine.node.core import Node  # noqa: E402

COUNTER_PLUGIN = '''
    """Benchmark plugin: counts the inputs it gets and the ones whose inference is a ServingError."""

    from edge_engine.api import BusinessPlugin, Key, ServingError


    class BenchInfer(BusinessPlugin):
        SIGNATURE = "BENCH_INFER"
        CONFIG = {"ENGINE": Key("", type=str, doc="signature whose result is checked")}

        def on_init(self):
            self.seen = 0
            self.failed = 0
            self.missing = 0

        def process(self, inp):
            self.seen += 1
            value = inp.inferences.get(self.config["ENGINE"])
            if isinstance(value, ServingError):
                self.failed += 1
            elif value is None:
                self.missing += 1
            return None
'''


def make_node(workdir: Path, log_level: str = "WARNING") -> Node:
    """A node in ``workdir`` with the built-in plugins and ``BENCH_INFER``, comms off."""
    plugins = workdir / "plugins" / "business"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "bench_infer.py").write_text(textwrap.dedent(COUNTER_PLUGIN), encoding="utf-8")
    config = {
        "PLUGIN_FOLDERS": [str(REPO / "extensions"), str(workdir / "plugins")],
        "DEMO_PIPELINE": False,
        "LOG_LEVEL": log_level,
        "SECONDS_LOCAL_INFO": 60,
    }
    (workdir / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
    settings = load_settings(workdir, workdir / "_local_cache", {"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0"})
    logging.basicConfig(level=getattr(logging, log_level), format="%(levelname)s %(name)s: %(message)s")
    node = Node(settings)
    node.start()
    return node


def instance_plugin(node: Node, pipeline: str) -> Any:
    """The BENCH_INFER plugin object of a pipeline (None until it started)."""
    runner = node.pipelines[pipeline]
    (instance,) = runner.instances.values()
    return instance._plugin


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` every ``interval`` s until it returns a truthy value, and return that value;
    ``RuntimeError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)


def tree_memory(pid: int) -> dict[str, float]:
    """RSS and PSS (MB) summed over a process and all its descendants (PSS splits shared pages fairly)."""
    import psutil

    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    rss = pss = 0.0
    each = []
    for process in processes:
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        each.append(round(info.rss / 2**20, 1))
    return {"processes": len(processes), "rss_mb": rss / 2**20, "pss_mb": pss / 2**20, "rss_each_mb": each}


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in header], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(title)
    for index, row in enumerate(cells):
        print(
            "  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
        if index == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def print_json(name: str, data: dict[str, Any]) -> None:
    print(json.dumps({"benchmark": name, **data}, separators=(",", ":")))
