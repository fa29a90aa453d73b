"""Memory of a node sharing one model: total RSS (and PSS) of the node and all its processes, 1 vs 8 pipelines.

One in-process node; pipelines ``SYNTHETIC`` (640×480 frames at ``--fps``) → ``BENCH_INFER`` all use the
``PP_OCR_DETECTOR`` model (4.7 MB of weights) through one shared model server. Measured after a warm-up:

* the idle node (no pipeline), for reference;
* 1 pipeline;
* 8 pipelines.

RSS is summed over the node process and every child (model servers, the resource tracker); shared pages
(libraries, frame slots in ``/dev/shm``) count once per process that touches them, so the sum overstates a
little. PSS shares them fairly and is printed beside it. Target: ≤ 25 MB RSS per extra pipeline.

    .venv/bin/python benchmarks/bench_serving_memory.py [--pipelines 8] [--fps 2] [--settle 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record
from _serving_common import instance_plugin, make_node, print_json, print_table, tree_memory, wait_until

ENGINE = "PP_OCR_DETECTOR"


def add(node: Any, name: str, fps: float) -> None:
    node.add_pipeline({
        "NAME": name, "TYPE": "SYNTHETIC", "WIDTH": 640, "HEIGHT": 480, "CAP_RESOLUTION": fps,
        "PLUGINS": [{"SIGNATURE": "BENCH_INFER", "INSTANCES": [
            {"INSTANCE_ID": "count", "ENGINE": ENGINE, "AI_ENGINE": ENGINE}]}],
    }, source="benchmark")  # fmt: skip


def settle(node: Any, names: list[str], seconds: float) -> dict[str, float]:
    """Wait until every pipeline has results, let it run ``seconds``, then measure."""
    wait_until(lambda: all((p := instance_plugin(node, n)) is not None and p.seen > 2 for n in names), 60, "results")
    time.sleep(seconds)
    for name in names:
        plugin = instance_plugin(node, name)
        if plugin.failed or plugin.missing:
            raise RuntimeError(f"{name}: {plugin.failed} ServingErrors, {plugin.missing} missing results")
    return tree_memory(os.getpid())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pipelines", type=int, default=8, help="pipelines of the second measurement")
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second of each pipeline")
    parser.add_argument("--settle", type=float, default=4.0, help="seconds each state runs before measuring")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        node = make_node(Path(tmp))
        try:
            time.sleep(1.0)
            idle = tree_memory(os.getpid())
            add(node, "p0", args.fps)
            one = settle(node, ["p0"], args.settle)
            names = [f"p{i}" for i in range(args.pipelines)]
            for name in names[1:]:
                add(node, name, args.fps)
            many = settle(node, names, args.settle)
            (server,) = node.serving.servers()
            workers = server.settings.workers
        finally:
            node.stop("benchmark done")
    extra = args.pipelines - 1
    per_rss = (many["rss_mb"] - one["rss_mb"]) / extra
    per_pss = (many["pss_mb"] - one["pss_mb"]) / extra
    rows = [
        ["idle node", idle["processes"], idle["rss_mb"], idle["pss_mb"]],
        ["1 pipeline", one["processes"], one["rss_mb"], one["pss_mb"]],
        [f"{args.pipelines} pipelines", many["processes"], many["rss_mb"], many["pss_mb"]],
        ["per extra pipeline", "", per_rss, per_pss],
    ]
    print_table(
        f"memory: {ENGINE} shared by every pipeline ({workers} server process(es)), 640x480 at {args.fps:g} fps:",
        ["state", "processes", "RSS MB (sum)", "PSS MB (sum)"],
        rows,
    )
    print(f"RSS MB per process (node first): 1 pipeline {one['rss_each_mb']}, {args.pipelines}: {many['rss_each_mb']}")
    print(f"per extra pipeline: {per_rss:.1f} MB RSS (target ≤ 25), {per_pss:.1f} MB PSS")
    record(f"RSS per extra pipeline sharing {ENGINE}", round(per_rss, 1), "MB", goal="≤ 25")
    record(f"PSS per extra pipeline sharing {ENGINE}", round(per_pss, 1), "MB")
    print_json("serving_memory", {
        "model": ENGINE, "workers": workers, "idle": idle, "one": one, "many": many, "pipelines": args.pipelines,
        "per_extra_pipeline_rss_mb": round(per_rss, 2), "per_extra_pipeline_pss_mb": round(per_pss, 2),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
