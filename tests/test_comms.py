"""Comms against a real Mosquitto: heartbeats, signed payloads, commands from the client, rejections, outages.

Every test starts its own broker on a free port (never 1883) and a node in-process with comms on it; the
client (:class:`edge_engine.remote.node_client.EdgeClient`) has its own key in ``tmp_path``. Heartbeats come every
second here (``SECONDS_HEARTBEAT: 1``). The broker outage lasts ``OUTAGE_SECONDS`` (``EE_TEST_OUTAGE_SECONDS``; 3 s in
CI, 30 s in the documented slow run).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import coincurve
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from conftest import REPO, comms_node, wait_for
from mqtt_broker import Mosquitto, free_port
from plugins_src import message_pipeline, payload_plugin

from edge_engine.cli.ops import main_add_allowed, main_remove_allowed
from edge_engine.comms.disk_outbox import MAGIC_UNSIGNED, RECORD, parse_records, segment_files
from edge_engine.comms.outbox import OutboxItem
from edge_engine.comms.signing import SEAL_MAX_EXTRA, seal, verify
from edge_engine.local.identity import Identity, identity_from_private_key
from edge_engine.messages import Payload
from edge_engine.node.core import Node
from edge_engine.remote import command_line as client_cli
from edge_engine.remote.node_client import EdgeClient, Received

OUTAGE_SECONDS = float(os.environ.get("EE_TEST_OUTAGE_SECONDS", "3"))
pytestmark = pytest.mark.timeout(60 + 2 * OUTAGE_SECONDS)

TICK_PLUGIN = payload_plugin("Tick", "TEST_TICK", '{"I": inp.seq, "CAPTURED": inp.timestamp}')


def tick_pipeline(name: str = "tick", fps: int = 20) -> dict[str, Any]:
    return message_pipeline(name, "TEST_TICK", fps)


STATS_PIPELINE = message_pipeline("stats", "FRAME_STATS", 50, "fs", REPORT_EVERY=2)
FAST_HEARTBEATS = {"SECONDS_HEARTBEAT": 1, "RESTART_BACKOFF_MAX": 1.0}


# --- fixtures ------------------------------------------------------------------------------------------------
def allow(node: Node, identity: Identity) -> None:
    assert main_add_allowed(["--cache-dir", str(node.layout.root), identity.address, "me"]) == 0


def start_node(node_factory: Callable[..., Node], broker: Mosquitto, **kw: Any) -> Node:
    """The node of these tests: the tick plugin, fast heartbeats, connected to ``broker``."""
    startup = {**FAST_HEARTBEATS, **kw.pop("startup", {})}
    return comms_node(node_factory, broker, plugins={"business/tick.py": TICK_PLUGIN}, startup=startup, **kw)


def state(node: Node) -> tuple[list[str], dict[str, bytes]]:
    """What a rejected command must not change: running pipelines and the persisted configs."""
    return sorted(node.pipeline_names()), {p.name: p.read_bytes() for p in sorted(node.layout.streams.glob("*"))}


def collect_until(listener: Any, enough: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
    """What ``listener`` receives until ``enough(received)`` holds, then any stragglers (0.2 s apart)."""
    got: list[Received] = []

    def done() -> bool:
        item = listener.get(0.05)
        if item is not None:
            got.append(item)
        return enough(got)

    wait_for(done, timeout=timeout)
    while (item := listener.get(0.2)) is not None:
        got.append(item)
    return got


def notification(listener: Any, accept: Callable[[Received], bool], timeout: float = 10.0) -> Received:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = listener.get(0.1)
        if item is not None and accept(item):
            return item
    raise AssertionError("the expected notification did not come")


def raw(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


# --- heartbeats and `nodes` -----------------------------------------------------------------------------------
def test_nodes_sees_the_node_by_heartbeat(mosquitto, node_factory, me, clients, capsys) -> None:
    node = start_node(node_factory, mosquitto)
    allow(node, me)
    client = clients(me, mosquitto.port)
    with client.listen(lambda r: r.channel == "heartbeats") as beats:
        hb = notification(beats, lambda r: me.address in r.data.get("EE_WHITELIST", []), timeout=5)
    assert hb.verified and hb.sender == node.identity.address
    assert hb.message["HEARTBEAT_VERSION"] == "v2" and "ENCODED_DATA" in hb.message
    assert "EE_WHITELIST" not in hb.message  # inside ENCODED_DATA only
    assert hb.data["EE_ID"] == node.alias and hb.data["DEVICE_STATUS"] == "ONLINE"
    assert hb.message["EE_PAYLOAD_PATH"] == [node.alias, None, None, None]
    info = client.wait_node(node.alias)
    assert info.address == node.identity.address and info.version == hb.data["VERSION"]

    # the CLI, in-process (same code as the edge-client script)
    key = str(me.key_file)
    capsys.readouterr()
    assert client_cli.main(["nodes", "--json", "--wait", "1.5", "--port", str(mosquitto.port), "--key", key]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["alias"], r["address"], r["pipelines"]) for r in rows] == [(node.alias, node.identity.address, 0)]
    assert client_cli.main(["address", "--key", key]) == 0
    assert capsys.readouterr().out.strip() == me.address


# --- the whole remote lifecycle --------------------------------------------------------------------------------
def test_deploy_update_command_delete(mosquitto, node_factory, me, clients, tmp_path, capsys) -> None:
    node = start_node(node_factory, mosquitto)
    allow(node, me)
    client = clients(me, mosquitto.port, channels=("heartbeats", "notifications", "payloads"))
    everything = client.listen()
    payloads = client.listen(lambda r: r.channel == "payloads")

    result = client.deploy(node.alias, STATS_PIPELINE, timeout=15)
    assert result.ok, result.reason
    codes = [r.code for r in result.notifications]
    assert codes[:2] == [1, 100], codes
    assert node.pipeline_names() == ["stats"]

    first = [payloads.get(5) for _ in range(5)]
    assert all(p is not None for p in first)
    for p in first:
        assert p.verified, p.reason
        assert verify(p.message).ok
        assert p.message["EE_PAYLOAD_PATH"] == [node.alias, "stats", "FRAME_STATS", "fs"]
        assert p.message["INPUTS"] == 2
    seqs = [p.message["EE_MESSAGE_SEQ"] for p in first]
    assert seqs == sorted(set(seqs)), seqs

    # live update: code 100, and the instance now reports every 4 inputs
    update = client.update_instance(node.alias, "stats", "FRAME_STATS", "fs", {"REPORT_EVERY": 4})
    assert update.ok and update.code == 100, update
    wait_for(lambda: (p := payloads.get(1)) is not None and p.message["INPUTS"] == 4, timeout=5)
    assert (
        json.loads((node.layout.streams / "stats.json").read_text())["PLUGINS"][0]["INSTANCES"][0]["REPORT_EVERY"] == 4
    )

    # instance command: code 101 with the plugin's answer
    command = client.instance_command(node.alias, "stats", "FRAME_STATS", "fs", "REPORT")
    assert command.ok and command.code == 101, command
    assert isinstance(command.result, dict) and "INPUTS" in command.result

    # the CLI: update with KEY=JSON, command, then a refused deploy (exit 1 with the reason)
    port_key = ["--port", str(mosquitto.port), "--key", str(me.key_file)]
    assert client_cli.main(["update", node.alias, "stats", "FRAME_STATS", "fs", "REPORT_EVERY=3", *port_key]) == 0
    assert client_cli.main(["command", node.alias, "stats", "FRAME_STATS", "fs", '"REPORT"', *port_key]) == 0
    assert '"INPUTS"' in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"NAME": "bad", "TYPE": "SYNTHETIC", "PLUGIN": []}))
    assert client_cli.main(["deploy", node.alias, str(bad), *port_key]) == 1
    err = capsys.readouterr().err
    assert "deploy bad failed" in err and "did you mean 'PLUGINS'" in err and "(code -1)" in err

    # delete: code 4, payloads stop, the cached config is gone
    deleted = client.delete(node.alias, "stats")
    assert deleted.ok and deleted.code == 4, deleted
    assert node.pipeline_names() == [] and not (node.layout.streams / "stats.json").exists()
    # what was already on its way arrives: the client has every payload the node numbered before the delete
    wait_for(lambda: len(node.comms.outbox) == 0, timeout=5)
    last = node.comms.sequences._next["payloads"] - 1
    wait_for(lambda: (p := payloads.get(0.05)) is not None and p.message["EE_MESSAGE_SEQ"] >= last, timeout=5)
    assert payloads.get(1.0) is None, "payloads still arrive after the delete"

    # every message carried the node's alias first in EE_PAYLOAD_PATH, and verified
    seen = []
    while (item := everything.get(0)) is not None:
        seen.append(item)
    assert len(seen) > 10
    for item in seen:
        assert item.verified, (item.reason, item.message)
        path = item.message["EE_PAYLOAD_PATH"]
        assert len(path) == 4 and path[0] == node.alias, path
    by_channel: dict[str, list[int]] = {}
    for item in seen:
        by_channel.setdefault(item.channel, []).append(item.message["EE_MESSAGE_SEQ"])
    for channel, numbers in by_channel.items():
        assert all(b > a for a, b in itertools.pairwise(numbers)), (channel, numbers)


def test_encrypted_deploy(mosquitto, node_factory, me, clients, capsys) -> None:
    node = start_node(node_factory, mosquitto)
    allow(node, me)
    client = clients(me, mosquitto.port, encrypt=True)
    sent = client.build_command(node.identity.address, "UPDATE_CONFIG", tick_pipeline())
    assert sent["EE_IS_ENCRYPTED"] is True and "ACTION" not in sent and "PAYLOAD" not in sent
    result = client.deploy(node.alias, tick_pipeline())
    assert result.ok and result.code == 1, result
    assert result.command["EE_IS_ENCRYPTED"] is True and "PAYLOAD" not in result.command
    assert node.pipeline_names() == ["tick"]

    # `edge-client watch`: JSON lines, checked against their signatures
    argv = ["watch", "--payloads", "--count", "3", "--node", node.alias, "--port", str(mosquitto.port)]
    capsys.readouterr()
    assert client_cli.main([*argv, "--key", str(me.key_file)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert line["verified"] is True and line["channel"] == "payloads"
        assert line["message"]["EE_PAYLOAD_PATH"] == [node.alias, "tick", "TEST_TICK", "t"]
    assert client.delete(node.identity.address, "tick").ok


# --- rejections: a reason to the sender, and no change ------------------------------------------------------------
def _tampered(client: EdgeClient, stranger: EdgeClient, node: Node) -> bytes:
    message = client.build_command(node.identity.address, "UPDATE_CONFIG", tick_pipeline("tampered"))
    message["PAYLOAD"]["NAME"] = "evil"
    return raw(message)


def _unknown_sender(client: EdgeClient, stranger: EdgeClient, node: Node) -> bytes:
    return raw(stranger.build_command(node.identity.address, "UPDATE_CONFIG", tick_pipeline("stranger")))


def _expired(client: EdgeClient, stranger: EdgeClient, node: Node) -> bytes:
    old = datetime.now() - timedelta(hours=25)
    return raw(client.build_command(node.identity.address, "UPDATE_CONFIG", tick_pipeline("old"), sent_at=old))


def _malformed(client: EdgeClient, stranger: EdgeClient, node: Node) -> bytes:
    return b'{"ACTION": "UPDATE_CONFIG", "PAYLOAD": {'


def _payload_string(client: EdgeClient, stranger: EdgeClient, node: Node) -> bytes:
    return raw(client.build_command(node.identity.address, "UPDATE_CONFIG", "not a pipeline"))


def _bad_key_type(client: EdgeClient, stranger: EdgeClient, node: Node) -> bytes:
    payload = {
        "NAME": "keep",
        "SIGNATURE": "FRAME_STATS",
        "INSTANCE_ID": "k",
        "INSTANCE_CONFIG": {"REPORT_EVERY": "often"},
    }
    return raw(client.build_command(node.identity.address, "UPDATE_PIPELINE_INSTANCE", payload))


def _oversize(client: EdgeClient, stranger: EdgeClient, node: Node) -> bytes:
    big = {**tick_pipeline("big"), "DESCRIPTION": "x" * 25_000}
    return raw(client.build_command(node.identity.address, "UPDATE_CONFIG", big))


REJECTIONS = {
    "tampered": (_tampered, -5000, "signature rejected: hash mismatch"),
    "unknown-sender": (_unknown_sender, -5000, "is not in authorized_addrs"),
    "expired-time": (_expired, -5000, "TIME outside the accepted window"),
    "malformed-json": (_malformed, -5000, "malformed JSON"),
    "payload-not-object": (_payload_string, -5000, "UPDATE_CONFIG needs a pipeline object as PAYLOAD (got str)"),
    "bad-key-type": (_bad_key_type, -100, "key 'REPORT_EVERY': expected int (got 'often')"),
    "oversize": (_oversize, -5000, "message too large"),
}
KEEP = message_pipeline("keep", "FRAME_STATS", 5, "k", REPORT_EVERY=1000)


@pytest.fixture
def guarded(mosquitto, node_factory, me, stranger, clients) -> tuple[Node, EdgeClient, EdgeClient]:
    """A node with one pipeline, messages limited to 20,000 bytes, the client allowed and a stranger not."""
    node = start_node(node_factory, mosquitto, pipelines=[KEEP], environ={"EE_MAX_MESSAGE_BYTES": "20000"})
    allow(node, me)
    return node, clients(me, mosquitto.port), clients(stranger, mosquitto.port)


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejected_with_reason_and_no_change(guarded, case: str) -> None:
    node, client, stranger = guarded
    make, code, reason = REJECTIONS[case]
    before = state(node)
    assert before[0] == ["keep"]
    data = make(client, stranger, node)
    with client.listen(lambda r: r.channel == "notifications" and r.verified) as notes:
        client.publish(node.identity.address, data)
        note = notification(notes, lambda r: r.code is not None and r.code < 0)
    assert note.code == code, note.message
    assert reason in note.message["NOTIFICATION"], note.message["NOTIFICATION"]
    assert note.sender == node.identity.address and note.message["NOTIFICATION_TYPE"] == "EXCEPTION"
    assert state(node) == before
    assert node.comms.commands.stats.rejected == 1 and node.comms.commands.stats.accepted == 0


def test_replayed_command_is_rejected(guarded) -> None:
    node, client, _ = guarded
    data = raw(client.build_command(node.identity.address, "UPDATE_CONFIG", tick_pipeline("once")))
    with client.listen(lambda r: r.channel == "notifications" and r.verified) as notes:
        client.publish(node.identity.address, data)
        assert notification(notes, lambda r: r.code in (1, -1, -5000)).code == 1
        after_first = state(node)
        assert after_first[0] == ["keep", "once"]
        client.publish(node.identity.address, data)  # the very same bytes
        note = notification(notes, lambda r: r.code is not None and r.code < 0)
    assert note.code == -5000 and "replayed" in note.message["NOTIFICATION"], note.message
    assert state(node) == after_first


# --- allowlist, live -------------------------------------------------------------------------------------------
def test_allowlist_changes_apply_without_restart(mosquitto, node_factory, me, clients) -> None:
    node = start_node(node_factory, mosquitto)
    client = clients(me, mosquitto.port)
    refused = client.deploy(node.identity.address, tick_pipeline(), timeout=10)
    assert not refused.ok and refused.code == -5000 and "not in authorized_addrs" in refused.reason
    assert node.pipeline_names() == []

    allow(node, me)
    accepted = client.deploy(node.identity.address, tick_pipeline(), timeout=10)
    assert accepted.ok, accepted.reason
    assert node.pipeline_names() == ["tick"]

    assert main_remove_allowed(["--cache-dir", str(node.layout.root), me.address]) == 0
    revoked = client.delete(node.identity.address, "tick", timeout=10)
    assert not revoked.ok and "not in authorized_addrs" in revoked.reason
    assert node.pipeline_names() == ["tick"]


def test_rejection_notifications_are_rate_limited(mosquitto, node_factory, stranger, clients) -> None:
    node = start_node(node_factory, mosquitto)
    intruder = clients(stranger, mosquitto.port)
    address = node.identity.address
    with intruder.listen(lambda r: r.channel == "notifications" and r.code == -5000) as notes:
        for i in range(50):
            intruder.publish(address, raw(intruder.build_command(address, "UPDATE_CONFIG", tick_pipeline(f"x{i}"))))
        stats = node.comms.commands.stats
        wait_for(lambda: stats.received >= 50, timeout=10)
        # every rejection is either notified (the notification arrives) or counted as not notified
        notified = len(collect_until(notes, lambda got: len(got) + stats.rejections_not_notified >= 50))
    assert 1 <= notified <= 20, notified
    assert stats.rejected == 50 and stats.accepted == 0
    assert stats.rejections_not_notified == 50 - notified
    assert node.pipeline_names() == []

    # forged senders (a different EE_SENDER each time, signatures that do not verify) share one budget
    with intruder.listen(lambda r: r.channel == "notifications" and r.code == -5000) as notes:
        for _ in range(50):
            message = intruder.build_command(address, "UPDATE_CONFIG", tick_pipeline("forged"))
            message["EE_SENDER"] = identity_from_private_key(coincurve.PrivateKey()).address
            intruder.publish(address, raw(message))
        wait_for(lambda: stats.received >= 100, timeout=10)
        forged_notes = collect_until(notes, lambda got: notified + len(got) + stats.rejections_not_notified >= 100)
        forged = len(forged_notes)
        for note in forged_notes:
            assert "signature rejected" in note.message["NOTIFICATION"]
    assert 1 <= forged <= 20, forged
    assert stats.rejected == 100 and stats.rejections_not_notified == 100 - notified - forged


def test_encode_sends_exactly_what_it_signed(mosquitto, node_factory) -> None:
    """NaN, numpy values and datetimes in a payload: valid JSON on the wire whose signature verifies."""
    node = start_node(node_factory, mosquitto)
    data = {"nan": float("nan"), "n": np.int64(3), "f": np.float32(0.5), "arr": np.arange(3),
            "when": datetime(2026, 11, 23, 14, 0, 0, 123456), "text": "entrée"}  # fmt: skip
    payload = Payload([node.alias, "p", "SIG", "i"], data, seq=1)
    wire = node.comms.encode(OutboxItem("payloads", {}, list(payload.path), source=payload))
    message = json.loads(wire, parse_constant=lambda name: pytest.fail(f"{name} on the wire"))
    assert verify(message).ok
    assert (message["NAN"], message["N"], message["ARR"], message["WHEN"]) == (
        None,
        3,
        [0, 1, 2],
        "2026-11-23 14:00:00",
    )
    assert message["EE_MESSAGE_SEQ"] >= 1 and message["EE_PAYLOAD_PATH"] == [node.alias, "p", "SIG", "i"]


def test_the_outbox_stores_the_text_to_sign_and_the_publisher_signs_it(mosquitto, node_factory) -> None:
    """The producer's thread stores the message's canonical text (durable before accept_payload returns) and does
    not sign: the publisher signs it on the way out, into the bytes sign_to_json would have made."""
    node = start_node(node_factory, mosquitto)
    received: list[bytes] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="seal-watcher")
    sub.on_connect = lambda c, *_: c.subscribe(node.comms.topic("payloads"), 1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda _c, _u, m: received.append(bytes(m.payload))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        payload = Payload([node.alias, "p", "SIG", "i"], {"count": 2, "label": "entrée"}, seq=1)
        assert node.comms.accept_payload(payload) is None
        wait_for(lambda: received, timeout=10)
    finally:
        sub.loop_stop()
        sub.disconnect()
    message = json.loads(received[0])
    assert verify(message).ok and message["COUNT"] == 2
    stored = {}
    for _, path in segment_files(node.comms.outbox.folder, "payloads"):
        blob = path.read_bytes()
        assert blob.startswith(MAGIC_UNSIGNED)
        records, _ = parse_records(blob, len(MAGIC_UNSIGNED))
        for offset, seq in records:
            length = RECORD.unpack_from(blob, offset)[0]
            stored[seq] = blob[offset + RECORD.size : offset + RECORD.size + length]
    text = stored[message["EE_MESSAGE_SEQ"]]
    assert b"EE_SIGN" not in text and b"EE_HASH" not in text
    assert seal(text, node.comms.identity) == received[0]


def test_a_payload_too_large_once_signed_is_refused_before_it_is_stored(mosquitto, node_factory) -> None:
    """The outbox stores texts to sign: the size limit counts the signature fields still to come."""
    node = start_node(node_factory, mosquitto)
    comms = node.comms
    payload = Payload([node.alias, "p", "SIG", "i"], {"text": "x" * 2000}, seq=1)
    text = comms.text_to_sign(OutboxItem("payloads", {}, list(payload.path), seq=1, source=payload))
    refused, stored = comms.counters["oversize"], comms.outbox.stats()["refused"]
    comms.settings.max_message_bytes = len(text) + 50  # the text fits, the signed message would not
    comms.accept_payload(payload)
    assert comms.counters["oversize"] == refused + 1 and comms.outbox.stats()["refused"] == stored + 1
    comms.settings.max_message_bytes = len(text) + 50 + SEAL_MAX_EXTRA + len(comms.identity.address)
    delivered = comms.counters["delivered"]
    comms.accept_payload(payload)
    wait_for(lambda: comms.counters["delivered"] > delivered, timeout=10)
    assert comms.counters["oversize"] == refused + 1


# --- broker outage, embedded broker, last will -----------------------------------------------------------------
def test_broker_restart_reconnects_and_delivers_the_outbox(mosquitto_factory, node_factory) -> None:
    """The subscriber keeps a persistent session (broker persistence on) so that nothing published after the
    restart is lost to it, whichever of the node and the subscriber reconnects first."""
    broker = mosquitto_factory(persistence=True)
    received: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="outage-watcher", clean_session=False)
    sub.reconnect_delay_set(0.05, 0.2)
    sub.on_connect = lambda c, *_: c.subscribe([("naeural/payloads", 1), ("naeural/ctrl", 1)])
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda _c, _u, m: received.append((m.topic, m.payload))
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        node = start_node(node_factory, broker, pipelines=[tick_pipeline(fps=20)])
        transport = node.comms.transport
        wait_for(lambda: len(received) > 10, timeout=10)

        broker.stop()
        down_at = time.time()
        wait_for(lambda: not transport.connected.is_set(), timeout=5)
        time.sleep(OUTAGE_SECONDS)
        assert len(node.comms.outbox) > 0  # payloads made meanwhile wait in the outbox
        broker.start()
        up_at = time.time()
        wait_for(lambda: transport.connects == 2, timeout=10)
        wait_for(lambda: len(node.comms.outbox) == 0, timeout=10)
        beats_before = sum(1 for t, _ in received if t == "naeural/ctrl")
        wait_for(lambda: sum(1 for t, _ in received if t == "naeural/ctrl") > beats_before + 1, timeout=5)
        last = node.comms.sequences._next["payloads"] - 1  # the last payload made has arrived
        wait_for(
            lambda: last in {json.loads(d)["EE_MESSAGE_SEQ"] for t, d in list(received) if t == "naeural/payloads"}
        )
    finally:
        sub.loop_stop()
        sub.disconnect()

    arrived = [json.loads(data) for topic, data in received if topic == "naeural/payloads"]
    assert all(verify(p).ok for p in arrived)
    # QoS 1 is at-least-once: a message the broker took just before it stopped, whose PUBACK was lost, comes
    # again (same EE_MESSAGE_ID) right after the reconnection. Nothing may be lost or out of order.
    payloads, ids = [], set()
    for p in arrived:
        if p["EE_MESSAGE_ID"] not in ids:
            ids.add(p["EE_MESSAGE_ID"])
            payloads.append(p)
    assert len(arrived) - len(payloads) <= 2, "more repeats than messages in flight at the outage"
    seqs = [p["EE_MESSAGE_SEQ"] for p in payloads]
    assert seqs == sorted(seqs), "payloads out of order"
    inputs = [p["I"] for p in payloads]
    assert inputs == sorted(inputs)
    # Messages the broker acknowledged while it was shutting down may be lost to the subscriber with the broker
    # itself (QoS 1 ends at the broker's PUBACK), so the boundary of the outage may show one gap. What the node
    # kept in its outbox while it was disconnected must all arrive, in order, with no gap.
    made_offline = [p for p in payloads if down_at + 0.5 < p["CAPTURED"] < up_at - 0.2]
    assert len(made_offline) >= int(OUTAGE_SECONDS * 20 * 0.5), len(made_offline)
    offline_seqs = [p["EE_MESSAGE_SEQ"] for p in made_offline]
    assert offline_seqs == list(range(offline_seqs[0], offline_seqs[0] + len(offline_seqs))), "outbox lost payloads"
    after = [s for s in seqs if s > offline_seqs[-1]]
    assert after == list(range(offline_seqs[-1] + 1, offline_seqs[-1] + 1 + len(after))), "payloads lost after"
    assert transport.disconnects >= 1


def test_embedded_broker(node_factory, me, clients) -> None:
    port = free_port()
    env = {"EE_COMMS": "1", "EE_EMBEDDED_BROKER": "always", "EE_MQTT_PORT": str(port)}
    node = node_factory(
        plugins={"business/tick.py": TICK_PLUGIN}, startup=FAST_HEARTBEATS, environ=env, pipelines=[tick_pipeline()]
    )
    assert node.comms.broker is not None and (node.comms.host, node.comms.port) == ("127.0.0.1", port)
    client = clients(me, port, channels=("heartbeats", "payloads"))
    with client.listen(lambda r: r.channel == "payloads") as payloads:
        assert client.wait_node(node.alias, timeout=5).address == node.identity.address
        payload = payloads.get(5)
    assert payload is not None and payload.verified and payload.message["EE_PAYLOAD_PATH"][1] == "tick"


def test_last_will_announces_offline(mosquitto, node_factory, me, clients) -> None:
    node = start_node(node_factory, mosquitto)
    client = clients(me, mosquitto.port)
    with client.listen(lambda r: r.channel == "heartbeats" and r.sender == node.identity.address) as beats:
        notification(beats, lambda r: True, timeout=5)
        node.comms.transport.client.socket().close()  # the connection dies without a DISCONNECT
        will = notification(beats, lambda r: r.data.get("DEVICE_STATUS") == "OFFLINE", timeout=10)
    assert will.verified and will.topic == "naeural/ctrl"
    assert will.message["EE_PAYLOAD_PATH"] == [node.alias, None, None, None]
    wait_for(lambda: node.comms.transport.connects == 2, timeout=10)


# --- the node as a process ---------------------------------------------------------------------------------------
def test_process_first_heartbeat(mosquitto, tmp_path, me, clients) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    for name in ("extensions", "plugins", "pipelines", "samples"):
        (workdir / name).symlink_to(REPO / name, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")}
    env.pop("PYTHONPATH", None)
    env.update({"EE_CACHE_DIR": str(workdir / "cache"), "EE_DEMO": "0", **mosquitto.env})
    client = clients(me, mosquitto.port)
    with client.listen(lambda r: r.channel == "heartbeats") as beats:
        launched = time.monotonic()
        with open(workdir / "node.log", "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(REPO / "device.py")],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            first = beats.get(10)
            elapsed = time.monotonic() - launched
            assert first is not None, (workdir / "node.log").read_text()
            assert first.verified and first.data["DEVICE_STATUS"] == "ONLINE"
            print(f"\nlaunch → first heartbeat at the broker: {elapsed * 1000:.0f} ms (budget 1000 ms)")
            assert elapsed < 5.0
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
