"""Cost of the network monitor: decoding and checking heartbeats, and building NET_MON_01's CURRENT_NETWORK.

Every node decodes every heartbeat on its broker; this measures, per heartbeat, the first sight of a node (signature
checked) and a repeat within ``EE_NETMON_VERIFY_SECONDS`` (decoded only), with real signed v2 heartbeats of
``--nodes`` distinct keys, then the time and size of one CURRENT_NETWORK for all of them.

    .venv/bin/python benchmarks/bench_netmon.py [--nodes 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import time

import coincurve
from _results import record

from edge_engine.comms.heartbeat import build_heartbeat
from edge_engine.comms.network import NetworkTracker
from edge_engine.comms.signing import sign_to_json, verify
from edge_engine.local.identity import identity_from_private_key


def heartbeats(count: int) -> list[bytes]:
    """Signed v2 heartbeats of ``count`` different nodes, as they arrive on the wire."""
    result = []
    for i in range(count):
        identity = identity_from_private_key(coincurve.PrivateKey())
        alias = f"node-{i}"
        snapshot = {"address": identity.address, "alias": alias, "info": {"whitelist": []}, "pipelines": [],
                    "cache_dir": "."}  # fmt: skip
        body = build_heartbeat(snapshot, [], True, False, {"interval": 10})
        body.update({"EE_ID": alias, "EE_ADDR": identity.address, "EE_EVENT_TYPE": "HEARTBEAT",
                     "EE_PAYLOAD_PATH": [alias, None, None, None]})  # fmt: skip
        result.append(sign_to_json(body, identity).encode("utf-8"))
    return result


def per_heartbeat_us(messages: list[bytes], verify_seconds: float, rounds: int) -> float:
    tracker = NetworkTracker("0xai_self", verify, verify_seconds=verify_seconds, max_nodes=len(messages) + 1)
    for message in messages:
        tracker.observe_raw(message)
    started = time.perf_counter()
    for _ in range(rounds):
        for message in messages:
            tracker.observe_raw(message)
    return (time.perf_counter() - started) / (rounds * len(messages)) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200, help="distinct nodes (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="heartbeats per node measured (default 5)")
    args = parser.parse_args(argv)
    messages = heartbeats(args.nodes)
    print(f"{args.nodes} nodes, heartbeat {len(messages[0])} bytes on the wire")
    checked = per_heartbeat_us(messages, 0.0, args.rounds)
    cached = per_heartbeat_us(messages, 3600.0, args.rounds)
    print(f"  heartbeat, signature checked        {checked:7.0f} µs")
    print(f"  heartbeat, within the verify window {cached:7.0f} µs")
    rate = 100.0  # 1000 nodes at one heartbeat every 10 s, one in three checked (EE_NETMON_VERIFY_SECONDS=30)
    share = rate * (cached * 2 / 3 + checked / 3) / 1e4  # µs per second → % of a core
    print(f"  1000 nodes every 10 s (verify every 30 s): ~{share:.2f} % of a core")
    record("heartbeat decoded and signature checked", round(checked), "µs")
    record("heartbeat decoded, within the verify window", round(cached), "µs")
    tracker = NetworkTracker("0xai_self", verify, max_nodes=args.nodes + 1)
    for message in messages:
        tracker.observe_raw(message)
    started = time.perf_counter()
    network = tracker.current_network()
    text = json.dumps(network)
    elapsed = (time.perf_counter() - started) * 1000
    print(f"  CURRENT_NETWORK of {len(network)} nodes: {elapsed:.1f} ms, {len(text) / 1024:.0f} KB of JSON")
    record(f"CURRENT_NETWORK of {len(network)} nodes built", round(elapsed, 1), "ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
