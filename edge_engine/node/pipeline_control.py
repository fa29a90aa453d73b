"""The node's pipelines: seeding the cache at first start, starting the valid cached pipelines, and the engine API
(:meth:`NodePipelines.add_pipeline` adds or replaces, :meth:`~NodePipelines.remove_pipeline`,
:meth:`~NodePipelines.update_instance`, :meth:`~NodePipelines.instance_command`). Each accepted change is written to
``_data/box_configuration/streams/<NAME>.json`` at once, so pipelines come back after a restart. A pipeline that fails
validation is reported and kept on disk, never deleted.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from edge_engine import constants as C
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
from edge_engine.local.cache import atomic_write_json, read_json
from edge_engine.node.snapshot import PipelineSnapshot
from edge_engine.node.state import NodeState
from edge_engine.runtime.pipeline import PipelineRunner
from edge_engine.runtime.process_group import make_runner, plan_for

log = logging.getLogger("edge_engine.node.core")  # the node's log lines keep the one logger name they had
REMOVE_JOIN_SECONDS = 2.0


def ratio1_time(ts: float | None = None) -> str:
    """Ratio1's ``LAST_UPDATE_TIME`` format (UTC): ``2026-11-23 14:00:00.000000``."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


class NodePipelines(NodeState):
    """The node's pipelines, the engine API and the reloader's seam (:class:`edge_engine.node.seams.PipelineHost`)."""

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

    def pipeline_names(self) -> list[str]:
        with self._lock:
            return list(self.pipelines)

    def pipeline_configs(self) -> list[dict[str, Any]]:
        """The persisted configs of the running pipelines (Ratio1's CONFIG_STREAMS)."""
        with self._lock:
            return [copy.deepcopy(runner.spec.raw) for runner in self.pipelines.values()]

    def restart_pipelines(self) -> None:
        """Stop all pipelines and start them again from the cache."""
        with self._lock:
            for runner in list(self.pipelines.values()):
                self._stop_pipeline(runner, "restarting")
            self.invalid.clear()
            self._load_cached_pipelines()
        log.info("pipelines restarted: %d running", len(self.pipelines))
