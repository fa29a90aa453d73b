"""The network capture plugins against real services: ``MQTT_TOPIC`` on a real Mosquitto (free port, never
1883), ``HTTP_POLL`` on a local ``http.server``. A small business plugin echoes every input as a payload, and a
hook collects the node's payloads in order. Credentials given to either plugin must never show in
``node.snapshot()`` nor in the logs.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import load_module, wait_for
from mqtt_broker import Mosquitto, free_port

from edge_engine.messages import Payload
from edge_engine.node.core import Node
from edge_engine.plugin.hookspecs import hookimpl
from edge_engine.plugin.kinds import PluginContext

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cr3t-pw-7f2a"
FAST = {"RESTART_BACKOFF_MAX": 0.5}
ECHO_PLUGIN = """
from edge_engine.api import BusinessPlugin


class Echo(BusinessPlugin):
    SIGNATURE = "TEST_ECHO"

    def process(self, inp):
        if inp is None or inp.data is None:
            return None
        return {"MSG": inp.data, "META": inp.metadata}
"""


class Collector:
    """The node's payloads, in the order they were emitted."""

    def __init__(self) -> None:
        self.payloads: list[Payload] = []

    @hookimpl
    def edge_payload(self, payload: Payload) -> None:
        self.payloads.append(payload)

    def messages(self) -> list[dict[str, Any]]:
        return [p.data["MSG"] for p in list(self.payloads)]


def start(node_factory: Any, capture: dict[str, Any]) -> tuple[Node, Collector]:
    pipeline = {"NAME": "net", **capture,
                "PLUGINS": [{"SIGNATURE": "TEST_ECHO", "INSTANCES": [{"INSTANCE_ID": "e"}]}]}  # fmt: skip
    node = node_factory(plugins={"business/echo.py": ECHO_PLUGIN}, pipelines=[pipeline], startup=FAST, start=False)
    collector = Collector()
    node.pm.register(collector, name="test-collector")  # before the start: no payload is missed
    node.start()
    return node, collector


def capture_state(node: Node) -> dict[str, Any]:
    (pipeline,) = node.snapshot()["pipelines"]
    return pipeline["capture"]


