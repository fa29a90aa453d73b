"""``kill -9`` at random moments, then a restart: the same identity, allowlist, alias and pipelines, no torn file.

A real node process (``device.py``) with comms on a real Mosquitto (free port) is killed with SIGKILL (its
whole process group) at seeded random moments (``EE_TEST_CRASH_SEED``; ``EE_TEST_CRASH_ROUNDS`` rounds of
every scenario, 1 in CI): during its first start and later starts, in steady state with pipelines running,
right after an accepted deploy / live update / delete (the owner's client got the confirmation), while a
deploy is being applied (a random delay after it was sent), and right after ``add_allowed`` and
``change_alias``. After every kill: no JSON file (or JSON line) of the cache is torn, the cache's logical
state (:func:`cache_state.cache_state`) is what was confirmed before the kill, and the restarted node runs it:
same address, alias, allowlist, pipelines (none invalid), and a heartbeat.

The durable queues: with the broker and S3 both down, a node producing payloads with witness images (and
notifications) is killed ``EE_TEST_CRASH_QUEUE_KILLS`` times (3 per round) at seeded random moments. After every
kill the outbox and the upload queue read back whole (at most a torn tail, which a restart discards), nothing
queued before is gone, each run's payloads are numbered without a hole, and every queued payload's image is
queued. Restarted with both still down, the node reports exactly what is on disk; once they are back, every
message that was on disk reaches a subscriber (the same bytes; duplicates only identical) and every queued
object is in the bucket, uploaded once.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from cache_state import DRAINING, cache_state, outbox_torn, temp_files, torn_files
from mqtt_broker import Mosquitto
from node_runner import REPO, NodeRunner, base_env
from plugins_src import synthetic_pipeline
from s3_server import SeaweedS3

from edge_engine.cli.ops import main_add_allowed, main_change_alias
from edge_engine.comms.disk_outbox import LANES, DiskOutbox
from edge_engine.comms.sequence import BLOCK
from edge_engine.comms.signing import seal, verify
from edge_engine.constants import KEY_FILE, OUTBOX_DIR, UPLOADS_DIR
from edge_engine.local.identity import load_or_create_identity
from edge_engine.remote.node_client import EdgeClient, load_client_identity

SEED = int(os.environ.get("EE_TEST_CRASH_SEED", str(int(time.time()))))
ROUNDS = int(os.environ.get("EE_TEST_CRASH_ROUNDS", "1"))
QUEUE_KILLS = int(os.environ.get("EE_TEST_CRASH_QUEUE_KILLS", str(3 * ROUNDS)))  # kills with the broker and S3 down
pytestmark = pytest.mark.timeout(120 + 60 * ROUNDS)


def counter(name: str, rate: int = 20) -> dict[str, Any]:
    """A cheap pipeline: the tutorial counter source into the tutorial hello plugin."""
    instances = [{"INSTANCE_ID": "hello", "EVERY": 5}]
    return {"NAME": name, "TYPE": "TUTORIAL_COUNTER", "RATE": rate,
            "PLUGINS": [{"SIGNATURE": "TUTORIAL_HELLO", "INSTANCES": instances}]}  # fmt: skip


def stats(name: str) -> dict[str, Any]:
    instances = [{"INSTANCE_ID": "fs", "REPORT_EVERY": 10}]
    return synthetic_pipeline(name, "FRAME_STATS", *instances, CAP_RESOLUTION=30)


class Crasher:
    """One node that is killed and restarted, with the owner's client and the expected state."""

    def __init__(self, runner: NodeRunner, broker: Mosquitto, rng: random.Random, tmp: Path):
        self.runner = runner
        self.broker = broker
        self.rng = rng
        self.owner = load_client_identity(tmp / "owner.pem")
        self.client: EdgeClient | None = None
        self.expected: dict[str, Any] | None = None  # confirmed state; None until the first clean start
        self.kills = 0

    @property
    def cache(self) -> Path:
        return self.runner.cache

    def start(self) -> dict[str, Any]:
        self.runner.start()
        info = self.runner.wait_running(lambda i: bool((i.get("comms") or {}).get("connected")), timeout=30)
        if self.client is None:
            self.client = EdgeClient(self.owner, port=self.broker.port).connect()
        return info

    def kill(self, why: str) -> dict[str, Any]:
        """SIGKILL now; check that no file is torn; return the cache's logical state."""
        self.runner.kill()
        self.kills += 1
        torn = torn_files(self.cache)
        assert torn == [], f"after kill #{self.kills} ({why}): torn files {torn}"
        tails = outbox_torn(self.cache)
        assert all(n <= 1 for n in tails.values()), f"after kill #{self.kills} ({why}): outbox torn: {tails}"
        left = temp_files(self.cache)
        if left:
            print(f"kill #{self.kills} ({why}): temporary files left: {left}")
        return cache_state(self.cache)

    def restart_and_check(self, state: dict[str, Any], why: str) -> dict[str, Any]:
        """Restart; the node must run exactly the state found on disk after the kill (and the expected one)."""
        stable = [part for part in state if part not in DRAINING]
        if self.expected is not None:
            assert {p: state[p] for p in stable} == {p: self.expected[p] for p in stable}, (
                f"after kill #{self.kills} ({why}): state on disk differs from the confirmed"
            )
        info = self.start()
        assert info["address"] == state["address"], why
        assert info["alias"] == state["alias"], why
        assert sorted(info["info"]["whitelist"]) == sorted(a for a, _ in state["allowlist"]), why
        running = sorted(p["name"] for p in info["pipelines"] if p["name"] != "admin_pipeline")
        assert running == sorted(state["pipelines"]), (why, running, sorted(state["pipelines"]))
        assert info["invalid_pipelines"] == [], (why, info["invalid_pipelines"])
        now = cache_state(self.cache)
        assert {p: now[p] for p in stable} == {p: state[p] for p in stable}, f"the restart after {why} changed it"
        assert self.client is not None and self.runner.proc is not None
        pid = self.runner.proc.pid
        with self.client.listen(lambda r: r.channel == "heartbeats" and r.data.get("PID") == pid) as beats:
            beat = beats.get(10)
        assert beat is not None and beat.verified and beat.sender == state["address"], why
        assert beat.data["EE_ID"] == state["alias"], why
        output = self.runner.output()
        assert "Traceback" not in output, output[-4000:]
        self.expected = state
        return info

    def delay(self, low: float, high: float) -> float:
        seconds = self.rng.uniform(low, high)
        time.sleep(seconds)
        return seconds


