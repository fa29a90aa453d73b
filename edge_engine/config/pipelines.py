"""Pipeline configs: validation of the JSON an owner writes, into immutable specs the runtime runs.

A pipeline is ``{"NAME", "TYPE", ...capture keys, "PLUGINS": [{"SIGNATURE", "INSTANCES": [{"INSTANCE_ID",
...overrides}]}]}``. Every problem is collected (never only the first) with its full location.
An instance's effective config is the plugin's defaults updated with the instance's overrides.

Pipeline files are read by :func:`read_pipeline_file`, the one reader of the node and of ``edge-node validate``:
a file in the cache (``streams/<NAME>.json``, Ratio1's layout) holds one pipeline object; a seed file (the
startup config's ``PIPELINES``, the demo, ``edge-node deploy``) holds one object or a list of them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_engine.config.ratio1_keys import INSTANCE_KEYS, PIPELINE_KEYS
from edge_engine.constants import KIND_BUSINESS, KIND_CAPTURE
from edge_engine.errors import NOT_GIVEN, CacheError, ConfigIssue
from edge_engine.local.cache import read_json
from edge_engine.plugin.config_keys import Key, check_value, defaults, validate_mapping
from edge_engine.plugin.registry import PluginRecord, PluginRegistry
from edge_engine.serving.cascade import check_cascades
from edge_engine.serving.instance_models import check_engines

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_HINT = "use 1-64 letters, digits, '_', '-' or '.'"
PIPELINE_STRUCTURE = frozenset({"NAME", "TYPE", "PLUGINS"})
PLUGIN_ENTRY_KEYS = frozenset({"SIGNATURE", "INSTANCES"})
CACHE_FILE = "cache"  # one pipeline object per file: _data/box_configuration/streams/<NAME>.json
SEED_FILE = "seed"  # one pipeline object or a list of them: PIPELINES entries, the demo, edge-node deploy


def read_pipeline_file(path: Path, role: str = SEED_FILE) -> tuple[list[Any], list[ConfigIssue]]:
    """The pipeline objects of a file as the node reads it (``role``: :data:`CACHE_FILE` or :data:`SEED_FILE`),
    or the issue that refuses the whole file (unreadable, not JSON, a list in the cache, an empty list).
    Each object is then checked by :func:`validate_pipeline`."""
    label = str(path)
    try:
        data = read_json(path)
    except CacheError as exc:
        return [], [ConfigIssue(str(exc).replace(f"{path} ", "", 1), file=label)]
    if not isinstance(data, list):
        return [data], []
    if role == CACHE_FILE:
        hint = "a file of the cache holds one pipeline: put each in its own <NAME>.json (lists are for seed files)"
        return [], [
            ConfigIssue("expected one pipeline object, not a list", file=label, got=f"a list of {len(data)}", hint=hint)
        ]
    if not data:
        return [], [ConfigIssue("expected a pipeline object or a non-empty list of them", file=label, got=[])]
    return data, []


def public_reasons(issues: list[ConfigIssue]) -> list[str]:
    """What is wrong, without the file it is in: the form that may leave the node (decision 37)."""
    return [str(replace(issue, file=None)) for issue in issues]


@dataclass(frozen=True)
class InstanceSpec:
    """One business plugin instance of a pipeline."""

    signature: str
    instance_id: str
    record: PluginRecord
    config: dict[str, Any]
    overrides: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.signature.upper(), self.instance_id)


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline: capture plugin and config, instances, and the raw JSON to persist."""

    name: str
    capture: PluginRecord
    capture_config: dict[str, Any]
    instances: tuple[InstanceSpec, ...]
    raw: dict[str, Any]
    source: str | None = None

    def capture_identity(self) -> tuple[str, dict[str, Any]]:
        """What must stay equal for an update to keep the running capture."""
        return (self.capture.signature, self.capture_config)


