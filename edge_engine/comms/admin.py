"""The admin pipeline: the network monitor (NET_MON_01) and the config monitor (NET_CONFIG_MONITOR).

Every node runs ``admin_pipeline`` (``TYPE`` NetworkListener, as in Ratio1) with one instance ``<SIGNATURE>_INST``
per signature of the startup config's ``ADMIN_PIPELINE`` template that this node implements. Its instances are
engine services, not plugins: they need the node's key (to decrypt requests and encrypt replies), the comms
subscriptions and the network view, they must run whatever the plugin folders hold, and an idle node pays for one
thread that waits on a queue. They are shown as a pipeline everywhere a pipeline is shown (heartbeat
``CONFIG_STREAMS``/``ACTIVE_PLUGINS``, ``SET_CONFIG``, local_info.json) and cannot be deleted or replaced by a command.

* NET_MON_01 tracks every node heard on ``{root}/ctrl`` (:class:`~edge_engine.comms.network.NetworkTracker`); a
  supervisor (``EE_SUPERVISOR``) publishes ``CURRENT_NETWORK`` on ``{root}/payloads`` every few seconds and at
  once when a node appears, so an SDK ``Session`` starts without its 30 s wait. By default in Ratio1's NETMON v2
  form (``NETMON_VERSION: "v2"``, the body in ``ENCODED_DATA`` = base64 of zlib JSON, ``EE_*`` and routing keys
  left in the clear; the SDK decodes it): about 110 bytes a node instead of 400, so 5,000 nodes fit in the 1 MB
  message limit. The gap between two NET_MON_01 is at least ``NETMON_CPU_FACTOR`` times the CPU time the last one
  took to build (up to ``NETMON_MAX_STRETCH``, 4 s), so a large network costs the supervisor a few percent of a
  core at most and a new SDK session still starts within seconds.
* NET_CONFIG_MONITOR answers a ``GET_CONFIG`` request (path ``[client, "admin_pipeline", "NET_CONFIG_MONITOR",
  null]``, encrypted, ``EE_DEST`` naming this node) from an allowlisted sender with an encrypted ``SET_CONFIG``
  (pipelines and plugin statuses) addressed to it. The ratio1 SDK (3.5.x) sends requests on the node's targeted
  topic ``{root}/{address}/payloads`` (always subscribed: only messages for this node arrive there); older senders
  use the broadcast ``{root}/payloads``, subscribed only while someone may ask (an allowlist entry, or an unsecured
  node), whose messages are filtered on their raw bytes before any JSON is parsed. The answer goes, as Ratio1's nodes
  send it, on the requester's own topic ``{root}/{requester}/payloads`` (its alias with ``EE_MQTT_SUBTOPIC=alias``
  when the request names one), never on the broadcast topic.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import queue
import threading
import time
import zlib
from typing import TYPE_CHECKING, Any

from edge_engine import __version__
from edge_engine.comms.network import NetworkTracker
from edge_engine.comms.outbox import OutboxItem
from edge_engine.comms.signing import strip_address_prefix
from edge_engine.constants import ADDRESS_PREFIX
from edge_engine.messages import utc_iso
from edge_engine.redact import redact

if TYPE_CHECKING:
    from edge_engine.comms.service import CommsService
    from edge_engine.node.snapshot import NodeSnapshot

log = logging.getLogger(__name__)

ADMIN_PIPELINE = "admin_pipeline"
ADMIN_TYPE = "NetworkListener"
NET_MON = "NET_MON_01"
NET_CONFIG = "NET_CONFIG_MONITOR"
SUPPORTED = (NET_CONFIG, NET_MON)
DEFAULT_TEMPLATE: dict[str, dict[str, Any]] = {NET_CONFIG: {"PROCESS_DELAY": 0}, NET_MON: {"PROCESS_DELAY": 3}}
DEFAULT_NETMON_SECONDS = 3.0
MIN_NETMON_GAP = 0.5  # an early NET_MON_01 (a node appeared) comes at most this soon after the previous one
NETMON_CPU_FACTOR = 40.0  # the gap between two NET_MON_01 is at least 40 x the CPU time of the last (≤ 2.5 %)...
NETMON_MAX_STRETCH = 4.0  # ...but never stretched beyond 4 s: a new SDK session waits for the next one
NETMON_ZLIB_LEVEL = 1  # 7 % larger than level 6 at 1,000 and 5,000 nodes, in a third (1,000) to half the time
# kept in the clear in a v2 NET_MON_01 besides the EE_* envelope (the SDK's NETMON_TOP_LEVEL_KEEP_KEYS)
NETMON_TOP_LEVEL = frozenset({"STREAM_NAME", "SIGNATURE", "INSTANCE_ID", "SESSION_ID", "INITIATOR_ID",
                              "INITIATOR_ADDR", "MODIFIED_BY_ID", "MODIFIED_BY_ADDR", "TAGS", "ID_TAGS",
                              "USE_LOCAL_COMMS_ONLY", "PLUGIN_CATEGORY"})  # fmt: skip
REPLY_GAP_SECONDS = 1.0  # one SET_CONFIG per requester per second at most
QUEUE_SIZE = 5000
# after a wakeup the thread pauses this long, so heartbeats are taken in batches: at 1,000 nodes one wakeup per
# 50 ms instead of one per heartbeat (a config request waits at most this much longer)
BATCH_SECONDS = 0.05
SUBSCRIPTION_CHECK_SECONDS = 1.0  # an allowlist edit opens config requests within a second
GET_CONFIG, SET_CONFIG = "GET_CONFIG", "SET_CONFIG"
_FILTER = NET_CONFIG.encode("ascii")


def instance_id(signature: str) -> str:
    return f"{signature}_INST"


def admin_pipeline_config(template: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Ratio1's admin pipeline config from an ``ADMIN_PIPELINE`` template (``{SIGNATURE: {instance config}}``).

    Returns the config and the template's signatures this node does not implement (left out, reported)."""
    template = template if isinstance(template, dict) and template else DEFAULT_TEMPLATE
    plugins, skipped = [], []
    for signature, config in template.items():
        name = str(signature).upper()
        if name not in SUPPORTED:
            skipped.append(str(signature))
            continue
        extra = {k: v for k, v in (config if isinstance(config, dict) else {}).items() if k != "INSTANCE_ID"}
        plugins.append({"SIGNATURE": name, "INSTANCES": [{"INSTANCE_ID": instance_id(name), **extra}]})
    for name in SUPPORTED:  # both always run, even when a template leaves one out
        if not any(p["SIGNATURE"] == name for p in plugins):
            plugins.append(
                {"SIGNATURE": name, "INSTANCES": [{"INSTANCE_ID": instance_id(name), **DEFAULT_TEMPLATE[name]}]}
            )
    config = {
        "NAME": ADMIN_PIPELINE,
        "TYPE": ADMIN_TYPE,
        "PATH_FILTER": [None, None, list(SUPPORTED), None],
        "MESSAGE_FILTER": {},
        "ADMIN_PIPELINE_VER": __version__,
        "PLUGINS": plugins,
    }
    return config, skipped


