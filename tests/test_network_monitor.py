"""The network monitor, supervisor mode, config exchange and the admin pipeline.

Unit tests drive :class:`NetworkTracker` with a fake clock and real signed heartbeats; the rest run nodes in this
process against a real Mosquitto and check what reaches the broker: NET_MON_01 from a supervisor listing itself and
a second node, a ``SET_CONFIG`` answer (decrypted with our crypto helpers, signature verified) sent only to an
allowlisted requester, and an admin pipeline that commands can neither delete nor replace.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import coincurve
import paho.mqtt.client as mqtt
import pytest
from conftest import REPO, wait_for
from mqtt_broker import Mosquitto

from edge_engine.cli.ops import main_add_allowed
from edge_engine.comms.admin import ADMIN_PIPELINE, NET_CONFIG, NET_MON, AdminPipeline, admin_pipeline_config
from edge_engine.comms.comms_settings import CommsSettings
from edge_engine.comms.crypto import decrypt, encrypt_for_multi
from edge_engine.comms.heartbeat import encode_data
from edge_engine.comms.network import NetworkTracker
from edge_engine.comms.signing import sign_to_json, strip_address_prefix, verify
from edge_engine.config.node_settings import load_settings
from edge_engine.local.identity import Identity, identity_from_private_key
from edge_engine.node.core import Node
from edge_engine.remote import command_line as client_cli
from edge_engine.remote.node_client import EdgeClient, Received, load_client_identity

FAST = {"SECONDS_HEARTBEAT": 1, "RESTART_BACKOFF_MAX": 1.0, "SECONDS_LOCAL_INFO": 0.5}


# --- unit: the tracker ---------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new_identity() -> Identity:
    return identity_from_private_key(coincurve.PrivateKey())


def heartbeat(identity: Identity, alias: str, status: str = "ONLINE", **fields: Any) -> dict[str, Any]:
    """A signed v2 heartbeat as a node sends it."""
    body = {"EE_ADDR": identity.address, "EE_ID": alias, "EE_WHITELIST": [], "SECURED": True,
            "DEVICE_STATUS": status, "VERSION": "v1.0.0", "EE_IS_SUPER": False, **fields}  # fmt: skip
    message = {"ENCODED_DATA": encode_data(body), "HEARTBEAT_VERSION": "v2", "EE_ID": alias,
               "EE_ADDR": identity.address, "EE_EVENT_TYPE": "HEARTBEAT",
               "EE_PAYLOAD_PATH": [alias, None, None, None]}  # fmt: skip
    return json.loads(sign_to_json(message, identity))


class CountingVerify:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, message: dict[str, Any]) -> Any:
        self.calls += 1
        return verify(message)


def tracker(clock: Clock, **kw: Any) -> NetworkTracker:
    return NetworkTracker("0xai_self", kw.pop("verify", verify), clock=clock, **kw)


def test_online_then_offline_after_the_timeout_then_back() -> None:
    clock = Clock()
    net = tracker(clock, offline_seconds=60)
    node = new_identity()
    assert net.observe(heartbeat(node, "n1")) == "new"
    clock.now += 59
    (row,) = net.nodes()
    assert row["online"] and row["alias"] == "n1" and row["address"] == node.address
    clock.now += 2  # 61 s without a heartbeat
    (row,) = net.nodes()
    assert not row["online"] and row["status"] == "OFFLINE" and row["seconds_ago"] == 61
    assert net.current_network()[node.address]["working"] == "OFFLINE"
    assert net.observe(heartbeat(node, "n1")) == "new"  # back online
    assert net.nodes()[0]["online"]
    assert net.observe(heartbeat(node, "n1")) == "seen"


def test_offline_last_will_is_shown_at_once() -> None:
    clock = Clock()
    net = tracker(clock)
    node = new_identity()
    net.observe(heartbeat(node, "n1"))
    assert net.observe(heartbeat(node, "n1", status="OFFLINE")) == "offline"
    assert not net.nodes()[0]["online"]


def test_bad_signatures_and_garbage_are_refused_and_counted() -> None:
    clock = Clock()
    net = tracker(clock)
    node = new_identity()
    forged = heartbeat(node, "n1")
    forged["ENCODED_DATA"] = encode_data({"EE_ID": "evil", "EE_WHITELIST": ["0xai_x"], "SECURED": False})
    assert net.observe(forged) is None
    assert net.observe_raw(b"not json") is None
    assert net.observe({"EE_SENDER": node.address, "HEARTBEAT_VERSION": "v2", "ENCODED_DATA": "%%%"}) is None
    assert len(net) == 0
    assert net.stats.bad_signature == 1 and net.stats.malformed == 2


def test_signatures_are_checked_again_on_identity_change_or_after_n_seconds() -> None:
    clock = Clock()
    counting = CountingVerify()
    net = tracker(clock, verify=counting, verify_seconds=30)
    node = new_identity()
    for _ in range(3):
        assert net.observe(heartbeat(node, "n1")) is not None
        clock.now += 5
    assert counting.calls == 1  # unchanged identity within 30 s: checked once
    forged = heartbeat(node, "n1")
    forged["ENCODED_DATA"] = encode_data({"EE_ID": "n1", "EE_WHITELIST": ["0xai_attacker"], "SECURED": False})
    assert net.observe(forged) is None  # changed identity fields: checked, and refused
    assert counting.calls == 2 and net.nodes()[0]["whitelist"] == []
    clock.now += 31
    assert net.observe(heartbeat(node, "n1")) == "seen" and counting.calls == 3  # 30 s passed: checked again


def test_the_view_is_bounded_and_keeps_this_node() -> None:
    clock = Clock()
    counting = CountingVerify()
    net = tracker(clock, max_nodes=3, verify=counting)
    net.touch_self({"EE_ADDR": "0xai_self", "EE_ID": "me"})
    others = [new_identity() for _ in range(4)]
    for i, node in enumerate(others):
        clock.now += 1
        net.observe(heartbeat(node, f"n{i}"))
    addresses = {row["address"] for row in net.nodes()}
    assert len(net) == 3 and "0xai_self" in addresses
    # full of online nodes: the newcomers are refused (before any signature check), nobody is evicted
    assert addresses - {"0xai_self"} == {others[0].address, others[1].address}
    assert net.stats.evicted == 0 and net.stats.full == 2 and counting.calls == 2
    # so a fleet larger than the view does not evict itself in turn: the same heartbeats again change nothing
    for i, node in enumerate(others):
        net.observe(heartbeat(node, f"n{i}"))
    assert {row["address"] for row in net.nodes()} == addresses and net.stats.evicted == 0
    # the node heard from longest ago gives its place once it is offline
    clock.now += 61
    net.observe(heartbeat(others[1], "n1"))  # n1 keeps talking, n0 has gone silent
    assert net.observe(heartbeat(others[3], "n3")) == "new"
    assert {row["address"] for row in net.nodes()} == {"0xai_self", others[1].address, others[3].address}
    assert net.stats.evicted == 1
    clock.now += 10_000
    assert [r["alias"] for r in net.nodes() if r["online"]] == ["me"]  # this node is online while it runs


def test_current_network_has_the_fields_the_sdk_reads() -> None:
    clock = Clock()
    net = tracker(clock)
    node = new_identity()
    net.observe(heartbeat(node, "n1", EE_WHITELIST=["0xai_client"], SECURED=True, EE_IS_SUPER=True))
    entry = net.current_network()[node.address]
    assert entry["address"] == node.address and entry["eeid"] == "n1" and entry["working"] == "ONLINE"
    assert entry["whitelist"] == ["0xai_client"] and entry["secured"] is True and entry["is_supervisor"] is True
    assert entry["version"] == "v1.0.0" and "last_seen_sec" in entry and "eth_address" in entry


def test_admin_pipeline_config_from_a_ratio1_template() -> None:
    template = {"NET_CONFIG_MONITOR": {"PROCESS_DELAY": 0}, "NET_MON_01": {"PROCESS_DELAY": 10},
                "UPDATE_MONITOR_01": {"PROCESS_DELAY": 300}}  # fmt: skip
    config, skipped = admin_pipeline_config(template)
    assert config["NAME"] == ADMIN_PIPELINE and config["TYPE"] == "NetworkListener"
    assert skipped == ["UPDATE_MONITOR_01"]
    instances = {p["SIGNATURE"]: p["INSTANCES"] for p in config["PLUGINS"]}
    assert instances[NET_MON] == [{"INSTANCE_ID": "NET_MON_01_INST", "PROCESS_DELAY": 10}]
    assert instances[NET_CONFIG][0]["INSTANCE_ID"] == "NET_CONFIG_MONITOR_INST"


# --- nodes on a real broker ------------------------------------------------------------------------------------
@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """``nodes(name, broker, environ=..., startup=...)``: started nodes, each with its own cache; stopped after."""
    made: list[Node] = []

    def make(name: str, broker: Mosquitto, environ: dict[str, str] | None = None, **startup: Any) -> Node:
        base = tmp_path / name
        base.mkdir()
        config = {"PLUGIN_FOLDERS": [str(REPO / "extensions")], "DEMO_PIPELINE": False, "EE_ID": name,
                  **FAST, **startup}  # fmt: skip
        (base / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
        env = {"EE_LOAD_ENTRY_POINTS": "0", "EE_STATUS_PORT": "0", **broker.env, **(environ or {})}
        node = Node(load_settings(base, base / "_local_cache", env))
        node.start()
        made.append(node)
        wait_for(node.comms.transport.connected.is_set, timeout=10)
        return node

    yield make
    for node in made:
        if node.status == "running":
            node.stop("test teardown")


def allow(node: Node, identity: Identity) -> None:
    assert main_add_allowed(["--cache-dir", str(node.layout.root), identity.address]) == 0


def first(listener: Any, accept: Callable[[Received], bool], timeout: float = 10.0) -> Received:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        received = listener.get(left)
        if received is not None and accept(received):
            return received
    raise AssertionError("no matching message in time")


def admin_path(r: Received, signature: str) -> bool:
    path = r.message.get("EE_PAYLOAD_PATH") or [None] * 4
    return r.channel == "payloads" and path[1:3] == [ADMIN_PIPELINE, signature]


def test_supervisor_publishes_net_mon_listing_itself_and_another_node(mosquitto, nodes, tmp_path, capsys) -> None:
    sup = nodes("sup", mosquitto, {"EE_SUPERVISOR": "1", "EE_NETMON_SEND_SECONDS": "0.5"})
    other = nodes("other", mosquitto)
    me = load_client_identity(tmp_path / "client.pem")
    allow(other, me)
    client = EdgeClient(me, port=mosquitto.port, channels=("payloads",)).connect()
    try:
        with client.listen(lambda r: admin_path(r, NET_MON)) as netmon:

            def both_online(r: Received) -> bool:
                network = r.data.get("CURRENT_NETWORK") or {}
                online = all(network.get(n.identity.address, {}).get("working") == "ONLINE" for n in (sup, other))
                return online and me.address in network[other.identity.address]["whitelist"]  # allowed just now

            received = first(netmon, both_online, timeout=15)
    finally:
        client.close()
    assert received.verified and received.sender == sup.identity.address
    assert received.message["EE_PAYLOAD_PATH"] == [sup.alias, ADMIN_PIPELINE, NET_MON, "NET_MON_01_INST"]
    assert received.message["EE_ID"] == sup.alias and received.message["EE_EVENT_TYPE"] == "PAYLOAD"
    assert received.message["NETMON_VERSION"] == "v2" and "CURRENT_NETWORK" not in received.message  # compressed
    entry = received.data["CURRENT_NETWORK"][other.identity.address]
    assert entry["eeid"] == other.alias and entry["address"] == other.identity.address
    assert entry["secured"] is True and me.address in entry["whitelist"]
    assert received.data["CURRENT_NETWORK"][sup.identity.address]["is_supervisor"] is True
    assert other.comms.admin.counters["netmon_sent"] == 0  # only supervisors publish

    # every node tracks the network: the other node's view (local_info.json) lists the supervisor online
    def sees_supervisor() -> bool:
        other.write_local_info()  # (the main loop, which refreshes it, does not run in this process)
        view = json.loads(other.layout.local_info.read_text())["network"]["nodes"]
        return any(n["address"] == sup.identity.address and n["online"] and n["is_supervisor"] for n in view)

    wait_for(sees_supervisor, timeout=10)
    # our client shows the supervisor's view
    capsys.readouterr()
    argv = ["network", "--json", "--wait", "10", "--port", str(mosquitto.port), "--key", str(me.key_file)]
    assert client_cli.main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {sup.identity.address, other.identity.address} <= set(shown)


def config_request(sender: Identity, node_address: str) -> bytes:
    """A NET_CONFIG_MONITOR GET_CONFIG request built as the ratio1 SDK builds it (encrypted to a list of nodes)."""
    data = json.dumps({"NET_CONFIG_DATA": {"OP": "GET_CONFIG", "DEST": [node_address]}})
    message = {
        "EE_IS_ENCRYPTED": True,
        "EE_ENCRYPTED_DATA": encrypt_for_multi(data, sender, [node_address]),
        "EE_DEST": [node_address],
        "EE_ID": None,
        "SESSION_ID": "sdk-test",
        "INITIATOR_ID": "sdk-test",
        "EE_SENDER": sender.address,
        "TIME": datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f"),
        "EE_PAYLOAD_PATH": [sender.address, ADMIN_PIPELINE, NET_CONFIG, None],
    }
    return sign_to_json(message, sender).encode("utf-8")


def publish(port: int, topic: str, data: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, data, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


class TopicListener:
    """A plain MQTT subscriber keeping ``(topic, message)`` of every JSON message on ``topics``."""

    def __init__(self, port: int, topics: list[str]):
        self.received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.received.put((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def get(self, timeout: float) -> tuple[str, dict[str, Any]] | None:
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_config_exchange_answers_only_an_allowlisted_requester(mosquitto, nodes, tmp_path) -> None:
    pipeline = {"NAME": "tick", "TYPE": "Void", "PLUGINS": []}
    node = nodes("cfg", mosquitto, PIPELINES=[{**pipeline, "URL": "rtsp://user:secret@cam/1"}])
    me = load_client_identity(tmp_path / "me.pem")
    older = load_client_identity(tmp_path / "older.pem")  # a sender that uses the broadcast topic
    stranger = load_client_identity(tmp_path / "stranger.pem")
    allow(node, me)
    allow(node, older)
    wait_for(lambda: node.comms.admin.snapshot()["listening_for_config_requests"], timeout=10)
    time.sleep(0.3)  # the SUBACK
    targeted = f"naeural/{node.identity.address}/payloads"  # where the ratio1 SDK 3.5 sends it
    # the answers must come on each requester's own topic (as Ratio1's nodes send them), never on the broadcast one
    own_topics = {who.address: f"naeural/{who.address}/payloads" for who in (me, older, stranger)}
    watcher = TopicListener(mosquitto.port, ["naeural/payloads", *own_topics.values()])
    answers: list[tuple[str, dict[str, Any]]] = []
    try:
        publish(mosquitto.port, targeted, config_request(stranger, node.identity.address))
        publish(mosquitto.port, targeted, config_request(me, node.identity.address))
        publish(mosquitto.port, "naeural/payloads", config_request(older, node.identity.address))
        deadline = time.monotonic() + 10
        while len(answers) < 2 and time.monotonic() < deadline:
            got = watcher.get(deadline - time.monotonic())
            if got is not None and got[1].get("EE_SENDER") == node.identity.address:
                answers.append(got)
        while (got := watcher.get(1.0)) is not None:  # two answers only: the stranger got none
            assert got[1].get("EE_SENDER") != node.identity.address, f"unexpected message on {got[0]}"
    finally:
        watcher.close()
    assert len(answers) == 2, "no answer in time"
    assert sorted((topic, m["EE_DEST"]) for topic, m in answers) == sorted(
        [(own_topics[me.address], me.address), (own_topics[older.address], older.address)])  # fmt: skip
    # replies are numbered on their own sequence channel: the broadcast payloads keep no gaps
    assert sorted(m["EE_MESSAGE_SEQ"] for _, m in answers) == [1, 2]
    assert node.comms.sequences.next("payloads") == 1
    message = next(m for _, m in answers if m["EE_DEST"] == me.address)
    assert verify(message).ok and message["EE_SENDER"] == node.identity.address
    assert message["EE_DEST"] == me.address and message["EE_IS_ENCRYPTED"] is True
    assert message["EE_PAYLOAD_PATH"] == [node.alias, ADMIN_PIPELINE, NET_CONFIG, "NET_CONFIG_MONITOR_INST"]
    assert "NET_CONFIG_DATA" not in message  # only inside the encrypted data
    body = json.loads(decrypt(message["EE_ENCRYPTED_DATA"], me, node.identity.address))
    data = body["NET_CONFIG_DATA"]
    assert data["OP"] == "SET_CONFIG"
    by_name = {p["NAME"]: p for p in data["PIPELINES"]}
    assert set(by_name) == {ADMIN_PIPELINE, "tick"}
    assert by_name["tick"]["URL"] == "rtsp://user:secret@cam/1"  # the full config, to an allowlisted owner only
    assert {(s["STREAM_ID"], s["INSTANCE_ID"]) for s in data["PLUGIN_STATUSES"]} >= {
        (ADMIN_PIPELINE, "NET_MON_01_INST"), (ADMIN_PIPELINE, "NET_CONFIG_MONITOR_INST")}  # fmt: skip
    with pytest.raises(ValueError):
        decrypt(message["EE_ENCRYPTED_DATA"], stranger, node.identity.address)
    counters = node.comms.admin.counters
    assert counters["config_replies"] == 2 and counters["config_refused"] == 1


def test_admin_pipeline_cannot_be_deleted_or_replaced_by_command(mosquitto, nodes, tmp_path) -> None:
    node = nodes("adm", mosquitto)
    me = load_client_identity(tmp_path / "me.pem")
    allow(node, me)
    client = EdgeClient(me, port=mosquitto.port).connect()
    try:
        client.wait_node(node.alias, timeout=10)
        deleted = client.delete(node.identity.address, ADMIN_PIPELINE, timeout=10)
        assert not deleted.ok and "admin pipeline cannot be deleted" in deleted.reason
        replaced = client.deploy(node.identity.address, {"NAME": ADMIN_PIPELINE, "TYPE": "Void", "PLUGINS": []}, 10)
        assert not replaced.ok and "admin pipeline" in replaced.reason
        changed = client.update_instance(node.identity.address, ADMIN_PIPELINE, NET_MON, "NET_MON_01_INST",
                                         {"PROCESS_DELAY": 1}, timeout=10)  # fmt: skip
        assert not changed.ok and "admin pipeline" in changed.reason
        with client.listen(lambda r: r.channel == "heartbeats" and r.sender == node.identity.address) as beats:
            hb = first(beats, lambda r: True)
    finally:
        client.close()
    streams = {s["NAME"]: s for s in hb.data["CONFIG_STREAMS"]}
    assert streams[ADMIN_PIPELINE]["TYPE"] == "NetworkListener"
    assert {(p["STREAM_ID"], p["INSTANCE_ID"]) for p in hb.data["ACTIVE_PLUGINS"]} == {
        (ADMIN_PIPELINE, "NET_MON_01_INST"), (ADMIN_PIPELINE, "NET_CONFIG_MONITOR_INST")}  # fmt: skip
    assert node.pipeline_names() == [] and not (node.layout.streams / "admin_pipeline.json").exists()


# --- heartbeat completeness --------------------------------------------------------------------------------------
def test_heartbeat_v2_carries_the_fields_the_sdk_reads(tmp_path, monkeypatch) -> None:
    from edge_engine.comms import heartbeat as hb

    fake = tmp_path / "nvidia-smi"  # a stand-in for the real tool: the node only runs it and parses its CSV
    fake.write_text("#!/bin/sh\necho 'Tesla T4, 15360, 1024, 7, 41'\n", encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(hb, "_gpu_cache", (-hb.GPU_CACHE_SECONDS, []))
    snapshot = {"address": "0xai_node", "alias": "n1", "eth_address": "0xabc", "info": {"whitelist": ["0xai_c"]},
                "uptime_seconds": 12.5, "uptime": "0:00:12", "cache_dir": str(tmp_path), "pipelines": []}  # fmt: skip
    admin, _ = admin_pipeline_config(None)
    statuses = [{"STREAM_ID": ADMIN_PIPELINE, "SIGNATURE": NET_MON, "INSTANCE_ID": "NET_MON_01_INST"}]
    message = hb.build_heartbeat(snapshot, [admin], True, True, {"interval": 10}, True, statuses)
    assert message["HEARTBEAT_VERSION"] == "v2"
    body = hb.decode_data(message["ENCODED_DATA"])
    for key in ("EE_ADDR", "EE_ID", "EE_WHITELIST", "SECURED", "DEVICE_STATUS", "EE_HB_TIME", "ACTIVE_PLUGINS",
                "CONFIG_STREAMS", "VERSION", "CPU_USED", "CPU_NR_CORES", "MACHINE_MEMORY", "AVAILABLE_MEMORY",
                "TOTAL_DISK", "AVAILABLE_DISK", "UPTIME", "GPUS", "GPU_INFO", "EE_IS_SUPER"):  # fmt: skip
        assert key in body, key
    assert body["EE_ID"] == "n1" and body["EE_WHITELIST"] == ["0xai_c"] and body["DEVICE_STATUS"] == "ONLINE"
    assert body["EE_IS_SUPER"] is True and body["CONFIG_STREAMS"][0]["NAME"] == ADMIN_PIPELINE
    assert body["ACTIVE_PLUGINS"][0]["INSTANCE_ID"] == "NET_MON_01_INST"
    assert body["GPUS"] == [{"NAME": "Tesla T4", "TOTAL_MEM": 15.0, "ALLOCATED_MEM": 1.0, "GPU_USED": 7.0,
                             "GPU_TEMP": 41.0}]  # fmt: skip
    fake.write_text("#!/bin/sh\necho 'changed, 1, 1, 1, 1'\n", encoding="utf-8")
    assert hb.gpu_status()[0]["NAME"] == "Tesla T4"  # cached: nvidia-smi runs at most once a minute
    off = hb.decode_data(hb.build_heartbeat(snapshot, [admin], True, False, {})["ENCODED_DATA"])
    assert off["CONFIG_STREAMS"] == [] and off["EE_IS_SUPER"] is False  # EE_HB_CONTAINS_PIPELINES=0


def test_engine_api_keeps_the_admin_pipeline_out_of_reach(node_factory) -> None:
    from edge_engine.errors import ConfigError, PipelineError

    node = node_factory(start=False)
    ratio1_file = node.layout.stream_file(ADMIN_PIPELINE)  # a Ratio1 volume may hold one
    ratio1_file.parent.mkdir(parents=True, exist_ok=True)
    ratio1_file.write_text(json.dumps({"NAME": ADMIN_PIPELINE, "TYPE": "NetworkListener", "PLUGINS": []}))
    node.start()
    assert ADMIN_PIPELINE not in node.pipelines and ADMIN_PIPELINE not in node.invalid  # ignored, not "invalid"
    with pytest.raises(ConfigError, match="admin pipeline"):
        node.add_pipeline({"NAME": "Admin_Pipeline", "TYPE": "Void", "PLUGINS": []})
    with pytest.raises(PipelineError, match="admin pipeline"):
        node.remove_pipeline(ADMIN_PIPELINE)
    with pytest.raises(PipelineError, match="admin pipeline"):
        node.update_instance(ADMIN_PIPELINE, NET_MON, "NET_MON_01_INST", {"PROCESS_DELAY": 1})
    assert ratio1_file.exists()  # untouched


def test_supervisor_ordinal_0_picks_the_first_statefulset_pod_only() -> None:
    from edge_engine.comms.comms_settings import _supervisor, load_comms_settings

    assert _supervisor("ordinal-0", "edge-node-0") and not _supervisor("ordinal-0", "edge-node-1")
    assert not _supervisor("ordinal-0", "edge-node-10") and not _supervisor("ordinal-0", "laptop")
    assert _supervisor("true") and _supervisor("1") and not _supervisor("0")
    settings, issues = load_comms_settings({}, {}, {"EE_SUPERVISOR": "1"})
    assert settings.supervisor and not issues


def test_config_answers_go_to_the_requester_topic_by_address_or_alias() -> None:
    settings = CommsSettings(root_topic="r")
    admin = SimpleNamespace(settings=settings)  # reply_topic reads only the settings
    address = new_identity().address
    assert AdminPipeline.reply_topic(admin, address, {"EE_ID": "sdk"}) == f"r/{address}/payloads"
    assert AdminPipeline.reply_topic(admin, strip_address_prefix(address), {}) == f"r/{address}/payloads"
    settings.subtopic = "alias"  # EE_MQTT_SUBTOPIC=alias: the requester's alias when it gives one
    assert AdminPipeline.reply_topic(admin, address, {"EE_ID": "sdk"}) == "r/sdk/payloads"
    for alias in (None, "", "a/b", "x+", 7):  # none, or not a topic level: its address
        assert AdminPipeline.reply_topic(admin, address, {"EE_ID": alias}) == f"r/{address}/payloads"


def test_a_clean_stop_says_offline_and_a_stop_without_broker_does_not_wait(mosquitto, nodes, tmp_path) -> None:
    watch = nodes("watch", mosquitto, {"EE_NETMON_OFFLINE_SECONDS": "600"})  # only OFFLINE can show it offline
    leaving = nodes("leaving", mosquitto)
    address = leaving.identity.address
    wait_for(lambda: any(n["address"] == address and n["online"] for n in watch.comms.admin.tracker.nodes()))
    listener = TopicListener(mosquitto.port, ["naeural/ctrl"])
    try:
        leaving.stop("test")
        heard = []
        while (got := listener.get(1.0)) is not None:
            if got[1].get("EE_SENDER") == address:
                heard.append(got[1])
    finally:
        listener.close()
    assert heard and heard[-1].get("DEVICE_STATUS") == "OFFLINE"  # the last word: no heartbeat after it
    assert verify(heard[-1]).ok and heard[-1]["EE_ID"] == "leaving"
    wait_for(lambda: any(n["address"] == address and not n["online"] for n in watch.comms.admin.tracker.nodes()))

    mosquitto.stop()  # the broker away: the stop publishes nothing and still returns
    wait_for(lambda: not watch.comms.transport.connected.is_set())
    watch.stop("test")
    assert watch.status == "stopped"


def test_a_heartbeat_within_the_verify_window_cannot_change_the_version_unchecked() -> None:
    """A node whose heartbeat has no VERSION is shown with its EE_VERSION: a change of that is an identity change."""
    clock = Clock()
    counting = CountingVerify()
    net = tracker(clock, verify=counting, verify_seconds=30)
    node = new_identity()
    assert net.observe(heartbeat(node, "n1", VERSION=None, EE_VERSION="1.0.0")) == "new"
    clock.now += 5
    forged = heartbeat(node, "n1", VERSION=None, EE_VERSION="1.0.0")
    forged["ENCODED_DATA"] = encode_data({"EE_ID": "n1", "EE_WHITELIST": [], "SECURED": True, "DEVICE_STATUS": "ONLINE",
                                          "VERSION": None, "EE_IS_SUPER": False, "EE_VERSION": "6.6.6"})  # fmt: skip
    assert net.observe(forged) is None and counting.calls == 2 and net.stats.bad_signature == 1
    assert net.nodes()[0]["version"] == "1.0.0"


def test_the_views_timestamps_are_the_usual_utc_iso_ones() -> None:
    from random import Random

    from edge_engine.comms.network import _utc_iso
    from edge_engine.messages import utc_iso

    rng = Random(7)
    stamps = [1.0, 1.9999996, 1_700_000_000.0005, 1_700_000_000.9995] + [rng.uniform(0, 4e9) for _ in range(5000)]
    assert [_utc_iso(t) for t in stamps] == [utc_iso(t) for t in stamps]


def test_local_info_lists_the_nodes_heard_from_last_and_counts_them_all(monkeypatch) -> None:
    from edge_engine.comms import network

    monkeypatch.setattr(network, "LOCAL_INFO_NODES", 3)
    clock = Clock()
    net = tracker(clock)
    net.touch_self({"EE_ADDR": "0xai_self", "EE_ID": "me"})
    others = [new_identity() for _ in range(5)]
    for i, node in enumerate(others):
        clock.now += 1
        net.observe(heartbeat(node, f"n{i}"))
    view = net.snapshot()
    assert view["total"] == 6 and view["online"] == 6 and view["listed"] == 4
    assert [n["alias"] for n in view["nodes"]] == ["me", "n2", "n3", "n4"]


def test_local_info_stays_small_with_a_thousand_nodes() -> None:
    """local_info.json is rewritten every few seconds (indented JSON, Python's slow encoder): a 1,000-node view
    must not put 1,000 rows in it (they cost the main thread about as much as NET_MON_01 itself)."""
    clock = Clock()
    net = NetworkTracker("0xai_self", lambda message: SimpleNamespace(ok=True), clock=clock)
    net.touch_self({"EE_ADDR": "0xai_self", "EE_ID": "me"})
    for i in range(1000):
        clock.now += 0.01
        net.observe({"EE_SENDER": f"0xai_node{i:04d}", "EE_ID": f"n{i:04d}", "EE_WHITELIST": ["0xai_self"],
                     "VERSION": "v1.0.0", "SECURED": True})  # fmt: skip
    view = net.snapshot()
    assert view["total"] == 1001 and view["online"] == 1001
    assert view["listed"] == len(view["nodes"]) <= 201 and view["nodes"][0]["self"]
    assert [n["alias"] for n in view["nodes"][1:]] == [f"n{i:04d}" for i in range(1001 - view["listed"], 1000)]
    assert len(json.dumps(view, indent=2)) < 128 * 1024


def test_the_sender_keys_of_a_full_view_stay_cached() -> None:
    """Heartbeats come round in a cycle: a key cache smaller than the view would miss at every signature check."""
    from edge_engine.comms.network import DEFAULT_MAX_NODES
    from edge_engine.comms.signing import public_key_from_address

    keys = (coincurve.PrivateKey.from_int(i + 1).public_key.format() for i in range(DEFAULT_MAX_NODES))
    addresses = ["0xai_" + base64.urlsafe_b64encode(key).decode("ascii") for key in keys]
    public_key_from_address.cache_clear()
    for address in addresses:
        public_key_from_address(address)
    misses = public_key_from_address.cache_info().misses
    for address in addresses:
        public_key_from_address(address)
    assert public_key_from_address.cache_info().misses == misses


def test_a_costly_net_mon_stretches_the_gap_up_to_four_seconds() -> None:
    def gap(cost: float, wanted: float) -> float:
        return AdminPipeline._netmon_gap(SimpleNamespace(_netmon_cost=cost), wanted)  # type: ignore[arg-type]

    assert gap(0.001, 3.0) == 3.0 and gap(0.001, 0.5) == 0.5  # cheap: as configured
    assert gap(0.05, 0.5) == pytest.approx(2.0)  # 40 x its CPU time
    assert gap(0.5, 0.5) == 4.0 and gap(0.5, 3.0) == 4.0  # never beyond 4 s (an SDK session waits for it)
    assert gap(0.5, 10.0) == 10.0  # a longer configured period stays
