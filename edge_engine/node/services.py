"""The node's services: making each of them (storage, comms, the status page, model serving, the pipelines, local
requests, the reloader, the watchdog) in start order, loading the plugins, and the disk bounds.
:func:`edge_engine.node.seams.start_in_order` starts what :meth:`NodeServices._make_services` yields.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from edge_engine.errors import valid_or_raise
from edge_engine.node.disk_bounds import DiskManager, load_disk_settings
from edge_engine.node.reporting import NodeReporting
from edge_engine.node.seams import PartService, Service
from edge_engine.plugin.discovery import PluginLoader

if TYPE_CHECKING:
    from edge_engine.comms.service import CommsService
    from edge_engine.node.local_deploy import LocalRequestWatcher
    from edge_engine.observe.http_listeners import ObserveServer
    from edge_engine.storage.service import StorageService

log = logging.getLogger("edge_engine.node.core")  # the node's log lines keep the one logger name they had


class NodeServices(NodeReporting):
    """Making the node's services, loading its plugins, its disk bounds."""

    def _make_services(self) -> Iterator[Service]:
        """The services in start order, each made when the ones before it have started."""
        yield self._make_storage()
        comms = self._make_comms()
        if comms is not None:
            yield comms
        observe = self._make_observe()
        if observe is not None:
            yield observe
        serving = self.serving
        assert serving is not None
        yield PartService(
            "serving",
            stop=lambda deadline: serving.stop(max(deadline, time.monotonic() + 1.0)),
            snapshot=serving.snapshot,
        )
        yield PartService(
            "pipelines", start=self._start_pipelines, stop=self._stop_pipelines, snapshot=self._pipeline_snapshots
        )
        yield self._make_local_requests()
        if self.settings.dev_mode:
            from edge_engine.plugin.reload import PluginReloader

            self.reloader = PluginReloader(self)  # watches the plugin folders, reloads changed files
            yield self.reloader
        yield PartService("watchdog", start=self.watchdog.start, stop=lambda _deadline: self.watchdog.stop())

    def _start_disk(self) -> None:
        """Disk bounds (DECISIONS 25): ``EE_OUTPUT_MAX_MB``, ``EE_LOGS_MAX_MB``, ``EE_DISK_MIN_FREE_MB``."""

        def alert(level: str, message: str, fields: dict[str, Any]) -> None:
            self.notify(level, message, [self.alias, None, None, None], **fields)

        self.disk = DiskManager(
            load_disk_settings(self.settings.env),
            self.layout.output,
            self.layout.logs,
            alert,
            output_on_delete=self.output.release,
        )
        self.output.disk = self.disk
        # a full disk is known before the first write; the scan of _output and _logs (seconds on a big cache) waits
        # for the first housekeeping round, off the path to the first heartbeat
        self.disk.check_space()

    def _make_storage(self) -> StorageService:
        """Witness images and plugin files: local paths, and S3 uploads from a disk queue when configured."""
        from edge_engine.storage.service import StorageService
        from edge_engine.storage.storage_settings import load_storage_settings

        settings = valid_or_raise(load_storage_settings(self.settings.app, self.settings.env))
        storage = StorageService(self.layout, settings, self.supervisor, self._node_notification)
        self.storage = storage
        assert self.env is not None
        self.env.storage = storage
        if self.disk is not None:
            disk = self.disk
            storage.outputs_paused = lambda: disk.paused
        self.flow.storage = storage
        return storage

    def _make_comms(self) -> CommsService | None:
        """MQTT comms unless disabled (``EE_COMMS=0``); a broker problem never stops the node."""
        from edge_engine.comms.comms_settings import load_comms_settings

        settings = valid_or_raise(load_comms_settings(self.settings.app, self.settings.startup, self.settings.env))
        if not settings.enabled:
            log.info("comms disabled (EE_COMMS=0): payloads stay in %s", self.layout.output)
            return None
        from edge_engine.comms.service import CommsService

        self.comms = CommsService(self, settings)
        self.flow.outbox = self.comms  # from its start on, every message goes to the outbox before _output/
        return self.comms

    def _make_observe(self) -> ObserveServer | None:
        """The status page and /metrics (``EE_STATUS_PORT``, ``EE_METRICS_PORT``); a failure is only logged."""
        from edge_engine.observe import make_observe

        try:
            self.observe = make_observe(self)
        except Exception as exc:  # never stop the node for the page
            log.error("status page failed to start: %s", exc)
        return self.observe

    def _make_local_requests(self) -> LocalRequestWatcher:
        """``edge-node deploy`` / ``delete`` without MQTT; a warning for PIPELINES the cache lacks (local_deploy)."""
        from edge_engine.node import local_deploy

        if not self.settings.first_start:
            for message in local_deploy.unseeded_pipeline_warnings(
                self.settings.base_dir, self.layout, self.settings.env
            ):
                log.warning("%s", message)
        self.local_requests = local_deploy.LocalRequestWatcher(self)
        return self.local_requests

    def _load_plugins(self) -> None:
        loader = PluginLoader(self.registry, self.pm, self.settings.disabled_plugins)
        started = time.perf_counter()
        for folder in self.settings.plugin_folders():
            if folder.is_dir():
                loader.load_folder(folder)
            else:
                log.info("plugin folder %s does not exist; skipped", folder)
        if self.settings.load_entry_points:
            loader.load_entry_points()
        self.pm.check_pending()
        log.info(
            "loaded %d plugin(s) in %.0f ms%s",
            len(self.registry.records()),
            1000 * (time.perf_counter() - started),
            f"; {len(self.registry.failures)} failed to load" if self.registry.failures else "",
        )
        for record in self.registry.records():
            log.debug("plugin %s %s v%s from %s", record.kind, record.signature, record.version, record.source)
