"""Prometheus metrics read from the node snapshot at scrape time (nothing is counted per frame).

``prometheus_client`` is imported here only, and this module only when ``/metrics`` is first served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import psutil
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from edge_engine.node.snapshot import NodeSnapshot

LABELS = ["pipeline", "stage", "signature", "instance"]
COUNTERS = {  # metric name -> (snapshot field, help)
    "edge_inputs": ("inputs", "Inputs received by a capture or an instance"),
    "edge_payloads": ("payloads", "Payloads emitted by an instance"),
    "edge_dropped": ("dropped", "Inputs dropped (full queue or stale)"),
    "edge_errors": ("errors", "Errors raised while processing"),
    "edge_restarts": ("restarts", "Restarts by the supervisor"),
}


Stage = tuple[list[str], Mapping[str, Any]]


def _stages(snapshot: NodeSnapshot) -> Iterator[Stage]:
    """(labels, stats) for each pipeline's capture and each of its instances."""
    for pipe in snapshot.get("pipelines", []):
        name = pipe["name"]
        yield [name, "capture", pipe["type"], ""], pipe["capture"]
        for inst in pipe["instances"]:
            yield [name, "instance", inst["signature"], inst["instance_id"]], inst


class NodeCollector:
    """A custom collector: each scrape calls ``snapshot()`` once."""

    def __init__(self, snapshot: Callable[[], NodeSnapshot]):
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        stages = list(_stages(snap))
        for metric, (field, doc) in COUNTERS.items():
            family = CounterMetricFamily(metric, doc, labels=LABELS)
            for labels, stats in stages:
                if isinstance(stats.get(field), (int, float)):
                    family.add_metric(labels, float(stats[field]))
            yield family
        queue = GaugeMetricFamily("edge_queue_depth", "Items waiting in a stage's queue", labels=LABELS)
        rate = GaugeMetricFamily("edge_input_rate", "Inputs per second (recent)", labels=LABELS)
        proc = GaugeMetricFamily("edge_process_seconds_avg", "Mean processing time per input", labels=LABELS)
        for labels, stats in stages:
            for gauge, key, scale in ((queue, "queue", 1.0), (rate, "rate", 1.0), (proc, "process_ms_avg", 1e-3)):
                if isinstance(stats.get(key), (int, float)):
                    gauge.add_metric(labels, float(stats[key]) * scale)
        yield from (queue, rate, proc)
        up = GaugeMetricFamily("edge_pipeline_up", "1 while the pipeline runs", labels=["pipeline", "status"])
        for pipe in snap.get("pipelines", []):
            status = str(pipe["status"])
            up.add_metric([pipe["name"], status], 1.0 if status == "running" else 0.0)
        yield up
        flapping = GaugeMetricFamily(
            "edge_flapping", "1 while a stage is stopped as flapping (too many failures in the window)", labels=LABELS
        )
        for labels, stats in stages:
            flapping.add_metric(labels, 1.0 if stats.get("status") == "flapping" else 0.0)
        yield flapping
        yield from _streams(stages)
        safe = GaugeMetricFamily("edge_safe_mode", "1 while a pipeline's keep-alive has lapsed", labels=["pipeline"])
        for pipe in snap.get("pipelines", []):
            if "keep_alive" in pipe:
                safe.add_metric([pipe["name"]], 1.0 if pipe["keep_alive"].get("safe_mode") else 0.0)
        yield safe
        yield from _models(snap.get("models") or {})
        yield from _storage(snap.get("storage") or {})
        yield from _outbox(snap.get("comms") or {})
        yield GaugeMetricFamily(
            "edge_uptime_seconds", "Seconds since the node started", value=float(snap.get("uptime_seconds", 0.0))
        )
        yield GaugeMetricFamily(
            "edge_process_rss_bytes",
            "Resident memory of the node process",
            value=float(psutil.Process().memory_info().rss),
        )


