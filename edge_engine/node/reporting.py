"""What the node reports: the snapshot that ``_data/local_info.json`` holds
(:class:`edge_engine.node.snapshot.NodeSnapshot`, refreshed by the main loop) and node-level notifications.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any, TypedDict

from edge_engine import __version__
from edge_engine import constants as C
from edge_engine.config.node_settings import network_name
from edge_engine.local.allowlist import read as read_allowlist
from edge_engine.local.cache import atomic_write_json
from edge_engine.messages import Notification, utc_iso
from edge_engine.node.pipeline_control import NodePipelines
from edge_engine.node.snapshot import NodeSnapshot
from edge_engine.redact import redact


class NetworkSections(TypedDict, total=False):
    """The snapshot's sections from comms (:class:`edge_engine.node.snapshot.NodeSnapshot`); none with comms off."""

    admin_pipeline: dict[str, Any]
    network: dict[str, Any]


class NodeReporting(NodePipelines):
    """The node's snapshot (local_info.json) and its node-level notifications."""

    def _identity_fields(self) -> dict[str, Any]:
        assert self.identity is not None
        return {
            "address": self.identity.address,
            "eth_address": self.identity.eth_address,
            "alias": self.alias,
            "version": f"v{__version__}",
        }

    def snapshot(self) -> NodeSnapshot:
        """What local_info.json holds: Ratio1's fields first, ours beside them."""
        assert self.identity is not None
        now = time.time()
        uptime = now - self.started_at
        pipelines = self._pipeline_snapshots()
        with self._lock:
            invalid = list(self.invalid.values())
        return {
            "address": self.identity.address,
            "alias": self.alias,
            "eth_address": self.identity.eth_address,
            "version_long": f"v{__version__} | edge_engine {__version__} | python {platform.python_version()}",
            "version_short": f"v{__version__}",
            "info": {"whitelist": self._whitelist()},
            "status": self.status,
            "pid": os.getpid(),
            "started_at": utc_iso(self.started_at),
            "updated_at": utc_iso(now),
            "uptime_seconds": round(uptime, 1),
            "uptime": _hms(uptime),
            "refresh_seconds": float(self.settings.startup["SECONDS_LOCAL_INFO"]),
            "cache_dir": str(self.layout.root),
            "evm_net": network_name(self.settings.env),
            "comms": self.comms.snapshot() if self.comms is not None else None,  # None: comms off
            **self._network_sections(),
            "pipelines": redact(pipelines),
            "invalid_pipelines": invalid,
            "plugins": {
                "loaded": len(self.registry.records()),
                "by_kind": {k: sorted(r.signature for r in self.registry.records(k)) for k in C.PLUGIN_KINDS},
                "failed": [{"source": f.source, "name": f.name, "reason": f.reason} for f in self.registry.failures],
            },
            "models": self.serving.snapshot() if self.serving is not None else {"servers": []},
            "storage": self.storage.snapshot() if self.storage is not None else None,
            "disk": self.disk.snapshot() if self.disk is not None else None,
        }

    def _network_sections(self) -> NetworkSections:
        """``admin_pipeline`` and ``network`` (the nodes heard on the broker), from comms; none with comms off."""
        if self.comms is None:
            return {}
        admin = self.comms.admin
        return {"admin_pipeline": admin.snapshot(), "network": admin.tracker.snapshot()}

    def _whitelist(self) -> list[str]:
        return [entry.address for entry in read_allowlist(self.layout.authorized_addrs)]

    def notify(self, level: str, message: str, path: list[Any], **fields: Any) -> None:
        """Raise a node-level notification (logged locally, sent by comms)."""
        self.hooks.notification(Notification(level, message, list(path), fields, time.time()))

    def _node_notification(self, level: str, message: str, **fields: Any) -> None:
        """A node-level notification (object storage unreachable, ...)."""
        self.notify(level, message, [self.alias, None, None, None], **fields)

    def _model_notification(self, level: str, message: str, fields: dict[str, Any]) -> None:
        """A model server's notification (load failure, crash): node-level, the model named in its fields."""
        self.notify(level, message, [self.alias, None, None, None], **fields)

    def write_local_info(self) -> None:
        atomic_write_json(self.layout.local_info, self.snapshot())


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text
