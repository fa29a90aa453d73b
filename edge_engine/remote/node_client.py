"""A small client for edge nodes over MQTT: see nodes, deploy pipelines, change instances, watch what they send.

It speaks the same protocol as Ratio1's SDK (see ``docs/protocol.md``): commands go to
``{root}/{node_address}/config`` signed with the client's own key (and optionally encrypted to the node);
heartbeats come on ``{root}/ctrl``, payloads on ``{root}/payloads``, notifications on ``{root}/notif``. Every
message received is checked with :func:`edge_engine.comms.signing.verify`; only verified messages count as
node state (heartbeats) or command results (notifications), unverifiable ones are still shown, marked.

    from edge_engine.remote.node_client import EdgeClient, load_client_identity
    with EdgeClient(load_client_identity(), port=1883) as client:
        print(client.deploy("my-node", {"NAME": "p1", "TYPE": "SYNTHETIC", "PLUGINS": [...]}))

The node must allow the client first: ``cmds/add_allowed <client address> <alias>`` on the node.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_engine.comms.signing import sign_to_json, verify
from edge_engine.constants import ADDRESS_PREFIX

if TYPE_CHECKING:
    from edge_engine.local.identity import Identity

log = logging.getLogger(__name__)

DEFAULT_KEY_FILE = Path("~/.edge_client/client.pem")
DEFAULT_ROOT_TOPIC = "naeural"
DEFAULT_TIMEOUT = 30.0
COMMAND_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

# Ratio1 notification codes (ratio1/const/payload.py), as the node uses them
PIPELINE_OK, PIPELINE_FAILED = 1, -1
PIPELINE_ARCHIVE_OK, PIPELINE_ARCHIVE_FAILED = 4, -4
PLUGIN_CONFIG_OK, PLUGIN_CONFIG_FAILED = 100, -100
PLUGIN_INSTANCE_COMMAND_OK, PLUGIN_INSTANCE_COMMAND_FAILED = 101, -101
COMM_RECEIVED_BAD_COMMAND = -5000

CHANNELS = {"heartbeats": "ctrl", "payloads": "payloads", "notifications": "notif"}
EVENT_CHANNELS = {"HEARTBEAT": "heartbeats", "PAYLOAD": "payloads", "NOTIFICATION": "notifications"}


class ClientError(Exception):
    """A client operation that could not be done (no broker, unknown node, no answer...)."""


def load_client_identity(key_file: str | os.PathLike[str] | None = None) -> Identity:
    """The client's key (created at first use, mode 0600): ``key_file`` or ``~/.edge_client/client.pem``."""
    from edge_engine.local.identity import load_or_create_identity

    path = Path(key_file or DEFAULT_KEY_FILE).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return load_or_create_identity(path)


def is_address(text: str) -> bool:
    """Whether ``text`` looks like a node address (``0xai_`` + 44 characters) rather than an alias."""
    return text.startswith(ADDRESS_PREFIX) and len(text) == len(ADDRESS_PREFIX) + 44


def decode_heartbeat(message: dict[str, Any]) -> dict[str, Any]:
    """A heartbeat (or a v2 NET_MON_01) with its ``ENCODED_DATA`` (base64 of zlib JSON) merged in, as Ratio1's SDK
    does."""
    encoded = message.get("ENCODED_DATA")
    if not isinstance(encoded, str):
        return dict(message)
    decoded = json.loads(zlib.decompress(base64.b64decode(encoded)).decode("utf-8"))
    merged = {k: v for k, v in message.items() if k != "ENCODED_DATA"}
    merged.update(decoded if isinstance(decoded, dict) else {})
    return merged


