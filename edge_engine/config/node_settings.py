"""Node settings: the startup and app configs, seeded into the local cache at first start, then read from it.

Order of precedence for startup keys: declared defaults ← the cached ``config_startup.json`` (seeded at
first start from ``$EE_CONFIG`` or ``./.config_startup.json``) ← ``EE_*`` environment variables (and
``.env``, loaded by ``device.py``). After the first start the cache is the source of truth; the
repository's files only seed it. Every problem is reported at once with file and key.

Every ``EE_*`` variable is declared once, in :mod:`edge_engine.config.settings_schema` (name, startup key, type,
default, bounds, doc); a value that cannot be used is reported in the schema's one form
(``environment › key 'EE_X': what is wrong (got 'value'); default: D``) with all other problems, whichever part reads
it (these settings, comms, object storage, the status page, disk bounds), and refuses the start.
:func:`load_settings` and :func:`read_settings` (``edge-node validate``) collect them all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_engine import constants as C
from edge_engine.config.ratio1_keys import APP_KEYS, STARTUP_KEYS
from edge_engine.config.settings_schema import SETTINGS, Setting, group
from edge_engine.errors import CacheError, ConfigError, ConfigIssue
from edge_engine.local.cache import CacheLayout, atomic_write_json, atomic_write_text, read_json, resolve_cache_dir
from edge_engine.plugin.config_keys import Key, check_value, defaults, validate_mapping


def _startup_key(setting: Setting, doc: str) -> Key:
    """The startup config's key of an ``EE_*`` setting: its default, type and bounds come from the schema."""
    types: dict[str, type] = {"bool": bool, "int": int, "choice": str, "list": list}
    return Key(
        setting.default,
        type=types.get(setting.kind),
        min=setting.low,
        max=setting.high,
        choices=setting.choices or None,
        doc=doc,
    )


def _env(name: str, doc: str) -> Key:
    return _startup_key(SETTINGS[name], doc)


STARTUP_SCHEMA: dict[str, Key] = {
    "EE_ID": Key("", type=str, doc="node alias (first start only; then the cached alias wins)"),
    "SECURED": Key(True, type=bool, doc="accept commands only from allowlisted senders"),
    "SECONDS_HEARTBEAT": Key(10.0, min=1, doc="seconds between heartbeats"),
    "SECONDS_LOCAL_INFO": _env(C.ENV_SECONDS_LOCAL_INFO, "seconds between local_info.json writes"),
    "SECONDS_HISTORY_SAMPLE": Key(C.DEFAULT_HISTORY_SAMPLE_SECONDS, min=1, doc="seconds between history samples"),
    "SECONDS_HISTORY_SAVE": Key(C.DEFAULT_HISTORY_SAVE_SECONDS, min=1, doc="seconds between local_history.json saves"),
    "SHUTDOWN_SECONDS": _env(C.ENV_SHUTDOWN_SECONDS, "deadline of a clean stop"),
    "PLUGIN_FOLDERS": _env(C.ENV_PLUGIN_FOLDERS, "folders scanned for plugin modules"),
    "PIPELINES": Key([], type=list, doc="pipeline files or objects that seed the cache at first start"),
    "DEMO_PIPELINE": _env(C.ENV_DEMO, "seed the demo pipeline at first start"),
    "LOG_LEVEL": _env(C.ENV_LOG_LEVEL, "log level"),
    "LOG_MAX_BYTES": Key(C.DEFAULT_LOG_MAX_BYTES, type=int, min=1024, doc="size of one log file before rotation"),
    "LOG_BACKUPS": Key(C.DEFAULT_LOG_BACKUPS, type=int, min=0, doc="rotated log files kept"),
    "RESTART_BACKOFF_MAX": _env(C.ENV_RESTART_BACKOFF_MAX, "cap of the restart backoff in seconds"),
    "FLAP_MAX_FAILURES": _env(C.ENV_FLAP_MAX_FAILURES, "failures within FLAP_WINDOW_SECONDS: flapping"),
    "FLAP_WINDOW_SECONDS": _env(C.ENV_FLAP_WINDOW_SECONDS, "window of the flapping policy in seconds"),
    "DEV_MODE": _env(C.ENV_DEV, "development mode: reload plugin files when they change"),
}