@pytest.fixture
def crasher(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Crasher]:
    config = {"DEMO_PIPELINE": False, "PIPELINES": [counter("seeded")], "SECONDS_LOCAL_INFO": 0.2,
              "SECONDS_HEARTBEAT": 1, "EE_ID": "crash-1"}  # fmt: skip
    runner = NodeRunner(tmp_path / "work", base_env(tmp_path / "work" / "cache", **mosquitto.env), config)
    made = Crasher(runner, mosquitto, random.Random(SEED), tmp_path)
    try:
        yield made
    finally:
        if made.client is not None:
            made.client.close()
        runner.cleanup()


def test_kill9_at_random_moments_keeps_the_state(crasher: Crasher) -> None:
    print(f"\ncrash test seed {SEED} (EE_TEST_CRASH_SEED), {ROUNDS} round(s)")
    c = crasher

    # during the first start: whatever was written is whole, and the next start completes it
    c.runner.start()
    why = f"first start, after {c.delay(0.05, 0.6):.2f} s"
    state = c.kill(why)
    print(f"kill during the first start: key {'written' if state['address'] else 'not yet written'}")
    info = c.start()  # the state of a half-done first start is not confirmed: check it now, from the node
    assert info["alias"] == "crash-1" and [p["name"] for p in info["pipelines"] if p["name"] == "seeded"]
    if state["address"] is not None:
        assert info["address"] == state["address"], "a key written before the crash must be kept"
    c.expected = cache_state(c.cache)
    assert c.client is not None
    assert main_add_allowed(["--cache-dir", str(c.cache), c.owner.address, "owner"]) == 0
    c.expected = cache_state(c.cache)

    for round_ in range(ROUNDS):
        # during a later start
        c.runner.kill()
        c.runner.start()
        why = f"round {round_}: restart, after {c.delay(0.0, 0.8):.2f} s"
        c.restart_and_check(c.kill(why), why)

        # steady state, pipelines running
        why = f"round {round_}: steady state, after {c.delay(0.3, 1.5):.2f} s"
        c.restart_and_check(c.kill(why), why)

        # right after a confirmed deploy: the pipeline is there after the restart
        name = f"deployed-{round_}"
        result = c.client.deploy(c.runner.info()["address"], stats(name), timeout=20)
        assert result.ok, result.reason
        state = c.kill(f"round {round_}: right after deploying {name}")
        assert name in state["pipelines"] and state["pipelines"][name]["PLUGINS"] == stats(name)["PLUGINS"]
        c.expected = state
        c.restart_and_check(state, f"round {round_}: after deploy")

        # right after a confirmed live update
        address = c.runner.info()["address"]
        update = c.client.update_instance(address, name, "FRAME_STATS", "fs", {"REPORT_EVERY": 7}, timeout=20)
        assert update.ok, update.reason
        state = c.kill(f"round {round_}: right after updating {name}")
        assert state["pipelines"][name]["PLUGINS"][0]["INSTANCES"][0]["REPORT_EVERY"] == 7
        c.expected = state
        c.restart_and_check(state, f"round {round_}: after update")

        # while a deploy is being applied: after the restart it is there whole, or not at all
        racing = f"racing-{round_}"
        c.client.send(c.runner.info()["address"], "UPDATE_CONFIG", stats(racing))
        why = f"round {round_}: {c.delay(0.0, 0.05) * 1000:.0f} ms after sending deploy {racing}"
        state = c.kill(why)
        if racing in state["pipelines"]:
            assert state["pipelines"][racing]["PLUGINS"] == stats(racing)["PLUGINS"]
        print(f"{why}: {'applied' if racing in state['pipelines'] else 'not applied'} before the kill")
        c.expected = state
        c.restart_and_check(state, why)

        # right after a confirmed delete: it stays deleted
        deleted = c.client.delete(c.runner.info()["address"], name, timeout=20)
        assert deleted.ok, deleted.reason
        state = c.kill(f"round {round_}: right after deleting {name}")
        assert name not in state["pipelines"]
        c.expected = state
        c.restart_and_check(state, f"round {round_}: after delete")

        # right after add_allowed and change_alias (ops commands while the node runs)
        friend = load_client_identity(c.runner.workdir / f"friend{round_}.pem")
        assert main_add_allowed(["--cache-dir", str(c.cache), friend.address, f"friend{round_}"]) == 0
        alias = f"crash-{round_ + 2}"
        assert main_change_alias(["--cache-dir", str(c.cache), alias]) == 0
        state = c.kill(f"round {round_}: right after add_allowed and change_alias")
        assert (friend.address, f"friend{round_}") in state["allowlist"] and state["alias"] == alias
        c.expected = state
        c.restart_and_check(state, f"round {round_}: after add_allowed")

    print(f"{c.kills} kills, {len(c.runner.runs)} starts: state back every time")