# --- what comes in ----------------------------------------------------------------------------------------
@dataclass
class Received:
    """One message from the broker, parsed and checked."""

    topic: str
    message: dict[str, Any]
    verified: bool
    reason: str
    received_at: float = field(default_factory=time.time)
    decoded: dict[str, Any] | None = None  # heartbeat with ENCODED_DATA merged in / decrypted payload

    @property
    def channel(self) -> str:
        """``heartbeats``, ``payloads``, ``notifications`` or ``other``."""
        event = self.message.get("EE_EVENT_TYPE")
        if event in EVENT_CHANNELS:
            return EVENT_CHANNELS[event]
        leaf = self.topic.rsplit("/", 1)[-1]
        return {v: k for k, v in CHANNELS.items()}.get(leaf, "other")

    @property
    def sender(self) -> str | None:
        """The signer's address (the node's address for node messages)."""
        sender = self.message.get("EE_SENDER")
        return sender if isinstance(sender, str) else None

    @property
    def alias(self) -> str | None:
        alias = self.message.get("EE_ID")
        return alias if isinstance(alias, str) else None

    @property
    def data(self) -> dict[str, Any]:
        """The message with heartbeat data decoded (or decrypted data merged), else the message."""
        return self.decoded if self.decoded is not None else self.message

    @property
    def code(self) -> int | None:
        code = self.message.get("NOTIFICATION_CODE")
        return code if isinstance(code, int) else None

    def from_node(self, node: str | None) -> bool:
        """Whether the message comes from ``node`` (alias or address; None matches all)."""
        if node is None:
            return True
        if is_address(node):
            return self.sender == node
        return self.alias == node

    def to_json(self, raw: bool = False) -> str:
        """One JSON line: topic, verification, time received and the message (decoded unless ``raw``)."""
        record = {
            "topic": self.topic,
            "channel": self.channel,
            "verified": self.verified,
            "reason": self.reason,
            "received_at": round(self.received_at, 6),
            "message": self.message if raw else self.data,
        }
        return json.dumps(record, ensure_ascii=False, default=str)


def _is_admin(stream: dict[str, Any]) -> bool:
    """The node's admin pipeline (Ratio1's ``admin_pipeline``), not counted among its pipelines."""
    return str(stream.get("NAME") or stream.get("name") or "").lower() == "admin_pipeline"


@dataclass
class NodeInfo:
    """A node known from its (verified) heartbeats."""

    address: str
    alias: str
    version: str | None = None
    pipelines: int = 0
    status: str = "ONLINE"
    last_seen: float = 0.0
    whitelist: list[str] = field(default_factory=list)
    heartbeat: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "address": self.address,
            "version": self.version,
            "pipelines": self.pipelines,
            "status": self.status,
            "last_seen": datetime.fromtimestamp(self.last_seen).isoformat(timespec="seconds"),
            "seconds_ago": round(time.time() - self.last_seen, 1),
        }


@dataclass
class CommandResult:
    """The outcome of a command: ``ok``, the deciding notification ``code`` and ``reason``, what came back."""

    ok: bool
    code: int | None
    reason: str
    notifications: list[Received] = field(default_factory=list)
    result: Any = None  # an instance command's return value
    command: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{'OK' if self.ok else 'FAILED'} ({self.code}): {self.reason}"


class Listener:
    """A queue of received messages that match a filter; use as a context manager (or call ``close``)."""

    def __init__(self, client: EdgeClient, accept: Callable[[Received], bool]):
        self.client = client
        self.accept = accept
        self.queue: queue.Queue[Received] = queue.Queue()

    def get(self, timeout: float | None) -> Received | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.client._remove_listener(self)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# --- the client --------------------------------------------------------------------------------------------
