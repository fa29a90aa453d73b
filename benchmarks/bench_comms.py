"""Comms budgets against a real Mosquitto: signed payloads per second, frame → broker latency, launch → heartbeat.

(a) **throughput**: an in-process node (comms on a private Mosquitto) gets ``--messages`` synthetic payloads
    through its real publish path (``CommsService.accept_payload``: sequence number, envelope and canonical JSON,
    appended to the durable outbox on disk before it returns → publisher thread: hash + ECDSA signature, paho
    publish, removal at the PUBACK), at QoS 1 and QoS 0; the same with the in-memory outbox (``EE_OUTBOX_MAX_MB=0``) as
    the baseline of the durable one, and the producer's cost per payload. A separate subscriber process counts
    arrivals. In the same run, a bare paho client publishes the same pre-serialised bytes (baseline). The three
    alternate ``--rounds`` times per QoS (order rotated each round); medians, and the median of the per-round
    ratios node/bare (goal ≥ 0.9). Also the split of the encode step (µs/message: envelope, canonical JSON,
    hash + ECDSA) and of paho's ``publish()`` call. Target ≥ 10,000/s.
(b) **latency**: a SYNTHETIC pipeline at ``--fps`` frames/s into a plugin that emits one payload per frame
    carrying the frame's capture time; the subscriber computes arrival − capture (p50/p99, ms).
(c) **launch → first heartbeat**: ``python device.py`` (``EE_DEMO=0``, fresh cache: a first start) ``--runs``
    times; the time from launch until its first heartbeat reaches the broker.

    .venv/bin/python benchmarks/bench_comms.py [--messages 20000] [--rounds 3] [--fps 50] [--seconds 10] [--runs 5]
        [--check]

Needs the ``mosquitto`` binary (``apt-get install mosquitto``); uses ``mosquitto_sub`` as the subscriber when
it is installed (``mosquitto-clients``), else a Python subscriber process. Never touches port 1883.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests"))
from _broker import start_mosquitto as start_broker  # noqa: E402
from _results import record  # noqa: E402
from plugins_src import payload_plugin  # noqa: E402

TARGET_RATE = 10_000
RATIO_GOAL = 0.9  # the node's rate against bare paho's, same run (issue 19 item 7)
LAUNCH_BUDGET_MS = 1000.0
TOPIC = "naeural/payloads"

STAMP_PLUGIN = payload_plugin("BenchStamp", "BENCH_STAMP", '{"CAPTURED": inp.timestamp, "FRAME": inp.seq}')

PY_SUBSCRIBER = """
import sys, time
import paho.mqtt.client as mqtt
port, topic, qos, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
keep = sys.argv[5] == "1"
out, n = [], 0
done = False
def on_message(c, u, m):
    global n, done
    n += 1
    out.append(f"{time.time():.6f}" + (" " + m.payload.decode() if keep else ""))
    if count and n >= count:
        done = True
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.on_connect = lambda c, *a: c.subscribe(topic, qos)
c.on_subscribe = lambda *a: print("ready", flush=True)
c.on_message = on_message
c.connect("127.0.0.1", port)
while not done:
    c.loop(0.1)
