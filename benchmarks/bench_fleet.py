"""Fleet scale: a supervisor node on one Mosquitto with 1,000 and 5,000 simulated nodes heartbeating every 10 s.

For each fleet size: a Mosquitto on a free port, a supervisor node as a real process (``python device.py``,
``EE_SUPERVISOR=1``, no pipeline), then

1. the node's CPU (user + system of its process tree over ``--seconds``, ``--rounds`` windows, the median) with no
   fleet;
2. the fleet simulator (``benchmarks/fleet_sim.py``, its own process: signed v2 heartbeats of N keys, each node
   every ``--interval`` s, spread evenly); after one full round and a settle, the node's CPU again in ``--rounds``
   windows. The tracker's cost is the difference of the medians (receiving, decoding and checking heartbeats,
   building and publishing NET_MON_01, the larger local_info.json);
3. NET_MON_01 as it reaches the broker: its size on the wire (goal: within ``EE_MAX_MESSAGE_BYTES``, 1 MB) and how
   many of the simulated nodes it lists, decoded as the SDK decodes it (v2 ``ENCODED_DATA``);
4. unless ``--no-sdk``: Ratio1's SDK (its own venv, ``tests/sdk_env.py``) starts a ``Session`` on the same broker:
   seconds until it returns (goal ≤ 5 s) and whether it lists every simulated node as active.

The simulator must keep up for the figures to mean anything: its worst lateness per round is printed.

    .venv/bin/python benchmarks/bench_fleet.py [--nodes 1000 5000] [--seconds 30] [--rounds 3] [--interval 10]
        [--no-sdk] [--quick]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _broker import start_mosquitto
from _results import record
from bench_idle import Figures, NodeRun, prepare_node

REPO = Path(__file__).resolve().parent.parent
SIMULATOR = REPO / "benchmarks" / "fleet_sim.py"
HARNESS = REPO / "tests" / "sdk_scenarios" / "harness.py"
SDK_SCENARIO = REPO / "tests" / "sdk_scenarios" / "fleet_session.py"
GOAL_CPU_PCT_1000 = 5.0
GOAL_NETMON_BYTES = 1_000_000
GOAL_SESSION_SECONDS = 5.0
SETTLE_SECONDS = 5.0


class NetmonWatch:
    """Every NET_MON_01 reaching ``{root}/payloads``: wire size and the addresses its CURRENT_NETWORK lists."""

    def __init__(self, port: int, root: str = "naeural"):
        self.messages: list[tuple[float, int, set[str], str]] = []  # (time, bytes, addresses, NETMON_VERSION)
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-fleet-{time.time_ns()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.subscribe(f"{root}/payloads", 0)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if b"NET_MON_01" not in msg.payload:
            return
        message = json.loads(msg.payload)
        if (message.get("EE_PAYLOAD_PATH") or [None] * 4)[2] != "NET_MON_01":
            return
        version = str(message.get("NETMON_VERSION") or "v1")
        if version == "v2":
            message.update(json.loads(zlib.decompress(base64.b64decode(message["ENCODED_DATA"]))))
        network = message.get("CURRENT_NETWORK") or {}
        addresses = {entry.get("address") or key for key, entry in network.items()}
        with self._lock:
            self.messages.append((time.monotonic(), len(msg.payload), addresses, version))

    def since(self, start: float) -> list[tuple[float, int, set[str], str]]:
        with self._lock:
            return [m for m in self.messages if m[0] >= start]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Simulator:
    """The fleet simulator as a child process; its JSON event lines are collected on a thread."""

    def __init__(self, port: int, nodes: int, interval: float, addresses: Path, log: Path):
        self.events: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(SIMULATOR), "--port", str(port), "--nodes", str(nodes), "--interval", str(interval),
             "--addresses", str(addresses)],
            stdout=subprocess.PIPE, stderr=open(log, "wb"), cwd=REPO,  # noqa: SIM115 - the child keeps it
        )  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue

    def wait(self, event: str, count: int = 1, timeout: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events if e.get("event") == event]
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                raise RuntimeError(f"the simulator exited with {self.proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError(f"no {event!r} event from the simulator within {timeout} s")

    def rounds(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "round"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def node_cpu_pct(run: NodeRun, seconds: float) -> float:
    figures = Figures()
    run.sample(seconds, figures)
    assert figures.cpu_pct is not None
    return figures.cpu_pct


def node_cpu_windows(run: NodeRun, seconds: float, rounds: int) -> list[float]:
    """The node's CPU in ``rounds`` consecutive windows of ``seconds`` (% of a core each)."""
    return [round(node_cpu_pct(run, seconds), 2) for _ in range(max(1, rounds))]


