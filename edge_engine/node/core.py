"""The node: identity, plugins, pipelines, the local cache, and the housekeeping loop that reports on them.

The node starts its services (:class:`edge_engine.node.seams.Service`: storage, comms, the status page, model
serving, the pipelines, local requests, the reloader, the watchdog) in that order and stops them in the reverse
order within one shutdown deadline; services see the node through the protocols of :mod:`edge_engine.node.seams`.
Payloads and notifications reach the node's own sinks through :class:`edge_engine.node.message_flow.MessageFlow`.

The engine API for pipelines lives here: :meth:`Node.add_pipeline` (add or replace),
:meth:`Node.remove_pipeline`, :meth:`Node.update_instance` and :meth:`Node.instance_command`. Each
accepted change is written to ``_data/box_configuration/streams/<NAME>.json`` at once, so pipelines come
back after a restart. A pipeline that fails validation is reported and kept on disk, never deleted.
"""

from __future__ import annotations

import copy
import logging
import os
import platform
import re
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

from edge_engine import __version__
from edge_engine import constants as C
from edge_engine.config.node_settings import NodeSettings, network_name
from edge_engine.config.pipelines import (
    CACHE_FILE,
    NAME_PATTERN,
    SEED_FILE,
    PipelineSpec,
    check_instance_update,
    public_reasons,
    read_pipeline_file,
    validate_pipeline,
)
from edge_engine.errors import NOT_GIVEN, CacheError, ConfigError, ConfigIssue, PipelineError
from edge_engine.local.allowlist import read as read_allowlist
from edge_engine.local.cache import atomic_write_json, read_json
from edge_engine.local.identity import Identity, default_alias, load_or_create_identity
from edge_engine.messages import Notification, utc_iso
from edge_engine.node.disk_bounds import DiskManager, load_disk_settings
from edge_engine.node.history import NodeHistory
from edge_engine.node.local_output import LocalOutput
from edge_engine.node.message_flow import MessageFlow
from edge_engine.node.seams import PartService, Service, start_in_order, stop_in_reverse
from edge_engine.node.snapshot import InvalidPipeline, NodeSnapshot, PipelineSnapshot
from edge_engine.plugin.discovery import PluginLoader
from edge_engine.plugin.hooks import Hooks, get_plugin_manager
from edge_engine.plugin.registry import PluginRegistry
from edge_engine.redact import redact
from edge_engine.runtime.environment import RuntimeEnv
from edge_engine.runtime.pipeline import PipelineRunner
from edge_engine.runtime.process_group import make_runner, plan_for
from edge_engine.runtime.supervisor import RestartPolicy, Supervisor
from edge_engine.runtime.watchdog import Watchdog
from edge_engine.serving.manager import ServingManager

if TYPE_CHECKING:
    from edge_engine.comms.service import CommsService
    from edge_engine.node.local_deploy import LocalRequestWatcher
    from edge_engine.observe.http_listeners import ObserveServer
    from edge_engine.plugin.reload import PluginReloader
    from edge_engine.storage.service import StorageService

log = logging.getLogger(__name__)
REMOVE_JOIN_SECONDS = 2.0
VOLUME_ALIAS = re.compile(r"[A-Za-z0-9_.-]+")  # an alias found in a volume's local_info.json (Ratio1's)


class NetworkSections(TypedDict, total=False):
    """The snapshot's sections from comms (:class:`edge_engine.node.snapshot.NodeSnapshot`); none with comms off."""

    admin_pipeline: dict[str, Any]
    network: dict[str, Any]