sys.stdout.write("\\n".join(out) + "\\n")
"""


# --- helpers ---------------------------------------------------------------------------------------------------
def start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    return start_broker(folder, "max_inflight_messages 0\nmax_queued_messages 1000000\n")


class Subscriber:
    """A subscriber process that prints one line per message: arrival time (and the payload if asked)."""

    def __init__(self, port: int, topic: str, qos: int, count: int, keep_payload: bool = False):
        self.count = count
        sub = shutil.which("mosquitto_sub")
        if sub:
            fmt = "%U %p" if keep_payload else "%U"
            cmd = [
                sub,
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-t",
                topic,
                "-q",
                str(qos),
                "-C",
                str(count),
                "-F",
                fmt,
                "--quiet",
            ]
            self.kind = "mosquitto_sub"
        else:
            cmd = [
                sys.executable,
                "-c",
                PY_SUBSCRIBER,
                str(port),
                topic,
                str(qos),
                str(count),
                "1" if keep_payload else "0",
            ]
            self.kind = "python"
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, stdout=self.out if sub else subprocess.PIPE, stderr=subprocess.DEVNULL)
        if sub:
            self._wait_subscribed(port, topic)
        else:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()  # "ready"
            assert line.strip() == b"ready", line

    def _wait_subscribed(self, port: int, topic: str) -> None:
        """mosquitto_sub does not say when it has subscribed: a fixed settle (it takes a few ms on loopback)."""
        time.sleep(0.3)

    def lines(self, timeout: float) -> list[str]:
        try:
            if self.kind == "python":
                data, _ = self.proc.communicate(timeout=timeout)
            else:
                self.proc.wait(timeout)
                self.out.seek(0)
                data = self.out.read()
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            if self.kind == "python":
                data = b""
            else:
                self.out.seek(0)
                data = self.out.read()
        return [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def arrival(line: str) -> float:
    """Arrival time of a subscriber line (``%U`` prints seconds.nanoseconds)."""
    return float(line.split(" ", 1)[0])


def make_node(
    base: Path, port: int, pipelines: list[dict[str, Any]] | None = None, qos: int = 1, outbox_mb: str = "256"
) -> Any:
    """An in-process node with comms on ``port``, heartbeats rare, plugin ``BENCH_STAMP`` available."""
    import edge_engine.comms.comms_settings as comms_settings
    from edge_engine.config.node_settings import load_settings
    from edge_engine.node.core import Node

    (base / "plugins" / "business").mkdir(parents=True, exist_ok=True)
    (base / "plugins" / "business" / "bench_stamp.py").write_text(STAMP_PLUGIN)
    config = {
        "PLUGIN_FOLDERS": [str(REPO / "extensions"), str(base / "plugins")],
        "DEMO_PIPELINE": False,
        "SECONDS_HEARTBEAT": 3600,
        "PIPELINES": pipelines or [],
    }
    (base / ".config_startup.json").write_text(json.dumps(config))
    env = {
        "EE_LOAD_ENTRY_POINTS": "0",
        "EE_COMMS": "1",
        "EE_MQTT_HOST": "127.0.0.1",
        "EE_MQTT_PORT": str(port),
        "EE_LOG_LEVEL": "WARNING",
        "EE_STATUS_PORT": "0",
        "EE_OUTBOX_MAX_MB": outbox_mb,  # 0: the in-memory outbox (the baseline of the durable one)
    }
    original = comms_settings.load_comms_settings

    def with_qos(*args: Any, **kwargs: Any) -> Any:
        settings, issues = original(*args, **kwargs)
        settings.payload_qos = qos
        return settings, issues

    comms_settings.load_comms_settings = with_qos
    try:
        node = Node(load_settings(base, base / "_local_cache", env))
        node.start()
    finally:
        comms_settings.load_comms_settings = original
    deadline = time.monotonic() + 10
    while not node.comms.transport.connected.is_set():
        if time.monotonic() > deadline:
            raise RuntimeError("the node did not connect to the broker")
        time.sleep(0.01)
    return node


def synthetic_payloads(alias: str, n: int) -> list[Any]:
    """Payloads like a detector's: a few numbers, a label, a small list (about 600 bytes once signed)."""
    from edge_engine.messages import Payload

    now = time.time()
    return [
        Payload(
            path=[alias, "bench", "BENCH_STAMP", "b"],
            seq=i + 1,
            created=now,
            input_seq=i + 1,
            data={
                "count": i % 7,
                "score": 0.5 + (i % 100) / 1000,
                "label": "person",
                "box": [10, 20, 110 + i % 50, 220],
                "is_alert": False,
            },
        )
        for i in range(n)
    ]