class InstanceStatus:
    """Counters of one admin instance, reported like a plugin instance's."""

    def __init__(self, signature: str):
        self.signature = signature
        self.instance_id = instance_id(signature)
        self.started = time.time()
        self.inputs = 0
        self.payloads = 0
        self.refused = 0
        self.last_payload: float | None = None
        self.last_exec: float | None = None

    def ratio1(self) -> dict[str, Any]:
        """An ``ACTIVE_PLUGINS`` / ``PLUGIN_STATUSES`` entry."""
        return {
            "STREAM_ID": ADMIN_PIPELINE,
            "SIGNATURE": self.signature,
            "INSTANCE_ID": self.instance_id,
            "STATUS": "running",
            "INIT_TIMESTAMP": utc_iso(self.started),
            "EXEC_TIMESTAMP": utc_iso(self.last_exec) if self.last_exec else None,
            "LAST_PAYLOAD_TIME": utc_iso(self.last_payload) if self.last_payload else None,
            "TOTAL_PAYLOAD_COUNT": self.payloads,
            "CURRENT_PROCESS_ITERATION": self.inputs,
            "ERRORS": 0,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "instance_id": self.instance_id,
            "status": "running",
            "inputs": self.inputs,
            "payloads": self.payloads,
            "refused": self.refused,
            "last_payload": utc_iso(self.last_payload) if self.last_payload else None,
        }