def test_a_first_start_killed_before_seeding_seeds_at_the_next_start(tmp_path: Path) -> None:
    """The startup config reaches the cache before the pipelines are seeded: a crash in between must not lose them."""
    from edge_engine.config.node_settings import load_settings
    from edge_engine.node.core import Node

    base = tmp_path / "node"
    base.mkdir()
    config = {"DEMO_PIPELINE": False, "PIPELINES": [counter("seeded")], "PLUGIN_FOLDERS": [str(REPO / "plugins")]}
    (base / ".config_startup.json").write_text(json.dumps(config))
    env = {"EE_COMMS": "0", "EE_STATUS_PORT": "0", "EE_LOAD_ENTRY_POINTS": "0"}
    crashed = load_settings(base, base / "cache", env)  # the first start writes the cached startup config...
    assert crashed.first_start and (base / "cache" / "config_startup.json").exists()
    # ... and dies here, before Node.start() seeds the pipelines
    again = load_settings(base, base / "cache", env)
    assert again.first_start, "the interrupted first start must be completed"
    node = Node(again)
    node.start()
    try:
        assert "seeded" in node.pipeline_names()
    finally:
        node.stop("test")
    assert not load_settings(base, base / "cache", env).first_start


PRODUCER = """
import os
from pathlib import Path

from edge_engine.api import BusinessPlugin, Key


class CrashProducer(BusinessPlugin):
    SIGNATURE = "CRASH_PRODUCER"
    CONFIG = {"PAUSE_FILE": Key("", type=str, doc="no payloads while this file exists")}

    def process(self, inp):
        pause = self.config["PAUSE_FILE"]
        if pause and Path(pause).exists():
            return
        frame = inp.image.copy()
        stamp = os.getpid() * 1_000_000 + inp.seq  # a new image every input of every run: a new object key
        for i in range(6):
            frame[i * 8 : i * 8 + 8, :8] = (stamp >> (8 * i)) & 255
        self.emit({"N": inp.seq, "RUN_PID": os.getpid()}, image=frame)
        if inp.seq % 3 == 0:
            self.notify(f"input {inp.seq} of run {os.getpid()}", N=inp.seq)
"""