def validate_pipeline(
    raw: Any, registry: PluginRegistry, file: str | None = None, models_dir: Path | None = None
) -> tuple[PipelineSpec | None, list[ConfigIssue]]:
    """Validate one pipeline dict; returns the spec (None if any issue) and every issue found.

    ``models_dir`` (the cache's ``_models/``) lets serving plugins check model files and input shapes.
    """
    where: dict[str, Any] = {"file": file}
    if not isinstance(raw, dict):
        return None, [ConfigIssue("a pipeline must be a JSON object", got=type(raw).__name__, **where)]
    issues: list[ConfigIssue] = []
    name = raw.get("NAME")
    if "NAME" not in raw:
        issues.append(ConfigIssue("missing required key (string)", key="NAME", **where))
    elif not isinstance(name, str) or not NAME_PATTERN.match(name):
        issues.append(
            ConfigIssue(
                "invalid pipeline name",
                key="NAME",
                got=name,
                hint=NAME_HINT,
                **where,
            )
        )
    where["pipeline"] = name if isinstance(name, str) else None

    capture, capture_config = _validate_capture(raw, registry, where, issues)
    instances = _validate_plugins(raw.get("PLUGINS", []), registry, where, issues, models_dir)
    if issues:
        return None, issues
    assert isinstance(name, str) and capture is not None and capture_config is not None  # else an issue above
    spec = PipelineSpec(
        name=name,
        capture=capture,
        capture_config=capture_config,
        instances=tuple(instances),
        raw=copy.deepcopy(raw),
        source=file,
    )
    return spec, []


def _validate_capture(
    raw: dict[str, Any], registry: PluginRegistry, where: dict[str, Any], issues: list[ConfigIssue]
) -> tuple[PluginRecord | None, dict[str, Any] | None]:
    type_name = raw.get("TYPE")
    if "TYPE" not in raw:
        issues.append(ConfigIssue("missing required key (the capture plugin's signature)", key="TYPE", **where))
        return None, None
    if not isinstance(type_name, str):
        issues.append(ConfigIssue("expected str", key="TYPE", got=type_name, **where))
        return None, None
    record = registry.get(KIND_CAPTURE, type_name)
    if record is None:
        hint = _missing_hint(registry, KIND_CAPTURE, type_name)
        issues.append(ConfigIssue("unknown capture plugin", key="TYPE", got=type_name, hint=hint, **where))
        return None, None
    schema = record.cls.config_schema()
    top_level = {k: v for k, v in raw.items() if k not in PIPELINE_STRUCTURE}
    found = validate_mapping(
        top_level,
        schema,
        {**where, "plugin": record.signature},
        extra_known=PIPELINE_KEYS,
        structural=PIPELINE_STRUCTURE,
    )
    issues.extend(found)
    config = defaults(schema)
    config.update({k: copy.deepcopy(v) for k, v in top_level.items() if k in schema})
    return record, config


