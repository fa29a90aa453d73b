"""The node's model servers: one per (serving plugin, effective config), shared by every pipeline using it.

Pipelines ask for a :class:`~edge_engine.serving.tickets.ModelClient` per engine when they start and close
it when they stop; the first client of a model creates its server (whose processes then load the model),
later ones share it. A server nobody uses stops its processes after its idle time and is forgotten. At
start the manager checks ``/dev/shm`` once and chooses how frames travel (shared memory, or pipes when it
is too small). Creating the manager imports nothing heavy and starts nothing: an idle node has no server.
Models named by ``MODEL_URL`` are fetched by the manager's one :class:`~edge_engine.serving.model_fetch.ModelFetcher`
(S3 through the node's storage settings); ``snapshot()["downloads"]`` shows its progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_engine.plugin.registry import PluginRegistry
from edge_engine.runtime.supervisor import Supervisor
from edge_engine.serving.frame_slots import ShmStatus, check_shm
from edge_engine.serving.instance_models import EngineSpec, ModelKey
from edge_engine.serving.model_fetch import ModelFetcher, fetched_path
from edge_engine.serving.model_server import ModelServer
from edge_engine.serving.tickets import ModelClient

log = logging.getLogger(__name__)
Notify = Callable[[str, str, dict[str, Any]], None]


class ServingManager:
    """Creates, shares, reports on and stops the model servers of one node."""

    def __init__(
        self,
        registry: PluginRegistry,
        supervisor: Supervisor,
        models_dir: Path,
        notify: Notify | None = None,
        shm: ShmStatus | None = None,
        storage: Callable[[], Any] | None = None,
    ):
        self.registry = registry
        self.supervisor = supervisor
        self.models_dir = models_dir
        self.notify: Notify = notify or (lambda level, message, fields: None)
        self.shm = shm or check_shm()
        if not self.shm.usable:
            log.warning("shared memory: %s", self.shm.reason)
        self._servers: dict[ModelKey, ModelServer] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self.fetcher = ModelFetcher(models_dir, storage=storage, in_use=self._fetched_in_use)

    @property
    def use_shm(self) -> bool:
        return self.shm.usable

    def acquire(self, engine: EngineSpec, pipeline: str, window: int) -> ModelClient:
        """A client of the server for ``engine``, creating (and starting) the server when it is the first."""
        with self._lock:
            if self._stopping:
                raise RuntimeError("the node is stopping")
            server = self._servers.get(engine.key)
            stale = server if server is not None and server.flapping and not server.client_count else None
            created = server is None or server.closed or stale is not None
            if created:
                if stale is not None:  # pipelines updated or restarted: a flapping server starts afresh
                    stale.stop()
                server = ModelServer(engine, self.supervisor, self.models_dir, self.notify, self._closing, self.fetcher)
                self._servers[engine.key] = server
            assert server is not None
            client = server.add_client(pipeline, window)
            if created:
                server.start()
                log.info(
                    "model server %s (%s) created for pipeline %r: %d process(es), batches up to %d",
                    server.part,
                    server.model,
                    pipeline,
                    server.settings.workers,
                    server.settings.max_batch,
                )
        return client

    def _closing(self, server: ModelServer) -> bool:
        """Called by an idle server with no pipeline left: forget it (True) unless one just arrived."""
        with self._lock:
            if server.client_count:
                return False
            if self._servers.get(server.key) is server:
                del self._servers[server.key]
            server.closed = True
            log.info("model server %s closed: no pipeline uses it", server.part)
            return True

    def _fetched_in_use(self) -> list[Path]:
        """The fetched model files some server uses (never removed to bound the cache)."""
        return [fetched_path(self.models_dir, s.source) for s in self.servers() if s.source is not None]

    def servers(self) -> list[ModelServer]:
        with self._lock:
            return list(self._servers.values())

    def pids(self) -> list[int]:
        """Process ids of every running model-server process."""
        return [pid for server in self.servers() for pid in server.pids()]

    def snapshot(self) -> dict[str, Any]:
        """The ``models`` section of ``local_info.json``."""
        return {
            **self.shm.as_dict(),
            "servers": [server.snapshot() for server in self.servers()],
            "downloads": self.fetcher.snapshot(),
        }

    def stop(self, deadline: float | None = None) -> list[str]:
        """Stop every server (their processes exit or are killed); returns the ones still stopping."""
        with self._lock:
            self._stopping = True
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.stop()
        deadline = deadline if deadline is not None else time.monotonic() + 3.0
        return [server.part for server in servers if not server.join(deadline)]