class AdminPipeline:
    """The admin pipeline's two instances, run by the comms service on one thread."""

    def __init__(self, comms: CommsService, verify: Any, decrypt: Any, encrypt: Any):
        self.comms = comms
        self.node = comms.node
        settings = comms.settings
        self.settings = settings
        self.identity = comms.identity
        self.verify = verify
        self.decrypt = decrypt
        self.encrypt = encrypt
        self.config, self.skipped = admin_pipeline_config(self.node.settings.startup.get("ADMIN_PIPELINE"))
        if self.skipped:
            log.info("admin pipeline: %s not implemented by this node; left out", ", ".join(self.skipped))
        self.supervisor = bool(settings.supervisor)
        self.netmon_seconds = self._netmon_seconds()
        self.tracker = NetworkTracker(
            self.identity.address,
            verify,
            offline_seconds=settings.netmon_offline_seconds,
            max_nodes=settings.netmon_max_nodes,
            verify_seconds=settings.netmon_verify_seconds,
        )
        self.status = {sig: InstanceStatus(sig) for sig in SUPPORTED}
        self.counters = {
            "queue_dropped": 0,
            "config_requests": 0,
            "config_replies": 0,
            "config_refused": 0,
            "config_not_for_us": 0,
            "netmon_sent": 0,
            "netmon_only_online": 0,
        }
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(QUEUE_SIZE)
        self._ctrl_topic = self.ctrl_topic  # compared with every message's topic on paho's thread
        self._own = strip_address_prefix(self.identity.address)
        self._own_bytes = self._own.encode("ascii")
        self._last_reply: dict[str, float] = {}
        self._refusals_logged: dict[str, float] = {}
        self._payloads_subscribed = False
        self._netmon_due = threading.Event()
        self._netmon_cost = 0.0  # CPU seconds the last NET_MON_01 took to build and queue
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="comms:admin", daemon=True)

    def _netmon_seconds(self) -> float:
        if self.settings.netmon_send_seconds:
            return max(0.2, float(self.settings.netmon_send_seconds))
        for plugin in self.config["PLUGINS"]:
            if plugin["SIGNATURE"] == NET_MON:
                delay = plugin["INSTANCES"][0].get("PROCESS_DELAY")
                if isinstance(delay, int | float) and delay > 0:
                    return float(delay)
        return DEFAULT_NETMON_SECONDS

    # --- topics ---------------------------------------------------------------------------------------------
    @property
    def ctrl_topic(self) -> str:
        return self.comms.topic("ctrl")

    @property
    def payloads_topic(self) -> str:
        return self.comms.topic("payloads")

    @property
    def targeted_topic(self) -> str:
        """``{root}/{address}/payloads`` (alias with ``EE_MQTT_SUBTOPIC=alias``): payloads addressed to this node."""
        own = self.identity.address if self.settings.subtopic == "address" else self.node.alias
        return self.settings.topic("payloads", own)

    def reply_topic(self, requester: str, request: dict[str, Any]) -> str:
        """Where a requester hears its answers: ``{root}/{address}/payloads``; with ``EE_MQTT_SUBTOPIC=alias``
        ``{root}/{alias}/payloads`` when the request names its alias (``EE_ID``; the SDK listens on both)."""
        alias = request.get("EE_ID")
        if self.settings.subtopic == "alias" and isinstance(alias, str) and _topic_level(alias):
            return self.settings.topic("payloads", alias)
        return self.settings.topic("payloads", ADDRESS_PREFIX + strip_address_prefix(requester))

    def start(self, transport: Any) -> None:
        """Subscribe to heartbeats (and to payloads when someone may ask for the config); start the thread."""
        self.transport = transport
        transport.subscribe(self.ctrl_topic, 0)
        transport.subscribe(self.targeted_topic, 0)
        self._maybe_subscribe_payloads()
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass

    def join(self, timeout: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def _maybe_subscribe_payloads(self) -> None:
        """Subscribe to ``{root}/payloads`` once someone may request the config (never before: it is busy)."""
        if self._payloads_subscribed:
            return
        if self.comms.commands.secured and not self.comms.allowlist.addresses():
            return
        self._payloads_subscribed = True
        self.transport.subscribe(self.payloads_topic, 0)
        log.info("admin pipeline: listening for %s requests on %s", NET_CONFIG, self.payloads_topic)

    # --- network thread (paho's thread only queues) ----------------------------------------------------------
    def offer(self, topic: str, data: bytes) -> bool:
        """Called on paho's thread for every message: cheap checks, then queued. True when it was ours."""
        if topic == self._ctrl_topic:
            self._put(("ctrl", data))
            return True
        if topic == self.payloads_topic or topic == self.targeted_topic:
            # only NET_CONFIG_MONITOR messages naming this node (EE_DEST) go on: two substring searches, no JSON
            if _FILTER in data and self._own_bytes in data:
                self._put(("payloads", data))
            return True
        return False

    def _put(self, item: tuple[str, bytes]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.counters["queue_dropped"] += 1

    def _run(self) -> None:
        last_netmon = 0.0
        next_netmon = time.monotonic() + (0.5 if self.supervisor else 0.0)
        next_check = time.monotonic() + SUBSCRIPTION_CHECK_SECONDS
        while not self.stop_event.is_set():
            now = time.monotonic()
            wake = min(next_check, next_netmon) if self.supervisor else next_check
            try:
                item = self._queue.get(timeout=max(0.0, wake - now))
            except queue.Empty:
                item = None
            if self.stop_event.is_set():
                return
            if item is not None:
                self._handle(item)
                self._drain()
            try:
                now = time.monotonic()
                if self._netmon_due.is_set():
                    self._netmon_due.clear()
                    next_netmon = min(next_netmon, last_netmon + self._netmon_gap(MIN_NETMON_GAP))
                if self.supervisor and now >= next_netmon:
                    if self._publish_netmon():
                        last_netmon = now
                    next_netmon = now + self._netmon_gap(self.netmon_seconds)
                if now >= next_check:
                    self._maybe_subscribe_payloads()
                    next_check = now + (SUBSCRIPTION_CHECK_SECONDS if not self._payloads_subscribed else 3600.0)
            except Exception:
                log.exception("admin pipeline: message handling failed")
            if item is not None:
                self.stop_event.wait(BATCH_SECONDS)  # let the next messages gather: one wakeup per batch

    def _handle(self, item: tuple[str, bytes]) -> None:
        try:
            kind, data = item
            if kind == "ctrl":
                self._on_heartbeat(data)
            else:
                self._on_config_request(data)
        except Exception:
            log.exception("admin pipeline: message handling failed")

    def _drain(self) -> None:
        """Handle what else waits in the queue, in the same wakeup."""
        for _ in range(QUEUE_SIZE):
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None or self.stop_event.is_set():
                return
            self._handle(item)

    # --- NET_MON_01 -------------------------------------------------------------------------------------------
    def _on_heartbeat(self, data: bytes) -> None:
        status = self.status[NET_MON]
        status.inputs += 1
        result = self.tracker.observe_raw(data)
        if result == "new":
            self._netmon_due.set()  # a node appeared (or came back): tell the SDK sessions soon

    def touch_self(self, snapshot: NodeSnapshot) -> None:
        """Put this node in its own view from its snapshot (whether or not the broker echoes its heartbeat)."""
        self.tracker.touch_self(
            {
                "EE_ADDR": snapshot["address"],
                "EE_ID": snapshot["alias"],
                "EE_ETH_ADDR": snapshot["eth_address"],
                "VERSION": snapshot["version_short"],
                "EE_WHITELIST": snapshot["info"]["whitelist"],
                "SECURED": self.comms.commands.secured,
                "EE_IS_SUPER": self.supervisor,
                "UPTIME": snapshot["uptime_seconds"],
            }
        )

    def netmon_body(self, only_online: bool | None = None) -> dict[str, Any]:
        """The NET_MON_01 payload body: ``CURRENT_NETWORK`` and the usual payload fields (v1: plain; v2, the
        default: in ``ENCODED_DATA``, see :func:`encode_netmon_v2`)."""
        status = self.status[NET_MON]
        if only_online is None:
            only_online = self.settings.netmon_only_online
        network = self.tracker.current_network(only_online=only_online)
        online = sum(1 for n in network.values() if n["working"] == "ONLINE")
        body = {
            "CURRENT_NETWORK": network,
            "CURRENT_ALERTERS": {},
            "MESSAGE": f"{online} of {len(network)} node(s) online",
            "STATUS": "OK",
            "IS_SUPERVISOR": self.supervisor,
            "CURRENT_SERVER": self.node.alias,
            "NETMON_VERSION": "v1",
            **_payload_fields(NET_MON, status.payloads + 1),
        }
        return encode_netmon_v2(body) if self.settings.netmon_version == "v2" else body

    def _netmon_gap(self, wanted: float) -> float:
        """``wanted``, or more when the last NET_MON_01 was costly (``NETMON_CPU_FACTOR`` x its CPU time), up to
        ``NETMON_MAX_STRETCH`` (an SDK ``Session`` blocks until the next NET_MON_01)."""
        stretched = min(NETMON_CPU_FACTOR * self._netmon_cost, max(wanted, NETMON_MAX_STRETCH))
        return max(wanted, stretched)

    def _publish_netmon(self) -> bool:
        """Queue one NET_MON_01 payload (only while connected: a stale view is worth nothing later). When it would
        exceed ``EE_MAX_MESSAGE_BYTES`` the offline nodes are left out (logged once)."""
        transport = self.comms.transport
        if transport is None or not transport.connected.is_set():
            return False
        started = time.thread_time()
        body = self.netmon_body()
        if _rough_size(body) > 0.9 * self.settings.max_message_bytes and not self.settings.netmon_only_online:
            if not self.counters["netmon_only_online"]:
                log.warning(
                    "NET_MON_01 of %d nodes near EE_MAX_MESSAGE_BYTES: offline nodes left out", len(self.tracker)
                )
            self.counters["netmon_only_online"] += 1
            body = self.netmon_body(only_online=True)
        self.comms._enqueue(OutboxItem("payloads", body, self.path(NET_MON)))
        self._netmon_cost = time.thread_time() - started
        status = self.status[NET_MON]
        status.payloads += 1
        status.last_payload = status.last_exec = time.time()
        self.counters["netmon_sent"] += 1
        return True

    def path(self, signature: str) -> list[Any]:
        return [self.node.alias, ADMIN_PIPELINE, signature, instance_id(signature)]

    # --- NET_CONFIG_MONITOR -------------------------------------------------------------------------------------
    def _on_config_request(self, data: bytes) -> None:
        status = self.status[NET_CONFIG]
        try:
            message = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            return
        if not isinstance(message, dict):
            return
        path = message.get("EE_PAYLOAD_PATH")
        if not (
            isinstance(path, list)
            and len(path) == 4
            and str(path[1]).lower() == ADMIN_PIPELINE
            and str(path[2]).upper() == NET_CONFIG
        ):
            return
        sender = message.get("EE_SENDER")
        if not isinstance(sender, str) or strip_address_prefix(sender) == self._own:
            return  # our own reply, echoed by the broker
        dest = message.get("EE_DEST")
        targets = dest if isinstance(dest, list) else [dest]
        if self._own not in {strip_address_prefix(str(t)) for t in targets if t}:
            self.counters["config_not_for_us"] += 1
            return
        status.inputs += 1
        self.counters["config_requests"] += 1
        reason, request = self._check_request(message, sender)
        if reason is not None:
            self._refuse(sender, reason)
            return
        assert request is not None
        if request.get("OP") != GET_CONFIG:
            self._refuse(sender, f"unsupported NET_CONFIG_DATA.OP {request.get('OP')!r} (only {GET_CONFIG})")
            return
        now = time.monotonic()
        if now - self._last_reply.get(sender, -REPLY_GAP_SECONDS) < REPLY_GAP_SECONDS:
            self._refuse(sender, "too many requests (one answer per second)")
            return
        self._last_reply[sender] = now
        if len(self._last_reply) > 10_000:
            self._last_reply.clear()
        self._reply(sender, message)

    def _check_request(self, message: dict[str, Any], sender: str) -> tuple[str | None, dict[str, Any] | None]:
        """Signature, allowlist, decryption: (reason refused, None) or (None, the NET_CONFIG_DATA object)."""
        result = self.verify(message)
        if not result.ok:
            return f"signature rejected: {result.reason}", None
        if not self.comms.allowlist.allowed(sender) and self.comms.commands.secured:
            return f"sender {sender} is not in authorized_addrs", None
        if message.get("EE_IS_ENCRYPTED"):
            try:
                inner = json.loads(self.decrypt(str(message.get("EE_ENCRYPTED_DATA")), self.identity, sender))
            except Exception as exc:
                return f"cannot decrypt the request: {type(exc).__name__}: {exc}", None
        else:
            inner = message
        request = inner.get("NET_CONFIG_DATA") if isinstance(inner, dict) else None
        if not isinstance(request, dict):
            return "the request has no NET_CONFIG_DATA object", None
        return None, request

    def _refuse(self, sender: str, reason: str) -> None:
        """Count a refused request; logged at most once a minute per sender (no answer is sent)."""
        self.counters["config_refused"] += 1
        self.status[NET_CONFIG].refused += 1
        now = time.monotonic()
        if now - self._refusals_logged.get(sender, -60.0) >= 60.0:
            self._refusals_logged[sender] = now
            if len(self._refusals_logged) > 10_000:
                self._refusals_logged.clear()
            log.warning("%s request from %s refused: %s", NET_CONFIG, sender, reason)

    def set_config_data(self, full: bool = True) -> dict[str, Any]:
        """``NET_CONFIG_DATA`` of a ``SET_CONFIG`` answer: every pipeline's config (the admin pipeline's first) and
        every instance's status. ``full=False`` redacts credentials (an unsecured node answering a stranger)."""
        pipelines = [copy.deepcopy(self.config), *self.node.pipeline_configs()]
        from edge_engine.comms.heartbeat import active_plugins

        statuses = self.plugin_statuses() + active_plugins(self.node.snapshot())
        return {"OP": SET_CONFIG, "PIPELINES": pipelines if full else redact(pipelines), "PLUGIN_STATUSES": statuses}

    def _reply(self, requester: str, request: dict[str, Any]) -> None:
        """Queue the encrypted ``SET_CONFIG`` answer, addressed (``EE_DEST``) to the requester only, on its own
        topic (:meth:`reply_topic`); only while connected (a stale answer is worth nothing)."""
        status = self.status[NET_CONFIG]
        full = self.comms.allowlist.allowed(requester)
        body = {"NET_CONFIG_DATA": self.set_config_data(full), **_payload_fields(NET_CONFIG, status.payloads + 1)}
        plaintext = json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)
        routing = {k: request[k] for k in ("SESSION_ID", "INITIATOR_ID") if isinstance(request.get(k), str)}
        wire = {
            **routing,
            "EE_IS_ENCRYPTED": True,
            "EE_DEST": requester,
            "EE_ENCRYPTED_DATA": self.encrypt(plaintext, self.identity, requester),
        }
        if not self.comms.send_targeted(wire, self.path(NET_CONFIG), self.reply_topic(requester, request)):
            return
        status.payloads += 1
        status.last_payload = status.last_exec = time.time()
        self.counters["config_replies"] += 1
        log.info("%s: sent %d pipeline(s) to %s", NET_CONFIG, len(body["NET_CONFIG_DATA"]["PIPELINES"]), requester)

    # --- reporting ------------------------------------------------------------------------------------------
    def plugin_statuses(self) -> list[dict[str, Any]]:
        return [self.status[sig].ratio1() for sig in SUPPORTED]

    def snapshot(self) -> dict[str, Any]:
        """The ``admin_pipeline`` section of local_info.json."""
        return {
            "name": ADMIN_PIPELINE,
            "type": ADMIN_TYPE,
            "supervisor": self.supervisor,
            "netmon_seconds": self.netmon_seconds if self.supervisor else None,
            "listening_for_config_requests": self._payloads_subscribed,
            "not_implemented": list(self.skipped),
            "counters": dict(self.counters),
            "instances": [self.status[sig].snapshot() for sig in SUPPORTED],
        }


def _topic_level(text: str) -> bool:
    """Whether ``text`` can be one MQTT topic level (no separator, no wildcard)."""
    return bool(text) and len(text) <= 256 and not any(c in text for c in "/+#\0")


def encode_netmon_v2(body: dict[str, Any]) -> dict[str, Any]:
    """Ratio1's NETMON v2 form of a NET_MON_01 body: ``EE_*`` and routing keys (:data:`NETMON_TOP_LEVEL`) stay,
    the rest goes in ``ENCODED_DATA`` (base64 of zlib JSON, as a v2 heartbeat's), with ``NETMON_VERSION: "v2"``."""
    kept = {k: v for k, v in body.items() if k.startswith("EE_") or k in NETMON_TOP_LEVEL}
    inner = {k: v for k, v in body.items() if k not in kept and k != "NETMON_VERSION"}
    text = json.dumps(inner, separators=(",", ":"), ensure_ascii=False, default=str)
    encoded = base64.b64encode(zlib.compress(text.encode("utf-8"), NETMON_ZLIB_LEVEL)).decode("ascii")
    return {**kept, "NETMON_VERSION": "v2", "ENCODED_DATA": encoded}


def _rough_size(body: dict[str, Any]) -> int:
    """Bytes of a NET_MON_01 body on the wire, near enough (v2: its ``ENCODED_DATA``; v1: ~400 bytes a node)."""
    encoded = body.get("ENCODED_DATA")
    if isinstance(encoded, str):
        return len(encoded) + 2000
    return 400 * len(body.get("CURRENT_NETWORK") or {}) + 2000


def _payload_fields(signature: str, seq: int) -> dict[str, Any]:
    return {
        "STREAM": ADMIN_PIPELINE,
        "STREAM_NAME": ADMIN_PIPELINE,
        "PIPELINE": ADMIN_PIPELINE,
        "SIGNATURE": signature,
        "INSTANCE_ID": instance_id(signature),
        "ID": seq,
        "TIMESTAMP_EXECUTION": time.time(),
        "PLUGIN_CATEGORY": "general",
    }
