"""What :class:`~edge_engine.node.core.Node` holds (settings, cache layout, plugins, pipelines, services) and the
requests to stop or restart it: the base of its parts, each a class of its own module, stacked so that each part
uses only the ones below it: :class:`NodeState` < :class:`~edge_engine.node.pipeline_control.NodePipelines` <
:class:`~edge_engine.node.reporting.NodeReporting` < :class:`~edge_engine.node.services.NodeServices` < ``Node``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from edge_engine.config.node_settings import NodeSettings
from edge_engine.local.identity import Identity
from edge_engine.node.disk_bounds import DiskManager
from edge_engine.node.history import NodeHistory
from edge_engine.node.local_output import LocalOutput
from edge_engine.node.message_flow import MessageFlow
from edge_engine.node.seams import Service
from edge_engine.node.snapshot import InvalidPipeline
from edge_engine.plugin.hooks import Hooks, get_plugin_manager
from edge_engine.plugin.registry import PluginRegistry
from edge_engine.runtime.environment import RuntimeEnv
from edge_engine.runtime.pipeline import PipelineRunner
from edge_engine.runtime.supervisor import Supervisor
from edge_engine.runtime.watchdog import Watchdog
from edge_engine.serving.manager import ServingManager

if TYPE_CHECKING:
    from edge_engine.comms.service import CommsService
    from edge_engine.node.local_deploy import LocalRequestWatcher
    from edge_engine.observe.http_listeners import ObserveServer
    from edge_engine.plugin.reload import PluginReloader
    from edge_engine.storage.service import StorageService

log = logging.getLogger("edge_engine.node.core")  # the node's log lines keep the one logger name they had


class NodeState:
    """The node's state, made empty; :meth:`edge_engine.node.core.Node.start` fills it."""

    def __init__(self, settings: NodeSettings):
        self.settings = settings
        self.layout = settings.layout
        self.pm = get_plugin_manager()
        self.output = LocalOutput(self.layout.output)
        self.flow = MessageFlow(self.output)  # the node's sinks, before any plugin's hook
        self.hooks = Hooks(self.pm, sinks=self.flow)
        self.registry = PluginRegistry()
        self.pipelines: dict[str, PipelineRunner] = {}
        self.invalid: dict[str, InvalidPipeline] = {}
        self.identity: Identity | None = None
        self.alias = ""
        self.started_at = time.time()
        self.status = "starting"
        self._stop = threading.Event()
        self._stop_reason = ""
        self._lock = threading.RLock()
        self.disk: DiskManager | None = None  # bounds _output and _logs, pauses outputs on a full disk
        self.history: NodeHistory | None = None
        self.env: RuntimeEnv | None = None
        self.serving: ServingManager | None = None
        self.comms: CommsService | None = None
        self.storage: StorageService | None = None  # witness images and plugin files
        self._restart = threading.Event()
        self.reloader: PluginReloader | None = None  # in development mode
        self.watchdog = Watchdog(self._watched_runners)  # keep-alive deadlines, blocked capture reads
        self.observe: ObserveServer | None = None  # the status page and /metrics
        self.local_requests: LocalRequestWatcher | None = None  # edge-node deploy / delete
        self.services: list[Service] = []  # started, in start order (stopped last first)

    @property
    def supervisor(self) -> Supervisor:
        """The node's one supervisor (restarts and flapping of every part); set by
        :meth:`edge_engine.node.core.Node.start`."""
        assert self.env is not None, "the node is not started"
        return self.env.supervisor

    def _watched_runners(self) -> list[PipelineRunner]:
        with self._lock:
            return list(self.pipelines.values())

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the node to stop (safe from signal handlers and other threads)."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    def request_restart(self, reason: str = "requested") -> None:
        """Stop every pipeline, reload the cached configs, and start them again (from the main loop)."""
        log.info("restart requested (%s)", reason)
        self._restart.set()
        self._stop.set()
