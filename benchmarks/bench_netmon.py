"""Cost of the network monitor, in-process: decoding and checking heartbeats, NET_MON_01, local_info's view.

Every node decodes every heartbeat on its broker; this measures, per heartbeat, a check of its signature and a repeat
within ``EE_NETMON_VERIFY_SECONDS`` (decoded only), with real signed v2 heartbeats of ``--nodes`` distinct keys (the
body a real node sends, as ``fleet_sim.py`` builds it); then, for the same view, one NET_MON_01 body (CURRENT_NETWORK
built and v2-encoded) and one ``network`` section of local_info.json (built and written as indented JSON). Each
figure is the median of ``--rounds`` rounds. From them, the share of a core a supervisor spends on 1,000 nodes
heartbeating every 10 s: 100 heartbeats a second (one in three checked: every 30 s), a NET_MON_01 every 3 s and
local_info.json every 5 s (the last two scaled to 1,000 nodes when ``--nodes`` differs). MQTT receive (paho's
thread) is not in it: ``bench_fleet.py`` measures the whole node process.

    .venv/bin/python benchmarks/bench_netmon.py [--nodes 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from _results import record
from fleet_sim import make_fleet

from edge_engine.comms.admin import encode_netmon_v2
from edge_engine.comms.network import LOCAL_INFO_NODES, NetworkTracker
from edge_engine.comms.signing import verify

FLEET = 1000  # the goal's fleet: 1,000 nodes...
INTERVAL = 10.0  # ...heartbeating every 10 s
VERIFY_EVERY = 3  # one heartbeat in three checked (EE_NETMON_VERIFY_SECONDS=30)
NETMON_SECONDS = 3.0
LOCAL_INFO_SECONDS = 5.0


def per_heartbeat_us(messages: list[bytes], verify_seconds: float) -> float:
    """Microseconds per heartbeat over one round of ``messages`` (every node already known)."""
    tracker = NetworkTracker("0xai_self", verify, verify_seconds=verify_seconds, max_nodes=len(messages) + 1)
    for message in messages:
        tracker.observe_raw(message)
    started = time.perf_counter()
    for message in messages:
        tracker.observe_raw(message)
    return (time.perf_counter() - started) / len(messages) * 1e6


def median_ms(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="distinct nodes (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, the median is kept (default 5)")
    args = parser.parse_args(argv)
    _, messages = make_fleet(args.nodes, "sim-", [])
    print(f"{args.nodes} nodes, heartbeat {len(messages[0])} bytes on the wire, medians of {args.rounds} rounds")
    checked_runs, cached_runs = [], []
    for _ in range(args.rounds):  # interleaved: both see the same load
        checked_runs.append(per_heartbeat_us(messages, 0.0))
        cached_runs.append(per_heartbeat_us(messages, 3600.0))
    checked, cached = statistics.median(checked_runs), statistics.median(cached_runs)
    print(f"  heartbeat, signature checked        {checked:7.0f} µs")
    print(f"  heartbeat, within the verify window {cached:7.0f} µs")

    tracker = NetworkTracker("0xai_self", verify, max_nodes=args.nodes + 1)
    for message in messages:
        tracker.observe_raw(message)
    network = tracker.current_network()
    netmon_ms = median_ms(lambda: encode_netmon_v2({"CURRENT_NETWORK": tracker.current_network()}), args.rounds)
    netmon_bytes = len(encode_netmon_v2({"CURRENT_NETWORK": network})["ENCODED_DATA"])
    info_ms = median_ms(lambda: json.dumps(tracker.snapshot(), indent=2, ensure_ascii=False, default=str), args.rounds)
    print(f"  NET_MON_01 body of {len(network)} nodes (built, v2)  {netmon_ms:6.1f} ms, {netmon_bytes / 1024:.0f} KB")
    print(f"  local_info.json network section (built, indented)    {info_ms:6.1f} ms")

    scale = FLEET / len(network)
    heartbeats_us = FLEET / INTERVAL * (checked + (VERIFY_EVERY - 1) * cached) / VERIFY_EVERY  # µs per second
    netmon_us = netmon_ms * 1000 * scale / NETMON_SECONDS
    info_scale = min(FLEET, LOCAL_INFO_NODES) / min(len(network), LOCAL_INFO_NODES)  # its rows are capped
    info_us = info_ms * 1000 * info_scale / LOCAL_INFO_SECONDS
    share = (heartbeats_us + netmon_us + info_us) / 1e4  # µs per second → % of a core
    parts = f"heartbeats {heartbeats_us / 1e4:.2f}, NET_MON_01 {netmon_us / 1e4:.2f}, local_info {info_us / 1e4:.2f}"
    print(f"  {FLEET} nodes every {INTERVAL:g} s: ~{share:.2f} % of a core ({parts}; paho's receive not included)")
    record("heartbeat decoded and signature checked", round(checked), "µs", samples=checked_runs)
    record("heartbeat decoded, within the verify window", round(cached), "µs", samples=cached_runs)
    record(f"NET_MON_01 body of {len(network)} nodes built (v2)", round(netmon_ms, 1), "ms")
    record(f"1000 nodes every 10 s, tracker in-process (% of a core; from {len(network)} nodes)", round(share, 2), "%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