# environment variable -> (startup key, kind): the node settings an EE_* variable overrides
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    name: (setting.file_key, setting.kind) for name, setting in group("node").items() if setting.file_key
}
NEW_CACHE = "brand new cache: the demo may be seeded\n"  # in the first-start marker


@dataclass
class NodeSettings:
    """Everything the node needs to start, resolved and validated."""

    base_dir: Path
    layout: CacheLayout
    startup: dict[str, Any]
    app: dict[str, Any]
    first_start: bool
    seed_file: str | None
    load_entry_points: bool = True
    disabled_plugins: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    new_cache: bool = False  # first start on a brand new cache (no key, no pipelines, no allowlist): demo allowed

    def plugin_folders(self) -> list[Path]:
        return [_resolve(self.base_dir, folder) for folder in self.startup["PLUGIN_FOLDERS"]]

    @property
    def dev_mode(self) -> bool:
        """Development mode (``DEV_MODE`` or ``EE_DEV=1``): plugin files are reloaded when they change."""
        return bool(self.startup.get("DEV_MODE"))


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def load_settings(
    base_dir: Path | None = None, cache_dir: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> NodeSettings:
    """Resolve the cache, seed it at first start, and return validated settings (or raise ConfigError)."""
    env = dict(os.environ if environ is None else environ)
    base = (base_dir or Path.cwd()).absolute()
    layout = CacheLayout(resolve_cache_dir(cache_dir or env.get(C.ENV_CACHE_DIR)))
    check_cache_version(layout)
    first_start = is_first_start(layout)
    new_cache = is_new_cache(layout) if first_start else False
    layout.ensure()
    layout.remove_stale_temp_files()
    if first_start:
        atomic_write_text(layout.first_start_marker, f"pipelines not seeded yet\n{NEW_CACHE if new_cache else ''}")
    issues: list[ConfigIssue] = []
    seeds: list[tuple[Path, dict[str, Any], int | None]] = []
    startup, seed_file = _load_startup(layout, base, env, issues, seeds, first_start)
    app = _load_app(layout, base, env, issues, seeds)
    issues.extend(subsystem_issues(app, startup, env))
    if issues:
        raise ConfigError(issues)
    # Seed the cache only with configs that were accepted: a rejected one must not become the cached
    # source of truth (fixing the repository file would then change nothing, and the seeding be skipped).
    for path, raw, mode in seeds:
        atomic_write_json(path, raw, mode=mode)
    if not layout.cache_version.exists():
        atomic_write_text(layout.cache_version, f"{C.CACHE_FORMAT_VERSION}\n")
    disabled = tuple(SETTINGS[C.ENV_DISABLED_PLUGINS].value(env) or ())
    load_eps = bool(SETTINGS[C.ENV_LOAD_ENTRY_POINTS].value(env))
    return NodeSettings(base, layout, startup, app, first_start, seed_file, load_eps, disabled, env, new_cache)


def read_settings(
    base_dir: Path | None = None, cache_dir: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[NodeSettings, list[ConfigIssue]]:
    """Resolve and check the startup and app configs as :func:`load_settings` would, writing nothing.

    Used by ``edge-node validate``: returns the settings (values that failed keep their defaults) and
    every issue found, instead of raising.
    """
    env = dict(os.environ if environ is None else environ)
    base = (base_dir or Path.cwd()).absolute()
    layout = CacheLayout(resolve_cache_dir(cache_dir or env.get(C.ENV_CACHE_DIR)))
    issues: list[ConfigIssue] = []
    try:
        check_cache_version(layout)
    except CacheError as exc:
        issues.append(ConfigIssue(str(exc), file=str(layout.cache_version)))
    first_start = is_first_start(layout)
    new_cache = is_new_cache(layout) if first_start else False
    seeds: list[tuple[Path, dict[str, Any], int | None]] = []  # discarded: nothing is written
    startup, seed_file = _load_startup(layout, base, env, issues, seeds, first_start)
    app = _load_app(layout, base, env, issues, seeds)
    issues.extend(subsystem_issues(app, startup, env))
    for name, key in STARTUP_SCHEMA.items():  # a rejected value must not break the caller's use of it
        if name in startup and check_value(key, startup[name]) is not None:
            startup[name] = defaults({name: key}).get(name)
    disabled = tuple(SETTINGS[C.ENV_DISABLED_PLUGINS].value(env) or ())
    load_eps = bool(SETTINGS[C.ENV_LOAD_ENTRY_POINTS].value(env))
    settings = NodeSettings(base, layout, startup, app, first_start, seed_file, load_eps, disabled, env, new_cache)
    return settings, issues


def is_first_start(layout: CacheLayout) -> bool:
    """Whether this node has not completed a start with this cache yet: no ``_data/cache_version`` (written by every
    first start; a Ratio1 volume, or a cache where only ``change_alias`` ran, has none), or a first start that
    crashed before it seeded the pipelines (the marker)."""
    return not layout.cache_version.exists() or layout.first_start_marker.exists()


def is_new_cache(layout: CacheLayout) -> bool:
    """Whether the cache is brand new: no node key, no pipeline file, no allowlist (a Ratio1 volume has them). Only
    such a cache gets the demo pipeline. After a crashed first start the marker remembers the answer."""
    if layout.first_start_marker.exists():
        try:
            return NEW_CACHE in layout.first_start_marker.read_text(encoding="utf-8")
        except OSError:
            return False
    has_streams = layout.streams.is_dir() and any(layout.streams.glob("*.json"))
    return not (layout.key_file.exists() or has_streams or layout.authorized_addrs.exists())


def subsystem_issues(app: Mapping[str, Any], startup: Mapping[str, Any], env: Mapping[str, str]) -> list[ConfigIssue]:
    """The problems of the settings the node's parts build from the app config and ``EE_*`` variables (comms,
    object storage, status page, disk bounds), found before anything starts: the node refuses to start on any."""
    from edge_engine.comms.comms_settings import load_comms_settings
    from edge_engine.node.disk_bounds import read_disk_settings
    from edge_engine.observe.observe_settings import read_observe_settings
    from edge_engine.storage.storage_settings import load_storage_settings

    issues: list[ConfigIssue] = []
    try:
        issues.extend(load_comms_settings(app, startup, env)[1])
    except (TypeError, ValueError, AttributeError) as exc:  # a startup value already reported as invalid
        issues.append(ConfigIssue(f"invalid communication settings: {exc}", file="app config", key="COMMUNICATION"))
    issues.extend(load_storage_settings(app, env)[1])
    issues.extend(read_observe_settings(env)[1])
    issues.extend(read_disk_settings(env)[1])
    return issues


def network_name(env: Mapping[str, str]) -> str:
    """The network profile (``EE_EVM_NET``: mainnet, testnet or devnet); mainnet when unset or unknown."""
    return str(SETTINGS[C.ENV_EVM_NET].value(env))


def check_cache_version(layout: CacheLayout) -> None:
    """Refuse a cache written by a newer node (its format may mean something else)."""
    if not layout.cache_version.exists():
        return
    text = layout.cache_version.read_text(encoding="utf-8").strip()
    try:
        version = int(text)
    except ValueError as exc:
        raise CacheError(f"{layout.cache_version} holds {text!r}, not a cache format number") from exc
    if version > C.CACHE_FORMAT_VERSION:
        raise CacheError(
            f"{layout.root} was written by a newer node (cache format {version}, this node reads up to "
            f"{C.CACHE_FORMAT_VERSION}); upgrade the node or use another cache folder"
        )


def _read_config_source(spec: str, base: Path, label: str, issues: list[ConfigIssue]) -> tuple[dict[str, Any], str]:
    """Read a config given as a file path or (Ratio1's ``EE_CONFIG``) inline JSON."""
    if spec.lstrip().startswith("{"):
        try:
            data = json.loads(spec)
        except json.JSONDecodeError as exc:
            issues.append(ConfigIssue(f"inline JSON is invalid: {exc}", file=label))
            return {}, label
        return (data if isinstance(data, dict) else {}), label
    path = _resolve(base, spec)
    try:
        data = read_json(path)
    except CacheError as exc:
        issues.append(ConfigIssue(str(exc).replace(f"{path} ", "", 1), file=str(path)))
        return {}, str(path)
    if not isinstance(data, dict):
        issues.append(ConfigIssue("expected a JSON object", file=str(path), got=type(data).__name__))
        return {}, str(path)
    return data, str(path)


def _cached_or_seed(
    cached: Path,
    spec: str | None,
    env_name: str,
    default_file: str,
    base: Path,
    issues: list[ConfigIssue],
    seeds: list[tuple[Path, dict[str, Any], int | None]],
    mode: int | None,
    merge_seed: bool = False,
) -> tuple[dict[str, Any], str, str | None]:
    """Read the cached copy of a config; at first start read its seed (``spec``, else ``default_file``)
    and queue it for the cache. Returns the config, its label for errors, and the seed's label.

    With ``merge_seed`` (a first start) a cached copy that is already there (``change_alias`` before any start, or
    a Ratio1 volume's own file) keeps its keys and gets the seed's others: the seeding still happens."""
    if cached.exists() and not merge_seed:
        raw, label = _read_config_source(str(cached), base, "", issues)
        return raw, label, None
    if spec is None and (base / default_file).exists():
        spec = default_file
    seed, seed_label = _read_config_source(spec, base, env_name, issues) if spec else ({}, "defaults")
    raw, label = seed, seed_label
    if cached.exists():
        kept, label = _read_config_source(str(cached), base, "", issues)
        raw = {**seed, **kept}
    seeds.append((cached, raw, mode))
    return raw, label, seed_label


def _load_startup(
    layout: CacheLayout,
    base: Path,
    env: dict[str, str],
    issues: list[ConfigIssue],
    seeds: list[tuple[Path, dict[str, Any], int | None]],
    first_start: bool = False,
) -> tuple[dict[str, Any], str | None]:
    raw, label, seed_file = _cached_or_seed(
        layout.startup_config,
        env.get(C.ENV_CONFIG),
        C.ENV_CONFIG,
        C.STARTUP_CONFIG_FILE,
        base,
        issues,
        seeds,
        None,
        merge_seed=first_start,
    )
    issues.extend(validate_mapping(raw, STARTUP_SCHEMA, {"file": label}, extra_known=STARTUP_KEYS))
    startup = defaults(STARTUP_SCHEMA)
    startup.update({k: v for k, v in raw.items()})
    for name, setting in group("node").items():  # every EE_* variable of the node, overriding its startup key
        value = setting.read(env, issues)
        if value is None or setting.file_key is None:
            continue
        if name == C.ENV_PLUGIN_FOLDERS and not _folders_exist(base, value, env[name], issues):
            continue
        startup[setting.file_key] = value
    return startup, seed_file


def _folders_exist(base: Path, folders: list[str], text: str, issues: list[ConfigIssue]) -> bool:
    """``EE_PLUGIN_FOLDERS`` names folders someone chose: one that is missing is a typo, not a folder to skip (the
    startup config's defaults may be missing, e.g. ``plugins`` in an image)."""
    missing = [folder for folder in folders if not _resolve(base, folder).is_dir()]
    if missing:
        issues.append(SETTINGS[C.ENV_PLUGIN_FOLDERS].issue(text, f"no such folder: {', '.join(missing)}"))
    return not missing


def _load_app(
    layout: CacheLayout,
    base: Path,
    env: dict[str, str],
    issues: list[ConfigIssue],
    seeds: list[tuple[Path, dict[str, Any], int | None]],
) -> dict[str, Any]:
    raw, label, _ = _cached_or_seed(
        layout.app_config, env.get(C.ENV_APP_CONFIG), C.ENV_APP_CONFIG, C.APP_CONFIG_FILE, base, issues, seeds, 0o600
    )
    issues.extend(validate_mapping(raw, {}, {"file": label}, extra_known=APP_KEYS))
    return raw
