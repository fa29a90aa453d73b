"""Fleet scale at CI size: 200 simulated nodes on one broker, a supervisor and Ratio1's SDK on two bridged brokers.

Two real Mosquitto brokers, B bridged to A (``connection``/``address``/``topic`` lines in B's config, all of
``naeural/#`` both ways). On A: a supervisor node as a real process (``device.py``, ``EE_SUPERVISOR=1``) with the
SDK's key allowlisted. On B: the fleet simulator (``benchmarks/fleet_sim.py``, its own process: 200 keys, signed
v2 heartbeats every 2 s). So the supervisor hears the fleet across the bridge, and its NET_MON_01 must list every
simulated node within a size bound that keeps 5,000 nodes under the 1 MB message limit (v2 encoding). Then
Ratio1's SDK, on B, starts a session (≤ 5 s: the supervisor's NET_MON_01 comes across the bridge), lists every
simulated node, and deploys to (and closes on) the node on A, confirmed through the bridge.
The full-size figures (1,000 and 5,000 nodes, CPU) come from ``benchmarks/bench_fleet.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_for
from mqtt_broker import Mosquitto, require_binary
from node_runner import NodeRunner, base_env
from sdk_env import sdk_python

from edge_engine.cli.ops import main_add_allowed
from edge_engine.comms.admin import encode_netmon_v2
from edge_engine.comms.network import decode_encoded_data
from edge_engine.local.identity import load_or_create_identity

REPO = Path(__file__).resolve().parent.parent
SIMULATOR = REPO / "benchmarks" / "fleet_sim.py"
HARNESS = REPO / "tests" / "sdk_scenarios" / "harness.py"
SCENARIO = REPO / "tests" / "sdk_scenarios" / "fleet_session.py"
SDK_KEY = Path(".ratio1") / "_local_cache" / "_data" / "_pk.pem"
FLEET = int(os.environ.get("EE_TEST_FLEET_NODES", "200"))
BYTES_PER_NODE = 150  # v2 NET_MON_01 measured ~110 bytes a node: 5,000 nodes stay under 1 MB with this bound
SESSION_START_LIMIT = 5.0

pytestmark = pytest.mark.timeout(240)


class Netmon:
    """NET_MON_01 payloads on a broker, raw: (wire bytes, decoded message)."""

    def __init__(self, port: int):
        self.items: list[tuple[int, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"netmon-{time.time_ns()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("naeural/payloads", 0)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        message = json.loads(msg.payload)
        if (message.get("EE_PAYLOAD_PATH") or [None] * 4)[2] == "NET_MON_01":
            with self.lock:
                self.items.append((len(msg.payload), message))

    def latest(self) -> tuple[int, dict[str, Any]] | None:
        with self.lock:
            return self.items[-1] if self.items else None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Fleet:
    broker_a: Mosquitto
    broker_b: Mosquitto
    node: NodeRunner
    address: str
    addresses: Path
    fleet: set[str]
    sdk_home: Path
    sdk_address: str


def bridge(broker: Mosquitto, to: Mosquitto) -> None:
    """Make ``broker`` bridge every ``naeural/`` topic, both ways, to ``to`` (Mosquitto's bridge config lines)."""
    lines = f"\nconnection fleet-bridge\naddress 127.0.0.1:{to.port}\ntopic naeural/# both 1\ncleansession true\n"
    broker.config.write_text(broker.config.read_text(encoding="utf-8") + lines, encoding="utf-8")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    binary = require_binary()
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    broker_a = Mosquitto(binary, tmp / "a").start()
    broker_b = Mosquitto(binary, tmp / "b")
    bridge(broker_b, broker_a)
    broker_b.start()
    sdk_home = tmp / "sdk-home"
    sdk_address = load_or_create_identity(sdk_home / SDK_KEY).address
    cache = tmp / "node" / "cache"
    cache.mkdir(parents=True)
    assert main_add_allowed(["--cache-dir", str(cache), sdk_address, "fleet-app"]) == 0
    env = base_env(cache, EE_SUPERVISOR="1", EE_DEMO="0", EE_SECONDS_LOCAL_INFO="0.5", **broker_a.env)
    node = NodeRunner(tmp / "node", env, {"EE_ID": "fleet-sup"})
    node.start()
    addresses = tmp / "fleet.txt"
    sim = subprocess.Popen(
        [sys.executable, str(SIMULATOR), "--port", str(broker_b.port), "--nodes", str(FLEET), "--interval", "2",
         "--addresses", str(addresses)],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "sim.log", "wb"), cwd=REPO,  # noqa: SIM115 - the child's
    )  # fmt: skip
    try:
        info = node.wait_running(timeout=60)
        wait_for(lambda: addresses.exists() and len(addresses.read_text().split()) == FLEET, timeout=120)
        fleet_addresses = set(addresses.read_text(encoding="utf-8").split())
        yield Fleet(broker_a, broker_b, node, info["address"], addresses, fleet_addresses, sdk_home, sdk_address)
    finally:
        sim.terminate()
        sim.wait(10)
        if node.proc is not None and node.proc.poll() is None:
            node.stop()
        node.cleanup()
        broker_b.stop()
        broker_a.stop()