class EdgeClient:
    """MQTT client of edge nodes with its own key; see the module docstring."""

    def __init__(
        self,
        identity: Identity,
        host: str = "127.0.0.1",
        port: int = 1883,
        user: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        tls: bool = False,
        root_topic: str = DEFAULT_ROOT_TOPIC,
        channels: Iterable[str] = ("heartbeats", "notifications"),
        session_id: str | None = None,
        initiator_id: str | None = None,
        encrypt: bool = False,
        subtopic: str = "address",
    ):
        self.identity = identity
        self.host, self.port = host, int(port)
        self.user, self.password = user, password
        self.ca_file, self.tls = ca_file, tls or bool(ca_file)
        self.root_topic = root_topic.strip("/")
        self.channels = set(channels)
        unknown = self.channels - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}; known: {sorted(CHANNELS)}")
        self.session_id = session_id or f"edge-client-{uuid.uuid4().hex[:8]}"
        self.initiator_id = initiator_id or f"edge-client-{identity.address[len(ADDRESS_PREFIX) :][:6]}"
        self.encrypt = encrypt
        self.subtopic = subtopic
        self.nodes_seen: dict[str, NodeInfo] = {}
        self.counters = {"received": 0, "unverified": 0, "malformed": 0}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._sub_waiters: dict[int, threading.Event] = {}
        self._acked: set[int] = set()
        self._client: Any = None
        self._connect_error: str | None = None

    @property
    def address(self) -> str:
        """The client's own address (give it to ``add_allowed`` on the node)."""
        return self.identity.address

    def topic(self, channel: str) -> str:
        return f"{self.root_topic}/{CHANNELS.get(channel, channel)}"

    def command_topic(self, address: str, alias: str | None = None) -> str:
        own = alias if self.subtopic == "alias" and alias else address
        return f"{self.root_topic}/{own}/config"

    # --- connection -----------------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> EdgeClient:
        """Connect and subscribe; raises ClientError when the broker does not accept us within ``timeout``."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{self.initiator_id}-{uuid.uuid4().hex[:6]}",
            clean_session=True,
        )
        client.max_queued_messages_set(0)
        if self.user:
            client.username_pw_set(self.user, self.password)
        if self.tls:
            import ssl

            client.tls_set_context(ssl.create_default_context(cafile=self.ca_file))
        client.reconnect_delay_set(0.2, 5)  # type: ignore[arg-type]  # paho annotates int seconds; any number works
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            self._client = None
            raise ClientError(f"cannot connect to the broker {self.host}:{self.port}: {exc}") from exc
        client.loop_start()
        ready = self._subscribed.wait(timeout)
        if not ready or not self._connected.is_set():
            self.close()
            if self._connect_error:
                raise ClientError(f"broker {self.host}:{self.port} {self._connect_error}")
            raise ClientError(f"broker {self.host}:{self.port} did not accept the connection within {timeout} s")
        return self

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.disconnect()
        finally:
            client.loop_stop()

    def __enter__(self) -> EdgeClient:
        return self if self._client is not None else self.connect()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def subscribe(self, channel: str) -> None:
        """Also receive ``channel`` (``heartbeats``, ``payloads`` or ``notifications``) from now on."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}; known: {sorted(CHANNELS)}")
        if channel in self.channels:
            return
        self.channels.add(channel)
        if self._client is not None and self._connected.is_set():
            done = threading.Event()
            with self._lock:
                mid = self._client.subscribe(self.topic(channel), 1)[1]
                self._sub_waiters[mid] = done
                if mid in self._acked:
                    done.set()
            done.wait(5.0)

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._connect_error = f"refused the connection: {reason}"
            self._subscribed.set()  # connect() stops waiting and reports it
            return
        self._connected.set()
        topics = [(self.topic(c), 1) for c in sorted(self.channels)]
        if not topics:
            self._subscribed.set()
            return
        client.subscribe(topics)

    def _on_subscribe(self, _client: Any, _userdata: Any, mid: int, _codes: Any, _props: Any) -> None:
        with self._lock:
            waiter = self._sub_waiters.pop(mid, None)
            if waiter is None:
                self._acked.add(mid)
        if waiter is not None:
            waiter.set()
        self._subscribed.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        try:
            received = self.parse(msg.topic, msg.payload)
        except Exception:  # never let one odd message kill paho's thread
            log.exception("message on %s could not be handled", msg.topic)
            return
        if received is None:
            return
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                if listener.accept(received):
                    listener.queue.put(received)
            except Exception:
                log.exception("listener filter raised")

    # --- parsing and verification ----------------------------------------------------------------------
    def parse(self, topic: str, data: bytes) -> Received | None:
        """Parse, verify and decode one message; heartbeats update :attr:`nodes_seen`. None if not JSON."""
        self.counters["received"] += 1
        try:
            message = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.counters["malformed"] += 1
            message = {"_RAW": data[:2000].decode("utf-8", "replace")}
            return Received(topic, message, False, "malformed JSON")
        if not isinstance(message, dict):
            self.counters["malformed"] += 1
            return Received(topic, {"_RAW": message}, False, "not a JSON object")
        result = verify(message)
        verified, reason = result.ok, result.reason
        if verified and message.get("EE_ADDR") not in (None, result.sender):
            verified, reason = False, "EE_ADDR differs from the signer EE_SENDER"
        if not verified:
            self.counters["unverified"] += 1
        received = Received(topic, message, verified, reason)
        is_heartbeat = message.get("EE_EVENT_TYPE") == "HEARTBEAT" or "HEARTBEAT_VERSION" in message
        if is_heartbeat or message.get("NETMON_VERSION") == "v2":  # NET_MON_01 v2: ENCODED_DATA as a heartbeat's
            try:
                received.decoded = decode_heartbeat(message)
            except (ValueError, zlib.error, UnicodeDecodeError) as exc:
                received.reason = f"{received.reason}; ENCODED_DATA not decodable: {exc}"
            if verified and is_heartbeat:
                self._note_heartbeat(received)
        elif message.get("EE_IS_ENCRYPTED") and isinstance(message.get("EE_ENCRYPTED_DATA"), str):
            try:
                received.decoded = self._decrypt(message)
            except ValueError as exc:  # addressed to us, and still not decryptable
                received.reason = f"{received.reason}; EE_ENCRYPTED_DATA not decryptable: {exc}"
        return received

    def _decrypt(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Data encrypted to this client (``EE_DEST`` is its address, or a list holding it), merged into the
        message; None when it is not for us, ValueError (a ``DecryptError`` or bad JSON) when it is for us and
        cannot be decrypted."""
        dest = message.get("EE_DEST")
        dests = dest if isinstance(dest, list) else [dest]
        own = self.address.removeprefix(ADDRESS_PREFIX)
        if not any(isinstance(d, str) and d.removeprefix(ADDRESS_PREFIX) == own for d in dests):
            return None
        if not isinstance(message.get("EE_SENDER"), str):
            raise ValueError("no EE_SENDER to derive the key from")
        from edge_engine.comms.crypto import decrypt

        inner = json.loads(decrypt(message["EE_ENCRYPTED_DATA"], self.identity, message["EE_SENDER"]))
        merged = {k: v for k, v in message.items() if k != "EE_ENCRYPTED_DATA"}
        if isinstance(inner, dict):
            merged.update(inner)
        return merged

    def _note_heartbeat(self, received: Received) -> None:
        data = received.data
        address = received.sender
        if address is None:
            return
        streams = data.get("CONFIG_STREAMS")
        if not isinstance(streams, list) or not streams:
            status = data.get("PIPELINES_STATUS")
            streams = status if isinstance(status, list) else []
        whitelist = data.get("EE_WHITELIST")
        info = NodeInfo(
            address=address,
            alias=str(data.get("EE_ID") or ""),
            version=data.get("VERSION") or data.get("EE_VERSION"),
            pipelines=sum(1 for s in streams if not (isinstance(s, dict) and _is_admin(s))),
            status=str(data.get("DEVICE_STATUS") or "ONLINE"),
            last_seen=received.received_at,
            whitelist=list(whitelist) if isinstance(whitelist, list) else [],
            heartbeat=data,
        )
        with self._lock:
            self.nodes_seen[address] = info

    # --- listeners ------------------------------------------------------------------------------------
    def listen(self, accept: Callable[[Received], bool] | None = None) -> Listener:
        """Queue every message ``accept`` takes from now on (all messages when None)."""
        listener = Listener(self, accept or (lambda _r: True))
        with self._lock:
            self._listeners.append(listener)
        return listener

    def _remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def watch(
        self, channels: Iterable[str] | None = None, node: str | None = None, stop: threading.Event | None = None
    ) -> Iterator[Received]:
        """Yield messages of ``channels`` (default all) from ``node`` (alias or address; default all) as they come."""
        wanted = set(channels or CHANNELS)
        for channel in wanted:
            self.subscribe(channel)
        with self.listen(lambda r: r.channel in wanted and r.from_node(node)) as listener:
            while stop is None or not stop.is_set():
                item = listener.get(0.2)
                if item is not None:
                    yield item

    # --- nodes ------------------------------------------------------------------------------------------
    def nodes(self, wait: float = 0.0) -> list[NodeInfo]:
        """Nodes seen by heartbeat, after waiting ``wait`` seconds for more heartbeats (sorted by alias)."""
        if wait > 0:
            time.sleep(wait)
        with self._lock:
            return sorted(self.nodes_seen.values(), key=lambda n: (n.alias, n.address))

    def network(self, wait: float = 12.0) -> Received | None:
        """The next verified NET_MON_01 payload of a supervisor node (its ``CURRENT_NETWORK`` is the network view,
        keyed by address), or None when none arrives within ``wait`` seconds. Needs the ``payloads`` channel."""
        self.subscribe("payloads")

        def netmon(r: Received) -> bool:
            path = r.message.get("EE_PAYLOAD_PATH") or []
            return (
                r.verified
                and len(path) == 4
                and str(path[1]).lower() == "admin_pipeline"
                and str(path[2]).upper() == "NET_MON_01"
                and isinstance(r.data.get("CURRENT_NETWORK"), dict)
            )

        with self.listen(netmon) as listener:
            return listener.get(wait)

    def wait_node(self, node: str, timeout: float = 15.0) -> NodeInfo:
        """The node (alias or address) once a heartbeat of it arrived; ClientError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [n for n in self.nodes_seen.values() if node in (n.address, n.alias)]
            if len(found) > 1:
                listing = ", ".join(n.address for n in found)
                raise ClientError(f"alias {node!r} is used by several nodes ({listing}): give the address")
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise ClientError(f"no heartbeat from node {node!r} within {timeout:.0f} s")
            time.sleep(0.05)

    def resolve(self, node: str, timeout: float = 15.0) -> tuple[str, str]:
        """``(address, alias)`` of ``node``: an address is used as is (its alias if known); an alias is resolved
        from heartbeats, waiting up to ``timeout``."""
        if is_address(node):
            with self._lock:
                known = self.nodes_seen.get(node)
            return node, known.alias if known else node
        info = self.wait_node(node, timeout)
        return info.address, info.alias

    # --- commands -------------------------------------------------------------------------------------
    def build_command(
        self,
        address: str,
        action: str,
        payload: Any,
        alias: str | None = None,
        encrypt: bool | None = None,
        sent_at: datetime | None = None,
    ) -> dict[str, Any]:
        """A signed command (the SDK's format) for the node at ``address``, as a dict."""
        encrypt = self.encrypt if encrypt is None else encrypt
        message: dict[str, Any] = {}
        if encrypt:
            from edge_engine.comms.crypto import encrypt_for

            inner = json.dumps({"ACTION": action, "PAYLOAD": payload})
            message["EE_IS_ENCRYPTED"] = True
            message["EE_ENCRYPTED_DATA"] = encrypt_for(inner, self.identity, address)
        else:
            message["ACTION"] = action
            message["PAYLOAD"] = payload
        message.update(
            {
                "EE_DEST": address,
                "EE_ID": alias or address,
                "SESSION_ID": self.session_id,
                "INITIATOR_ID": self.initiator_id,
                "INITIATOR_ADDR": self.address,
                "TIME": (sent_at or datetime.now()).strftime(COMMAND_TIME_FORMAT),
            }
        )
        message.setdefault("EE_IS_ENCRYPTED", False)
        return json.loads(sign_to_json(message, self.identity))

    def publish(self, address: str, data: bytes | str, alias: str | None = None, timeout: float = 10.0) -> None:
        """Publish raw bytes on the node's command topic (QoS 1) and wait until the broker has them."""
        if self._client is None:
            raise ClientError("not connected")
        info = self._client.publish(self.command_topic(address, alias), data, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise ClientError(f"publish failed: {exc}") from exc
        if not info.is_published():
            raise ClientError(f"the broker did not acknowledge the command within {timeout} s")

    def send(
        self, node: str, action: str, payload: Any = None, encrypt: bool | None = None, resolve_timeout: float = 15.0
    ) -> dict[str, Any]:
        """Sign and send a command to ``node`` (alias or address); returns the message sent."""
        address, alias = self.resolve(node, resolve_timeout)
        message = self.build_command(address, action, payload, alias, encrypt)
        self.publish(address, json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode(), alias)
        return message

    def command(
        self,
        node: str,
        action: str,
        payload: Any,
        decide: Callable[[Received], bool | None],
        timeout: float = DEFAULT_TIMEOUT,
        encrypt: bool | None = None,
        settle: Callable[[list[Received]], bool] | None = None,
    ) -> CommandResult:
        """Send a command and wait for the notification that decides it.

        ``decide(notification)`` returns True (success), False (failure) or None (not this one) for each verified
        notification of this session from the node. Rejections (code -5000) always decide. After a success,
        ``settle(notifications)`` may ask to keep collecting (return False) for up to 2 s more.
        """
        deadline = time.monotonic() + timeout
        address, alias = self.resolve(node, timeout)

        sent = self.build_command(address, action, payload, alias, encrypt)

        def ours(r: Received) -> bool:
            if r.channel != "notifications" or not r.verified or r.sender != address:
                return False
            if r.message.get("SESSION_ID") != self.session_id:
                return False
            answered = r.message.get("COMMAND_HASH")  # the node names the command it answers (not Ratio1's)
            return answered is None or answered == sent["EE_HASH"]

        with self.listen(ours) as listener:
            self.publish(address, json.dumps(sent, separators=(",", ":"), ensure_ascii=False).encode(), alias)
            seen: list[Received] = []
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return CommandResult(
                        False, None, f"no answer from {alias} within {timeout:.0f} s", seen, command=sent
                    )
                item = listener.get(min(left, 0.5))
                if item is None:
                    continue
                seen.append(item)
                verdict = decide(item)
                if verdict is None and item.code == COMM_RECEIVED_BAD_COMMAND:
                    verdict = False
                if verdict is None:
                    continue
                text = str(item.message.get("NOTIFICATION") or "")
                if verdict and settle is not None:
                    grace = time.monotonic() + 2.0
                    while not settle(seen) and time.monotonic() < grace:
                        more = listener.get(0.1)
                        if more is not None:
                            seen.append(more)
                info = item.message.get("INFO")
                result = info.get("RESULT") if isinstance(info, dict) else item.message.get("RESULT")
                return CommandResult(bool(verdict), item.code, text, seen, result, sent)

    def deploy(
        self, node: str, config: dict[str, Any], timeout: float = DEFAULT_TIMEOUT, encrypt: bool | None = None
    ) -> CommandResult:
        """Create or replace a pipeline (``UPDATE_CONFIG``); success is notification 1, failure -1."""
        if not isinstance(config, dict) or not isinstance(config.get("NAME"), str):
            raise ClientError("a pipeline config is a JSON object with a NAME")
        name = config["NAME"]
        instances = sum(len(p.get("INSTANCES") or []) for p in config.get("PLUGINS") or [] if isinstance(p, dict))

        def decide(r: Received) -> bool | None:
            if r.code == PIPELINE_OK and r.message.get("STREAM_NAME") == name:
                return True
            if r.code == PIPELINE_FAILED:
                return False
            return None

        def settled(seen: list[Received]) -> bool:
            return sum(1 for r in seen if r.code == PLUGIN_CONFIG_OK) >= instances

        result = self.command(node, "UPDATE_CONFIG", config, decide, timeout, encrypt, settled)
        if not result.ok:
            errors = next(
                (
                    r.message.get("INFO", {}).get("ERRORS")
                    for r in result.notifications
                    if isinstance(r.message.get("INFO"), dict) and r.message["INFO"].get("ERRORS")
                ),
                None,
            )
            if errors:
                result.reason = f"pipeline {name!r} refused: " + "; ".join(map(str, errors))
        return result

    def update_instance(
        self,
        node: str,
        pipeline: str,
        signature: str,
        instance: str,
        changes: dict[str, Any],
        timeout: float = DEFAULT_TIMEOUT,
        encrypt: bool | None = None,
    ) -> CommandResult:
        """Change keys of one instance live (``UPDATE_PIPELINE_INSTANCE``); success is notification 100."""
        payload = {"NAME": pipeline, "SIGNATURE": signature, "INSTANCE_ID": instance, "INSTANCE_CONFIG": changes}
        return self.command(
            node,
            "UPDATE_PIPELINE_INSTANCE",
            payload,
            _coded(PLUGIN_CONFIG_OK, PLUGIN_CONFIG_FAILED, pipeline, instance),
            timeout,
            encrypt,
        )

    def instance_command(
        self,
        node: str,
        pipeline: str,
        signature: str,
        instance: str,
        command: Any,
        params: dict[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        encrypt: bool | None = None,
    ) -> CommandResult:
        """Run a command in one instance (``INSTANCE_CONFIG.INSTANCE_COMMAND``); its return value is ``result``."""
        if params:
            command = {**(command if isinstance(command, dict) else {"COMMAND": command}), "COMMAND_PARAMS": params}
        payload = {
            "NAME": pipeline,
            "SIGNATURE": signature,
            "INSTANCE_ID": instance,
            "INSTANCE_CONFIG": {"INSTANCE_COMMAND": command},
        }
        decide = _coded(
            PLUGIN_INSTANCE_COMMAND_OK, PLUGIN_INSTANCE_COMMAND_FAILED, pipeline, instance, PLUGIN_CONFIG_FAILED
        )
        return self.command(node, "UPDATE_PIPELINE_INSTANCE", payload, decide, timeout, encrypt)

    def delete(
        self, node: str, pipeline: str, timeout: float = DEFAULT_TIMEOUT, encrypt: bool | None = None
    ) -> CommandResult:
        """Stop and remove a pipeline (``DELETE_CONFIG``); success is notification 4."""
        return self.command(
            node,
            "DELETE_CONFIG",
            pipeline,
            _coded(PIPELINE_ARCHIVE_OK, PIPELINE_ARCHIVE_FAILED, pipeline),
            timeout,
            encrypt,
        )

    def keep_alive(self, node: str, pipeline: str, encrypt: bool | None = None) -> dict[str, Any]:
        """Send the owner's keep-alive for ``pipeline`` (``PIPELINE_COMMAND`` ``{"KEEP_ALIVE": true}``).

        Not answered when accepted (it is sent often: every third of the pipeline's ``KEEP_ALIVE_SECONDS`` is a good
        pace); a refused one is answered by a notification (see ``watch``). Returns the message sent.
        """
        return self.send(
            node, "PIPELINE_COMMAND", {"NAME": pipeline, "PIPELINE_COMMAND": {"KEEP_ALIVE": True}}, encrypt
        )

    def stop(self, node: str, timeout: float = DEFAULT_TIMEOUT, encrypt: bool | None = None) -> CommandResult:
        """Stop the node process (``STOP``)."""
        return self.command(node, "STOP", None, _coded(PIPELINE_OK, PIPELINE_FAILED), timeout, encrypt)

    def restart(self, node: str, timeout: float = DEFAULT_TIMEOUT, encrypt: bool | None = None) -> CommandResult:
        """Restart the node's pipelines (``RESTART``)."""
        return self.command(node, "RESTART", None, _coded(PIPELINE_OK, PIPELINE_FAILED), timeout, encrypt)


def _coded(
    ok: int, failed: int, pipeline: str | None = None, instance: str | None = None, *also_failed: int
) -> Callable[[Received], bool | None]:
    """A ``decide`` for commands answered by ``ok`` (for ``pipeline``/``instance`` when given) or ``failed``."""

    def decide(r: Received) -> bool | None:
        if r.code == ok:
            if pipeline is not None and r.message.get("STREAM_NAME") not in (None, pipeline):
                return None
            if instance is not None and r.message.get("INSTANCE_ID") not in (None, instance):
                return None
            return True
        if r.code == failed or r.code in also_failed:
            return False
        return None

    return decide