# --- (a) throughput ---------------------------------------------------------------------------------------------
def encode_split(node: Any, payloads: list[Any]) -> dict[str, float]:
    """µs/message of each encode step, done step by step over all payloads (as ``CommsService.encode`` does)."""
    from edge_engine.comms import service as svc
    from edge_engine.comms import signing
    from edge_engine.comms.envelope import EVENT_PAYLOAD

    comms = node.comms
    n = len(payloads)
    t0 = time.perf_counter()
    bodies = []
    for p in payloads:
        body = svc.payload_body(p)
        comms.envelope.wrap(body, EVENT_PAYLOAD, list(p.path), p.seq, p.created)
        bodies.append(body)
    t1 = time.perf_counter()
    for body in bodies:
        body[signing.SIGN_CANON_V] = signing.CANON_V2
        signing.canonical_json(body)
    t2 = time.perf_counter()
    for body in bodies:
        signing.sign_to_json(body, comms.identity)
    t3 = time.perf_counter()
    items = [svc.OutboxItem("payloads", {}, list(p.path), seq=p.seq, created=p.created, source=p) for p in payloads]
    t4 = time.perf_counter()
    for item in items:
        comms.encode(item)
    t5 = time.perf_counter()
    texts = [comms.text_to_sign(item) for item in items]  # what the producer does with the durable outbox
    t6 = time.perf_counter()
    for text in texts:
        comms.seal(text)  # and what the publisher does to it
    t7 = time.perf_counter()
    canonical = (t2 - t1) / n * 1e6
    return {
        "envelope": (t1 - t0) / n * 1e6,
        "json": canonical,
        "sign": (t3 - t2) / n * 1e6 - canonical,
        "encode": (t5 - t4) / n * 1e6,
        "text_to_sign": (t6 - t5) / n * 1e6,
        "seal": (t7 - t6) / n * 1e6,
    }


def _producer(comms: Any) -> Callable[[Any], Any]:
    """The comms entry point a producer's payload goes through (``accept_payload``; ``edge_payload`` before the
    node's message flow called it directly)."""
    return getattr(comms, "accept_payload", None) or comms.edge_payload


def run_node_publish(node: Any, port: int, qos: int, n: int) -> dict[str, float]:
    """Payloads through the node's outbox; rate measured from the first put to the last arrival."""
    comms = node.comms
    if hasattr(comms.outbox, "max_items"):
        comms.outbox.max_items = n + 1000  # all of them fit: the bench measures the publish path, not the drops
    payloads = synthetic_payloads(node.alias, n)
    accept = _producer(comms)
    sub = Subscriber(port, TOPIC, qos, n)
    published_before = comms.counters["published"]
    try:
        start = time.time()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for payload in payloads:
            accept(payload)
        put_us = (time.perf_counter() - t0) / n * 1e6
        lines = sub.lines(timeout=120)
        while comms.counters["published"] - published_before < n and time.time() - start < 120:
            time.sleep(0.01)
        cpu = time.process_time() - cpu0
    finally:
        sub.stop()
    got = len(lines)
    end = arrival(lines[-1]) if lines else time.time()
    rate = got / (end - start)
    return {"received": got, "seconds": end - start, "rate": rate, "cpu_us": cpu / n * 1e6, "put_us": put_us}


def run_bare_paho(port: int, qos: int, blobs: list[bytes]) -> dict[str, float]:
    """The same bytes published by a bare paho client (the paho options of the node's transport)."""
    import paho.mqtt.client as mqtt

    from edge_engine.comms.mqtt_transport import PAHO_MAX_INFLIGHT, PAHO_MAX_QUEUED

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", clean_session=True)
    client.max_queued_messages_set(PAHO_MAX_QUEUED)
    client.max_inflight_messages_set(PAHO_MAX_INFLIGHT)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(5)
    n = len(blobs)
    sub = Subscriber(port, TOPIC, qos, n)
    try:
        start = time.time()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for blob in blobs:
            client.publish(TOPIC, blob, qos=qos)
        publish_us = (time.perf_counter() - t0) / n * 1e6
        lines = sub.lines(timeout=120)
        cpu = time.process_time() - cpu0
    finally:
        sub.stop()
        client.loop_stop()
        client.disconnect()
    got = len(lines)
    end = arrival(lines[-1]) if lines else time.time()
    return {"received": got, "seconds": end - start, "rate": got / (end - start), "publish_us": publish_us,
            "cpu_us": cpu / n * 1e6}  # fmt: skip


