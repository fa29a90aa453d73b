"""The network view: every node heard on ``{root}/ctrl``, with its identity and whether it is online.

Heartbeats are decoded (Ratio1 v2: ``ENCODED_DATA`` = base64 of zlib JSON) and their signatures checked; to keep
this cheap on a busy broker a node's signature is checked at first sight, for its ``OFFLINE`` last will, whenever its
identity fields (alias, whitelist, secured, version, eth address, supervisor flag) differ from the last accepted
ones, and otherwise once ``verify_seconds`` have passed since the last good check. A heartbeat taken unchecked in
between can change only the node's liveness (last seen), remote time, time zone and uptime: a forged one keeps a
known node looking alive until the next check fails (then every heartbeat of that node is checked until one passes),
which a replayed genuine heartbeat does anyway (heartbeats carry no freshness a receiver could check). A node is
online when its last heartbeat is younger than ``offline_seconds`` (60, as the SDK's ``online_timeout``) and it has
not sent its ``OFFLINE`` last will since. At most ``max_nodes`` nodes are kept: when the view is full, a new node
takes the place of the one heard from longest ago only if that one is offline; otherwise the newcomer is refused
(counted as ``full``), so a fleet larger than the view cannot make the nodes evict each other in turn (each eviction
would cost a signature check and an early NET_MON_01). The nodes are kept in the order they were last heard from, so
the oldest is found at once.

The same view gives Ratio1's NET_MON_01 ``CURRENT_NETWORK`` (field names as the SDK reads them).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_OFFLINE_SECONDS = 60.0
DEFAULT_MAX_NODES = 10_000
DEFAULT_VERIFY_SECONDS = 30.0
# nodes listed in local_info.json (the counts cover the whole view): the file is rewritten every few seconds with
# an indented (pure-Python) JSON encoder, so 1,000 rows cost the main thread about as much as NET_MON_01 itself
LOCAL_INFO_NODES = 200
MAX_DECODED_BYTES = 4 * 1024 * 1024  # a heartbeat that inflates beyond this is refused (zip bomb)
ONLINE, OFFLINE = "ONLINE", "OFFLINE"


class HeartbeatError(ValueError):
    """A message on the heartbeat topic that is not a usable heartbeat."""


def decode_encoded_data(text: Any) -> dict[str, Any]:
    """The dict inside a v2 heartbeat's (or NETMON v2 payload's) ``ENCODED_DATA``; HeartbeatError otherwise."""
    if not isinstance(text, str):
        raise HeartbeatError("ENCODED_DATA is not a string")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.b64decode(text), MAX_DECODED_BYTES)
        if inflater.unconsumed_tail:
            raise HeartbeatError(f"ENCODED_DATA inflates beyond {MAX_DECODED_BYTES} bytes")
        data = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise HeartbeatError(f"ENCODED_DATA cannot be decoded: {exc}") from exc
    if not isinstance(data, dict):
        raise HeartbeatError("ENCODED_DATA does not hold an object")
    return data


def heartbeat_fields(message: dict[str, Any]) -> dict[str, Any]:
    """The heartbeat with its v2 ``ENCODED_DATA`` merged over the envelope (as the SDK does)."""
    if message.get("HEARTBEAT_VERSION") == "v2" and "ENCODED_DATA" in message:
        return {**message, **decode_encoded_data(message["ENCODED_DATA"])}
    return message


@dataclass
class PeerNode:
    """What the tracker knows about one node."""

    address: str
    alias: str | None = None
    eth_address: str | None = None
    version: str | None = None
    whitelist: list[str] = field(default_factory=list)
    secured: bool | None = None
    is_supervisor: bool = False
    first_seen: float = 0.0  # wall clock
    last_seen: float = 0.0  # wall clock
    last_seen_mono: float = 0.0
    verified_mono: float | None = None
    identity: tuple[Any, ...] = ()
    said_offline: bool = False  # its last message was the OFFLINE last will
    heartbeats: int = 0
    remote_time: str | None = None
    remote_timezone: str | None = None
    uptime: Any = None
    self_node: bool = False


@dataclass
class TrackerStats:
    heartbeats: int = 0
    bad_signature: int = 0
    malformed: int = 0
    verified: int = 0
    evicted: int = 0
    full: int = 0  # heartbeats of new nodes refused while the view was full of online nodes


class NetworkTracker:
    """Bounded, thread-safe view of the nodes heard on the heartbeat topic."""

    def __init__(
        self,
        own_address: str,
        verify: Callable[[dict[str, Any]], Any],
        offline_seconds: float = DEFAULT_OFFLINE_SECONDS,
        max_nodes: int = DEFAULT_MAX_NODES,
        verify_seconds: float = DEFAULT_VERIFY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.own_address = own_address
        self.verify = verify
        self.offline_seconds = float(offline_seconds)
        self.max_nodes = max(1, int(max_nodes))
        self.verify_seconds = float(verify_seconds)
        self.clock = clock
        self.wall = wall
        self.stats = TrackerStats()
        self._nodes: dict[str, PeerNode] = {}
        self._lock = threading.Lock()

    # --- input --------------------------------------------------------------------------------------------
    def observe_raw(self, data: bytes) -> str | None:
        """Take one raw message from the heartbeat topic; see :meth:`observe`."""
        try:
            message = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            self.stats.malformed += 1
            return None
        if not isinstance(message, dict):
            self.stats.malformed += 1
            return None
        return self.observe(message)

    def observe(self, message: dict[str, Any]) -> str | None:
        """Record a heartbeat. Returns ``"new"`` (first time or back online), ``"seen"``, ``"offline"`` (its last
        will) or None (refused: malformed or bad signature; counted)."""
        self.stats.heartbeats += 1
        sender = message.get("EE_SENDER")
        if not isinstance(sender, str) or not sender:
            self.stats.malformed += 1
            return None
        try:
            fields = heartbeat_fields(message)
        except HeartbeatError:
            self.stats.malformed += 1
            return None
        status = str(fields.get("DEVICE_STATUS") or ONLINE).upper()
        identity = _identity(fields)
        now = self.clock()
        with self._lock:
            known = self._nodes.get(sender)
            if known is None and not self._has_room(now):
                self._refuse_full()
                return None
        needs_check = (
            known is None
            or known.verified_mono is None
            or now - known.verified_mono >= self.verify_seconds
            or known.identity != identity
            or status == OFFLINE
        )
        if needs_check:
            result = self.verify(message)
            if not getattr(result, "ok", False):
                self.stats.bad_signature += 1
                return None
            self.stats.verified += 1
        with self._lock:
            node = self._nodes.pop(sender, None)  # put back last: the dict stays ordered by last heard
            was_online = node is not None and self._online(node, now)
            if node is None:
                if not self._make_room(now):
                    self._refuse_full()
                    return None
                node = PeerNode(address=sender, first_seen=self.wall())
            self._nodes[sender] = node
            if needs_check:
                node.verified_mono = now
            node.identity = identity
            self._update(node, fields, now)
            node.said_offline = status == OFFLINE
            if node.said_offline:
                return "offline"
            return "seen" if was_online else "new"

    def touch_self(self, fields: dict[str, Any]) -> None:
        """Record this node's own heartbeat body (no broker round trip, no signature check)."""
        address = str(fields.get("EE_ADDR") or self.own_address)
        now = self.clock()
        with self._lock:
            node = self._nodes.pop(address, None)
            if node is None:
                self._make_room(now, force=True)
                node = PeerNode(address=address, first_seen=self.wall(), self_node=True)
            self._nodes[address] = node
            node.self_node = True
            node.said_offline = False
            self._update(node, fields, now)

    def _update(self, node: PeerNode, fields: dict[str, Any], now: float) -> None:
        node.alias = _text(fields.get("EE_ID")) or node.alias
        node.eth_address = _text(fields.get("EE_ETH_SENDER") or fields.get("EE_ETH_ADDR")) or node.eth_address
        node.version = _text(fields.get("VERSION") or fields.get("EE_VERSION")) or node.version
        whitelist = fields.get("EE_WHITELIST")
        if isinstance(whitelist, list):
            node.whitelist = [str(a) for a in whitelist[:10_000]]
        if fields.get("SECURED") is not None:
            node.secured = bool(fields.get("SECURED"))
        node.is_supervisor = bool(fields.get("EE_IS_SUPER", node.is_supervisor))
        node.remote_time = _text(fields.get("EE_TIMESTAMP") or fields.get("CURRENT_TIME")) or node.remote_time
        node.remote_timezone = _text(fields.get("EE_TIMEZONE")) or node.remote_timezone
        node.uptime = fields.get("UPTIME", node.uptime)
        node.last_seen = self.wall()
        node.last_seen_mono = now
        node.heartbeats += 1

    def _refuse_full(self) -> None:
        """Count a new node refused by a full view (logged at the first)."""
        if not self.stats.full:
            log.warning(
                "network view full: %d nodes online (EE_NETMON_MAX_NODES); new nodes are left out until one "
                "goes offline (counted as 'full')",
                self.max_nodes,
            )
        self.stats.full += 1

    def _oldest(self) -> PeerNode | None:
        """The node heard from longest ago, this node aside (the dict is ordered by last heard: O(1))."""
        for node in self._nodes.values():
            if not node.self_node:
                return node
        return None

    def _has_room(self, now: float) -> bool:
        """Called with the lock held: whether a new node can be added (a free place, or an offline node to drop)."""
        if len(self._nodes) < self.max_nodes:
            return True
        oldest = self._oldest()
        return oldest is not None and not self._online(oldest, now)

    def _make_room(self, now: float, force: bool = False) -> bool:
        """Called with the lock held, before adding a node: when full, drop the node heard from longest ago if it
        is offline (any, with ``force``: this node's own entry). False when there is no room."""
        while len(self._nodes) >= self.max_nodes:
            oldest = self._oldest()
            if oldest is None or (not force and self._online(oldest, now)):
                return False
            del self._nodes[oldest.address]
            self.stats.evicted += 1
        return True

    # --- output -------------------------------------------------------------------------------------------
    def _online(self, node: PeerNode, now: float) -> bool:
        if node.self_node:
            return True  # this node, while it runs
        return not node.said_offline and now - node.last_seen_mono <= self.offline_seconds

    def nodes(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Every tracked node, or this node and the ``limit`` heard from last (ours first, then by alias): identity,
        status and last seen."""
        now = self.clock()
        with self._lock:
            items = list(self._nodes.values())
            if limit is not None and len(items) > limit:
                items = [n for n in items if n.self_node] + [n for n in items[-limit:] if not n.self_node]
            rows = [
                {
                    "address": n.address,
                    "alias": n.alias,
                    "eth_address": n.eth_address,
                    "status": ONLINE if self._online(n, now) else OFFLINE,
                    "online": self._online(n, now),
                    "last_seen": _utc_iso(n.last_seen),
                    "seconds_ago": round(max(0.0, now - n.last_seen_mono), 1),
                    "first_seen": _utc_iso(n.first_seen),
                    "version": n.version,
                    "whitelist": list(n.whitelist),
                    "secured": n.secured,
                    "is_supervisor": n.is_supervisor,
                    "heartbeats": n.heartbeats,
                    "self": n.self_node,
                }
                for n in items
            ]
        rows.sort(key=lambda r: (not r["self"], str(r["alias"] or ""), r["address"]))
        return rows

    def snapshot(self) -> dict[str, Any]:
        """The ``network`` section of local_info.json: counts of the whole view, and the nodes heard from last (at
        most ``LOCAL_INFO_NODES``, this node always: a file rewritten every few seconds is no place for 10,000
        rows; a supervisor's NET_MON_01, ``edge-client network``, has them all)."""
        nodes = self.nodes(limit=LOCAL_INFO_NODES)
        now = self.clock()
        with self._lock:
            total = len(self._nodes)
            online = sum(1 for n in self._nodes.values() if self._online(n, now))
        return {
            "offline_after_seconds": self.offline_seconds,
            "total": total,
            "online": online,
            "listed": len(nodes),
            "max_nodes": self.max_nodes,
            "counters": dict(vars(self.stats)),
            "nodes": nodes,
        }

    def current_network(self, only_online: bool = False) -> dict[str, dict[str, Any]]:
        """Ratio1's NET_MON_01 ``CURRENT_NETWORK``: one entry per node, keyed by address (``EE_NETMON_ADDRESS_INDEX``
        style), with the field names the SDK reads (``address``, ``eeid``, ``working``, ``whitelist``, ...)."""
        now = self.clock()
        result: dict[str, dict[str, Any]] = {}
        with self._lock:
            for n in self._nodes.values():
                online = self._online(n, now)
                if only_online and not online:
                    continue
                result[n.address] = {
                    "address": n.address,
                    "eth_address": n.eth_address,
                    "eeid": n.alias,
                    "working": ONLINE if online else OFFLINE,
                    "last_seen_sec": round(max(0.0, now - n.last_seen_mono), 1),
                    "last_remote_time": n.remote_time,
                    "node_utc": n.remote_timezone,
                    "uptime": n.uptime,
                    "is_supervisor": n.is_supervisor,
                    "whitelist": list(n.whitelist),
                    "secured": n.secured if n.secured is not None else True,
                    "version": n.version,
                }
        return result

    def __len__(self) -> int:
        with self._lock:
            return len(self._nodes)


def _identity(fields: dict[str, Any]) -> tuple[Any, ...]:
    whitelist = fields.get("EE_WHITELIST")
    return (
        fields.get("EE_ID"),
        tuple(str(a) for a in whitelist) if isinstance(whitelist, list) else None,
        fields.get("SECURED"),
        fields.get("VERSION") or fields.get("EE_VERSION"),  # as the view reads them (_update)
        fields.get("EE_ETH_SENDER") or fields.get("EE_ETH_ADDR"),
        fields.get("EE_IS_SUPER"),
    )


_ISO_SECONDS: dict[int, str] = {}  # whole second -> "2026-11-23T15:00:00." (the view formats thousands of times)


def _utc_iso(ts: float) -> str:
    """:func:`edge_engine.messages.utc_iso` of ``ts``, with the date and time formatted once per second."""
    whole = int(ts)
    micros = round((ts - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    prefix = _ISO_SECONDS.get(whole)
    if prefix is None:
        if len(_ISO_SECONDS) > 4096:
            _ISO_SECONDS.clear()
        prefix = datetime.fromtimestamp(whole, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        _ISO_SECONDS[whole] = prefix
    return f"{prefix}{micros // 1000:03d}Z"


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
