"""Restart gaps are explicit and local output never runs ahead of the outbox (decision 38).

A node process producing payloads on a real Mosquitto is killed (``kill -9``) twice and restarted; a consumer
subscribed all along checks, with :func:`edge_engine.comms.sequence.unexplained_gaps`, that every
``EE_MESSAGE_SEQ`` either arrived or lies in a skip announced by ``EE_MESSAGE_SEQ_PREV``, and that every payload
written to ``_output/`` arrived. The durable outbox's own record of the last stored number is checked without a
node: across clean stops, kills, and a restart that sends nothing.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import REPO, wait_for
from mqtt_broker import Mosquitto
from node_runner import NodeRunner, base_env
from plugins_src import message_pipeline, payload_plugin

from edge_engine.comms.disk_outbox import DiskOutbox
from edge_engine.comms.outbox import OutboxItem
from edge_engine.comms.sequence import unexplained_gaps
from edge_engine.comms.signing import verify

pytestmark = pytest.mark.timeout(120)
FPS = 100

TOKEN_PLUGIN = payload_plugin("GapToken", "GAP_TOKEN", '{"TOKEN": f"{os.getpid()}-{inp.seq}"}', "import os")


# --- the consumer's check -------------------------------------------------------------------------------------------
def test_unexplained_gaps_counts_only_what_no_restart_announced() -> None:
    run1 = [{"EE_MESSAGE_SEQ": 1, "EE_MESSAGE_SEQ_PREV": 0}, {"EE_MESSAGE_SEQ": 2}, {"EE_MESSAGE_SEQ": 3}]
    run2 = [{"EE_MESSAGE_SEQ": 1001, "EE_MESSAGE_SEQ_PREV": 3}, {"EE_MESSAGE_SEQ": 1002}]
    assert unexplained_gaps(run1 + run2) == []
    assert unexplained_gaps(run1 + run2[:1] + run2[:1]) == [], "duplicates are not loss"
    assert unexplained_gaps(run1[:1] + run1[2:] + run2) == [2]
    assert unexplained_gaps([*run1, {"EE_MESSAGE_SEQ": 1001}]) == list(range(4, 1001)), "no announcement: loss"
    # a power loss can leave the previous run's number lower than what it sent: those arrived anyway
    assert unexplained_gaps([*run1, {"EE_MESSAGE_SEQ": 1001, "EE_MESSAGE_SEQ_PREV": 2}]) == []


# --- the outbox's last stored number ---------------------------------------------------------------------------------
def _encode(item: OutboxItem) -> bytes:
    return json.dumps({"seq": item.seq}).encode()


def _put(outbox: DiskOutbox, *seqs: int) -> None:
    for seq in seqs:
        outbox.put(OutboxItem("payloads", {}, [], seq=seq))


def _deliver_all(outbox: DiskOutbox) -> None:
    while (item := outbox.get(0.05)) is not None:
        outbox.ack(item)


def test_outbox_knows_the_last_stored_number_across_stops_and_quiet_runs(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    outbox = DiskOutbox(folder, _encode, fsync_seconds=0.02)
    assert outbox.previous_last_seq == {"notif": None, "payloads": None}, "a fresh folder knows nothing"
    _put(outbox, 1, 2, 3)
    _deliver_all(outbox)
    outbox.close()

    outbox = DiskOutbox(folder, _encode, fsync_seconds=0.02)  # everything was acknowledged: still known
    assert outbox.previous_last_seq["payloads"] == 3
    outbox.close()  # a run that sent nothing
    outbox = DiskOutbox(folder, _encode, fsync_seconds=0.02)
    assert outbox.previous_last_seq["payloads"] == 3
    _put(outbox, 1001, 1002)
    time.sleep(0.1)  # the group commit runs; the process then "dies" without close()
    outbox._closed = True  # stop its threads the way a kill would: nothing more is written

    again = DiskOutbox(folder, _encode, fsync_seconds=0.02)
    try:
        assert again.previous_last_seq["payloads"] == 1002, "a kill after the put: the number is on disk"
        assert again.previous_last_seq["notif"] is None
        assert [item.seq for item in [again.get(1), again.get(1)] if item] == [1001, 1002]
    finally:
        again.close()


# --- local output after the outbox -----------------------------------------------------------------------------------
def test_a_payload_is_in_the_outbox_files_before_local_output_writes_it(node_factory, mosquitto_factory) -> None:
    """At the moment the local writer starts on a payload, its signed record is already in a segment file."""
    broker: Mosquitto = mosquitto_factory()
    pipeline = message_pipeline("load", "GAP_TOKEN", 50)
    node = node_factory(plugins={"business/gap_token.py": TOKEN_PLUGIN}, pipelines=[pipeline],
                        environ=broker.env, start=False)  # fmt: skip
    outbox_dir = node.layout.data / "outbox"
    write_payload = node.output._write_payload
    stored_first: list[bool] = []

    def checking(payload: Any) -> str | None:
        token = f'"TOKEN":"{payload.data["TOKEN"]}"'.encode()
        stored_first.append(any(token in seg.read_bytes() for seg in outbox_dir.glob("payloads-*.seg")))
        return write_payload(payload)

    node.output._write_payload = checking  # type: ignore[method-assign]
    node.start()
    wait_for(lambda: len(stored_first) >= 30, timeout=20)
    node.stop("test")
    assert all(stored_first), f"{stored_first.count(False)} of {len(stored_first)} written before stored"


# --- kill -9 of a node process under load ---------------------------------------------------------------------------
class Consumer:
    """Subscribed to the node's payloads from before its first start; keeps every message."""

    def __init__(self, port: int):
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gap-consumer")
        self.client.on_connect = lambda c, *_: c.subscribe("naeural/payloads", 1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(json.loads(message.payload))

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.messages)

    def tokens(self) -> set[str]:
        return {m["TOKEN"] for m in self.snapshot() if "TOKEN" in m}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def output_tokens(cache: Path) -> set[str]:
    """Every payload token the node wrote to ``_output/`` (all runs, rotated files included)."""
    tokens = set()
    for path in (cache / "_output").rglob("payloads*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                tokens.add(json.loads(line)["data"]["TOKEN"])
    return tokens


def test_kill9_under_load_leaves_no_unexplained_gap_and_output_never_runs_ahead(
    tmp_path: Path, mosquitto_factory
) -> None:
    broker: Mosquitto = mosquitto_factory()
    plugins = tmp_path / "work" / "gap_plugins"
    (plugins / "business").mkdir(parents=True)
    (plugins / "business" / "gap_token.py").write_text(TOKEN_PLUGIN, encoding="utf-8")
    config = {
        "PLUGIN_FOLDERS": [str(REPO / "extensions"), str(plugins)],
        "DEMO_PIPELINE": False,
        "SECONDS_HEARTBEAT": 5,
        "PIPELINES": [message_pipeline("load", "GAP_TOKEN", FPS)],
    }  # fmt: skip
    env = base_env(tmp_path / "work" / "cache", EE_SECONDS_LOCAL_INFO="0.5", **broker.env)
    node = NodeRunner(tmp_path / "work", env, config)
    consumer = Consumer(broker.port)
    seen: dict[str, set[str]] = {}

    def caught_up() -> bool:
        """Every payload in _output/ (read first) has arrived (read after): nothing written is missing."""
        seen["written"] = output_tokens(node.cache)
        seen["arrived"] = consumer.tokens()
        return seen["written"] <= seen["arrived"]

    try:
        for round_ in range(3):
            before = len(consumer.tokens())
            node.start()
            node.wait_running(timeout=30)
            wait_for(lambda before=before: len(consumer.tokens()) >= before + FPS // 2, timeout=30)
            if round_ < 2:
                time.sleep(0.05 + 0.13 * round_)  # killed at a different point of the stream each time
                node.kill()
        wait_for(caught_up, timeout=30)  # the node still producing: what was written before has arrived
        messages = consumer.snapshot()
    finally:
        consumer.close()
        node.cleanup()

    assert all(verify(m).ok for m in messages[:50]), "payloads arrive signed"
    assert unexplained_gaps(messages) == [], "every number arrived or lies in an announced restart skip"
    restarts = sorted(m["EE_MESSAGE_SEQ_PREV"] for m in messages if "EE_MESSAGE_SEQ_PREV" in m)
    assert len(set(restarts)) == 3 and restarts[0] == 0, f"one announcement per start: {restarts}"
    assert len(seen["written"]) >= 3 * FPS // 2, "payloads were written in every run"