def _streams(stages: list[Stage]) -> Iterator[Metric]:
    """Each capture's source: away or there, for how long, and how often it was reported lost and back."""
    away = GaugeMetricFamily("edge_stream_away", "1 while a capture's source cannot be reached (away)", labels=LABELS)
    seconds = GaugeMetricFamily(
        "edge_stream_away_seconds", "How long the source has been away (0: there)", labels=LABELS
    )
    lost = CounterMetricFamily(
        "edge_stream_lost", "Times the source was reported lost (away STREAM_LOST_SECONDS)", labels=LABELS
    )
    back = CounterMetricFamily("edge_stream_back", "Times a lost source gave inputs again", labels=LABELS)
    for labels, stats in stages:
        stream = stats.get("stream")
        if not isinstance(stream, dict):
            continue
        away.add_metric(labels, 1.0 if stream.get("away") else 0.0)
        seconds.add_metric(labels, float(stream.get("away_seconds") or 0.0))
        lost.add_metric(labels, float(stream.get("times_lost") or 0))
        back.add_metric(labels, float(stream.get("times_back") or 0))
    yield from (away, seconds, lost, back)


def _models(models: dict[str, Any]) -> Iterator[Metric]:
    """One gauge per numeric field of the model servers (latency, batch sizes, ...), labelled by model."""
    families: dict[str, GaugeMetricFamily] = {}
    for server in models.get("servers", []) or []:
        if not isinstance(server, dict):
            continue
        model = str(server.get("name") or server.get("model") or server.get("signature") or "")
        for key, value in server.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metric = "edge_model_" + "".join(c if c.isalnum() else "_" for c in str(key).lower())
            family = families.setdefault(metric, GaugeMetricFamily(metric, f"Model server {key}", labels=["model"]))
            family.add_metric([model], float(value))
    yield from families.values()


def _outbox(comms: dict[str, Any]) -> Iterator[Metric]:
    """The MQTT outbox: messages waiting for the broker, bytes on disk, messages dropped at its bound."""
    outbox = comms.get("outbox") or {}
    if not isinstance(outbox, dict) or "pending" not in outbox:
        return
    yield GaugeMetricFamily(
        "edge_outbox_pending", "MQTT messages not yet acknowledged by the broker", value=float(outbox["pending"])
    )
    yield GaugeMetricFamily(
        "edge_outbox_bytes", "Bytes of the durable outbox on disk", value=float(outbox.get("bytes", 0))
    )
    yield CounterMetricFamily(
        "edge_outbox_dropped",
        "Messages dropped at the outbox bound (EE_OUTBOX_MAX_MB)",
        value=float(outbox.get("dropped", 0)),
    )


STORAGE_COUNTERS = {  # metric name -> (snapshot field, help)
    "edge_uploads": ("uploaded", "Objects uploaded to S3"),
    "edge_upload_bytes": ("uploaded_bytes", "Bytes uploaded to S3"),
    "edge_upload_failures": ("failed_attempts", "Failed upload attempts (retried with backoff)"),
    "edge_uploads_rejected": ("rejected_queue_full", "Objects refused by a full upload queue (sent inline)"),
}
STORAGE_GAUGES = {
    "edge_uploads_pending": ("pending", "Objects waiting in the upload queue on disk"),
    "edge_uploads_pending_bytes": ("pending_bytes", "Bytes waiting in the upload queue on disk"),
}


def _storage(storage: dict[str, Any]) -> Iterator[Metric]:
    """Object storage: the upload queue and its counters (only when S3 is configured)."""
    if not storage.get("configured"):
        return
    for metric, (key, doc) in STORAGE_COUNTERS.items():
        yield CounterMetricFamily(metric, doc, value=float(storage.get(key) or 0))
    for metric, (key, doc) in STORAGE_GAUGES.items():
        yield GaugeMetricFamily(metric, doc, value=float(storage.get(key) or 0))


class MetricsExporter:
    """Renders the exposition text for one node."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, snapshot: Callable[[], NodeSnapshot]):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)