def ratio1_time(ts: float | None = None) -> str:
    """Ratio1's ``LAST_UPDATE_TIME`` format (UTC): ``2026-11-23 14:00:00.000000``."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


class Node:
    """One edge node process."""

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

    # --- start ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load identity and plugins, start the services in order (pipelines among them), write local_info.json.

        A service that fails to start stops those started before it (reverse order) and the error is raised."""
        self.identity = load_or_create_identity(self.layout.key_file)
        self.alias = self._resolve_alias(self.identity)
        self.write_local_info()  # status "starting": ops commands and the health check can tell
        self.pm.register(self.output, name="edge_engine.node.local_output")  # closes files of stopped pipelines
        self._start_disk()
        self._load_plugins()
        startup = self.settings.startup
        policy = RestartPolicy(
            cap=float(startup["RESTART_BACKOFF_MAX"]),
            flap_max_failures=int(startup["FLAP_MAX_FAILURES"]),
            flap_window=float(startup["FLAP_WINDOW_SECONDS"]),
        )
        supervisor = Supervisor(policy)
        self.serving = ServingManager(
            self.registry,
            supervisor,
            self.layout.models,
            self._model_notification,
            storage=lambda: getattr(self.storage, "settings", None),
        )
        self.env = RuntimeEnv(
            self.alias,
            self.layout,
            self.hooks,
            supervisor,
            serving=self.serving,
            wake_watchdog=self.watchdog.poke,
            pipeline_config=self.pipeline_config,
        )
        self.history = NodeHistory(
            self._identity_fields(),
            self.layout.root,
            started_at=self.started_at,
            sample_seconds=float(self.settings.startup["SECONDS_HISTORY_SAMPLE"]),
        )
        self.history.load(self.layout.local_history)
        start_in_order(self._make_services(), self.services, self._stop_deadline)
        self.status = "running"
        self.write_local_info()
        self.hooks.node_started(
            {
                "address": self.identity.address,
                "alias": self.alias,
                "version": __version__,
                "cache_dir": str(self.layout.root),
                "started_at": utc_iso(self.started_at),
            }
        )
        log.info(
            "node %s (%s) running %d pipeline(s)%s; cache %s",
            self.alias,
            self.identity.address,
            len(self.pipelines),
            f", {len(self.invalid)} invalid" if self.invalid else "",
            self.layout.root,
        )

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

    @property
    def supervisor(self) -> Supervisor:
        """The node's one supervisor (restarts and flapping of every part); set by :meth:`start`."""
        assert self.env is not None, "the node is not started"
        return self.env.supervisor

    def _stop_deadline(self) -> float:
        return time.monotonic() + float(self.settings.startup["SHUTDOWN_SECONDS"]) - 0.5

    def _resolve_alias(self, identity: Identity) -> str:
        """The cached alias wins (``config_startup.json``, else the volume's own ``_data/local_info.json``: a Ratio1
        volume keeps it there); ``EE_ID`` seeds it at first start; else hostname + address."""
        startup_file = self.layout.startup_config
        stored = self.settings.startup.get("EE_ID") or ""
        if stored.strip().upper() not in C.ALIAS_PLACEHOLDERS:
            return stored.strip()[: C.ALIAS_MAX_LEN]
        alias = self._volume_alias() or (self.settings.env.get(C.ENV_ID) or "").strip()
        if alias.upper() in C.ALIAS_PLACEHOLDERS:
            alias = default_alias(identity.address)
        alias = alias[: C.ALIAS_MAX_LEN]
        try:
            data = read_json(startup_file) if startup_file.exists() else {}
        except CacheError:
            data = {}
        data["EE_ID"] = alias
        atomic_write_json(startup_file, data)
        self.settings.startup["EE_ID"] = alias
        return alias

    def _volume_alias(self) -> str:
        """The alias in the cache's ``_data/local_info.json`` when it holds a usable one (a Ratio1 volume's node), else
        an empty string. Read before this node writes the file."""
        try:
            info = read_json(self.layout.local_info) if self.layout.local_info.exists() else None
        except CacheError:
            return ""
        alias = info.get("alias") if isinstance(info, dict) else None
        if not isinstance(alias, str) or alias.strip().upper() in C.ALIAS_PLACEHOLDERS:
            return ""
        alias = alias.strip()
        if not VOLUME_ALIAS.fullmatch(alias):
            log.warning("the alias %r in %s is not usable here; not taken", alias, self.layout.local_info)
            return ""
        if len(alias) > C.ALIAS_MAX_LEN:
            log.warning("the volume's alias %r is cut to %d characters", alias, C.ALIAS_MAX_LEN)
        log.info("alias %r taken from the volume's %s", alias[: C.ALIAS_MAX_LEN], self.layout.local_info.name)
        return alias

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

        settings, issues = load_storage_settings(self.settings.app, self.settings.env)
        if issues:
            raise ConfigError(issues)
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

        settings, issues = load_comms_settings(self.settings.app, self.settings.startup, self.settings.env)
        if issues:
            raise ConfigError(issues)
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

    def _seed_pipelines(self) -> None:
        """First start: copy the configured pipeline files into the cache, and the demo into a brand new cache."""
        entries: list[tuple[str, Any]] = []
        for item in self.settings.startup.get("PIPELINES", []):
            entries.append(("startup config › PIPELINES", item))
        if self.settings.startup.get("DEMO_PIPELINE"):
            demo = self.settings.base_dir / C.DEMO_PIPELINE_FILE
            if not self.settings.new_cache:
                log.info("demo pipeline not seeded: the cache is not new (it holds a key, pipelines or an allowlist)")
            elif demo.exists():
                entries.append(("demo", str(demo)))
            else:
                log.info("demo pipeline %s not found; not seeded", demo)
        for label, item in entries:
            if isinstance(item, str):
                path = Path(item) if Path(item).is_absolute() else self.settings.base_dir / item
                items, issues = read_pipeline_file(path, SEED_FILE)
                if issues:
                    self._record_invalid(path.stem, str(path), issues)
                    continue
                label = str(path)
            else:
                items = [item]
            for raw in items:
                self._seed_one(raw, label)

    def _seed_one(self, raw: Any, label: str) -> None:
        """Write one seed pipeline to ``streams/<NAME>.json`` (checked when the cache is loaded); a NAME that cannot
        be a file name there is refused here."""
        name = raw.get("NAME") if isinstance(raw, dict) else None
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            hint = "use 1-64 letters, digits, '_', '-' or '.'"
            if not isinstance(raw, dict):
                issue = ConfigIssue("a pipeline must be a JSON object", file=label, got=type(raw).__name__)
            else:
                issue = ConfigIssue(
                    "missing or invalid pipeline name",
                    file=label,
                    key="NAME",
                    got=raw.get("NAME", NOT_GIVEN),
                    hint=hint,
                )
            self._record_invalid(f"unnamed:{Path(label).name}" if not isinstance(name, str) else name, label, [issue])
            return
        atomic_write_json(self.layout.stream_file(name), self._stamp(raw))
        log.info("seeded pipeline %r from %s", name, label)

    def _start_pipelines(self) -> None:
        """The pipelines' service start: seed the cache at first start, then start every valid cached pipeline."""
        if self.settings.first_start:
            self._seed_pipelines()
            self.layout.first_start_marker.unlink(missing_ok=True)  # seeded: later starts read the cache only
        with self._lock:
            self._load_cached_pipelines()

    def _stop_pipelines(self, deadline: float) -> list[str]:
        """The pipelines' service stop: every pipeline at once, then each joined by ``deadline``."""
        with self._lock:
            runners = list(self.pipelines.values())
            for runner in runners:
                runner.stop()
            left: list[str] = []
            for runner in runners:
                left.extend(runner.join(deadline))
                self.hooks.pipeline_stopped(runner.name, "node stopping")
        if left:
            log.warning("threads still running at the stop deadline (abandoned): %s", left)
        return left

    def _pipeline_snapshots(self) -> list[PipelineSnapshot]:
        with self._lock:  # the runners' snapshots are built to PipelineSnapshot's shape (runtime/pipeline.py)
            return [cast(PipelineSnapshot, runner.snapshot()) for runner in self.pipelines.values()]

    def _load_cached_pipelines(self) -> None:
        for path in sorted(self.layout.streams.glob("*.json")):
            if path.stem.lower() == C.ADMIN_PIPELINE_NAME:
                log.info("%s: the admin pipeline is built from the startup config; this file is ignored", path)
                continue
            items, issues = read_pipeline_file(path, CACHE_FILE)
            if issues:
                self._record_invalid(path.stem, str(path), issues)
                continue
            spec, issues = validate_pipeline(items[0], self.registry, str(path), self.layout.models)
            if spec is None:
                self._record_invalid(path.stem, str(path), issues)
                continue
            if spec.name != path.stem:
                log.warning("%s holds pipeline %r; it is kept under that name", path, spec.name)
            if spec.name in self.pipelines:
                self._record_invalid(
                    path.stem,
                    str(path),
                    [ConfigIssue("duplicate pipeline NAME (another file defines it)", file=str(path), key="NAME")],
                )
                continue
            self._start_pipeline(spec)

    def _record_invalid(self, name: str, file: str, issues: list[ConfigIssue]) -> None:
        """Keep an invalid pipeline's problems: ``errors`` (with the file, for local_info.json and the logs) and
        ``reasons`` (the same without it: what heartbeats carry, decision 37)."""
        for issue in issues:
            log.error("invalid pipeline: %s", issue)
        self.invalid[name] = {
            "name": name,
            "file": file,
            "errors": [str(i) for i in issues],
            "reasons": public_reasons(issues),
        }

    # --- engine API -----------------------------------------------------------------------------------------
    def add_pipeline(self, raw: dict[str, Any], source: str = "api") -> PipelineSpec:
        """Add a pipeline, or replace the one with the same NAME. Raises ConfigError and changes nothing."""
        if isinstance(raw, dict) and str(raw.get("NAME", "")).lower() == C.ADMIN_PIPELINE_NAME:
            raise ConfigError(
                [
                    ConfigIssue(
                        "the admin pipeline is built from the startup config (ADMIN_PIPELINE) and cannot be replaced",
                        file=source,
                        key="NAME",
                        got=raw.get("NAME"),
                    )
                ]
            )
        spec, issues = validate_pipeline(raw, self.registry, source, self.layout.models)
        if spec is None:
            raise ConfigError(issues)
        with self._lock:
            stamped = self._stamp(spec.raw)
            atomic_write_json(self.layout.stream_file(spec.name), stamped)
            self.invalid.pop(spec.name, None)
            current = self.pipelines.get(spec.name)
            if current is not None and not current.stopping and current.can_update_live(spec):
                report = current.update_live(spec)
                log.info("pipeline %r updated live: %s", spec.name, report)
                self.hooks.pipeline_started(spec.name, copy.deepcopy(stamped))
                return spec
            if current is not None:
                self._stop_pipeline(current, "updated")
            self._start_pipeline(spec)
        return spec

    def remove_pipeline(self, name: str) -> bool:
        """Stop and forget a pipeline (its cache file is deleted). Returns False if it was not there."""
        if name.lower() == C.ADMIN_PIPELINE_NAME:
            raise PipelineError(name, "the admin pipeline cannot be deleted")
        with self._lock:
            runner = self.pipelines.get(name)
            if runner is None and name not in self.invalid and not NAME_PATTERN.match(name):
                return False  # not a pipeline name: never a path outside the streams folder ("../x", "/etc/x")
            path = self.layout.stream_file(name)
            existed = runner is not None or path.exists() or name in self.invalid
            if runner is not None:
                self._stop_pipeline(runner, "removed")
            self.invalid.pop(name, None)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        if existed:
            log.info("pipeline %r removed", name)
        return existed

    def update_instance(self, pipeline: str, signature: str, instance_id: str, changes: dict[str, Any]) -> None:
        """Change some keys of one instance live (validated, persisted, applied between two inputs)."""
        with self._lock:
            runner = self._runner(pipeline)
            instance = runner.instance(signature, instance_id)
            if instance is None:
                raise PipelineError(pipeline, f"no instance {signature}/{instance_id}")
            where = {"file": "api", "pipeline": pipeline, "plugin": signature, "instance": instance_id}
            issues = check_instance_update(instance.spec.record, changes, where)
            if issues:
                raise ConfigError(issues)
            raw = copy.deepcopy(runner.spec.raw)
            for entry in raw.get("PLUGINS", []):
                if str(entry.get("SIGNATURE", "")).upper() != instance.spec.signature.upper():
                    continue
                for item in entry.get("INSTANCES", []):
                    if item.get("INSTANCE_ID") == instance_id:
                        item.update(copy.deepcopy(changes))
            self.add_pipeline(raw, source="api")

    def keep_alive(self, pipeline: str) -> bool:
        """The owner's keep-alive for a pipeline (``KEEP_ALIVE_SECONDS``); True when it ended the safe mode."""
        resumed = self._runner(pipeline).keep_alive()
        if resumed:
            self.watchdog.poke()  # it was not watching the deadline while in safe mode
        return resumed

    def _watched_runners(self) -> list[PipelineRunner]:
        with self._lock:
            return list(self.pipelines.values())

    def instance_command(
        self, pipeline: str, signature: str, instance_id: str, command: Any, **params: Any
    ) -> Future[Any]:
        """Send a command to one instance's ``on_command``; the future holds its result."""
        runner = self._runner(pipeline)
        instance = runner.instance(signature, instance_id)
        if instance is None:
            raise PipelineError(pipeline, f"no instance {signature}/{instance_id}")
        return instance.command(command, params)

    def _runner(self, name: str) -> PipelineRunner:
        if name.lower() == C.ADMIN_PIPELINE_NAME:
            raise PipelineError(
                name, "the admin pipeline is built from the startup config (ADMIN_PIPELINE); commands cannot change it"
            )
        runner = self.pipelines.get(name)
        if runner is None:
            raise PipelineError(name, "no such pipeline")
        return runner

    # --- for the reloader (edge_engine.node.seams.PipelineHost) -----------------------------------------------
    @contextmanager
    def pipelines_locked(self) -> Iterator[None]:
        """Hold the pipelines still (no add, remove, update or restart) while a reload swaps plugin classes."""
        with self._lock:
            yield

    def running_pipelines(self) -> list[PipelineRunner]:
        with self._lock:
            return list(self.pipelines.values())

    def replace_pipeline(self, runner: PipelineRunner, spec: PipelineSpec, reason: str) -> None:
        """Stop ``runner`` (hook ``edge_pipeline_stopped`` with ``reason``) and start ``spec`` in its place."""
        with self._lock:
            self._stop_pipeline(runner, reason)
            self._start_pipeline(spec)

    def start_now_valid(self) -> list[str]:
        """Start the stored pipelines recorded as invalid (an unknown plugin, say) that validate now; their names."""
        started: list[str] = []
        streams = self.layout.streams.resolve()
        with self._lock:
            for key, entry in list(self.invalid.items()):
                file = entry.get("file")
                if not file or Path(file).resolve().parent != streams:
                    continue
                try:
                    raw = read_json(Path(file))
                except CacheError:
                    continue
                spec, _ = validate_pipeline(raw, self.registry, file)
                if spec is None or spec.name in self.pipelines:
                    continue
                self.invalid.pop(key, None)
                self._start_pipeline(spec)
                started.append(spec.name)
        return started

    def pipeline_config(self, name: str) -> Mapping[str, Any]:
        """The running pipeline's persisted config (read only; empty when none runs): what the instance stage
        copies routing fields from into a payload's intent."""
        runner = self.pipelines.get(name)
        return runner.spec.raw if runner is not None else {}

    def _stamp(self, raw: dict[str, Any]) -> dict[str, Any]:
        stamped = copy.deepcopy(raw)
        stamped["LAST_UPDATE_TIME"] = ratio1_time()
        return stamped

    def _start_pipeline(self, spec: PipelineSpec) -> None:
        assert self.env is not None
        runner = make_runner(self.env, spec, plan_for(self.settings, self.alias, spec.raw))  # PROCESS: node | worker
        self.pipelines[spec.name] = runner
        runner.start()
        self.watchdog.poke()
        log.info("pipeline %r started: %s with %d instance(s)", spec.name, spec.capture.signature, len(spec.instances))
        self.hooks.pipeline_started(spec.name, copy.deepcopy(spec.raw))

    def _stop_pipeline(self, runner: PipelineRunner, reason: str) -> None:
        runner.stop()
        left = runner.join(time.monotonic() + REMOVE_JOIN_SECONDS)
        if left:
            log.warning("pipeline %r: threads still finishing after %.0f s: %s", runner.name, REMOVE_JOIN_SECONDS, left)
        self.pipelines.pop(runner.name, None)
        self.hooks.pipeline_stopped(runner.name, reason)

    # --- reporting -------------------------------------------------------------------------------------------
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

    def pipeline_names(self) -> list[str]:
        with self._lock:
            return list(self.pipelines)

    def pipeline_configs(self) -> list[dict[str, Any]]:
        """The persisted configs of the running pipelines (Ratio1's CONFIG_STREAMS)."""
        with self._lock:
            return [copy.deepcopy(runner.spec.raw) for runner in self.pipelines.values()]

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

    # --- run and stop -----------------------------------------------------------------------------------------
    def request_stop(self, reason: str = "requested") -> None:
        """Ask the node to stop (safe from signal handlers and other threads)."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    def request_restart(self, reason: str = "requested") -> None:
        """Stop every pipeline, reload the cached configs, and start them again (from the main loop)."""
        log.info("restart requested (%s)", reason)
        self._restart.set()
        self._stop.set()

    def restart_pipelines(self) -> None:
        """Stop all pipelines and start them again from the cache."""
        with self._lock:
            for runner in list(self.pipelines.values()):
                self._stop_pipeline(runner, "restarting")
            self.invalid.clear()
            self._load_cached_pipelines()
        log.info("pipelines restarted: %d running", len(self.pipelines))

    def run_forever(self) -> None:
        """Refresh local_info and history until a stop is requested, then stop everything."""
        startup = self.settings.startup
        info_every = float(startup["SECONDS_LOCAL_INFO"])
        sample_every = float(startup["SECONDS_HISTORY_SAMPLE"])
        save_every = float(startup["SECONDS_HISTORY_SAVE"])
        now = time.monotonic()
        next_info, next_sample, next_save = now + info_every, now, now  # history on disk from the start
        while True:
            timeout = max(0.0, min(next_info, next_sample, next_save) - time.monotonic())
            if self._stop.wait(timeout):
                if not self._restart.is_set():
                    break
                self._restart.clear()
                self._stop.clear()
                self.restart_pipelines()
                continue
            now = time.monotonic()
            try:
                if now >= next_sample and self.history is not None:
                    rates = {name: runner.capture.stats.rate for name, runner in list(self.pipelines.items())}
                    self.history.sample(rates)
                    next_sample = now + sample_every
                if now >= next_info:
                    if self.disk is not None:
                        self.disk.tick()
                    self.write_local_info()
                    next_info = now + info_every
                if now >= next_save and self.history is not None:
                    self.history.save(self.layout.local_history)
                    next_save = now + save_every
            except OSError as exc:  # a full or read-only disk must not stop the pipelines
                log.error("housekeeping write failed: %s", exc)
                if self.disk is not None:
                    self.disk.write_failed(exc, "housekeeping")
                next_info = next_save = time.monotonic() + info_every
        self.stop(self._stop_reason or "requested")

    def stop(self, reason: str = "requested") -> list[str]:
        """Stop every service, last started first, within the shutdown deadline; returns threads that did not
        finish in time."""
        deadline = self._stop_deadline()
        self.status = "stopping"
        log.info("node stopping (%s)", reason)
        self.hooks.node_stopping(reason)
        left = stop_in_reverse(self.services, deadline)
        self.status = "stopped"
        try:
            self.write_local_info()
            if self.history is not None:
                self.history.save(self.layout.local_history)
        except OSError as exc:
            log.error("final cache write failed: %s", exc)
        self.output.close()
        log.info("node stopped")
        return left


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text
