"""``MQTT_TOPIC`` capture plugin: the messages published on an MQTT topic become the pipeline's inputs.

It subscribes with paho-mqtt to ``TOPIC`` (wildcards ``+`` and ``#`` work; several topics may be given as a
list) on the broker at ``HOST``:``PORT``, optionally with ``USER``/``PASSWORD`` and TLS (``TLS``, ``CA_FILE``).
This is any broker, not the node's own: plugins do not see the node's comms settings.

Each message becomes a structured input ``{"topic": ..., "payload": ..., "received_at": ...}`` where the
payload is parsed as ``PARSE`` says: ``json`` (default), ``text`` (UTF-8) or ``bytes_b64`` (base64 of the
raw bytes); ``received_at`` is UTC ISO-8601. A message that is not valid JSON in ``json`` mode does not stop
anything: it arrives as ``{"topic", "payload": None, "error": ..., "raw": <text>, "received_at"}`` and is
counted (``parse_errors`` in the input's metadata, with ``dropped``).

paho's network thread only queues what arrives (at most ``MAX_QUEUE`` messages; beyond that the oldest are
dropped and counted: a subscription cannot slow down its publishers). ``read()`` waits on that queue for at
most a quarter of a second, so a stopping node never waits on the broker. The source is live by default
(``LIVE_FEED``: slow consumers get the newest messages). paho's own reconnection is off: a broker that
cannot be reached makes ``connect()`` raise ``ConnectionError`` and a lost connection makes ``read()``
raise it (after the messages already received): the source is *away*, and the engine reconnects with its
backoff (at most ``AWAY_PROBE_MAX_SECONDS``); it is back once connected. The password never appears in
logs or errors. ``paho`` is imported lazily.
"""

from __future__ import annotations

import base64
import collections
import json
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar

from edge_engine.api import CapturePlugin, Input, Key, PluginContext

PARSE_MODES = ("json", "text", "bytes_b64")
READ_WAIT_S = 0.25  # longest wait in read(): bounds how long a stop can take
RAW_LIMIT = 4096  # characters of an unparseable message kept in its error input
KEEPALIVE_S = 30


