"""The comms service: connects the node to MQTT and carries every message in and out.

The node's message flow (:mod:`edge_engine.node.message_flow`) hands it every payload and notification
(:meth:`CommsService.accept_payload`, :meth:`CommsService.accept_notification`) before the local output writer.
A message is numbered as it enters the durable outbox (:meth:`CommsService._enqueue`), encoded (envelope,
canonical text) and stored there before the call returns, so the local output never holds a message the outbox
lacks (decision 38); one publisher thread signs (ECDSA releases the GIL: producers go on meanwhile) and publishes
what the outbox holds. A payload's routing fields and encryption
target come with it (its :class:`~edge_engine.messages.PayloadIntent`): nothing is looked up in the node again.
A heartbeat thread publishes on ``{root}/ctrl``; commands arriving on ``{root}/{address}/config`` are checked
and applied by a command thread, never on the network thread.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_engine.comms.admin import AdminPipeline
from edge_engine.comms.broker import EmbeddedBroker, broker_answering
from edge_engine.comms.commands import CommandProcessor
from edge_engine.comms.comms_settings import LOCAL_HOST, CommsSettings
from edge_engine.comms.disk_outbox import DiskOutbox
from edge_engine.comms.envelope import EVENT_HEARTBEAT, EVENT_NOTIFICATION, EVENT_PAYLOAD, EnvelopeBuilder
from edge_engine.comms.heartbeat import build_heartbeat
from edge_engine.comms.mqtt_transport import MqttTransport, NotConnected
from edge_engine.comms.outbox import MemoryOutbox, Outbox, OutboxItem
from edge_engine.comms.replay import ReplayGuard
from edge_engine.comms.sequence import SequenceStore
from edge_engine.comms.signing import (
    CANON_UNVERSIONED,
    SEAL_MAX_EXTRA,
    canonical_json,
    public_key_from_address,
    seal,
    sign_to_json,
    text_to_sign,
    verify,
)
from edge_engine.constants import OUTBOX_DIR
from edge_engine.local.allowlist import Allowlist
from edge_engine.messages import Notification, Payload
from edge_engine.redact import LocalPaths

if TYPE_CHECKING:
    from edge_engine.local.identity import Identity
    from edge_engine.node.seams import CommsHost

log = logging.getLogger(__name__)
MAX_INLINE_IMAGE = 256 * 1024
COMMAND_QUEUE = 1000
PUBLISH_BATCH = 64
# QoS 1 messages handed to paho and not yet acknowledged. Small on purpose: paho walks its whole list of messages
# in flight at every PUBACK, so 1,000 in flight cost ~45 µs of CPU per message and 100 cost ~5 (bench_comms.py).
PUBLISH_WINDOW = 100
OFFLINE_WAIT = 0.3  # a clean stop waits at most this for the broker's PUBACK of the OFFLINE message
CHANNEL_TOPICS = {"payloads": "payloads", "notif": "notif", "ctrl": "ctrl"}
STOP_SECONDS = 1.5  # comms' share of the node's stop: queued messages leave, OFFLINE is said


def payload_body(payload: Payload) -> dict[str, Any]:
    """Ratio1's payload body: the plugin's fields plus stream, signature, instance and witness image
    (``IMG`` inline, or ``IMG_URL`` when uploaded to object storage; ``IMG_PATH``: its file on the node)."""
    _, pipeline, signature, instance = payload.path
    body = {str(k).upper(): v for k, v in payload.data.items()}
    body.update(
        {
            "STREAM": pipeline,
            "STREAM_NAME": pipeline,
            "PIPELINE": pipeline,
            "SIGNATURE": signature,
            "INSTANCE_ID": instance,
            "ID": payload.seq,
            "TIMESTAMP_EXECUTION": payload.created,
            "PLUGIN_CATEGORY": "general",
        }
    )
    if payload.input_seq is not None:
        body.setdefault("INPUT_SEQ", payload.input_seq)
    if payload.image_jpeg is not None:
        # DECISIONS 18: the object URL when S3 is configured (see edge_engine.storage), else the image inline;
        # IMG_PATH is the file on the node either way
        if payload.image_path:
            body["IMG_PATH"] = payload.image_path
        if payload.image_url:
            body["IMG_URL"] = payload.image_url
        else:
            body["IMG"] = [base64.b64encode(shrink_jpeg(payload.image_jpeg)).decode("ascii")]
    return body


def shrink_jpeg(jpeg: bytes, limit: int = MAX_INLINE_IMAGE) -> bytes:
    """Downscale a JPEG until it fits ``limit`` bytes (OpenCV only when it is too big)."""
    if len(jpeg) <= limit:
        return jpeg
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:  # the message is then refused as not encodable (counted), as any encoding error
        raise ValueError("the witness image is not a JPEG OpenCV can decode")
    while len(jpeg) > limit and min(image.shape[:2]) > 16:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
        ok, buffer = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), 80])
        jpeg = buffer.tobytes() if ok else jpeg
    return jpeg


def notification_body(notification: Notification) -> dict[str, Any]:
    """Ratio1's notification body."""
    _, pipeline, signature, instance = (notification.path + [None] * 4)[:4]
    fields = dict(notification.fields)
    code = fields.pop("NOTIFICATION_CODE", None)
    kind = fields.pop("NOTIFICATION_TYPE", "EXCEPTION" if notification.level == "error" else "NORMAL")
    body = {
        "NOTIFICATION_TYPE": kind,
        "NOTIFICATION": notification.message,
        "NOTIFICATION_LEVEL": notification.level,
        "STREAM_NAME": pipeline,
        "SIGNATURE": signature,
        "INSTANCE_ID": instance,
        **{k: v for k, v in fields.items() if k.isupper()},
    }
    if code is not None:
        body["NOTIFICATION_CODE"] = code
    info = {k: v for k, v in fields.items() if not k.isupper()}
    if info:
        body.setdefault("INFO", info)
    return body