def test_netmon_v2_round_trip_and_what_stays_in_the_clear() -> None:
    body = {"CURRENT_NETWORK": {"0xai_a": {"address": "0xai_a", "working": "ONLINE"}}, "STATUS": "OK",
            "NETMON_VERSION": "v1", "SIGNATURE": "NET_MON_01", "STREAM_NAME": "admin_pipeline",
            "INSTANCE_ID": "NET_MON_01_INST", "EE_ID": "sup", "ID": 3}  # fmt: skip
    wire = encode_netmon_v2(body)
    assert wire["NETMON_VERSION"] == "v2" and "CURRENT_NETWORK" not in wire
    assert {k for k in wire if k != "ENCODED_DATA"} == {"NETMON_VERSION", "SIGNATURE", "STREAM_NAME", "INSTANCE_ID",
                                                         "EE_ID"}  # fmt: skip
    inner = decode_encoded_data(wire["ENCODED_DATA"])
    assert inner == {"CURRENT_NETWORK": body["CURRENT_NETWORK"], "STATUS": "OK", "ID": 3}


def test_supervisor_lists_every_simulated_node_across_the_bridge_within_the_size_bound(fleet: Fleet) -> None:
    watch = Netmon(fleet.broker_a.port)
    try:

        def lists_all() -> bool:
            latest = watch.latest()
            if latest is None:
                return False
            message = latest[1]
            network = decode_encoded_data(message["ENCODED_DATA"])["CURRENT_NETWORK"]
            return all(network.get(a, {}).get("working") == "ONLINE" for a in fleet.fleet)

        wait_for(lists_all, timeout=60, interval=0.2)
        size, message = watch.latest()  # type: ignore[misc]
    finally:
        watch.close()
    assert message["NETMON_VERSION"] == "v2" and message["EE_SENDER"] == fleet.address
    network = decode_encoded_data(message["ENCODED_DATA"])["CURRENT_NETWORK"]
    assert set(network) == fleet.fleet | {fleet.address}
    assert size <= 5_000 + BYTES_PER_NODE * len(network), f"{size} bytes for {len(network)} nodes"
    info = fleet.node.info()
    assert info is not None and info["network"]["counters"]["bad_signature"] == 0
    assert info["admin_pipeline"]["counters"]["queue_dropped"] == 0


def test_sdk_on_the_other_broker_lists_the_fleet_and_deploys_across_the_bridge(fleet: Fleet) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(fleet.sdk_home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "EE_MQTT_HOST": "127.0.0.1",
        "EE_MQTT_PORT": str(fleet.broker_b.port),  # the SDK is on B; the supervisor and the node are on A
        "EE_MQTT_USER": "fleet-app",
        "EE_MQTT": "secret",
        "EE_MQTT_SECURED": "false",
        "FLEET_ADDRESSES": str(fleet.addresses),
        "NODE_ADDRESS": fleet.address,
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    done = subprocess.run([str(sdk_python()), str(HARNESS), str(SCENARIO)], cwd=fleet.sdk_home, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("RESULT ", "SDK_HARNESS "))]
    assert done.returncode == 0 and len(lines) == 2, output[-6000:]
    result = json.loads(lines[0].split(" ", 1)[1])
    (session,) = json.loads(lines[1].split(" ", 1)[1])["sessions"]
    assert session["address"] == fleet.sdk_address
    assert session["seconds"] < SESSION_START_LIMIT, output[-3000:]
    assert "Timeout waiting for NET_MON_01" not in output
    assert result["listed"] == result["expected"] == FLEET, result
    assert result["node_online"] is True and result["deployed"] is True and result["closed"] is True, output[-4000:]
