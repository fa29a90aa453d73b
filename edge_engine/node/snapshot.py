"""The node's snapshot, typed: what ``local_info.json`` holds and what heartbeats and ``/metrics`` read.

:meth:`edge_engine.node.core.Node.snapshot` builds a :class:`NodeSnapshot` every refresh; the node writes it to
``_data/local_info.json``, comms turns it into the heartbeat body, the ``/metrics`` collector into Prometheus
families. These are ``TypedDict``\\ s, so the JSON on disk and on the wire is the plain dict it always was (Ratio1's
top-level fields first, ours beside them); the types only tell readers, and the type checker, which keys exist
and what they hold. Sections that may be absent are in a ``total=False`` base.

In-process readers trust the node's own snapshot. A file read back from disk (``get_node_info``) may have been
written by another version, or by a Ratio1 node on the same volume: :func:`read_snapshot` checks its shape once
and drops what does not fit, so the readers after it need no ``isinstance`` of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, cast


class StageStats(TypedDict):
    """The counters every stage keeps (:meth:`edge_engine.runtime.stage_stats.StageStats.snapshot`)."""

    inputs: int
    outputs: int
    dropped: int
    errors: int
    restarts: int
    rate: float
    process_ms_avg: float | None
    process_ms_max: float | None
    last_error: str | None
    last_error_time: str | None


class StreamPresence(TypedDict):
    """A capture source away or there (:meth:`edge_engine.runtime.presence.Presence.snapshot`)."""

    away: bool
    away_since: str | None
    away_seconds: float
    lost: bool
    probes: int
    times_away: int
    times_lost: int
    times_back: int
    last_lost: str | None
    last_back: str | None
    last_away_seconds: float | None
    last_return: dict[str, Any] | None
    lost_after_seconds: float
    probe_max_seconds: float


class _CaptureOptional(TypedDict, total=False):
    silent_source_seconds: float
    silent_failures: int
    flapping: dict[str, Any]


class CaptureSnapshot(StageStats, _CaptureOptional):
    """A pipeline's capture: its status, queue and counters, and its source's presence."""

    status: str
    queue: int
    stream: StreamPresence


class _InstanceOptional(TypedDict, total=False):
    flapping: dict[str, Any]
    safe_mode: bool


class InstanceSnapshot(StageStats, _InstanceOptional):
    """One business instance of a pipeline."""

    signature: str
    instance_id: str
    status: str
    queue: int
    payloads: int


class KeepAlive(TypedDict, total=False):
    """A pipeline's keep-alive (only for pipelines that set one); ``reason`` while in safe mode."""

    seconds: float
    last: str | None
    safe_mode: bool
    reason: str


class _PipelineOptional(TypedDict, total=False):
    serving: dict[str, Any]
    keep_alive: KeepAlive
    process: dict[str, Any]  # a pipeline in a worker process (edge_engine.runtime.process_group)


class PipelineSnapshot(_PipelineOptional):
    """One running pipeline (:meth:`edge_engine.runtime.pipeline.PipelineRunner.snapshot`)."""

    name: str
    type: str
    status: str
    started_at: str
    capture: CaptureSnapshot
    instances: list[InstanceSnapshot]


class InvalidPipeline(TypedDict):
    """A pipeline file that did not validate: ``errors`` name the file (local only), ``reasons`` do not (the wire)."""

    name: str
    file: str
    errors: list[str]
    reasons: list[str]


class PluginFailure(TypedDict):
    source: str
    name: str
    reason: str


class PluginsSection(TypedDict):
    loaded: int
    by_kind: dict[str, list[str]]
    failed: list[PluginFailure]


class WhitelistInfo(TypedDict):
    """Ratio1's ``info`` object: the allowed senders' addresses."""

    whitelist: list[str]


class _NodeOptional(TypedDict, total=False):
    admin_pipeline: dict[str, Any]  # comms on: the admin pipeline's instances (edge_engine.comms.admin)
    network: dict[str, Any]  # comms on: the nodes heard on the broker (edge_engine.comms.network)


class NodeSnapshot(_NodeOptional):
    """The whole of ``local_info.json``, in the order the node writes it (Ratio1's fields first)."""

    address: str
    alias: str
    eth_address: str
    version_long: str
    version_short: str
    info: WhitelistInfo
    status: str
    pid: int
    started_at: str
    updated_at: str
    uptime_seconds: float
    uptime: str
    refresh_seconds: float
    cache_dir: str
    evm_net: str
    comms: dict[str, Any] | None  # None: comms off; else broker, connection, outbox and command counters
    pipelines: list[PipelineSnapshot]
    invalid_pipelines: list[InvalidPipeline]
    plugins: PluginsSection
    models: dict[str, Any]  # {"servers": [...]}: the model servers' figures
    storage: dict[str, Any] | None  # None: object storage not set up; never credentials
    disk: dict[str, Any] | None  # None: no disk bounds; else usage and whether the disk is full


def read_snapshot(data: Mapping[str, Any]) -> NodeSnapshot:
    """A snapshot read back from a file, its containers checked once: lists hold dicts, sections are dicts or absent.

    Keys a Ratio1 node or an older version did not write stay absent; readers use ``.get`` on them. Scalars are
    left as they are (they are only printed).
    """
    snap: dict[str, Any] = dict(data)
    snap["pipelines"] = [_pipeline(p) for p in _dicts(data.get("pipelines"))]
    snap["invalid_pipelines"] = _dicts(data.get("invalid_pipelines"))
    for section in ("info", "plugins", "storage", "comms", "disk", "network", "admin_pipeline"):
        if section in snap and not isinstance(snap[section], dict):
            del snap[section]
    if "plugins" in snap:
        snap["plugins"] = {**snap["plugins"], "failed": _dicts(snap["plugins"].get("failed"))}
    if "network" in snap:
        snap["network"] = {**snap["network"], "nodes": _dicts(snap["network"].get("nodes"))}
    return cast(NodeSnapshot, snap)  # the containers are checked above; the scalars are printed as found


def _pipeline(pipeline: dict[str, Any]) -> dict[str, Any]:
    capture = pipeline.get("capture")
    return {
        **pipeline,
        "capture": capture if isinstance(capture, dict) else {},
        "instances": _dicts(pipeline.get("instances")),
    }


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