def run_sdk(port: int, home: Path, addresses: Path) -> dict[str, Any]:
    """Ratio1's SDK in its own venv: a Session on this broker, then how many simulated nodes it lists."""
    sys.path.insert(0, str(REPO / "tests"))
    from sdk_env import sdk_python

    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1", "EE_MQTT_HOST": "127.0.0.1", "EE_MQTT_PORT": str(port), "EE_MQTT_USER": "bench",
           "EE_MQTT": "bench", "EE_MQTT_SECURED": "false", "FLEET_ADDRESSES": str(addresses), "LIST_TIMEOUT": "30",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": "127.0.0.1,localhost"}  # fmt: skip
    done = subprocess.run([str(sdk_python()), str(HARNESS), str(SDK_SCENARIO)], cwd=home, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    result: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line.split(" ", 1)[1])
        elif line.startswith("SDK_HARNESS "):
            sessions = json.loads(line.split(" ", 1)[1])["sessions"]
            result["harness_session_seconds"] = sessions[0]["seconds"] if sessions else None
    if not result:
        result["error"] = (done.stdout + done.stderr)[-2000:]
    return result


def scenario(nodes: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """All figures for one fleet size."""
    folder = root / f"fleet{nodes}"
    folder.mkdir()
    broker, port = start_mosquitto(folder, log=folder / "mosquitto.log")
    run = prepare_node(f"node{nodes}", folder, {"EE_DEMO": "0", "EE_COMMS": "1", "EE_MQTT_HOST": "127.0.0.1",
                                                "EE_MQTT_PORT": str(port), "EE_SUPERVISOR": "1",
                                                "EE_STATUS_PORT": "0"})  # fmt: skip
    watch = NetmonWatch(port)
    sim: Simulator | None = None
    figures: dict[str, Any] = {"nodes": nodes, "interval_s": args.interval, "window_s": args.seconds,
                               "rounds": args.rounds}  # fmt: skip
    try:
        run.start_and_time(timeout=120)
        time.sleep(SETTLE_SECONDS)
        figures["node_cpu_idle_windows"] = node_cpu_windows(run, args.seconds, args.rounds)
        figures["node_cpu_idle_pct"] = round(statistics.median(figures["node_cpu_idle_windows"]), 2)
        addresses = folder / "addresses.txt"
        sim = Simulator(port, nodes, args.interval, addresses, folder / "simulator.log")
        ready = sim.wait("ready")
        figures["sim_sign_seconds"] = ready["sign_seconds"]
        figures["heartbeat_bytes"] = ready["heartbeat_bytes"]
        sim.wait("round", 1, timeout=args.interval * 3 + 60)
        time.sleep(SETTLE_SECONDS)
        start = time.monotonic()
        figures["node_cpu_fleet_windows"] = node_cpu_windows(run, args.seconds, args.rounds)
        figures["node_cpu_fleet_pct"] = round(statistics.median(figures["node_cpu_fleet_windows"]), 2)
        figures["tracker_cpu_pct"] = round(figures["node_cpu_fleet_pct"] - figures["node_cpu_idle_pct"], 2)
        figures["tracker_cpu_windows"] = [round(w - figures["node_cpu_idle_pct"], 2)
                                          for w in figures["node_cpu_fleet_windows"]]  # fmt: skip
        figures["load_1min"] = round(os.getloadavg()[0], 1)
        expected = set(addresses.read_text(encoding="utf-8").split())
        seen = watch.since(start)
        if seen:
            figures["netmon_count"] = len(seen)
            figures["netmon_bytes_max"] = max(m[1] for m in seen)
            figures["netmon_version"] = seen[-1][3]
            figures["netmon_lists"] = len(expected & seen[-1][2])
        figures["sim_late_max_s"] = max((r["late_max_s"] for r in sim.rounds()[1:]), default=None)
        info = json.loads(run.info.read_text(encoding="utf-8"))
        network, admin = info.get("network", {}), info.get("admin_pipeline", {})
        figures["tracked"] = network.get("total")
        figures["tracker_counters"] = network.get("counters")
        figures["admin_counters"] = admin.get("counters")
        figures["outbox"] = (info.get("comms") or {}).get("outbox")
        if not args.no_sdk:
            figures["sdk"] = run_sdk(port, folder / "sdk-home", addresses)
    finally:
        if sim is not None:
            sim.stop()
        watch.close()
        run.stop()
        broker.terminate()
        broker.wait(10)
    return figures


def report(figures: dict[str, Any]) -> None:
    n = figures["nodes"]
    print(f"{n} simulated nodes, one heartbeat each every {figures['interval_s']:g} s "
          f"({figures.get('heartbeat_bytes')} bytes), {figures['rounds']} windows of {figures['window_s']:g} s, "
          f"load {figures.get('load_1min')} at the end")  # fmt: skip
    print(f"  simulator: {figures.get('sim_sign_seconds')} s to sign, worst lateness {figures.get('sim_late_max_s')} s")
    print(f"  node CPU without / with the fleet  {figures.get('node_cpu_idle_pct')} % / "
          f"{figures.get('node_cpu_fleet_pct')} % of a core (medians; windows {figures.get('node_cpu_idle_windows')}"
          f" / {figures.get('node_cpu_fleet_windows')})")  # fmt: skip
    goal = f"  (goal ≤ {GOAL_CPU_PCT_1000:g} % at 1,000)" if n <= 1000 else ""
    print(f"  tracker CPU                        {figures.get('tracker_cpu_pct')} % of a core{goal}")
    print(f"  NET_MON_01 on the wire             {figures.get('netmon_bytes_max')} bytes max "
          f"({figures.get('netmon_version')}; goal ≤ {GOAL_NETMON_BYTES:,}), lists {figures.get('netmon_lists')} "
          f"of {n}, {figures.get('netmon_count')} sent in the window")  # fmt: skip
    print(f"  tracked {figures.get('tracked')}; tracker {figures.get('tracker_counters')}")
    print(f"  admin {figures.get('admin_counters')}; outbox {figures.get('outbox')}")
    record(f"tracker CPU, {n} nodes every {figures['interval_s']:g} s", figures.get("tracker_cpu_pct"), "% of a core",
           goal=f"≤ {GOAL_CPU_PCT_1000:g}" if n <= 1000 else None, samples=figures.get("tracker_cpu_windows"),
           note=f"node {figures.get('node_cpu_fleet_pct')} % with the fleet, {figures.get('node_cpu_idle_pct')} % "
           "without")  # fmt: skip
    record(f"NET_MON_01 size, {n} nodes ({figures.get('netmon_version')})", figures.get("netmon_bytes_max"), "bytes",
           goal=f"≤ {GOAL_NETMON_BYTES:,}", note=f"lists {figures.get('netmon_lists')} of {n}")  # fmt: skip
    sdk = figures.get("sdk")
    if sdk is not None:
        record(f"SDK Session() start, {n} nodes", sdk.get("session_seconds"), "s", goal=f"≤ {GOAL_SESSION_SECONDS:g}",
               note=f"lists {sdk.get('listed')} of {sdk.get('expected')}")  # fmt: skip
        print(f"  SDK Session() {sdk.get('session_seconds')} s (goal ≤ {GOAL_SESSION_SECONDS:g}); lists "
              f"{sdk.get('listed')} of {sdk.get('expected')} after {sdk.get('all_listed_after')} s"
              + (f"; ERROR {sdk['error']}" if "error" in sdk else ""))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000], help="fleet sizes (1000 5000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="CPU window (default 30: one verify period)")
    parser.add_argument("--rounds", type=int, default=3, help="CPU windows with and without the fleet (median; 3)")
    parser.add_argument("--interval", type=float, default=10.0, help="heartbeat interval of each node (10 s)")
    parser.add_argument("--no-sdk", action="store_true", help="leave the SDK session out")
    parser.add_argument("--quick", action="store_true", help="200 and 1000 nodes, 15 s windows, no SDK")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.seconds, args.no_sdk = [200, 1000], 15.0, True
    load = os.getloadavg()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_fleet_") as tmp:
        for nodes in args.nodes:
            figures = scenario(nodes, args, Path(tmp))
            report(figures)
            results.append(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