def load_text() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def one_node_run(base: Path, port: int, qos: int, n: int, kind: str) -> dict[str, float]:
    """A fresh node (``kind`` ``node``: the durable outbox; ``memory``: the in-memory one) through one run."""
    node = make_node(base, port, qos=qos, outbox_mb="0" if kind == "memory" else "256")
    try:
        return run_node_publish(node, port, qos, n)
    finally:
        node.stop()


def medians(runs: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in keys}


def bench_throughput(port: int, n: int, work: Path, rounds: int = 3) -> bool:
    """``rounds`` interleaved rounds per QoS (node with the durable outbox, node with the memory outbox, bare
    paho; the order rotates each round); medians and the per-round ratio node/bare."""
    from edge_engine.comms.outbox import OutboxItem

    print(f"(a) signed payloads → Mosquitto, {n} messages per run, {rounds} interleaved round(s) per QoS")
    ok = True
    for qos in (1, 0):
        runs: dict[str, list[dict[str, float]]] = {"node": [], "memory": [], "bare": []}
        ratios: list[float] = []
        loads: list[float] = []
        node = make_node(work / f"node-qos{qos}", port, qos=qos)
        try:
            split = encode_split(node, synthetic_payloads(node.alias, min(n, 5000)))
            items = [
                OutboxItem("payloads", {}, list(p.path), created=p.created, source=p)
                for p in synthetic_payloads(node.alias, n)
            ]
            blobs = [node.comms.encode(item) for item in items]  # the bare baseline's bytes
            size = statistics.mean(len(b) for b in blobs)
        finally:
            node.stop()
        for round_no in range(rounds):
            loads.append(os.getloadavg()[0])
            order = ["node", "memory", "bare"]
            order = order[round_no % 3 :] + order[: round_no % 3]
            result = {}
            for name in order:
                if name == "bare":
                    result[name] = run_bare_paho(port, qos, blobs)
                else:
                    result[name] = one_node_run(work / f"node-qos{qos}-{round_no}-{name}", port, qos, n, name)
                runs[name].append(result[name])
            ratios.append(result["node"]["rate"] / result["bare"]["rate"])
            print(
                f"  QoS {qos} round {round_no + 1}: node {result['node']['rate']:.0f}/s, memory outbox "
                f"{result['memory']['rate']:.0f}/s, bare paho {result['bare']['rate']:.0f}/s, ratio node/bare "
                f"{ratios[-1]:.2f} (load {loads[-1]:.1f})"
            )
        loads.append(os.getloadavg()[0])

        engine = medians(runs["node"], ("rate", "cpu_us", "put_us", "seconds"))
        memory_med = medians(runs["memory"], ("rate", "cpu_us", "put_us"))
        bare = medians(runs["bare"], ("rate", "cpu_us", "publish_us"))
        ratio = statistics.median(ratios)
        received = min(r["received"] for r in runs["node"])
        verdict = "OK" if engine["rate"] >= TARGET_RATE and received == n else "BELOW TARGET"
        ok = ok and verdict == "OK"
        load_range = f"load {min(loads):.1f}-{max(loads):.1f}"
        print(f"  QoS {qos}: message {size:.0f} bytes, medians of {rounds} round(s), {load_range}")
        print(
            f"    node publish path   {received:>6} received  {engine['seconds']:6.2f} s  "
            f"{engine['rate']:8.0f} msg/s   (node process CPU {engine['cpu_us']:.0f} µs/msg)   "
            f"target ≥ {TARGET_RATE}  {verdict}"
        )
        print(
            f"    memory outbox                                  "
            f"{memory_med['rate']:8.0f} msg/s   (node process CPU {memory_med['cpu_us']:.0f} µs/msg)   "
            f"(EE_OUTBOX_MAX_MB=0; durable/memory {engine['rate'] / memory_med['rate']:.2f})"
        )
        print(
            f"    producer cost of accept_payload(): durable outbox {engine['put_us']:.1f} µs, "
            f"memory outbox {memory_med['put_us']:.1f} µs"
        )
        print(
            f"    bare paho baseline                             "
            f"{bare['rate']:8.0f} msg/s   (process CPU {bare['cpu_us']:.0f} µs/msg; same bytes)"
        )
        print(
            f"    ratio node/bare: median {ratio:.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})   "
            f"goal ≥ {RATIO_GOAL}  {'OK' if ratio >= RATIO_GOAL else 'BELOW'}"
        )
        print(
            f"    split µs/msg: envelope {split['envelope']:.1f} | canonical JSON (= the wire text) "
            f"{split['json']:.1f} | hash + ECDSA + signature fields {split['sign']:.1f} || encode() "
            f"{split['encode']:.1f} | paho publish() {bare['publish_us']:.1f}"
        )
        print(
            f"    durable outbox: producer's text_to_sign() {split['text_to_sign']:.1f} | publisher's seal() "
            f"{split['seal']:.1f} µs/msg"
        )
        note = f"{rounds} interleaved rounds, {load_range}"
        record(f"node publish path, QoS {qos}", round(engine["rate"]), "msg/s", goal=f"≥ {TARGET_RATE}",
               samples=[round(r["rate"]) for r in runs["node"]], baseline=round(bare["rate"]),
               baseline_name="bare paho, same bytes", note=note)  # fmt: skip
        record(f"node/bare paho ratio, QoS {qos}", round(ratio, 2), "×", goal=f"≥ {RATIO_GOAL}",
               samples=[round(r, 2) for r in ratios], note=note)  # fmt: skip
        record(f"node CPU per message, QoS {qos}", round(engine["cpu_us"]), "µs",
               samples=[round(r["cpu_us"]) for r in runs["node"]], baseline=round(bare["cpu_us"]),
               baseline_name="bare paho process CPU", note=note)  # fmt: skip
    return ok


