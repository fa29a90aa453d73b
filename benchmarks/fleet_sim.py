"""A fleet of simulated nodes: signed Ratio1 v2 heartbeats of N keys on ``{root}/ctrl``, one process.

Used by ``benchmarks/bench_fleet.py`` (1,000 and 5,000 nodes) and ``tests/test_fleet.py`` (200 nodes). Each
simulated node has its own secp256k1 key; its heartbeat (the body a real node sends, from
:func:`~edge_engine.comms.heartbeat.build_heartbeat` with its own address, alias and allowlist, then the
envelope) is signed once at startup, so the simulator keeps up at thousands of nodes on a loaded machine. A
receiver checks signatures, not freshness, so a pre-signed heartbeat is what the tracker and the SDK would see of
a real node; the nodes look alive because heartbeats keep arriving. The heartbeats of one round are spread evenly
over ``--interval`` seconds, as independent nodes would send them.

Prints one JSON line per event on stdout: ``{"event": "ready", "nodes": N, "sign_seconds": ...,
"addresses_file": ...}`` once every heartbeat is signed (the addresses, one per line, go to ``--addresses``), then
``{"event": "round", "round": k, "sent": n, "late_max_s": ...}`` after each round (how far behind schedule the
simulator fell: it must stay well under the interval for the figures to mean anything).

    .venv/bin/python benchmarks/fleet_sim.py --port 18830 --nodes 1000 [--interval 10] [--whitelist 0xai_...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import coincurve
import paho.mqtt.client as mqtt

from edge_engine.comms.envelope import EnvelopeBuilder
from edge_engine.comms.heartbeat import build_heartbeat, decode_data, encode_data
from edge_engine.comms.signing import sign_to_json
from edge_engine.local.identity import Identity, identity_from_private_key


def template_body() -> dict[str, Any]:
    """A real node's heartbeat body (machine status included), built once and reused for every simulated node."""
    snapshot = {"address": "0xai_template", "alias": "template", "info": {"whitelist": []}, "pipelines": [],
                "cache_dir": ".", "uptime_seconds": 1.0, "uptime": "0:00:01"}  # fmt: skip
    return decode_data(build_heartbeat(snapshot, [], True, False, {"interval": 10})["ENCODED_DATA"])


def signed_heartbeat(identity: Identity, alias: str, template: dict[str, Any], whitelist: list[str]) -> bytes:
    """The wire bytes of one simulated node's signed v2 heartbeat."""
    body = {**template, "EE_ADDR": identity.address, "EE_ETH_ADDR": identity.eth_address, "EE_ID": alias,
            "EE_WHITELIST": whitelist}  # fmt: skip
    message = {"ENCODED_DATA": encode_data(body), "HEARTBEAT_VERSION": "v2", "NR_PAYLOADS": 0, "NR_INFERENCES": 0,
               "NR_STREAMS_DATA": 0}  # fmt: skip
    EnvelopeBuilder(alias, identity.address).wrap(message, "HEARTBEAT", [alias, None, None, None], 1)
    return sign_to_json(message, identity).encode("utf-8")


def make_fleet(count: int, prefix: str, whitelist: list[str]) -> tuple[list[str], list[bytes]]:
    """``count`` new keys and their signed heartbeats: (addresses, wire messages)."""
    template = template_body()
    addresses, messages = [], []
    for i in range(count):
        identity = identity_from_private_key(coincurve.PrivateKey())
        addresses.append(identity.address)
        messages.append(signed_heartbeat(identity, f"{prefix}{i:05d}", template, whitelist))
    return addresses, messages


def emit(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def connect(host: str, port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-sim-{time.time_ns()}")
    client.max_queued_messages_set(0)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    return client


def run(client: mqtt.Client, topic: str, messages: list[bytes], interval: float, rounds: int) -> None:
    """Publish every message once per ``interval``, evenly spread; ``rounds`` 0 means until killed."""
    step = interval / max(1, len(messages))
    start = time.monotonic()
    done = 0
    while rounds == 0 or done < rounds:
        late_max = 0.0
        round_start = start + done * interval
        for i, message in enumerate(messages):
            due = round_start + i * step
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late_max = max(late_max, -wait)
            client.publish(topic, message, qos=0)
        done += 1
        emit({"event": "round", "round": done, "sent": len(messages), "late_max_s": round(late_max, 3)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", default="naeural", help="root topic (EE_ROOT_TOPIC; default naeural)")
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a node's heartbeats")
    parser.add_argument("--rounds", type=int, default=0, help="rounds to send (0: until stopped)")
    parser.add_argument("--prefix", default="sim-", help="alias prefix (aliases are PREFIX00000...)")
    parser.add_argument("--whitelist", action="append", default=[], help="an address every node allowlists")
    parser.add_argument("--addresses", type=Path, help="write the simulated addresses here, one per line")
    args = parser.parse_args(argv)
    started = time.monotonic()
    addresses, messages = make_fleet(args.nodes, args.prefix, args.whitelist)
    if args.addresses is not None:
        args.addresses.write_text("\n".join(addresses) + "\n", encoding="utf-8")
    emit({"event": "ready", "nodes": len(addresses), "sign_seconds": round(time.monotonic() - started, 2),
          "heartbeat_bytes": len(messages[0]) if messages else 0})  # fmt: skip
    client = connect(args.host, args.port)
    try:
        run(client, f"{args.root}/ctrl", messages, args.interval, args.rounds)
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
