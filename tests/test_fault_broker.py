"""Fault tests of the durable outbox against a real Mosquitto: the broker goes away while a pipeline produces
payloads, and a node process is killed (``kill -9``) while its payloads wait for the broker.

The outage lasts ``EE_TEST_OUTAGE_SECONDS`` (5 s in CI; the documented slow run uses 30 s)::

    EE_TEST_OUTAGE_SECONDS=30 .venv/bin/python -m pytest tests/test_fault_broker.py -q

The subscriber keeps a persistent session on a broker with persistence, so nothing published after the broker
returns is lost to it, whichever of the node and the subscriber reconnects first. What is checked is what a
consumer can check: ``EE_MESSAGE_SEQ`` of the payloads forms one contiguous range (no gap), first arrivals are
in order, and a repeated message is the same message (same ``EE_MESSAGE_ID``), within the QoS 1 window.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_for
from mqtt_broker import Mosquitto
from node_runner import NodeRunner
from plugins_src import message_pipeline, payload_plugin
from test_node_process import make_node  # noqa: F401  (fixture)

from edge_engine.comms.disk_outbox import inspect_outbox
from edge_engine.comms.service import PUBLISH_WINDOW
from edge_engine.comms.signing import verify
from edge_engine.node.core import Node

OUTAGE_SECONDS = float(os.environ.get("EE_TEST_OUTAGE_SECONDS", "5"))
FPS = 50
pytestmark = pytest.mark.timeout(90 + 3 * OUTAGE_SECONDS)

TICK_PLUGIN = payload_plugin("FaultTick", "FAULT_TICK", '{"I": inp.seq, "CAPTURED": inp.timestamp}')


def pipeline(signature: str, **instance: Any) -> dict[str, Any]:
    """A SYNTHETIC message source at ``FPS`` into one instance that emits a payload per input."""
    return message_pipeline("steady", signature, FPS, **instance)


class Watcher:
    """A consumer with a persistent session (clean_session off): the broker keeps its messages across restarts."""

    def __init__(self, port: int, client_id: str, topics: tuple[str, ...] = ("payloads",)):
        self.messages: list[dict[str, Any]] = []  # payloads
        self.others: list[tuple[str, dict[str, Any]]] = []  # (channel, message) of the other topics
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, *_: c.subscribe([(f"naeural/{t}", 1) for t in topics])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(5)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        channel = message.topic.rsplit("/", 1)[1]
        body = json.loads(message.payload)
        if channel == "payloads":
            self.messages.append(body)
        else:
            self.others.append((channel, body))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def seqs(self) -> set[int]:
        return {m["EE_MESSAGE_SEQ"] for m in self.messages}


def check_stream(messages: list[dict[str, Any]], first: int = 1) -> tuple[list[int], list[int]]:
    """Assert what a consumer can check; returns (unique seqs in arrival order, repeated seqs)."""
    assert all(verify(m).ok for m in messages), "every payload arrives signed and intact"
    unique: list[int] = []
    seen: dict[int, str] = {}
    repeated = []
    for message in messages:
        seq = message["EE_MESSAGE_SEQ"]
        if seq in seen:
            assert seen[seq] == message["EE_MESSAGE_ID"], f"seq {seq} reused by another message"
            repeated.append(seq)
            continue
        seen[seq] = message["EE_MESSAGE_ID"]
        unique.append(seq)
    assert unique == sorted(unique), "payloads out of order"
    assert unique == list(range(first, first + len(unique))), f"gap in EE_MESSAGE_SEQ: {missing(unique, first)}"
    return unique, repeated


def missing(seqs: list[int], first: int) -> list[int]:
    return sorted(set(range(first, max(seqs, default=first) + 1)) - set(seqs))[:20]


# --- broker outage while a pipeline produces --------------------------------------------------------------------
def test_broker_outage_delivers_every_payload_in_order(mosquitto_factory, node_factory) -> None:
    broker: Mosquitto = mosquitto_factory(persistence=True)
    watcher = Watcher(broker.port, "fault-outage-watcher")
    try:
        node: Node = node_factory(
            plugins={"business/fault_tick.py": TICK_PLUGIN},
            pipelines=[pipeline("FAULT_TICK")],
            startup={"SECONDS_HEARTBEAT": 1},
            environ=broker.env,
        )
        comms = node.comms
        wait_for(comms.transport.connected.is_set, timeout=10)
        wait_for(lambda: len(watcher.messages) >= 20, timeout=10)

        broker.stop()
        seq_at_outage = comms.sequences._next["payloads"]
        wait_for(lambda: not comms.transport.connected.is_set(), timeout=5)
        time.sleep(OUTAGE_SECONDS)
        during = comms.outbox_stats()
        assert during["kind"] == "disk" and during["bytes"] > 0
        assert during["pending_by_channel"]["payloads"] >= OUTAGE_SECONDS * FPS * 0.5, during
        assert list((node.layout.data / "outbox").glob("payloads-*.seg")), "queued payloads are on disk"
        broker.start()

        wait_for(lambda: comms.transport.connects >= 2, timeout=15)
        wait_for(lambda: comms.outbox_stats()["pending_by_channel"]["payloads"] < FPS, timeout=30)
        backlog_end = comms.sequences._next["payloads"]
        wait_for(lambda: comms.sequences._next["payloads"] >= backlog_end + FPS, timeout=15)  # a second of traffic
        last = comms.sequences._next["payloads"] - 1
        wait_for(lambda: last in watcher.seqs(), timeout=15)
    finally:
        watcher.close()

    unique, repeated = check_stream(watcher.messages)
    assert unique[-1] >= last
    assert len(repeated) <= PUBLISH_WINDOW, "repeats only of messages in flight when the connection dropped"
    assert all(abs(seq - seq_at_outage) <= PUBLISH_WINDOW for seq in repeated), repeated
    inputs = [m["I"] for m in watcher.messages]
    assert sorted(set(inputs)) == list(range(min(inputs), max(inputs) + 1)), "the pipeline's inputs: no gap"
    assert comms.outbox.dropped == 0
    node.write_local_info()
    info = json.loads(node.layout.local_info.read_text())
    assert info["comms"]["outbox"]["dropped"] == 0 and "pending" in info["comms"]["outbox"]


# --- kill -9 while payloads wait for the broker ---------------------------------------------------------------------
def test_kill9_with_queued_payloads_delivers_them_after_restart(
    make_node: Callable[..., NodeRunner],  # noqa: F811  (the fixture imported above)
    mosquitto_factory,
) -> None:
    broker: Mosquitto = mosquitto_factory(persistence=True)
    watcher = Watcher(broker.port, "fault-kill-watcher")
    config = {"PIPELINES": [pipeline("FRAME_STATS", REPORT_EVERY=1)], "SECONDS_HEARTBEAT": 1}
    node = make_node(config, EE_DEMO="0", **broker.env)
    outbox_dir = node.cache / "_data" / "outbox"
    try:
        node.start()
        node.wait_running(lambda info: bool(info.get("comms") and info["comms"]["connected"]))
        wait_for(lambda: len(watcher.messages) >= 10, timeout=15)

        broker.stop()
        queued = node.wait_running(
            lambda info: not info["comms"]["connected"] and info["comms"]["outbox"]["pending"] >= 2 * FPS,
            timeout=15 + OUTAGE_SECONDS,
        )["comms"]["outbox"]
        node.kill()

        on_disk = inspect_outbox(outbox_dir)["payloads"]
        assert on_disk["torn"] <= 1, "at most the record being written when killed"
        assert len(on_disk["seqs"]) >= queued["pending_by_channel"]["payloads"] - PUBLISH_WINDOW
        assert len(on_disk["seqs"]) >= FPS
        for path in (node.cache / "_data").rglob("*.json"):
            json.loads(path.read_bytes())  # no cache file half-written
        reserved = json.loads((node.cache / "_data" / "message_seq.json").read_bytes())["payloads"]

        broker.start()
        node.start()
        node.wait_running(lambda info: bool(info["comms"]["connected"]))
        wait_for(lambda: set(on_disk["seqs"]) <= watcher.seqs(), timeout=30)
        node.wait_running(lambda info: info["comms"]["outbox"]["pending_by_channel"]["payloads"] < FPS, timeout=15)
        log = node.output()
    finally:
        watcher.close()

    first_run = [m for m in watcher.messages if m["EE_MESSAGE_SEQ"] <= reserved]
    unique, _ = check_stream(first_run)
    assert unique[-1] >= max(on_disk["seqs"]), "every payload queued on disk before the kill arrived"
    after = sorted({m["EE_MESSAGE_SEQ"] for m in watcher.messages if m["EE_MESSAGE_SEQ"] > reserved})
    assert after and after[0] == reserved + 1, "the restarted node numbers above every number it may have used"
    assert "could not be stored" not in log and "sync failed" not in log, log
    assert inspect_outbox(outbox_dir)["payloads"]["torn"] == 0


# --- the bound: oldest payloads dropped, counted, announced once ----------------------------------------------------
def test_full_outbox_drops_oldest_payloads_counts_and_notifies_once(mosquitto_factory, node_factory) -> None:
    broker: Mosquitto = mosquitto_factory(persistence=True)
    watcher = Watcher(broker.port, "fault-bound-watcher", topics=("payloads", "notif", "ctrl"))
    try:
        node: Node = node_factory(
            plugins={"business/fault_tick.py": TICK_PLUGIN},
            pipelines=[pipeline("FAULT_TICK")],
            startup={"SECONDS_HEARTBEAT": 1},
            environ={**broker.env, "EE_OUTBOX_MAX_MB": "0.0625"},  # 64 KiB: about 70 payloads
        )
        comms = node.comms
        wait_for(comms.transport.connected.is_set, timeout=10)
        wait_for(lambda: len(watcher.messages) >= 5, timeout=10)
        broker.stop()
        wait_for(lambda: comms.outbox.dropped > FPS, timeout=20)
        broker.start()
        wait_for(lambda: comms.transport.connects >= 2, timeout=15)
        wait_for(lambda: comms.outbox_stats()["pending_by_channel"]["payloads"] < 10, timeout=30)

        def dropped_note() -> list[dict[str, Any]]:
            return [m for c, m in watcher.others if c == "notif" and "OUTBOX_DROPPED" in m]

        wait_for(dropped_note, timeout=10)
        wait_for(lambda: any(c == "ctrl" and "ENCODED_DATA" in m for c, m in watcher.others[-3:]), timeout=5)
        beats = sum(1 for c, m in watcher.others if c == "ctrl" and "ENCODED_DATA" in m)
        wait_for(lambda: sum(1 for c, m in list(watcher.others) if c == "ctrl" and "ENCODED_DATA" in m) > beats)
        dropped = comms.outbox.dropped
        node.write_local_info()  # an in-process node has no main loop refreshing it
        info = json.loads(node.layout.local_info.read_text())
    finally:
        watcher.close()

    notes = dropped_note()
    assert len(notes) == 1, "one notification when dropping starts"
    assert notes[0]["NOTIFICATION_TYPE"] == "ABNORMAL FUNCTIONING" and notes[0]["OUTBOX_DROPPED"] >= 1
    assert info["comms"]["outbox"]["dropped"] == dropped > 0
    from edge_engine.comms.heartbeat import decode_data

    beats = [decode_data(m["ENCODED_DATA"]) for c, m in watcher.others if c == "ctrl" and "ENCODED_DATA" in m]
    assert max(b["COMM_STATS"]["outbox_dropped"] for b in beats) > 0
    # what was kept arrives in order; the gap is where the oldest queued payloads were dropped
    seqs: dict[int, str] = {}  # first arrival of each seq; a QoS 1 resend repeats the same message
    for message in watcher.messages:
        assert seqs.setdefault(message["EE_MESSAGE_SEQ"], message["EE_MESSAGE_ID"]) == message["EE_MESSAGE_ID"]
    assert list(seqs) == sorted(seqs)
    notif_seqs = sorted({m["EE_MESSAGE_SEQ"] for c, m in watcher.others if c == "notif"})
    assert notif_seqs == list(range(notif_seqs[0], notif_seqs[0] + len(notif_seqs))), "notifications are kept"