# --- (b) latency ------------------------------------------------------------------------------------------------
def bench_latency(port: int, fps: int, seconds: float, work: Path) -> bool:
    count = int(fps * seconds)
    print(f"(b) frame → broker latency: SYNTHETIC at {fps} fps for {seconds:.0f} s, one payload per frame, QoS 1")
    pipeline = {
        "NAME": "lat",
        "TYPE": "SYNTHETIC",
        "MODE": "moving_box",
        "WIDTH": 320,
        "HEIGHT": 240,
        "CAP_RESOLUTION": fps,
        "PLUGINS": [{"SIGNATURE": "BENCH_STAMP", "INSTANCES": [{"INSTANCE_ID": "s"}]}],
    }
    sub = Subscriber(port, TOPIC, 1, count, keep_payload=True)
    node = make_node(work / "node-latency", port, pipelines=[pipeline])
    try:
        lines = sub.lines(timeout=seconds + 30)
    finally:
        sub.stop()
        node.stop()
    delays = []
    for line in lines:
        stamp, _, payload = line.partition(" ")
        message = json.loads(payload)
        delays.append((float(stamp) - message["CAPTURED"]) * 1000)
    delays = delays[fps:]  # the first second: the pipeline is warming up
    if not delays:
        print("  no payload arrived")
        return False
    q = statistics.quantiles(delays, n=100)
    p50, p99 = statistics.median(delays), q[98]
    print(
        f"  {len(delays)} frames (the first second left out): p50 {p50:.2f} ms   p99 {p99:.2f} ms   "
        f"max {max(delays):.2f} ms   (no budget: reported)"
    )
    record(f"frame → broker latency p50, {fps} fps", round(p50, 2), "ms")
    record(f"frame → broker latency p99, {fps} fps", round(p99, 2), "ms")
    return True


