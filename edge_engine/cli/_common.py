"""What the ``edge-node`` subcommands share: the arguments that locate the node, settings, plugin loading."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from edge_engine import constants as C
from edge_engine.config.node_settings import NodeSettings, read_settings
from edge_engine.errors import ConfigIssue
from edge_engine.node.local_output import to_jsonable
from edge_engine.runtime.sandbox import Catalog, load_catalog


def add_node_args(parser: argparse.ArgumentParser) -> None:
    """``--base-dir``, ``--cache-dir``, ``--plugin-folder``, ``--no-entry-points``."""
    group = parser.add_argument_group("where the node is")
    base_help = "folder holding .config_startup.json, extensions/, plugins/, pipelines/ (default: .)"
    group.add_argument("--base-dir", type=Path, default=None, help=base_help)
    group.add_argument("--cache-dir", default=None, help=f"local cache (default: ${C.ENV_CACHE_DIR} or ./_local_cache)")
    folder_help = "plugin folder to load (repeatable; default: the startup config's PLUGIN_FOLDERS)"
    group.add_argument("--plugin-folder", action="append", type=Path, default=None, metavar="DIR", help=folder_help)
    group.add_argument("--no-entry-points", action="store_true", help="do not load plugins of installed packages")


def environment(base_dir: Path) -> dict[str, str]:
    """The process environment plus ``.env`` (the real environment wins), without changing ``os.environ``."""
    env = dict(os.environ)
    dotenv_file = base_dir / C.DOTENV_FILE
    if dotenv_file.is_file():
        try:
            from dotenv import dotenv_values
        except ImportError:  # pragma: no cover - python-dotenv is a runtime dependency
            return env
        for key, value in dotenv_values(dotenv_file).items():
            if value is not None:
                env.setdefault(key, value)
    return env


def settings_from(args: argparse.Namespace) -> tuple[NodeSettings, list[ConfigIssue]]:
    """Resolve the startup and app configs (read only) as the node would from this folder."""
    base = (args.base_dir or Path.cwd()).absolute()
    return read_settings(base, args.cache_dir, environment(base))


def plugin_folders(args: argparse.Namespace, settings: NodeSettings) -> list[Path]:
    if args.plugin_folder:
        return [p.expanduser().absolute() for p in args.plugin_folder]
    return settings.plugin_folders()


def load_plugins(args: argparse.Namespace, settings: NodeSettings) -> Catalog:
    """Load the node's plugins without starting it (entry points too, unless turned off)."""
    entry_points = settings.load_entry_points and not args.no_entry_points
    return load_catalog(plugin_folders(args, settings), settings.disabled_plugins, entry_points)


def display_path(path: str | Path) -> str:
    """A path relative to the current folder when it is inside it (shorter in messages)."""
    text = str(path)
    try:
        return str(Path(text).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return text


def dump_json(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, default=to_jsonable, ensure_ascii=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(dump_json(obj) + "\n")
