"""``ENCRYPT_PAYLOAD``: an instance's payloads go encrypted to the pipeline's initiator, in Ratio1's format.

A real Mosquitto (free port), a node in-process with comms on it, the owner's :class:`EdgeClient` that deploys the
pipeline (its address becomes ``INITIATOR_ADDR``), and a third party subscribed to the payload topic with plain
paho. The third party sees only routing fields in clear; the owner decrypts; every signature verifies.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import comms_node, wait_for
from mqtt_broker import Mosquitto
from plugins_src import synthetic_pipeline

from edge_engine.cli.ops import main_add_allowed
from edge_engine.comms.crypto import DecryptError, decrypt
from edge_engine.comms.signing import verify
from edge_engine.node.core import Node
from edge_engine.remote.node_client import EdgeClient, Received, load_client_identity

pytestmark = pytest.mark.timeout(60)

MARKER = "plain-text-marker-5e1d"
SECRET_PLUGIN = f"""
from edge_engine.api import BusinessPlugin


class Secret(BusinessPlugin):
    SIGNATURE = "TEST_SECRET"

    def process(self, inp):
        if inp is None:
            return None
        return {{"READING": "{MARKER}", "I": inp.seq}}
"""
# what may stay in clear on an encrypted payload: the envelope, the routing fields and the signature
CLEAR = {
    "EE_ID", "EE_ADDR", "EE_EVENT_TYPE", "EE_VERSION", "EE_TIMESTAMP", "EE_TIMEZONE", "EE_TZ", "EE_MESSAGE_SEQ",
    "EE_MESSAGE_SEQ_PREV", "EE_MESSAGE_ID", "EE_TOTAL_MESSAGES", "EE_FORMATTER", "EE_PAYLOAD_PATH",
    "EE_IS_ENCRYPTED", "EE_ENCRYPTED_DATA", "EE_DEST",
    "SESSION_ID", "INITIATOR_ID", "INITIATOR_ADDR", "MODIFIED_BY_ID", "MODIFIED_BY_ADDR",
    "SIGN_CANON_V", "EE_SENDER", "EE_HASH", "EE_SIGN",
}  # fmt: skip


def pipeline(name: str, *instances: dict[str, Any]) -> dict[str, Any]:
    return synthetic_pipeline(name, "TEST_SECRET", *instances, CAP_RESOLUTION=20)


class Eavesdropper:
    """A third party on the payload topic: plain paho, no key of its own that matters."""

    def __init__(self, broker: Mosquitto):
        self.raw: list[bytes] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="eavesdropper")
        self.client.on_connect = lambda c, *_: c.subscribe("naeural/payloads", 1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.raw.append(bytes(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(5)

    def messages(self, instance: str) -> list[dict[str, Any]]:
        parsed = [json.loads(data) for data in list(self.raw)]
        return [m for m in parsed if m["EE_PAYLOAD_PATH"][3] == instance]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def eavesdropper(mosquitto: Mosquitto) -> Iterator[Eavesdropper]:
    spy = Eavesdropper(mosquitto)
    yield spy
    spy.close()


def start_node(node_factory: Callable[..., Node], broker: Mosquitto, **kw: Any) -> Node:
    """The node of these tests: the secret plugin, a heartbeat a second, connected to ``broker``."""
    return comms_node(node_factory, broker, plugins={"business/secret.py": SECRET_PLUGIN},
                      startup={"SECONDS_HEARTBEAT": 1}, **kw)  # fmt: skip


def test_encrypted_to_the_initiator_only(mosquitto, node_factory, me, clients, eavesdropper, tmp_path) -> None:
    node = start_node(node_factory, mosquitto)
    assert main_add_allowed(["--cache-dir", str(node.layout.root), me.address, "me"]) == 0
    owner = clients(me, mosquitto.port, channels=("heartbeats", "notifications", "payloads"))
    payloads = owner.listen(lambda r: r.channel == "payloads")
    result = owner.deploy(node.alias, pipeline("vault", {"INSTANCE_ID": "hidden", "ENCRYPT_PAYLOAD": True},
                                               {"INSTANCE_ID": "open"}))  # fmt: skip
    assert result.ok, result.reason

    received: list[Received] = []

    def three_hidden() -> bool:
        item = payloads.get(0.1)
        if item is not None:
            received.append(item)
        return sum(1 for r in received if r.message["EE_PAYLOAD_PATH"][3] == "hidden") >= 3

    wait_for(three_hidden)
    hidden = [r for r in received if r.message["EE_PAYLOAD_PATH"][3] == "hidden"]
    for r in hidden:
        assert r.verified, r.reason
        message = r.message
        assert message["EE_IS_ENCRYPTED"] is True and message["EE_DEST"] == me.address
        assert set(message) <= CLEAR, set(message) - CLEAR
        assert "READING" not in message and "STREAM_NAME" not in message
        assert message["INITIATOR_ADDR"] == me.address and message["SESSION_ID"] == owner.session_id
        assert message["EE_PAYLOAD_PATH"] == [node.alias, "vault", "TEST_SECRET", "hidden"]
        # the owner decrypted it: the plugin's fields and Ratio1's body fields, merged
        assert r.data["READING"] == MARKER and r.data["STREAM_NAME"] == "vault" and r.data["INSTANCE_ID"] == "hidden"
        assert isinstance(r.data["I"], int) and "EE_ENCRYPTED_DATA" not in r.data
    # the instance without ENCRYPT_PAYLOAD stays in clear, with the same routing fields
    wait_for(lambda: eavesdropper.messages("open"))
    clear = eavesdropper.messages("open")[0]
    assert clear["EE_IS_ENCRYPTED"] is False and clear["READING"] == MARKER and verify(clear).ok
    assert clear["INITIATOR_ADDR"] == me.address and clear["MODIFIED_BY_ADDR"] == me.address

    # the third party: same bytes, signatures verify, nothing of the payload readable
    wait_for(lambda: len(eavesdropper.messages("hidden")) >= 3)
    stranger = load_client_identity(tmp_path / "stranger" / "client.pem")
    for message in eavesdropper.messages("hidden"):
        assert verify(message).ok and verify(message).sender == node.identity.address
        assert MARKER not in json.dumps(message) and set(message) <= CLEAR
        with pytest.raises(DecryptError):
            decrypt(message["EE_ENCRYPTED_DATA"], stranger, message["EE_SENDER"])
        inner = json.loads(decrypt(message["EE_ENCRYPTED_DATA"], me, message["EE_SENDER"]))
        assert inner["READING"] == MARKER and inner["SIGNATURE"] == "TEST_SECRET"
    other = EdgeClient(stranger, port=mosquitto.port)  # another client parses it: marked, not decoded
    seen = other.parse("naeural/payloads", json.dumps(eavesdropper.messages("hidden")[0]).encode())
    assert seen is not None and seen.verified and seen.decoded is None and "READING" not in seen.data

    # switched on live: the open instance's next payloads are encrypted too
    update = owner.update_instance(node.alias, "vault", "TEST_SECRET", "open", {"ENCRYPT_PAYLOAD": True})
    assert update.ok, update.reason
    count = len(eavesdropper.messages("open"))
    wait_for(lambda: any(m["EE_IS_ENCRYPTED"] for m in eavesdropper.messages("open")[count:]))
    later = [m for m in eavesdropper.messages("open")[count:] if m["EE_IS_ENCRYPTED"]]
    assert all(MARKER not in json.dumps(m) and m["EE_DEST"] == me.address for m in later)
    assert node.comms.counters["unencryptable"] == 0


def test_no_initiator_means_not_sent(mosquitto, node_factory, me, clients, eavesdropper) -> None:
    """A pipeline from the local config has no initiator: its encrypted instance's payloads are dropped, counted
    and notified once, never sent in clear; the other instance goes on."""
    watcher = clients(me, mosquitto.port, channels=("notifications",))  # subscribed before the node starts
    with watcher.listen(lambda r: r.channel == "notifications" and "ENCRYPT_PAYLOAD" in str(r.message)) as notes:
        local = pipeline("local", {"INSTANCE_ID": "hidden", "ENCRYPT_PAYLOAD": True}, {"INSTANCE_ID": "open"})
        node = start_node(node_factory, mosquitto, pipelines=[local])
        wait_for(lambda: node.comms.counters["unencryptable"] >= 5)
        note = notes.get(5)
        assert note is not None and note.verified
        assert "no initiator to encrypt to" in note.message["NOTIFICATION"]
        assert note.message["EE_PAYLOAD_PATH"] == [node.alias, "local", "TEST_SECRET", "hidden"]
        assert notes.get(0.5) is None  # once, not per payload
    wait_for(lambda: len(eavesdropper.messages("open")) >= 2)
    assert eavesdropper.messages("hidden") == []
    assert all(MARKER not in data.decode() for data in eavesdropper.raw if b'"hidden"' in data)
    (snapshot,) = node.snapshot()["pipelines"]
    hidden = next(i for i in snapshot["instances"] if i["instance_id"] == "hidden")
    assert hidden["errors"] >= 5 and "no initiator to encrypt to" in hidden["last_error"]
