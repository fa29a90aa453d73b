"""``edge-node plugins``: every plugin found, what it declares and implements, and every plugin that failed.

    edge-node plugins                   # all plugins, grouped by kind, then the failures
    edge-node plugins MOTION_DETECTOR   # only these signatures (or aliases), any case
    edge-node plugins --all             # also the keys inherited from the base class
    edge-node plugins --json

For each plugin: signature, aliases, kind, class, source file or package, version, description, config
keys (default, type, bounds, doc), the lifecycle methods it overrides and the node-level hooks its module
implements. Modules that only implement hooks are listed too, and so are ``.py`` files left out because they sit
outside the kind folders (with why). Exit code 0, or 1 when a plugin failed to load.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

import pluggy

from edge_engine.cli._common import add_node_args, display_path, load_plugins, print_json, settings_from
from edge_engine.constants import ENTRY_POINT_GROUP, KIND_BUSINESS, KIND_CAPTURE, KIND_SERVING, PLUGIN_KINDS
from edge_engine.plugin.config_keys import Key
from edge_engine.plugin.kinds import PLUGIN_BASES
from edge_engine.plugin.registry import PluginRecord

COMMON_METHODS = ("on_init", "on_config", "on_command", "on_close")
KIND_METHODS: dict[str, tuple[str, ...]] = {
    KIND_CAPTURE: ("connect", "read", "release", "is_live"),
    KIND_SERVING: ("pre_process", "predict", "post_process"),
    KIND_BUSINESS: ("process",),
}
ENGINE_PLUGINS_PREFIX = "edge_engine."


def key_info(name: str, key: Key, inherited: bool) -> dict[str, Any]:
    info: dict[str, Any] = {"key": name, "type": key.type_name(), "required": key.required}
    if not key.required:
        info["default"] = key.default
    for attr in ("min", "max", "choices"):
        value = getattr(key, attr)
        if value is not None:
            info[attr] = list(value) if attr == "choices" else value
    info["doc"] = key.doc
    info["inherited"] = inherited
    return info


def implemented_methods(cls: type, kind: str) -> list[str]:
    """Lifecycle methods the class overrides (relative to its kind's base class)."""
    base = PLUGIN_BASES[kind]
    names = (*COMMON_METHODS, *KIND_METHODS.get(kind, ()))
    return [m for m in names if getattr(cls, m, None) is not getattr(base, m, None)]


def module_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    if plugin is None or not pm.is_registered(plugin):
        return []
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


def package_versions() -> dict[str, str]:
    """``{entry point name: "distribution version"}`` for the plugin entry points of installed packages."""
    result: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        if dist is not None:
            result[ep.name] = f"{dist.metadata['Name']} {dist.version}"
    return result


def describe(record: PluginRecord, pm: pluggy.PluginManager, packages: dict[str, str]) -> dict[str, Any]:
    """Everything the listing says about one plugin, JSON-able."""
    cls = record.cls
    own = PLUGIN_BASES[record.kind].config_schema()
    schema = cls.config_schema()
    keys = [key_info(n, k, inherited=n in own and own[n] == k) for n, k in schema.items()]
    module = sys.modules.get(cls.__module__)
    package = next((v for name, v in packages.items() if record.source.startswith(f"entry point {name} ")), None)
    return {
        "signature": record.signature,
        "aliases": list(cls.ALIASES),
        "kind": record.kind,
        "class": cls.__qualname__,
        "source": record.source if record.source.startswith("entry point") else display_path(record.source),
        "package": package,
        "version": record.version,
        "description": cls.DESCRIPTION or (cls.__doc__ or "").strip().split("\n")[0],
        "config": keys,
        "methods": implemented_methods(cls, record.kind),
        "hooks": [h for h in module_hooks(pm, module) if h != "edge_register_plugins"],
    }


def hook_only_plugins(pm: pluggy.PluginManager, records: list[PluginRecord]) -> list[dict[str, Any]]:
    """Modules and objects registered for node-level hooks that define no plugin class."""
    with_classes = {r.cls.__module__ for r in records}
    result = []
    for name, plugin in pm.list_name_plugin():
        if name.startswith(ENGINE_PLUGINS_PREFIX) or getattr(plugin, "__name__", None) in with_classes:
            continue
        hooks = [h for h in module_hooks(pm, plugin) if h != "edge_register_plugins"]
        if hooks:
            source = getattr(plugin, "__file__", None) or name
            result.append({"name": name, "source": display_path(source), "hooks": hooks})
    return result


def _key_line(info: dict[str, Any]) -> str:
    bounds = []
    if "min" in info:
        bounds.append(f">= {info['min']}")
    if "max" in info:
        bounds.append(f"<= {info['max']}")
    if "choices" in info:
        bounds.append("one of " + ", ".join(map(repr, info["choices"])))
    kind = ", ".join([info["type"], *bounds])
    value = "required" if info["required"] else f"= {info['default']!r}"
    return f"{info['key']} {value} ({kind}){': ' + info['doc'] if info['doc'] else ''}"


def render_plugin(info: dict[str, Any], show_all: bool) -> list[str]:
    aliases = f" (alias {', '.join(info['aliases'])})" if info["aliases"] else ""
    origin = info["package"] or info["source"]
    lines = [f"{info['kind']:<8} {info['signature']}{aliases}  v{info['version']}  {origin} › {info['class']}"]
    if info["description"]:
        lines.append(f"    {info['description']}")
    own = [k for k in info["config"] if not k["inherited"]]
    inherited = [k for k in info["config"] if k["inherited"]]
    shown = info["config"] if show_all else own
    for index, key in enumerate(shown):
        lines.append(f"    {'config: ' if index == 0 else '        '}{_key_line(key)}")
    if not shown:
        lines.append("    config: no keys of its own")
    if inherited and not show_all:
        lines.append(f"            + {len(inherited)} base key(s): {', '.join(k['key'] for k in inherited)}")
    lines.append(f"    implements: {', '.join(info['methods']) or 'nothing (base behaviour)'}")
    if info["hooks"]:
        lines.append(f"    hooks: {', '.join(info['hooks'])}")
    return lines


def render(listing: dict[str, Any], show_all: bool) -> str:
    plugins = listing["plugins"]
    counts = ", ".join(f"{sum(1 for p in plugins if p['kind'] == k)} {k}" for k in PLUGIN_KINDS)
    failed = listing["failed"]
    lines = [f"{len(plugins)} plugin(s): {counts}; {len(failed)} failed to load ({listing['seconds']:.2f} s)", ""]
    for info in plugins:
        lines += [*render_plugin(info, show_all), ""]
    for item in listing["hook_modules"]:
        lines += [f"hooks    {item['name']}  {item['source']}", f"    hooks: {', '.join(item['hooks'])}", ""]
    if failed:
        lines.append("failed to load:")
        lines += [f"  {f['source']} › {f['name']}: {f['reason']}" for f in failed]
    if listing.get("skipped"):
        lines.append("not loaded (outside the kind folders):")
        lines += [f"  {s['file']}: {s['reason']}" for s in listing["skipped"]]
    return "\n".join(lines).rstrip()


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="List every plugin found (signature, kind, source, version, config keys, implemented methods "
        "and hooks) and every plugin that failed to load. Exit code 1 when any failed.",
    )
    parser.add_argument("signatures", nargs="*", metavar="SIGNATURE", help="only these plugins (any case)")
    parser.add_argument("--kind", choices=PLUGIN_KINDS, help="only plugins of this kind")
    parser.add_argument("--all", action="store_true", help="also show the config keys inherited from the base")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_node_args(parser)
    return parser


def listing(args: argparse.Namespace) -> dict[str, Any]:
    settings, _ = settings_from(args)
    catalog = load_plugins(args, settings)
    registry, pm = catalog.registry, catalog.pm
    records = registry.records(args.kind)
    if args.signatures:
        wanted = {s.lower() for s in args.signatures}
        records = [r for r in records if r.signature.lower() in wanted or wanted & {a.lower() for a in r.cls.ALIASES}]
    packages = package_versions()
    return {
        "plugins": [describe(r, pm, packages) for r in records],
        "hook_modules": [] if args.signatures or args.kind else hook_only_plugins(pm, registry.records()),
        "failed": [{"source": display_path(f.source), "name": f.name, "reason": f.reason} for f in registry.failures],
        "skipped": [{"file": name, "reason": reason} for name, reason in registry.skipped],
        "seconds": round(catalog.seconds, 3),
    }


def main(argv: Sequence[str] | None = None, prog: str = "plugins", started: float | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    result = listing(args)
    if args.json:
        print_json(result)
    else:
        print(render(result, args.all))
    return 1 if result["failed"] else 0