class Subscriber:
    """A persistent-session MQTT subscriber (it misses nothing across a broker restart): raw payloads and
    notifications by ``EE_MESSAGE_SEQ``."""

    def __init__(self, broker: Mosquitto):
        self.received: dict[str, dict[int, list[bytes]]] = {"payloads": defaultdict(list), "notif": defaultdict(list)}
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="crash-queue-watcher",
                                  clean_session=False)  # fmt: skip
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *_: c.subscribe([("naeural/payloads", 1), ("naeural/notif", 1)])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "the subscriber did not subscribe"

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        channel = message.topic.rsplit("/", 1)[1]
        seq = json.loads(message.payload)["EE_MESSAGE_SEQ"]
        with self.lock:
            self.received[channel][seq].append(bytes(message.payload))

    def seqs(self, channel: str) -> set[int]:
        with self.lock:
            return set(self.received[channel])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def recover_outbox(cache: Path, copy: Path) -> tuple[dict[str, list[tuple[int, bytes]]], DiskOutbox]:
    """What a restart would send, read by the outbox's own recovery (on a copy: the cache is left as the kill left
    it): per channel ``(seq, wire bytes)`` in delivery order (records stored as texts to sign signed with the
    node's key, as its publisher does: the signature is deterministic)."""
    shutil.copytree(cache / "_data" / OUTBOX_DIR, copy)
    box = DiskOutbox(copy, fsync_seconds=0.05)
    identity = load_or_create_identity(cache / "_data" / KEY_FILE)
    items = []
    try:
        while (item := box.get(0.2)) is not None:
            items.append(item)
    finally:
        box.close()
    wire = {id(i): seal(i.wire or b"", identity) if i.unsigned else bytes(i.wire or b"") for i in items}  # as sent
    return {lane: [(i.seq, wire[id(i)]) for i in items if i.channel == lane] for lane in LANES}, box


def image_key(body: dict[str, Any]) -> str:
    return urlsplit(body["IMG_URL"]).path.rsplit("/", 1)[1]