def _named_objects(
    items: list[Any],
    level: str,
    name_key: str,
    valid: Callable[[str], bool],
    hint: str | None,
    where: dict[str, Any],
    issues: list[ConfigIssue],
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Each object of ``items`` with its name (its ``name_key``) and where it stands (``level``: that name).

    An item that is not an object, or whose name is missing or not ``valid``, becomes an issue (at ``level``: its
    position, ``#0``...) and is skipped.
    """
    for index, item in enumerate(items):
        item_where = {**where, level: f"#{index}"}
        if not isinstance(item, dict):
            issues.append(ConfigIssue("expected an object", got=item, **item_where))
            continue
        name = item.get(name_key)
        if not isinstance(name, str) or not valid(name):
            got = item.get(name_key, NOT_GIVEN)
            issues.append(ConfigIssue(f"missing or invalid {name_key}", key=name_key, got=got, hint=hint, **item_where))
            continue
        item_where[level] = name
        yield name, item, item_where


def _is_name(text: str) -> bool:
    return NAME_PATTERN.match(text) is not None


def _validate_plugins(
    plugins: Any,
    registry: PluginRegistry,
    where: dict[str, Any],
    issues: list[ConfigIssue],
    models_dir: Path | None = None,
) -> list[InstanceSpec]:
    if not isinstance(plugins, list):
        issues.append(ConfigIssue("expected a list of plugins", key="PLUGINS", got=plugins, **where))
        return []
    instances: list[InstanceSpec] = []
    seen_signatures: set[str] = set()
    for signature, entry, entry_where in _named_objects(plugins, "plugin", "SIGNATURE", bool, None, where, issues):
        for extra in sorted(set(entry) - PLUGIN_ENTRY_KEYS):
            issues.append(ConfigIssue("unknown key", key=extra, hint=_near(extra, PLUGIN_ENTRY_KEYS), **entry_where))
        record = registry.get(KIND_BUSINESS, signature)
        if record is None:
            hint = _missing_hint(registry, KIND_BUSINESS, signature)
            issues.append(
                ConfigIssue("unknown business plugin", key="SIGNATURE", got=signature, hint=hint, **entry_where)
            )
            continue
        if record.signature.upper() in seen_signatures:
            issues.append(
                ConfigIssue(
                    "plugin listed twice; put all its instances in one INSTANCES list", key="SIGNATURE", **entry_where
                )
            )
            continue
        seen_signatures.add(record.signature.upper())
        instances.extend(_validate_instances(entry.get("INSTANCES"), record, entry_where, issues, registry, models_dir))
    return instances


def _validate_instances(
    items: Any,
    record: PluginRecord,
    where: dict[str, Any],
    issues: list[ConfigIssue],
    registry: PluginRegistry | None = None,
    models_dir: Path | None = None,
) -> list[InstanceSpec]:
    if not isinstance(items, list) or not items:
        issues.append(
            ConfigIssue(
                "expected a non-empty list of instances",
                key="INSTANCES",
                got=NOT_GIVEN if items is None else items,
                **where,
            )
        )
        return []
    schema = record.cls.config_schema()
    result: list[InstanceSpec] = []
    seen: set[str] = set()
    named = _named_objects(items, "instance", "INSTANCE_ID", _is_name, NAME_HINT, where, issues)
    for instance_id, item, inst_where in named:
        if instance_id in seen:
            issues.append(ConfigIssue("duplicate INSTANCE_ID", key="INSTANCE_ID", **inst_where))
            continue
        seen.add(instance_id)
        overrides = {k: v for k, v in item.items() if k != "INSTANCE_ID"}
        found = validate_mapping(overrides, schema, inst_where, extra_known=INSTANCE_KEYS)
        issues.extend(found)
        if found:
            continue
        config = defaults(schema)
        config.update({k: copy.deepcopy(v) for k, v in overrides.items() if k in schema})
        if registry is not None:
            found = check_engines(config, registry, inst_where, models_dir)
            found += check_cascades(config, registry, inst_where, models_dir, record.cls)
            issues.extend(found)
            if found:
                continue
        result.append(InstanceSpec(record.signature, instance_id, record, config, copy.deepcopy(overrides)))
    return result


def check_instance_update(record: PluginRecord, changes: dict[str, Any], where: dict[str, Any]) -> list[ConfigIssue]:
    """Validate a live update of some instance keys (unknown keys and types)."""
    return validate_mapping(changes, record.cls.config_schema(), where, extra_known=INSTANCE_KEYS)


def _missing_hint(registry: PluginRegistry, kind: str, name: str) -> str:
    """Why no plugin of ``kind`` answers to ``name``: it failed to load (and why), a near name, or not installed."""
    failure = registry.failure_for(name)
    if failure is not None:
        return f"the plugin failed to load: {failure.reason}"
    near = registry.suggest(kind, name)
    what = "capture" if kind == KIND_CAPTURE else kind
    return f"did you mean {near!r}?" if near else f"no {what} plugin has this signature; is it installed?"


def _near(name: str, known: frozenset[str]) -> str | None:
    from difflib import get_close_matches

    near = get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}?" if near else None


__all__ = [
    "CACHE_FILE",
    "SEED_FILE",
    "InstanceSpec",
    "Key",
    "PipelineSpec",
    "check_instance_update",
    "check_value",
    "public_reasons",
    "read_pipeline_file",
    "validate_pipeline",
]