class CommsService:
    """MQTT in and out for one node; a node service (:class:`edge_engine.node.seams.Service`)."""

    name = "comms"

    def __init__(self, node: CommsHost, settings: CommsSettings):
        assert node.identity is not None, "comms starts after the node's identity is loaded"
        self.node = node
        self.settings = settings
        self.identity: Identity = node.identity
        self.layout = node.layout
        self.outbox: Outbox = self._make_outbox()
        self.envelope = EnvelopeBuilder(node.alias, self.identity.address)
        self.local_paths = LocalPaths(node.layout.root, node.settings.base_dir)  # never on the wire (decision 37)
        self.sequences = SequenceStore(self.layout.data / "message_seq.json")
        # channel -> the previous run's last stored EE_MESSAGE_SEQ, sent once as EE_MESSAGE_SEQ_PREV (decision 38)
        self._seq_prev = self._previous_last_seqs()
        self._channel_locks = {channel: threading.Lock() for channel in (*CHANNEL_TOPICS, "targeted")}
        self.allowlist = Allowlist(self.layout.authorized_addrs, self.identity.address)
        self.replay = ReplayGuard(self.layout.data / "accepted_commands.json", settings.command_window_seconds)
        self.commands = CommandProcessor(
            node,
            self.identity,
            self.allowlist,
            self.replay,
            verify,
            _decrypt,
            secured=bool(node.settings.startup.get("SECURED", True)),
            window_seconds=settings.command_window_seconds,
            max_bytes=settings.max_message_bytes,
            on_heartbeat_request=self.request_heartbeat,
        )
        self.stop_event = threading.Event()
        self._heartbeat_now = threading.Event()
        self._command_queue: queue.Queue[bytes | None] = queue.Queue(COMMAND_QUEUE)
        self.counters = {
            "payloads": 0,
            "notifications": 0,
            "heartbeats": 0,
            "published": 0,
            "oversize": 0,
            "commands_dropped": 0,
            "publish_errors": 0,
            "unencryptable": 0,
            "delivered": 0,
            "targeted_dropped": 0,
        }
        self._unencryptable: set[tuple[Any, ...]] = set()
        self.broker: EmbeddedBroker | None = None
        self.transport: MqttTransport | None = None
        self.host, self.port = self._choose_broker()
        self._threads: list[threading.Thread] = []
        self._publishing = 0  # messages taken from the outbox and not yet handed to paho
        self._unacked: dict[int, OutboxItem] = {}  # paho mid -> message awaiting its PUBACK (publisher thread only)
        self._acked_mids: deque[int] = deque()  # PUBACKs seen on paho's thread, settled by the publisher
        self._ack_arrived = threading.Event()
        self.admin = AdminPipeline(self, verify, _decrypt, _encrypt)  # network monitor + config exchange

    def _make_outbox(self) -> Outbox:
        """The durable outbox under ``_data/outbox`` (``EE_OUTBOX_MAX_MB=0``: in memory only)."""
        if self.settings.outbox_max_mb <= 0:
            return MemoryOutbox()
        return DiskOutbox(
            self.layout.data / OUTBOX_DIR,
            self._text_to_sign_checked,
            max_bytes=int(self.settings.outbox_max_mb * 1024 * 1024),
            fsync_seconds=self.settings.outbox_fsync_seconds,
            on_drop=self._outbox_dropping,
            unsigned=True,
        )

    def _previous_last_seqs(self) -> dict[str, int]:
        """Per durable channel, the highest number stored before this start: what the outbox found, else 0 for a
        channel that was never numbered. A channel missing here (in-memory outbox, or the outbox folder removed
        while numbers were used) carries no ``EE_MESSAGE_SEQ_PREV``: its restart gap cannot be vouched for."""
        found = getattr(self.outbox, "previous_last_seq", None)
        if found is None:
            return {}
        result = {}
        for channel, value in found.items():
            if value is None and not self.sequences.used(channel):
                value = 0
            if value is not None:
                result[channel] = value
        return result

    def _outbox_dropping(self, dropped: int) -> None:
        """Called once when the outbox starts dropping (its bound hit while the broker is away)."""
        text = (
            f"outbox full ({self.settings.outbox_max_mb:g} MB, EE_OUTBOX_MAX_MB): the oldest payloads are "
            f"being dropped ({dropped} so far; notifications are kept)"
        )
        log.warning(text)
        self.node.notify(
            "warning",
            text,
            [self.node.alias, None, None, None],
            NOTIFICATION_TYPE="ABNORMAL FUNCTIONING",
            OUTBOX_DROPPED=dropped,
        )

    def outbox_stats(self) -> dict[str, Any]:
        """The outbox's figures (local_info.json ``comms.outbox``, heartbeat ``COMM_STATS``, /metrics)."""
        return {**self.outbox.stats(), "in_flight": len(self._unacked)}

    # --- broker choice ----------------------------------------------------------------------------------
    def _choose_broker(self) -> tuple[str, int]:
        s = self.settings
        if s.configured:
            assert s.host is not None
            return s.host, s.port
        if s.embedded_broker != "always" and broker_answering(LOCAL_HOST, s.port):
            log.info("no broker configured: using the one answering on %s:%d", LOCAL_HOST, s.port)
            return LOCAL_HOST, s.port
        if s.embedded_broker == "never":
            log.warning("no broker configured and none answers on %s:%d; will keep trying", LOCAL_HOST, s.port)
            return LOCAL_HOST, s.port
        self.broker = EmbeddedBroker(LOCAL_HOST, s.port)
        self.broker.start()
        return LOCAL_HOST, s.port

    def topic(self, channel: str) -> str:
        return self.settings.topic(CHANNEL_TOPICS[channel])

    @property
    def command_topic(self) -> str:
        own = self.identity.address if self.settings.subtopic == "address" else self.node.alias
        return self.settings.topic("config", own)

    # --- start / stop ---------------------------------------------------------------------------------------
    def start(self) -> None:
        client_id = f"{self.node.alias}-{self.identity.address[-8:]}-{os.getpid()}"
        will = self._offline_message()
        self.transport = MqttTransport(
            self.settings,
            self.host,
            self.port,
            client_id,
            self.node.supervisor,
            on_message=self._on_message,
            on_connect=self.request_heartbeat,
            will=(self.topic("ctrl"), will),
            on_published=self._on_published,
        )
        self.transport.subscribe(self.command_topic, self.settings.command_qos)
        self.admin.start(self.transport)
        for target, name in (
            (self._publish_loop, "publisher"),
            (self._heartbeat_loop, "heartbeat"),
            (self._command_loop, "commands"),
        ):
            thread = threading.Thread(target=target, name=f"comms:{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self.transport.start()
        log.info("comms: broker %s:%d, commands on %s", self.host, self.port, self.command_topic)

    def stop(self, deadline: float | None = None) -> list[str]:
        """Let queued messages leave, say OFFLINE, disconnect: within ``STOP_SECONDS`` (less when the node's
        ``deadline`` is nearer, at least 0.3 s). Returns the names of threads still running."""
        now = time.monotonic()
        deadline = now + max(0.3, min(STOP_SECONDS, (deadline if deadline is not None else now + STOP_SECONDS) - now))
        if self.transport is not None and self.transport.connected.is_set():
            while (len(self.outbox) or self._publishing or self._unacked) and time.monotonic() < deadline - 0.5:
                time.sleep(0.02)  # give queued messages a moment to leave
        self.stop_event.set()
        self.admin.stop()
        self.outbox.close()
        self._command_queue.put_nowait(None) if not self._command_queue.full() else None
        self._heartbeat_now.set()
        if self.transport is not None:
            self._say_offline(deadline)
            self.transport.stop(max(0.1, deadline - time.monotonic()))
        for thread in self._threads:
            thread.join(max(0.05, deadline - time.monotonic()))
        self.admin.join(max(0.05, deadline - time.monotonic()))
        self.replay.flush()
        if self.broker is not None:
            self.broker.stop()
        return [thread.name for thread in self._threads if thread.is_alive()]

    def snapshot(self) -> dict[str, Any]:
        """``local_info.json`` › ``comms``: broker and connection state (a lost broker is reported, not fatal), the
        outbox's figures and the received commands by outcome."""
        connected = self.transport is not None and self.transport.connected.is_set()
        return {
            "broker": f"{self.host}:{self.port}",
            "connected": connected,
            "root_topic": self.settings.root_topic,
            "outbox": self.outbox_stats(),
            "commands": self._command_stats(),
        }

    def _command_stats(self) -> dict[str, Any]:
        """Counters of received commands: rejections by reason."""
        stats = self.commands.stats
        return {
            "received": stats.received,
            "accepted": stats.accepted,
            "rejected": stats.rejected,
            "rejections_not_notified": stats.rejections_not_notified,
            "rejections_not_logged": stats.rejections_not_logged,
            "answers_not_sent": stats.answers_not_sent,
            "dropped": self.counters.get("commands_dropped", 0),
            "reasons": dict(stats.reasons),
        }

    def _say_offline(self, deadline: float) -> None:
        """A clean stop: publish the last will's ``OFFLINE`` message ourselves (a clean disconnect does not fire the
        will), so other nodes show this node offline at once. After the publisher has finished (no heartbeat may
        follow it); waits at most ``OFFLINE_WAIT`` s for the PUBACK, nothing when the broker is away."""
        transport = self.transport
        assert transport is not None
        for thread in self._threads[:1]:  # the publisher
            thread.join(max(0.0, min(0.2, deadline - time.monotonic() - 0.3)))
        if not transport.connected.is_set():
            return
        wait = min(OFFLINE_WAIT, deadline - time.monotonic() - 0.1)
        if wait > 0 and transport.publish_wait(self.topic("ctrl"), self._offline_message(), 1, wait):
            log.info("comms: OFFLINE published on %s", self.topic("ctrl"))

    def _offline_message(self) -> bytes:
        body = {"DEVICE_STATUS": "OFFLINE", "EE_ADDR": self.identity.address, "EE_ID": self.node.alias}
        self.envelope.wrap(body, EVENT_HEARTBEAT, [self.node.alias, None, None, None], 0)
        return sign_to_json(body, self.identity).encode("utf-8")

    # --- the node's message flow -----------------------------------------------------------------------------
    def accept_payload(self, payload: Payload) -> str | None:
        """Store ``payload`` in the outbox (numbered, encoded) before returning; why it was not, else None."""
        self.counters["payloads"] += 1
        routing, refused = self._payload_routing(payload)
        if routing is not None:
            self._enqueue(OutboxItem("payloads", routing, list(payload.path), created=payload.created, source=payload))
        return refused

    def _payload_routing(self, payload: Payload) -> tuple[dict[str, Any] | None, str | None]:
        """The envelope fields of ``payload`` known now: its intent's routing fields, and ``EE_IS_ENCRYPTED`` with
        ``EE_DEST`` when its instance has ``ENCRYPT_PAYLOAD`` (the initiator, else the last modifier).

        ``(None, reason)`` when the payload must not be sent: encryption asked and no valid address to encrypt to.
        It is then counted (``unencryptable``; the reason is an error of the instance) and the owner is notified
        once per instance.
        """
        intent = payload.intent
        routing = dict(intent.routing)
        if not intent.encrypt:
            return routing, None
        _, pipeline, signature, instance_id = payload.path
        key = (pipeline, signature, instance_id)
        dest = intent.encrypt_to
        problem = "no initiator to encrypt to" if not dest else None
        if dest:
            try:
                public_key_from_address(dest)
            except ValueError:
                problem = f"initiator address {dest!r} is not valid"
        if problem is None:
            self._unencryptable.discard(key)
            return {**routing, "EE_IS_ENCRYPTED": True, "EE_DEST": dest}, None
        self.counters["unencryptable"] += 1
        if key not in self._unencryptable:
            self._unencryptable.add(key)
            text = f"payloads of {signature}/{instance_id} not sent: ENCRYPT_PAYLOAD is set and {problem}"
            log.error("pipeline %r: %s (they are dropped and counted)", pipeline, text)
            self.node.notify("error", text, list(payload.path))
        return None, f"payload not sent: ENCRYPT_PAYLOAD is set and {problem}"

    def accept_notification(self, notification: Notification) -> None:
        """Store ``notification`` in the outbox (numbered, encoded; local paths scrubbed) before returning."""
        self.counters["notifications"] += 1
        body = self.local_paths.scrub(notification_body(notification))  # reasons may quote the node's paths
        self._enqueue(OutboxItem("notif", body, list(notification.path), created=notification.created))

    def _enqueue(self, item: OutboxItem) -> None:
        """Number the message (per channel, persisted, strictly increasing) as it enters the outbox; one message
        of a channel at a time, so a channel's records are stored in the order of their numbers."""
        with self._channel_locks[item.channel]:
            item.seq = self.sequences.next(item.channel)
            self.outbox.put(item)

    def send_targeted(self, body: dict[str, Any], path: list[Any], topic: str) -> bool:
        """Queue a payload for one receiver on its own ``topic`` (``{root}/{receiver}/payloads``), only while
        connected. It stays in memory (never the disk outbox: it is useless stale) and is numbered on its own
        sequence channel ``targeted``, so the broadcast ``payloads`` numbers keep no gaps. False: not connected."""
        if self.transport is None or not self.transport.connected.is_set():
            return False
        self._enqueue(OutboxItem("targeted", body, path, topic=topic))
        return True

    # --- publishing ---------------------------------------------------------------------------------------
    def request_heartbeat(self) -> None:
        self._heartbeat_now.set()

    def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_seconds
        while not self.stop_event.is_set():
            self._heartbeat_now.clear()
            try:
                snapshot = self.node.snapshot()
                outbox = self.outbox_stats()
                counters = {
                    **self.counters,
                    "interval": interval,
                    "outbox": outbox["pending"],
                    "outbox_dropped": outbox["dropped"],
                    "outbox_bytes": outbox.get("bytes", 0),
                    **self._command_counters(),
                }
                self.admin.touch_self(snapshot)
                body = build_heartbeat(
                    snapshot,
                    [self.admin.config, *self.node.pipeline_configs()],
                    self.commands.secured,
                    self.settings.hb_contains_pipelines,
                    counters,
                    self.admin.supervisor,
                    self.admin.plugin_statuses(),
                    self.local_paths,
                )
                self._enqueue(OutboxItem("ctrl", body, [self.node.alias, None, None, None]))
                self.counters["heartbeats"] += 1
            except Exception:
                log.exception("heartbeat could not be built")
            self._wait_heartbeat(interval)

    def _wait_heartbeat(self, interval: float) -> None:
        """Wait ``interval`` s for the next heartbeat; less when one is asked for or the allowlist file changed (its
        ``EE_WHITELIST`` tells SDK sessions at once that they may now send commands: ``is_peered``)."""
        deadline = time.monotonic() + interval
        self.allowlist.refresh()
        before = self.allowlist.version
        while not self._heartbeat_now.wait(max(0.0, min(1.0, deadline - time.monotonic()))):
            self.allowlist.refresh()
            if time.monotonic() >= deadline or self.allowlist.version != before:
                return

    def _command_counters(self) -> dict[str, int]:
        stats = self.commands.stats
        return {
            "commands_received": stats.received,
            "commands_accepted": stats.accepted,
            "commands_rejected": stats.rejected,
        }

    def encode(self, item: OutboxItem) -> bytes:
        """Envelope, sequence number, signature, JSON: the bytes that go on the wire."""
        # one serialisation: the canonical (signed) text is the wire text, so what arrives is exactly what was
        # hashed (numpy values as numbers, datetime as Ratio1's text, NaN/Inf as null)
        return sign_to_json(self._message(item), self.identity).encode("utf-8")

    def text_to_sign(self, item: OutboxItem) -> bytes:
        """What the durable outbox stores: the message's canonical text (envelope, sequence number), signed when
        it is sent (``seal``: then the same bytes as :meth:`encode`), so the producer's thread does not sign."""
        return text_to_sign(self._message(item)).encode("utf-8")

    def seal(self, text: bytes) -> bytes:
        """The wire bytes of a stored text to sign (hash, ECDSA, signature fields; deterministic)."""
        return seal(text, self.identity)

    def _message(self, item: OutboxItem) -> dict[str, Any]:
        """The message of ``item`` before signing: body, routing fields, envelope."""
        body = payload_body(item.source) if item.source is not None else item.body
        event = {
            "payloads": EVENT_PAYLOAD,
            "targeted": EVENT_PAYLOAD,
            "notif": EVENT_NOTIFICATION,
            "ctrl": EVENT_HEARTBEAT,
        }[item.channel]
        if not item.seq:
            item.seq = self.sequences.next(item.channel)
        if item.source is not None:
            if item.body.get("EE_IS_ENCRYPTED") is True:
                body = self._encrypted(body, item.body)
            else:
                body.update(item.body)
                body["EE_IS_ENCRYPTED"] = False  # not a plugin's field of that name
        self.envelope.wrap(body, event, item.path, item.seq, item.created)
        if item.channel in self._seq_prev:
            body["EE_MESSAGE_SEQ_PREV"] = self._seq_prev[item.channel]  # dropped once this message is stored
        return body

    def _encrypted(self, body: dict[str, Any], routing: dict[str, Any]) -> dict[str, Any]:
        """Ratio1's encrypted payload: only routing fields stay clear (the envelope, added next, and ``routing``:
        initiator fields, ``EE_IS_ENCRYPTED``, ``EE_DEST``); the whole body goes, as JSON, in ``EE_ENCRYPTED_DATA``
        encrypted from the node to ``EE_DEST``."""
        from edge_engine.comms.crypto import encrypt_for

        plaintext = canonical_json(body, version=CANON_UNVERSIONED)  # numpy, datetime, NaN handled as when signing
        return {**routing, "EE_ENCRYPTED_DATA": encrypt_for(plaintext, self.identity, str(routing["EE_DEST"]))}

    def _publish_loop(self) -> None:
        """Take what waits in the outbox (up to ``PUBLISH_BATCH`` messages), encode what is not encoded yet, then
        publish it all; a QoS 1 message is acknowledged to the outbox only at its PUBACK (``_on_published``).

        Encoding a batch before publishing it keeps paho's network thread (PUBACKs) and this thread from
        trading the GIL at every message: about twice the QoS 1 throughput on a small machine. Order is kept.
        A message handed to paho while the connection drops stays with paho, which sends it again after the
        reconnection (same bytes, before anything newer); after a restart the durable outbox sends again every
        message whose PUBACK had not come.
        """
        transport = self.transport
        assert transport is not None
        qos = {
            "payloads": self.settings.payload_qos,
            "notif": self.settings.payload_qos,
            "targeted": self.settings.payload_qos,
            "ctrl": self.settings.heartbeat_qos,
        }
        while not self.stop_event.is_set():
            self._settle_acks()
            batch = self.outbox.get_batch(PUBLISH_BATCH, timeout=0.1 if self._unacked else None)
            if not batch:
                if self.stop_event.is_set():
                    return
                continue
            self._publishing = len(batch)
            ready = []
            done: list[OutboxItem] = []  # acknowledged to the outbox together, at the end of the batch
            for item in batch:  # signing releases the GIL: producers go on storing meanwhile
                if item.wire is None:
                    data = self._encode_checked(item)
                else:
                    data = self.seal(item.wire) if item.unsigned else item.wire
                if data is not None:
                    ready.append((item, data))
                else:
                    done.append(item)
                    self._publishing -= 1
            for item, data in ready:
                while not self.stop_event.is_set():
                    level = qos[item.channel]
                    if level and len(self._unacked) >= PUBLISH_WINDOW:
                        self._wait_acks()
                        continue
                    try:
                        info = transport.publish(item.topic or self.topic(item.channel), data, level)
                        self.counters["published"] += 1
                        if level and info is not None:
                            self._unacked[info.mid] = item  # acknowledged at its PUBACK
                        else:
                            done.append(item)
                        break
                    except NotConnected:
                        if item.channel == "targeted":  # a reply is worth nothing after a reconnection
                            self.counters["targeted_dropped"] += 1
                            done.append(item)
                            break
                        transport.connected.wait(1.0)
                self._publishing -= 1
            self.outbox.ack_many(done)
            self._publishing = 0

    def _on_published(self, mid: int) -> None:
        """paho's network thread: a PUBACK (QoS 1) or a QoS 0 message written; settled on the publisher thread."""
        self._acked_mids.append(mid)
        self._ack_arrived.set()

    def _settle_acks(self) -> None:
        """Acknowledge to the outbox the messages whose PUBACK came (publisher thread)."""
        delivered = []
        while self._acked_mids:
            item = self._unacked.pop(self._acked_mids.popleft(), None)
            if item is not None:
                delivered.append(item)
        if delivered:
            self.outbox.ack_many(delivered)
            self.counters["delivered"] += len(delivered)

    def _wait_acks(self) -> None:
        self._ack_arrived.wait(0.1)
        self._ack_arrived.clear()
        self._settle_acks()

    def _encode_checked(self, item: OutboxItem) -> bytes | None:
        """The wire bytes of ``item``, or None (counted and logged) when it cannot be encoded or is too large."""
        return self._checked(item, self.encode, 0)

    def _text_to_sign_checked(self, item: OutboxItem) -> bytes | None:
        """:meth:`text_to_sign` of ``item``, or None (counted and logged) when it cannot be encoded or its signed
        form could exceed the size limit."""
        return self._checked(item, self.text_to_sign, SEAL_MAX_EXTRA + len(self.identity.address))

    def _checked(self, item: OutboxItem, encode: Callable[[OutboxItem], bytes], extra: int) -> bytes | None:
        try:
            data = encode(item)
        except Exception:
            self.counters["publish_errors"] += 1
            log.exception("message on %s could not be encoded; dropped", item.channel)
            return None
        if len(data) + extra > self.settings.max_message_bytes:
            self.counters["oversize"] += 1
            log.error(
                "message %s › %s refused: %d bytes > %d",
                item.channel,
                item.path,
                len(data) + extra,
                self.settings.max_message_bytes,
            )
            return None
        self._seq_prev.pop(item.channel, None)  # said once, on the first message of the channel stored in this run
        return data

    # --- commands -------------------------------------------------------------------------------------------
    def _on_message(self, topic: str, data: bytes) -> None:
        if self.admin.offer(topic, data):  # heartbeats and config requests: the admin pipeline's
            return
        try:
            self._command_queue.put_nowait(data)
        except queue.Full:
            self.counters["commands_dropped"] += 1

    def _command_loop(self) -> None:
        while not self.stop_event.is_set():
            data = self._command_queue.get()
            if data is None:
                return
            try:
                self.commands.handle(data)
            except Exception:
                log.exception("command handling failed")


def _encrypt(plaintext: str, identity: Any, receiver: str) -> str:
    from edge_engine.comms.crypto import encrypt_for

    return encrypt_for(plaintext, identity, receiver)


def _decrypt(data: str, identity: Any, sender: str) -> str:
    from edge_engine.comms.crypto import decrypt

    return decrypt(data, identity, sender)
