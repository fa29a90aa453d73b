"""MQTT transport on paho-mqtt: connect (TLS, mTLS, credentials), last will, reconnect with backoff.

The connection is owned by one thread that connects, runs paho's network loop, and on a lost connection
asks the node's supervisor for a backoff (exponential, capped, with jitter) before connecting again.
Incoming messages are handed to a callback on paho's thread: keep it short (queue work elsewhere).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from typing import Any

from edge_engine.comms.comms_settings import CommsSettings
from edge_engine.runtime.supervisor import Supervisor

log = logging.getLogger(__name__)
# A broker that comes back should see its nodes within seconds, not after a 30 s backoff step; reconnect
# attempts are one cheap TCP connect each, so a lower cap than for plugin restarts costs nothing.
RECONNECT_CAP_SECONDS = 5.0
# paho's own queue and in-flight bounds (the comms publisher keeps its own, smaller, window of QoS 1 messages);
# benchmarks/bench_comms.py gives its bare paho baseline the same
PAHO_MAX_QUEUED = 0
PAHO_MAX_INFLIGHT = 1000


class NotConnected(Exception):
    """The broker is not reachable right now."""


class MqttTransport:
    """One paho client with its own connection thread."""

    def __init__(
        self,
        settings: CommsSettings,
        host: str,
        port: int,
        client_id: str,
        supervisor: Supervisor,
        on_message: Callable[[str, bytes], None],
        on_connect: Callable[[], None] | None = None,
        will: tuple[str, bytes] | None = None,
        on_published: Callable[[int], None] | None = None,
    ):
        import paho.mqtt.client as mqtt

        self.settings = settings
        self.host = host
        self.port = port
        self.supervisor = supervisor
        self.on_message_cb = on_message
        self.on_connect_cb = on_connect
        self.on_published_cb = on_published
        self.subscriptions: list[tuple[str, int]] = []
        self.connected = threading.Event()
        self.stop_event = threading.Event()
        self.part = f"comms/mqtt {host}:{port}"
        self.connects = 0
        self.disconnects = 0
        self.last_error: str | None = None
        self._resume_mid: int | None = None
        self._mqtt = mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, reconnect_on_failure=False
        )
        client.max_queued_messages_set(PAHO_MAX_QUEUED)
        client.max_inflight_messages_set(PAHO_MAX_INFLIGHT)
        if settings.user:
            client.username_pw_set(settings.user, settings.password)
        if settings.tls or settings.ca_file or settings.client_cert:
            self._configure_tls(client)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if on_published is not None:
            client.on_publish = self._on_publish
        self.client = client
        self.thread = threading.Thread(target=self._run, name="comms:mqtt", daemon=True)

    def _configure_tls(self, client: Any) -> None:
        for path in (self.settings.ca_file, self.settings.client_cert, self.settings.client_key):
            if path and not os.path.exists(path):
                raise FileNotFoundError(f"TLS file not found: {path}")
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        if self.settings.client_cert:
            context.load_cert_chain(self.settings.client_cert, self.settings.client_key)
        client.tls_set_context(context)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe now and after every reconnect."""
        self.subscriptions.append((topic, qos))
        if self.connected.is_set():
            self.client.subscribe(topic, qos)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self.stop_event.set()
        try:
            self.client.disconnect()
        except Exception:  # already closed
            pass
        self.thread.join(timeout)

    def publish(self, topic: str, data: bytes, qos: int) -> Any:
        """Publish (raises NotConnected when there is no connection); paho's message info, whose ``mid`` the
        ``on_published`` callback receives at the PUBACK."""
        if not self.connected.is_set():
            raise NotConnected(self.part)
        info = self.client.publish(topic, data, qos=qos)
        if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
            return info
        if qos > 0 and info.rc != self._mqtt.MQTT_ERR_QUEUE_SIZE:
            # paho keeps a QoS 1/2 message it accepted (connection lost or not) and sends it again once
            # reconnected: publishing it a second time would deliver it twice
            return info
        raise NotConnected(f"{self.part}: publish failed ({self._mqtt.error_string(info.rc)})")

    def publish_wait(self, topic: str, data: bytes, qos: int, timeout: float) -> bool:
        """Publish and wait at most ``timeout`` s for the broker's PUBACK (QoS 0: until written); never raises.
        True when it was delivered in time; False when not connected, refused or too slow."""
        try:
            info = self.publish(topic, data, qos)
            info.wait_for_publish(max(0.0, timeout))
            return bool(info.is_published())
        except (NotConnected, ValueError, RuntimeError):
            return False

    # --- paho callbacks (network thread) ----------------------------------------------------------------
    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"connection refused: {reason}"
            log.error("%s: %s", self.part, self.last_error)
            return
        self.connects += 1
        if self.subscriptions:
            # Publishing resumes at the SUBACK: by then paho has queued again the QoS 1/2 messages that were in
            # flight when the connection dropped (it does that right after this callback), so newer messages
            # cannot overtake them.
            self._resume_mid = client.subscribe(list(self.subscriptions))[1]
            return
        self._resume()

    def _on_subscribe(self, _client: Any, _userdata: Any, mid: int, codes: Any, _props: Any) -> None:
        if mid != self._resume_mid:
            return
        self._resume_mid = None
        failed = [str(code) for code in codes if getattr(code, "is_failure", False)]
        if failed:
            log.error("%s: subscriptions refused: %s", self.part, ", ".join(failed))
        self._resume()

    def _resume(self) -> None:
        self.connected.set()
        self.supervisor.recovered(self.part)
        log.info("connected to MQTT broker %s:%d", self.host, self.port)
        if self.on_connect_cb is not None:
            try:
                self.on_connect_cb()
            except Exception:
                log.exception("on_connect callback raised")

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected:
            self.disconnects += 1
            log.warning("disconnected from MQTT broker %s:%d (%s)", self.host, self.port, reason)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, _reason: Any, _props: Any) -> None:
        """The broker's PUBACK for a QoS 1 message (for QoS 0: the message was written to the socket)."""
        self.on_published_cb(mid)  # type: ignore[misc]  # registered only when on_published was given

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        try:
            self.on_message_cb(message.topic, message.payload)
        except Exception:
            log.exception("incoming message handler raised")

    # --- connection thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.client.connect(self.host, self.port, keepalive=30)
                self.client.loop_forever(retry_first_connection=False)
                error = self.last_error or "connection lost"
            except (OSError, ssl.SSLError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                self.last_error = error
            self.connected.clear()
            if self.stop_event.is_set():
                break
            if not self.supervisor.wait_restart(
                self.part, error, self.stop_event, cap=RECONNECT_CAP_SECONDS, flap=False
            ):
                break
