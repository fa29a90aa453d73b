"""The node: identity, plugins, pipelines, the local cache, and the housekeeping loop that reports on them.

The node starts its services (:class:`edge_engine.node.seams.Service`: storage, comms, the status page, model
serving, the pipelines, local requests, the reloader, the watchdog) in that order and stops them in the reverse
order within one shutdown deadline; services see the node through the protocols of :mod:`edge_engine.node.seams`.
Payloads and notifications reach the node's own sinks through :class:`edge_engine.node.message_flow.MessageFlow`.

:class:`Node` is made of parts with one job each, one module each (:mod:`edge_engine.node.state` says how they
stack): its state and the stop and restart requests (:mod:`~edge_engine.node.state`), the pipelines and the engine
API (:mod:`~edge_engine.node.pipeline_control`: :meth:`Node.add_pipeline`, :meth:`Node.remove_pipeline`,
:meth:`Node.update_instance`, :meth:`Node.instance_command`), the snapshot and notifications
(:mod:`~edge_engine.node.reporting`), making the services (:mod:`~edge_engine.node.services`); this module holds
the life cycle: start, the housekeeping loop (:meth:`Node.run_forever`) and stop.
"""

from __future__ import annotations

import logging
import re
import time

from edge_engine import __version__
from edge_engine import constants as C
from edge_engine.errors import CacheError
from edge_engine.local.cache import atomic_write_json, read_json
from edge_engine.local.identity import Identity, default_alias, load_or_create_identity
from edge_engine.messages import utc_iso
from edge_engine.node.history import NodeHistory
from edge_engine.node.seams import start_in_order, stop_in_reverse
from edge_engine.node.services import NodeServices
from edge_engine.runtime.environment import RuntimeEnv
from edge_engine.runtime.supervisor import RestartPolicy, Supervisor
from edge_engine.serving.manager import ServingManager

log = logging.getLogger(__name__)
VOLUME_ALIAS = re.compile(r"[A-Za-z0-9_.-]+")  # an alias found in a volume's local_info.json (Ratio1's)


class Node(NodeServices):
    """One edge node process."""

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