def utc_iso(ts: float) -> str:
    """UTC ISO-8601 with milliseconds, e.g. ``2026-11-23T15:00:00.123Z``."""
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class MqttTopic(CapturePlugin):
    """Subscribe to an MQTT topic; see the module docstring."""

    SIGNATURE = "MQTT_TOPIC"
    VERSION = "1.0.0"
    DESCRIPTION = (
        "Messages of an MQTT topic (wildcards allowed) on any broker, parsed as JSON, text or base64 bytes. "
        "Invalid JSON becomes an input with 'error' and the raw text. A lost broker makes the engine reconnect "
        "with backoff; the password is never logged."
    )
    CONFIG: ClassVar[dict[str, Any]] = {
        "TOPIC": Key(required=True, type=(str, list), doc="topic filter (+ and # allowed), or a list of them"),
        "HOST": Key("127.0.0.1", type=str, doc="broker host"),
        "PORT": Key(1883, type=int, min=1, max=65535, doc="broker port"),
        "USER": Key("", type=str, doc="user name; empty = anonymous"),
        "PASSWORD": Key("", type=str, doc="password (never logged)"),
        "TLS": Key(False, type=bool, doc="connect with TLS"),
        "CA_FILE": Key("", type=str, doc="CA certificate file for TLS (implies TLS); empty = system CAs"),
        "QOS": Key(0, type=int, min=0, max=2, doc="subscription QoS"),
        "PARSE": Key("json", type=str, choices=PARSE_MODES, doc="how a message's bytes become its payload"),
        "LIVE_FEED": Key(True, type=bool, doc="drop the oldest input when consumers lag"),
        "MAX_QUEUE": Key(10_000, type=int, min=1, doc="messages buffered before the oldest are dropped"),
        "CONNECT_TIMEOUT": Key(5.0, min=0.1, doc="seconds to connect and subscribe before giving up"),
    }

    def __init__(self, config: Mapping[str, Any], context: PluginContext):
        super().__init__(config, context)
        self._client: Any = None
        self._cond = threading.Condition()
        self._messages: collections.deque[tuple[str, bytes, float]] = collections.deque()
        self._lost: str | None = None
        self._ready = threading.Event()
        self._refused: str | None = None
        self._releasing = False
        self.received = 0
        self.dropped = 0
        self.parse_errors = 0

    # --- helpers ---------------------------------------------------------------------------------------
    def _topics(self) -> list[str]:
        topic = self.config["TOPIC"]
        topics = [topic] if isinstance(topic, str) else [str(t) for t in topic]
        if not topics or any(not t for t in topics):
            raise ValueError("TOPIC must name at least one non-empty topic filter")
        return topics

    @property
    def where(self) -> str:
        """The broker and topics, for logs and errors (no credentials)."""
        user = "***@" if self.config.get("USER") else ""
        scheme = "mqtts" if self._tls() else "mqtt"
        return f"{scheme}://{user}{self.config['HOST']}:{self.config['PORT']} {','.join(self._topics())}"

    def _tls(self) -> bool:
        return bool(self.config.get("TLS") or self.config.get("CA_FILE"))

    # --- lifecycle ----------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect and subscribe; ConnectionError (no credentials in it) when the broker refuses or is away."""
        import paho.mqtt.client as mqtt

        topics = self._topics()
        qos = int(self.config.get("QOS", 0))
        with self._cond:
            self._messages = collections.deque()
            self._lost = None
        self._ready.clear()
        self._refused = None
        self._releasing = False
        client_id = f"edge-{self.context.node_alias}-{self.context.pipeline}-{uuid.uuid4().hex[:8]}"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, reconnect_on_failure=False
        )
        timeout = float(self.config.get("CONNECT_TIMEOUT", 5.0))
        client.connect_timeout = timeout
        if self.config.get("USER"):
            client.username_pw_set(str(self.config["USER"]), str(self.config.get("PASSWORD") or "") or None)
        if self._tls():
            import ssl

            try:
                context = ssl.create_default_context(cafile=self.config.get("CA_FILE") or None)
            except (OSError, ssl.SSLError) as exc:
                raise ConnectionError(f"MQTT {self.where}: cannot load CA_FILE: {exc}") from None
            client.tls_set_context(context)

        def on_connect(c: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if reason.is_failure:
                self._refused = f"connection refused: {reason}"
                self._ready.set()
                return
            c.subscribe([(t, qos) for t in topics])

        def on_subscribe(_c: Any, _userdata: Any, _mid: int, codes: Any, _props: Any) -> None:
            failed = [str(code) for code in codes if code.is_failure]
            if failed:
                self._refused = f"subscription refused: {', '.join(failed)}"
            self._ready.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        try:
            client.connect(str(self.config["HOST"]), int(self.config["PORT"]), keepalive=KEEPALIVE_S)
        except (OSError, ValueError) as exc:
            raise ConnectionError(f"cannot connect to MQTT {self.where}: {exc}") from None
        self._client = client
        client.loop_start()
        deadline = time.monotonic() + timeout
        stop = self.context.stop_event
        while not self._ready.wait(0.05):
            if stop.is_set():
                return  # the engine is stopping: read() will not be called
            if self._lost is not None:
                raise ConnectionError(f"MQTT {self.where}: {self._lost}")
            if time.monotonic() > deadline:
                raise ConnectionError(f"MQTT {self.where}: no answer to connect/subscribe within {timeout:g} s")
        if self._refused:
            raise ConnectionError(f"MQTT {self.where}: {self._refused}")
        self.log.info("subscribed to %s (QoS %d, parse %s)", self.where, qos, self.config.get("PARSE", "json"))

    def read(self) -> Input | None:
        """The next message (waits up to 0.25 s, else None); ConnectionError once the connection is lost."""
        with self._cond:
            if not self._messages and self._lost is None:
                self._cond.wait(READ_WAIT_S)
            if self._messages:
                topic, data, ts = self._messages.popleft()
            elif self._lost is not None:
                raise ConnectionError(f"MQTT {self.where}: {self._lost}")
            else:
                return None
        return Input(
            data=self._parse(topic, data, ts),
            timestamp=ts,
            metadata={"topic": topic, "received": self.received, "dropped": self.dropped,
                      "parse_errors": self.parse_errors},
        )  # fmt: skip

    def release(self) -> None:
        """Disconnect and stop paho's thread."""
        client, self._client = self._client, None
        if client is None:
            return
        self._releasing = True
        try:
            client.disconnect()
        except Exception:  # already closed
            pass
        client.loop_stop()

    # --- paho callbacks (its network thread) -------------------------------------------------------------
    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        with self._cond:
            limit = int(self.config.get("MAX_QUEUE", 10_000))
            while len(self._messages) >= limit:
                self._messages.popleft()
                self.dropped += 1
            self._messages.append((msg.topic, bytes(msg.payload), time.time()))
            self.received += 1
            self._cond.notify()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self._releasing:
            return
        with self._cond:
            self._lost = f"connection lost ({reason})"
            self._cond.notify_all()

    # --- parsing ----------------------------------------------------------------------------------------------
    def _parse(self, topic: str, data: bytes, ts: float) -> dict[str, Any]:
        mode = self.config.get("PARSE", "json")
        message: dict[str, Any] = {"topic": topic, "payload": None, "received_at": utc_iso(ts)}
        if mode == "bytes_b64":
            message["payload"] = base64.b64encode(data).decode("ascii")
            return message
        text = data.decode("utf-8", errors="replace")
        if mode == "text":
            message["payload"] = text
            return message
        try:
            message["payload"] = json.loads(text)
        except ValueError as exc:
            self.parse_errors += 1
            if self.parse_errors <= 3 or self.parse_errors % 100 == 0:
                self.log.warning("message on %s is not JSON (%d so far): %s", topic, self.parse_errors, exc)
            message["error"] = f"invalid JSON: {exc}"
            message["raw"] = text[:RAW_LIMIT]
            if len(text) > RAW_LIMIT:
                message["truncated"] = True
        return message
