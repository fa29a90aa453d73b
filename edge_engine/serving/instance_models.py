"""Which models a business instance needs, with which config: ``AI_ENGINE`` + ``STARTUP_AI_ENGINE_PARAMS``.

``AI_ENGINE`` names serving plugins (a string or a list). ``STARTUP_AI_ENGINE_PARAMS`` (Ratio1's key)
overrides their config: a ``{"SIGNATURE": {...}}`` entry applies to that serving plugin only, any other
``{"KEY": value}`` entry to every named serving plugin that declares ``KEY``. The effective config of an
engine is its plugin's defaults ← the shared entries ← its own entry. One model server exists per
:class:`ModelKey`: the plugin class and that effective config, so equal configs share a server.

An ``AI_ENGINE`` naming no installed serving plugin is accepted (a migrated Ratio1 pipeline names models
this node may not have): its inputs get a ``ServingError`` of kind ``unknown_engine`` and the node logs why.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from edge_engine.constants import KIND_SERVING
from edge_engine.errors import ConfigIssue
from edge_engine.plugin.config_keys import check_value, defaults
from edge_engine.plugin.registry import PluginRecord, PluginRegistry

ENGINE_KEY = "AI_ENGINE"
PARAMS_KEY = "STARTUP_AI_ENGINE_PARAMS"


@dataclass(frozen=True)
class ModelKey:
    """Identity of a model server: the serving plugin class and its effective config (canonical JSON)."""

    cls: type
    signature: str
    config_json: str

    @property
    def short(self) -> str:
        """A short stable id of the config, for part names and logs."""
        return hashlib.sha1(self.config_json.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class EngineSpec:
    """One serving plugin an instance needs, resolved against the registry."""

    signature: str
    record: PluginRecord
    config: dict[str, Any]
    key: ModelKey

    @property
    def model(self) -> str:
        return self.record.cls.model_name(self.config)  # type: ignore[attr-defined]  # a serving plugin's classmethod (the record types its class as PluginBase)


def engine_names(instance_config: Mapping[str, Any]) -> list[str]:
    """The ``AI_ENGINE`` names of an instance, in order, without duplicates or blanks."""
    value = instance_config.get(ENGINE_KEY) or []
    names = [value] if isinstance(value, str) else list(value)
    seen: list[str] = []
    for name in names:
        if isinstance(name, str) and name.strip() and name.strip().upper() not in (n.upper() for n in seen):
            seen.append(name.strip())
    return seen


def resolve_engines(
    instance_config: Mapping[str, Any], registry: PluginRegistry
) -> tuple[list[EngineSpec], list[str], list[tuple[str, str]]]:
    """``(engines, unknown names, problems)``; a problem is ``(signature, sentence)``."""
    engines: list[EngineSpec] = []
    unknown: list[str] = []
    problems: list[tuple[str, str]] = []
    records: list[PluginRecord] = []
    for name in engine_names(instance_config):
        record = registry.get(KIND_SERVING, name)
        if record is None:
            unknown.append(name)
        elif record not in records:
            records.append(record)
    params = instance_config.get(PARAMS_KEY) or {}
    if not isinstance(params, Mapping):
        return [], unknown, [("", f"{PARAMS_KEY} must be an object")]
    sections, shared = _split_params(params, records)
    schemas = {r.signature: r.cls.config_schema() for r in records}
    if records:
        for key in shared:
            if not any(key in schema for schema in schemas.values()):
                known = sorted({k for schema in schemas.values() for k in schema})
                near = get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                names = ", ".join(repr(r.signature) for r in records)
                problems.append(("", f"key {key!r}: unknown key for serving plugin {names}{hint}"))
    for record in records:
        config, found = _engine_config(record, schemas[record.signature], shared, sections.get(record.signature, {}))
        problems.extend((record.signature, text) for text in found)
        if found:
            continue
        model_key = ModelKey(record.cls, record.signature, json.dumps(config, sort_keys=True, default=str))
        engines.append(EngineSpec(record.signature, record, config, model_key))
    return engines, unknown, problems


def _split_params(
    params: Mapping[str, Any], records: list[PluginRecord]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-signature sections and shared keys of ``STARTUP_AI_ENGINE_PARAMS``."""
    names = {n.lower(): r.signature for r in records for n in (r.signature, *r.cls.ALIASES)}
    sections: dict[str, dict[str, Any]] = {}
    shared: dict[str, Any] = {}
    for key, value in params.items():
        signature = names.get(str(key).lower())
        if signature is not None and isinstance(value, Mapping):
            sections.setdefault(signature, {}).update(value)
        else:
            shared[key] = value
    return sections, shared