# --- (c) launch → first heartbeat -----------------------------------------------------------------------------------
def bench_launch(port: int, runs: int, work: Path) -> bool:
    import paho.mqtt.client as mqtt

    print(f"(c) launch → first heartbeat at the broker: python device.py, EE_DEMO=0, fresh cache, {runs} runs")
    beats: list[float] = []
    ready = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *_: c.subscribe("naeural/ctrl", 1)
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_message = lambda *_: beats.append(time.time())
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    ready.wait(5)
    times = []
    try:
        for run in range(runs):
            workdir = work / f"device-{run}"
            workdir.mkdir()
            for name in ("extensions", "plugins", "pipelines", "samples"):
                (workdir / name).symlink_to(REPO / name, target_is_directory=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")}
            env.update(
                {
                    "EE_CACHE_DIR": str(workdir / "cache"),
                    "EE_DEMO": "0",
                    "EE_COMMS": "1",
                    "EE_MQTT_HOST": "127.0.0.1",
                    "EE_MQTT_PORT": str(port),
                }
            )
            beats.clear()
            launched = time.time()
            proc = subprocess.Popen(
                [sys.executable, str(REPO / "device.py")],
                cwd=workdir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + 20
                while not beats and time.monotonic() < deadline:
                    time.sleep(0.002)
                if beats:
                    times.append((beats[0] - launched) * 1000)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    finally:
        sub.loop_stop()
        sub.disconnect()
    if not times:
        print("  no heartbeat arrived")
        return False
    median = statistics.median(times)
    verdict = "OK" if median <= LAUNCH_BUDGET_MS else "OVER"
    print(
        f"  median {median:.0f} ms  (runs: {', '.join(f'{t:.0f}' for t in times)})  "
        f"budget ≤ {LAUNCH_BUDGET_MS:.0f} ms  {verdict}"
    )
    record("launch → first heartbeat at the broker", round(median), "ms", goal=f"≤ {LAUNCH_BUDGET_MS:.0f}",
           samples=[round(t) for t in times])  # fmt: skip
    return verdict == "OK"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="payloads per throughput run (default 20000)")
    parser.add_argument("--fps", type=int, default=50, help="frame rate of the latency pipeline (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the latency run (default 10)")
    parser.add_argument("--runs", type=int, default=5, help="device.py launches for (c) (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per QoS for (a) (default 3)")
    parser.add_argument("--only", choices=("a", "b", "c"), action="append", help="run only these parts")
    parser.add_argument("--check", action="store_true", help="exit 1 when a budget is missed")
    args = parser.parse_args(argv)
    import platform

    import paho.mqtt

    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPU(s), paho-mqtt {paho.mqtt.__version__}, "
        f"load {load_text()}"
    )
    parts = set(args.only or ("a", "b", "c"))
    work = Path(tempfile.mkdtemp(prefix="bench_comms_"))
    broker, port = start_mosquitto(work)
    results: list[bool] = []
    try:
        steps: list[tuple[str, Callable[[], bool]]] = [
            ("a", lambda: bench_throughput(port, args.messages, work, max(1, args.rounds))),
            ("b", lambda: bench_latency(port, args.fps, args.seconds, work)),
            ("c", lambda: bench_launch(port, args.runs, work)),
        ]
        for key, step in steps:
            if key in parts:
                results.append(step())
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(work, ignore_errors=True)
    return 1 if args.check and not all(results) else 0


if __name__ == "__main__":
    sys.exit(main())
