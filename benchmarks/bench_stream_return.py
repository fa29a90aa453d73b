"""First frame after a live source returns (decision 32, issue 14 item 1): median of N outages, per server.

For each server kind (FFmpeg over TCP, GStreamer's RTSP server: ``tests/stream_servers.py``), an in-process
node (comms off) reads the stream with ``VIDEO_STREAM`` into a business plugin that notes the monotonic time of
each input. Then, N times: the server is killed (SIGKILL), stays away for ``--outage`` seconds, and is started
again on the same port. The figure is the time from the server *listening* again (its socket seen in LISTEN
state in ``/proc/net/tcp``, found without connecting) to the first frame reaching the plugin. Where the time
goes, from the capture's own record of the return (``stream.last_return`` in local_info.json):

- probe wait: listening → start of the connect() attempt that succeeded (probes are at most
  ``AWAY_PROBE_MAX_SECONDS`` apart, default 1 s, jittered);
- open: that ``cv2.VideoCapture`` open (FFmpeg connects and probes the stream; ``FFMPEG_OPTIONS``);
- first read + hand-off: open → the frame in the plugin.

Goal: first frame ≤ 3 s after the source is back (median and max). ``--check`` exits 1 when a median misses it.

    .venv/bin/python benchmarks/bench_stream_return.py                  # both servers, 10 outages of 3 s each
    .venv/bin/python benchmarks/bench_stream_return.py --kind rtsp --repeat 5 --outage 20
    .venv/bin/python benchmarks/bench_stream_return.py --ffmpeg-options ''   # OpenCV's own probing (5 s)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import _serving_common as serving_common  # noqa: E402
from _results import record  # noqa: E402
from stream_servers import SERVERS  # noqa: E402

from edge_engine.config.node_settings import load_settings  # noqa: E402
from edge_engine.constants import KIND_BUSINESS  # noqa: E402
from edge_engine.node.core import Node  # noqa: E402

GOAL_S = 3.0
POLL_SECONDS = 0.005  # how often a wait looks again: the return is timed by the plugin, this only adds latency
CLOCK_PLUGIN = '''
    """Benchmark plugin: the monotonic time at which each input reached it."""

    import time

    from edge_engine.api import BusinessPlugin


    class BenchFrameClock(BusinessPlugin):
        SIGNATURE = "BENCH_FRAME_CLOCK"
        CONFIG = {}
        times = []

        def process(self, inp):
            self.times.append(time.monotonic())
            del self.times[:-1000]
            return None
'''


def make_node(workdir: Path, url: str, capture: dict[str, Any]) -> Node:
    plugins = workdir / "plugins" / "business"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "bench_frame_clock.py").write_text(textwrap.dedent(CLOCK_PLUGIN), encoding="utf-8")
    pipeline = {"NAME": "cam", "TYPE": "VIDEO_STREAM", "URL": url, **capture,
                "PLUGINS": [{"SIGNATURE": "BENCH_FRAME_CLOCK", "INSTANCES": [{"INSTANCE_ID": "c"}]}]}  # fmt: skip
    config = {"PLUGIN_FOLDERS": [str(REPO / "extensions"), str(workdir / "plugins")], "DEMO_PIPELINE": False,
              "LOG_LEVEL": "ERROR", "SECONDS_LOCAL_INFO": 60, "PIPELINES": [pipeline]}  # fmt: skip
    (workdir / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
    env = {"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0", "EE_STATUS_PORT": "0"}
    node = Node(load_settings(workdir, workdir / "_local_cache", env))
    node.start()
    return node


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    return serving_common.wait_until(predicate, timeout, what, interval=POLL_SECONDS)


def one_return(node: Node, server: Any, outage: float) -> dict[str, float]:
    """Kill the server, keep it away ``outage`` s, start it again; where the time went until the first frame."""
    record = node.registry.get(KIND_BUSINESS, "BENCH_FRAME_CLOCK")
    assert record is not None
    clock = record.cls
    capture = node.pipelines["cam"].capture
    server.kill()
    killed = time.monotonic()
    wait_until(lambda: capture.status == "away", 15, "the capture to see the source away")
    time.sleep(max(0.0, killed + outage - time.monotonic()))
    back_at = server.start()
    first = wait_until(lambda: next((t for t in reversed(clock.times) if t > back_at), None), 30, "a frame")
    first = min(t for t in clock.times if t > back_at)
    wait_until(lambda: capture.presence.last_return is not None and not capture.presence.away, 5, "the return")
    timing = capture.last_connect  # when the successful connect() ended, and how long it took
    attempt_started = timing["connected"] - timing["connect_ms"] / 1000
    return {
        "first_frame_s": first - back_at,
        "probe_wait_s": attempt_started - back_at,
        "open_s": timing["connect_ms"] / 1000,
        "read_handoff_s": first - timing["connected"],
    }


def run_kind(kind: str, repeat: int, outage: float, workdir: Path, capture: dict[str, Any]) -> dict[str, Any]:
    from mqtt_broker import free_port

    server = SERVERS[kind](free_port(), workdir)
    server.start()
    node = make_node(workdir / f"node-{kind}", server.url, capture)
    try:
        record = node.registry.get(KIND_BUSINESS, "BENCH_FRAME_CLOCK")
        assert record is not None
        wait_until(lambda: len(record.cls.times) >= 5, 30, "the first frames")
        samples = [one_return(node, server, outage) for _ in range(repeat)]
        stream = node.pipelines["cam"].snapshot()["capture"]["stream"]
    finally:
        node.stop("benchmark done")
        server.kill()
    firsts = [s["first_frame_s"] for s in samples]
    return {
        "kind": kind,
        "repeat": repeat,
        "outage_s": outage,
        "first_frame_s": {"median": statistics.median(firsts), "min": min(firsts), "max": max(firsts)},
        "median_breakdown_s": {k: statistics.median(s[k] for s in samples) for k in samples[0] if k != "first_frame_s"},
        "samples": samples,
        "times_lost": stream["times_lost"],
        "times_back": stream["times_back"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(SERVERS), action="append", help="server kind (default: all)")
    parser.add_argument("--repeat", type=int, default=10, help="outages per server (median reported)")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds each outage lasts")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when a median is above {GOAL_S} s")
    parser.add_argument("--ffmpeg-options", help="VIDEO_STREAM FFMPEG_OPTIONS ('' = OpenCV's defaults: 5 s analysis)")
    parser.add_argument("--probe-max", type=float, help="AWAY_PROBE_MAX_SECONDS (default: the key's default, 1 s)")
    args = parser.parse_args(argv)
    capture: dict[str, Any] = {}
    if args.ffmpeg_options is not None:
        capture["FFMPEG_OPTIONS"] = args.ffmpeg_options
    if args.probe_max is not None:
        capture["AWAY_PROBE_MAX_SECONDS"] = args.probe_max
    kinds = args.kind or sorted(SERVERS)
    load = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_stream_return_") as tmp:
        for kind in kinds:
            results.append(run_kind(kind, args.repeat, args.outage, Path(tmp), capture))
    print(f"first frame after the source is back ({args.repeat} outages of {args.outage:g} s each; capture keys "
          f"{json.dumps(capture) if capture else 'default'}; "
          f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; goal <= {GOAL_S:g} s)")  # fmt: skip
    print(f"{'server':<11} {'median':>7} {'min':>6} {'max':>6} | median: {'probe wait':>10} {'open':>6} "
          f"{'read+handoff':>12} | lost/back")  # fmt: skip
    for r in results:
        f, b = r["first_frame_s"], r["median_breakdown_s"]
        print(f"{r['kind']:<11} {f['median']:7.2f} {f['min']:6.2f} {f['max']:6.2f} | {'':7} {b['probe_wait_s']:10.2f} "
              f"{b['open_s']:6.2f} {b['read_handoff_s']:12.3f} | {r['times_lost']}/{r['times_back']}")  # fmt: skip
    print(json.dumps({"benchmark": "stream_return", "goal_s": GOAL_S, "capture": capture, "results": results}))
    for r in results:
        f = r["first_frame_s"]
        record(f"first frame after a {r['kind']} source is back", f["median"], "s", goal=f"≤ {GOAL_S:g}",
               samples=[s["first_frame_s"] for s in r["samples"]],
               note=f"{args.repeat} outages of {args.outage:g} s")  # fmt: skip
    if args.check and any(r["first_frame_s"]["median"] > GOAL_S for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