def _engine_config(
    record: PluginRecord, schema: dict[str, Any], shared: Mapping[str, Any], own: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    config = defaults(schema)
    config.update({k: v for k, v in shared.items() if k in schema})
    for key, value in own.items():
        if key not in schema:
            near = get_close_matches(str(key).upper(), sorted(schema), n=1, cutoff=0.6)
            problems.append(f"key {key!r}: unknown key" + (f"; did you mean {near[0]!r}?" if near else ""))
            continue
        config[key] = value
    for key, spec in schema.items():
        if key not in config:
            if spec.required:
                doc = f"; {spec.doc}" if spec.doc else ""
                problems.append(f"key {key!r}: missing required key ({spec.type_name()}){doc}")
            continue
        issue = check_value(spec, config[key])
        if issue:
            message, hint = issue
            problems.append(f"key {key!r}: {message} (got {config[key]!r})" + (f"; {hint}" if hint else ""))
    return config, problems


def check_engines(
    instance_config: Mapping[str, Any], registry: PluginRegistry, where: dict[str, Any], models_dir: Path | None
) -> list[ConfigIssue]:
    """Configuration issues of an instance's engines, including the plugins' own static checks (model files,
    input shapes). Unknown engine names are not issues (see the module docstring)."""
    engines, _unknown, problems = resolve_engines(instance_config, registry)
    key = PARAMS_KEY if instance_config.get(PARAMS_KEY) else ENGINE_KEY
    issues = [ConfigIssue(_prefixed(sig, text), key=key, **where) for sig, text in problems]
    for engine in engines:
        try:
            found = engine.record.cls.check_config(engine.config, models_dir)  # type: ignore[attr-defined]  # a serving plugin's classmethod (the record types its class as PluginBase)
        except Exception as exc:  # a plugin's check must not break validation
            found = [f"check_config raised {type(exc).__name__}: {exc}"]
        issues.extend(ConfigIssue(_prefixed(engine.signature, text), key=key, **where) for text in found)
    return issues


def _prefixed(signature: str, text: str) -> str:
    return f"serving plugin {signature!r} › {text}" if signature else text


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ServerSettings:
    """The engine-side settings of one model server, read from its effective config."""

    workers: int
    max_batch: int
    max_wait: float
    window: int
    inference_timeout: float
    idle_stop: float

    @classmethod
    def from_engine(cls, engine: EngineSpec, models_dir: Path | None = None) -> ServerSettings:
        config = engine.config
        workers = int(config.get("WORKERS") or 0)
        if workers <= 0:
            workers = engine.record.cls.default_workers(config, usable_cores())  # type: ignore[attr-defined]  # a serving plugin's classmethod (the record types its class as PluginBase)
        max_batch = int(config.get("MAX_BATCH_SIZE") or 0)
        auto = getattr(engine.record.cls, "default_max_batch", None)
        if max_batch <= 0 and auto is not None:  # 0: the plugin chooses (the ONNX plugins: from the input size)
            max_batch = int(auto(config, models_dir))
        return cls(
            workers=max(1, workers),
            max_batch=max(1, max_batch),
            max_wait=max(0.0, float(config.get("MAX_WAIT_MS") or 0.0)) / 1000.0,
            window=max(1, int(config.get("MAX_IN_FLIGHT") or 1)),
            inference_timeout=float(config.get("INFERENCE_TIMEOUT") or 30.0),
            idle_stop=float(config.get("IDLE_STOP_SECONDS") or 0.0),
        )