def check_queues_after_kill(cache: Path, copy: Path, before: dict[str, Any], why: str) -> dict[str, Any]:
    """The outbox and the upload queue as a kill left them: readable, nothing gone since ``before``, consistent."""
    assert torn_files(cache) == [], why
    torn = outbox_torn(cache)
    assert all(count <= 1 for count in torn.values()), f"{why}: more than a torn tail: {torn}"
    state = cache_state(cache)
    outbox, uploads = state["outbox"], state["uploads"]
    for lane in LANES:
        kept = outbox[lane][: len(before["outbox"][lane])]
        assert kept == before["outbox"][lane], f"{why}: {lane} queued before the kill are gone or reordered"
    gone = set(before["uploads"]) - set(uploads)
    assert not gone, f"{why}: queued objects gone: {gone}"
    pending = cache / "_data" / UPLOADS_DIR / "pending"
    for key in uploads:  # content-addressed: a whole entry hashes to its key
        data = (pending / key).read_bytes()
        assert key == f"{hashlib.sha256(data).hexdigest()}.jpg", f"{why}: {key} is not whole ({len(data)} bytes)"
    runs: dict[int, list[int]] = defaultdict(list)
    for seq in outbox["payloads"]:
        runs[(seq - 1) // BLOCK].append(seq)  # each run numbers from a block of its own
    for block, seqs in runs.items():
        assert seqs == list(range(block * BLOCK + 1, block * BLOCK + 1 + len(seqs))), f"{why}: a hole in {seqs}"
    recovered, box = recover_outbox(cache, copy)
    assert {lane: [seq for seq, _ in recovered[lane]] for lane in LANES} == outbox, f"{why}: the readers disagree"
    assert box.recovered == sum(len(v) for v in outbox.values()) and box.corrupt == sum(torn.values()), why
    for seq, wire in recovered["payloads"]:
        body = json.loads(wire)
        assert body["EE_MESSAGE_SEQ"] == seq and verify(body).ok, f"{why}: payload {seq} is not what was signed"
        assert image_key(body) in uploads, f"{why}: payload {seq} is queued, its image {image_key(body)} is not"
    return {**state, "wire": recovered}


@pytest.fixture
def broker_and_s3(mosquitto_factory: Any, s3_server: SeaweedS3) -> tuple[Mosquitto, SeaweedS3]:
    """A broker that keeps the subscriber's session across a restart, and S3."""
    return mosquitto_factory(persistence=True), s3_server


def test_kill9_keeps_the_outbox_and_the_upload_queue(tmp_path: Path, broker_and_s3: tuple[Any, Any]) -> None:
    broker, s3 = broker_and_s3
    rng = random.Random(SEED)
    print(f"\ncrash test seed {SEED} (EE_TEST_CRASH_SEED), {QUEUE_KILLS} kill(s) with the broker and S3 down")
    workdir = tmp_path / "work"
    plugin = workdir / "testplugins" / "business" / "crash_producer.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text(PRODUCER, encoding="utf-8")
    pause = tmp_path / "pause"
    instance = {"INSTANCE_ID": "p", "PAUSE_FILE": str(pause)}
    plugins = [{"SIGNATURE": "CRASH_PRODUCER", "INSTANCES": [instance]}]
    pipeline = {"NAME": "cam", "TYPE": "SYNTHETIC", "MODE": "moving_box", "WIDTH": 160, "HEIGHT": 120,
                "CAP_RESOLUTION": 10, "PLUGINS": plugins}  # fmt: skip
    config = {"DEMO_PIPELINE": False, "SECONDS_LOCAL_INFO": 0.2, "SECONDS_HEARTBEAT": 1, "EE_ID": "crash-q",
              "PLUGIN_FOLDERS": ["extensions", "testplugins"], "PIPELINES": [pipeline]}  # fmt: skip
    cache = workdir / "cache"
    env = base_env(cache, **broker.env, **s3.env, EE_RESTART_BACKOFF_MAX="1")
    runner = NodeRunner(workdir, env, config)
    subscriber = Subscriber(broker)
    try:
        broker.stop()
        s3.stop()
        state: dict[str, Any] = {"outbox": {lane: [] for lane in LANES}, "uploads": []}
        for kill in range(QUEUE_KILLS):
            runner.start()
            runner.wait_running(timeout=30)
            delay = rng.uniform(0.2, 2.0)
            time.sleep(delay)
            why = f"kill #{kill + 1}, {delay:.2f} s after running"
            runner.kill()
            state = check_queues_after_kill(cache, tmp_path / f"outbox-copy-{kill}", state, why)
            print(
                f"{why}: {len(state['outbox']['payloads'])} payloads, {len(state['outbox']['notif'])} notifications,"
                f" {len(state['uploads'])} objects queued; torn tails {outbox_torn(cache)}"
            )
        on_disk, uploads = state["outbox"], state["uploads"]
        assert on_disk["payloads"] and uploads, "nothing was produced before the kills: the test proves nothing"

        # restarted while both are still down (and producing nothing): it reports what is on disk, and keeps it
        pause.touch()
        runner.start()
        info = runner.wait_running(lambda i: bool(i.get("comms") and i.get("storage")), timeout=30)
        outbox_info, storage = info["comms"]["outbox"], info["storage"]
        assert outbox_info["recovered"] == len(on_disk["payloads"]) + len(on_disk["notif"]), outbox_info
        assert outbox_info["pending_by_channel"]["payloads"] == len(on_disk["payloads"]), outbox_info
        assert outbox_info["pending_by_channel"]["notif"] >= len(on_disk["notif"]), outbox_info
        assert storage["recovered_at_start"] == storage["pending"] == len(uploads), storage
        now = cache_state(cache)
        assert now["outbox"]["payloads"] == on_disk["payloads"] and now["uploads"] == uploads
        assert now["outbox"]["notif"][: len(on_disk["notif"])] == on_disk["notif"]

        # both back: every payload that was on disk arrives, every queued object is uploaded once
        s3.start()
        broker.start()
        expected = {lane: dict(state["wire"][lane]) for lane in LANES}
        for what, done in (
            ("payloads", lambda: subscriber.seqs("payloads") >= set(expected["payloads"])),
            ("notifications", lambda: subscriber.seqs("notif") >= set(expected["notif"])),
            ("uploads", lambda: ((runner.info() or {}).get("storage") or {}).get("pending") == 0),
        ):
            deadline = time.monotonic() + 40
            while not done():
                missing = {lane: sorted(set(expected[lane]) - subscriber.seqs(lane))[:5] for lane in LANES}
                assert time.monotonic() < deadline, f"{what} not delivered; missing {missing}; {runner.info()}"
                time.sleep(0.2)
        storage = (runner.info() or {})["storage"]
        output = runner.output()
        assert "Traceback" not in output, output[-4000:]
    finally:
        subscriber.close()
        runner.cleanup()
    received = subscriber.received
    assert set(received["payloads"]) == set(expected["payloads"]), "a payload that was not on disk was sent"
    for lane in LANES:
        for seq, wire in expected[lane].items():
            copies = received[lane][seq]
            assert set(copies) == {wire}, f"{lane} {seq}: received {len(copies)} copies, not all the bytes on disk"
    runs = sorted({(seq - 1) // BLOCK for seq in received["payloads"]})
    for block in runs:
        seqs = sorted(seq for seq in received["payloads"] if (seq - 1) // BLOCK == block)
        assert seqs == list(range(block * BLOCK + 1, block * BLOCK + 1 + len(seqs))), f"a gap in {seqs}"
    objects = s3.objects()
    assert set(objects) == set(uploads), f"missing {set(uploads) - set(objects)}, extra {set(objects) - set(uploads)}"
    assert storage["uploaded"] == len(uploads) and storage["already_in_bucket"] == 0, storage
    for key in uploads:
        assert f"{hashlib.sha256(s3.get(key)).hexdigest()}.jpg" == key
    print(
        f"{QUEUE_KILLS} kills: {len(expected['payloads'])} payloads in {len(runs)} runs and "
        f"{len(expected['notif'])} notifications delivered, {len(uploads)} objects uploaded once"
    )