def assert_no_secret(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    assert SECRET not in json.dumps(node.snapshot(), default=str)
    assert SECRET not in caplog.text
    log_file = node.layout.root / "_logs" / "node.log"
    if log_file.exists():
        assert SECRET not in log_file.read_text(encoding="utf-8", errors="replace")


def publisher(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{free_port()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, topic: str, data: bytes | str) -> None:
    client.publish(topic, data, qos=1).wait_for_publish(5)


# --- MQTT_TOPIC ------------------------------------------------------------------------------------------------
def test_mqtt_messages_arrive_in_order_and_bad_json_is_counted(mosquitto, node_factory, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    node, collector = start(node_factory, {
        "TYPE": "MQTT_TOPIC", "TOPIC": "sensors/#", "PORT": mosquitto.port, "USER": "reader", "PASSWORD": SECRET,
        "QOS": 1, "LIVE_FEED": False,
    })  # fmt: skip
    wait_for(lambda: capture_state(node)["status"] == "running")
    pub = publisher(mosquitto)
    try:
        for i in range(20):
            publish(pub, f"sensors/room{i % 3}", json.dumps({"i": i, "t": 20.5 + i, "tags": ["a", i]}))
        publish(pub, "sensors/broken", "{not json")
        publish(pub, "sensors/last", json.dumps({"i": 20}))
        publish(pub, "elsewhere/ignored", json.dumps({"i": -1}))
    finally:
        pub.loop_stop()
        pub.disconnect()
    wait_for(lambda: len(collector.payloads) >= 22)
    messages = collector.messages()
    assert [m["payload"]["i"] for m in messages[:20]] == list(range(20))
    assert messages[5] == {"topic": "sensors/room2", "payload": {"i": 5, "t": 25.5, "tags": ["a", 5]},
                           "received_at": messages[5]["received_at"]}  # fmt: skip
    assert messages[5]["received_at"].endswith("Z")
    broken = messages[20]
    assert broken["topic"] == "sensors/broken" and broken["payload"] is None
    assert broken["raw"] == "{not json" and "invalid JSON" in broken["error"]
    assert messages[21]["payload"] == {"i": 20} and len(messages) == 22
    metas = [p.data["META"] for p in collector.payloads]
    assert metas[19]["parse_errors"] == 0 and metas[21]["parse_errors"] == 1 and metas[21]["dropped"] == 0
    state = capture_state(node)
    assert state["inputs"] == 22 and state["errors"] == 0
    assert_no_secret(node, caplog)


def test_mqtt_reconnects_after_a_broker_restart(mosquitto, node_factory, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    node, collector = start(node_factory, {
        "TYPE": "MQTT_TOPIC", "TOPIC": "t/+", "PORT": mosquitto.port, "PARSE": "text", "USER": "u",
        "PASSWORD": SECRET,
    })  # fmt: skip
    wait_for(lambda: capture_state(node)["status"] == "running")
    mosquitto.stop()
    wait_for(lambda: capture_state(node)["status"] == "away", timeout=5)
    wait_for(lambda: capture_state(node)["errors"] >= 2, timeout=5)  # the loss, then refused connections
    assert node.snapshot()["pipelines"][0]["status"] == "away"
    mosquitto.start()  # same port
    wait_for(lambda: capture_state(node)["status"] == "running", timeout=10)
    pub = publisher(mosquitto)
    try:
        publish(pub, "t/x", "hello après")
    finally:
        pub.loop_stop()
        pub.disconnect()
    wait_for(lambda: collector.messages())
    assert collector.messages() == [{"topic": "t/x", "payload": "hello après",
                                     "received_at": collector.messages()[0]["received_at"]}]  # fmt: skip
    state = capture_state(node)
    assert state["restarts"] >= 1 and "MQTT" in state["last_error"]
    assert_no_secret(node, caplog)


def test_mqtt_unreachable_broker_is_a_connection_error(node_factory, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    node, _ = start(node_factory, {"TYPE": "MQTT_TOPIC", "TOPIC": "x", "PORT": free_port(), "PARSE": "bytes_b64",
                                   "USER": "u", "PASSWORD": SECRET})  # fmt: skip
    wait_for(lambda: capture_state(node)["errors"] >= 1, timeout=5)
    state = capture_state(node)
    assert state["status"] in ("away", "starting")
    assert state["last_error"].startswith("ConnectionError: cannot connect to MQTT mqtt://***@127.0.0.1:")
    assert_no_secret(node, caplog)


# --- HTTP_POLL ---------------------------------------------------------------------------------------------------
class FakeApi:
    """An HTTP server on a free port whose answer the test changes as it goes; it records what it was sent."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b'{"v": 1}'
        self.hits = 0
        self.auth: list[str | None] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.hits += 1
                api.auth.append(self.headers.get("Authorization"))
                status, body = api.status, api.body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    yield server
    server.close()


def test_http_poll_only_changes_with_credentials_in_the_url(api, node_factory, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://reader:{SECRET}@127.0.0.1:{api.port}/state"
    node, collector = start(node_factory, {"TYPE": "HTTP_POLL", "URL": url, "INTERVAL": 0.05, "ONLY_CHANGES": True,
                                           "HEADERS": {"X-Api-Key": SECRET, "Accept": "application/json"}})  # fmt: skip
    wait_for(lambda: len(collector.payloads) == 1)
    hits = api.hits
    wait_for(lambda: api.hits >= hits + 5)  # polled again and again: same body, no input
    assert len(collector.payloads) == 1
    api.body = b'{"v": 2, "text": "caf\\u00e9"}'
    wait_for(lambda: len(collector.payloads) == 2)
    first, second = collector.messages()
    assert first["url"] == f"http://***@127.0.0.1:{api.port}/state" and first["status"] == 200
    assert first["payload"] == {"v": 1} and second["payload"] == {"v": 2, "text": "café"}
    assert second["received_at"] > first["received_at"]
    meta = collector.payloads[1].data["META"]
    assert meta["unchanged"] >= 5 and meta["polls"] == meta["unchanged"] + 2
    assert api.auth[0] == "Basic " + base64.b64encode(f"reader:{SECRET}".encode()).decode()
    assert_no_secret(node, caplog)


def test_http_poll_errors_reconnect_and_bad_json_is_counted(api, node_factory, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://reader:{SECRET}@127.0.0.1:{api.port}/x"
    node, collector = start(node_factory, {"TYPE": "HTTP_POLL", "URL": url, "INTERVAL": 0.05})
    wait_for(lambda: len(collector.payloads) >= 2)  # without ONLY_CHANGES every poll is an input
    assert collector.messages()[0]["payload"] == {"v": 1}

    api.status, api.body = 500, b'{"error": "boom"}'
    wait_for(lambda: capture_state(node)["status"] == "away", timeout=5)
    wait_for(lambda: capture_state(node)["errors"] >= 2, timeout=5)
    state = capture_state(node)
    assert (
        state["last_error"] == f"ConnectionError: HTTP 500 Internal Server Error from http://***@127.0.0.1:{api.port}/x"
    )
    assert node.snapshot()["pipelines"][0]["status"] == "away"

    count = len(collector.payloads)
    api.status, api.body = 200, b"<html>not json</html>"
    wait_for(lambda: capture_state(node)["status"] == "running", timeout=5)
    wait_for(lambda: len(collector.payloads) > count)
    broken = collector.messages()[count]
    assert broken["status"] == 200 and broken["payload"] is None
    assert broken["raw"] == "<html>not json</html>" and "invalid JSON" in broken["error"]
    assert collector.payloads[count].data["META"]["parse_errors"] >= 1
    assert capture_state(node)["restarts"] >= 1
    assert_no_secret(node, caplog)


# --- the plugins' own logic, without a node ------------------------------------------------------------------------
def _load(name: str) -> Any:
    return load_module(f"extensions/data/{name}.py")


def _plugin(cls: type, config: dict[str, Any], tmp_path: Any) -> Any:
    from edge_engine.plugin.config_keys import defaults

    context = PluginContext(node_alias="n", pipeline="p", signature=cls.SIGNATURE, instance_id=None,
                            log=logging.getLogger("test.net"), output_dir=tmp_path, models_dir=tmp_path,
                            stop_event=threading.Event())  # fmt: skip
    return cls({**defaults(cls.config_schema()), **config}, context)


def test_live_by_default_and_mqtt_overflow_drops_the_oldest(tmp_path) -> None:
    mqtt_topic, http_poll = _load("mqtt_topic"), _load("http_poll")
    poll = _plugin(http_poll.HttpPoll, {"URL": "http://h/x"}, tmp_path)
    assert poll.is_live()
    sub = _plugin(mqtt_topic.MqttTopic, {"TOPIC": "a/#", "MAX_QUEUE": 3}, tmp_path)
    assert sub.is_live()

    class Message:
        def __init__(self, i: int) -> None:
            self.topic, self.payload = "a/b", json.dumps({"i": i}).encode()

    for i in range(5):
        sub._on_message(None, None, Message(i))
    got = [sub.read() for _ in range(3)]
    assert [g.data["payload"]["i"] for g in got] == [2, 3, 4]
    assert got[-1].metadata == {"topic": "a/b", "received": 5, "dropped": 2, "parse_errors": 0}
    assert sub.read() is None  # nothing queued: waits briefly, then None


def test_url_credentials_and_secret_headers_are_hidden() -> None:
    http_poll = _load("http_poll")
    clean, user, password, shown = http_poll.split_credentials("https://me:p%40ss@api.example.com:8443/v1?q=1")
    assert (clean, user, password) == ("https://api.example.com:8443/v1?q=1", "me", "p@ss")
    assert shown == "https://***@api.example.com:8443/v1?q=1"
    assert http_poll.split_credentials("http://h/x") == ("http://h/x", None, None, "http://h/x")
    headers = {"Authorization": "Bearer t", "Cookie": "c", "X-Api-Key": "k", "Accept": "text/plain"}
    assert http_poll.masked_headers(headers) == {"Authorization": "***", "Cookie": "***", "X-Api-Key": "***",
                                                 "Accept": "text/plain"}  # fmt: skip
