"""Backend of the ops commands in ``cmds/`` (``get_node_info``, ``get_node_history``, ``healthcheck``, ...).

Standard library only (plus the engine's ``cache``, ``constants`` and ``errors``), so the commands run with any
Python 3.10+ whether or not the node's dependencies are installed, and whether or not the node is running. They
only read the local cache, except ``change_alias``, which rewrites ``config_startup.json`` atomically. Each
``main_*`` function parses its arguments, prints, and returns the exit code: 0 on success, 1 with a message on
stderr for a missing or unreadable cache or a bad argument.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from edge_engine import constants as C
from edge_engine.cli.history_plot import render_svg
from edge_engine.errors import CacheError
from edge_engine.local.cache import CacheLayout, atomic_write_json, read_json
from edge_engine.node.snapshot import NodeSnapshot, PipelineSnapshot, PluginFailure, read_snapshot

ALIAS_RE = re.compile(rf"[A-Za-z0-9_.-]{{1,{C.ALIAS_MAX_LEN}}}")
STALE_PERIODS = 3
DEFAULT_STALE_SECONDS = STALE_PERIODS * C.DEFAULT_LOCAL_INFO_SECONDS
_ERROR_WIDTH = 60


# --- finding the cache ------------------------------------------------------------------------------------
def find_cache_dir(argv_override: str | os.PathLike[str] | None = None) -> Path:
    """The local cache to operate on.

    ``argv_override`` (the ``--cache-dir`` flag) or else ``$EE_CACHE_DIR`` is used as given and must exist.
    Otherwise the first existing one of ``./_local_cache``, the checkout's ``_local_cache`` (next to ``cmds/``)
    and ``/edge_node/_local_cache``. Raises :class:`CacheError` when there is none.
    """
    hint = f"start the node first or set {C.ENV_CACHE_DIR}"
    for explicit, source in ((argv_override, "--cache-dir"), (os.environ.get(C.ENV_CACHE_DIR), C.ENV_CACHE_DIR)):
        if explicit:
            path = Path(explicit).expanduser().absolute()
            if not path.is_dir():
                raise CacheError(f"no local cache found at {path} (from {source}); {hint}")
            return path
    candidates = _default_candidates()
    for path in candidates:
        if path.is_dir():
            return path
    raise CacheError(f"no local cache found at {', '.join(str(p) for p in candidates)}; {hint}")


def _default_candidates() -> list[Path]:
    candidates = [Path.cwd() / C.DEFAULT_CACHE_DIR]
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if script is not None and script.parent.name == "cmds":
        candidates.append(script.parent.parent / C.DEFAULT_CACHE_DIR)
    engine_checkout = Path(__file__).resolve().parent.parent
    if (engine_checkout / "cmds").is_dir():
        candidates.append(engine_checkout / C.DEFAULT_CACHE_DIR)
    candidates.append(Path(C.IMAGE_CACHE_DIR))
    unique: list[Path] = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


# --- node info ----------------------------------------------------------------------------------------------
def node_info(cache: Path) -> dict[str, Any]:
    """Content of ``_data/local_info.json``; :class:`CacheError` naming the file if missing or invalid."""
    path = CacheLayout(Path(cache)).local_info
    info = _read_node_file(path, Path(cache), "the node writes it once started")
    if not isinstance(info, dict):
        raise CacheError(f"{path} does not hold a JSON object")
    return info


def _read_node_file(path: Path, cache: Path, when: str) -> Any:
    """Read a file the node writes; if it is not there yet, say why (starting, or an empty cache/volume)."""
    if path.exists():
        return read_json(path)
    layout = CacheLayout(cache)
    if not layout.key_file.exists():
        raise CacheError(
            f"{path} does not exist: no node has started with the cache {cache} yet (a node starting for the "
            f"first time writes it within seconds; in a container, is the node's volume mounted at "
            f"{C.IMAGE_CACHE_DIR}?)"
        )
    raise CacheError(f"{path} does not exist yet: the node is starting ({when})")


def format_node_info(data: dict[str, Any], now: datetime | None = None) -> str:
    """Readable summary of ``local_info.json``: the node, then a table of pipelines and their instances."""
    now = now or datetime.now(timezone.utc)
    info = read_snapshot(data)
    version = _text(info.get("version_short"))
    if info.get("version_long") and info.get("version_long") != info.get("version_short"):
        version += f"  ({info['version_long']})"
    whitelist = info["info"].get("whitelist") if "info" in info else None
    rows = [
        ("alias", _text(info.get("alias"))),
        ("address", _text(info.get("address"))),
        ("eth_address", _text(info.get("eth_address"))),
        ("version", version),
        ("status", _text(info.get("status"))),
        ("pid", _text(info.get("pid"))),
        ("uptime", _text(info.get("uptime"))),
        ("started_at", _text(info.get("started_at"))),
        ("updated_at", _freshness(info, now)),
        ("cache_dir", _text(info.get("cache_dir"))),
        ("allowed", f"{len(whitelist)} address(es)" if isinstance(whitelist, list) else "-"),
    ]
    plugins = info.get("plugins")
    if plugins is not None:
        rows.append(("plugins", f"{_text(plugins.get('loaded'))} loaded, {len(plugins['failed'])} failed"))
    storage = info.get("storage")
    if storage is not None and storage.get("configured"):
        rows.append(
            (
                "uploads",
                f"{_text(storage.get('bucket'))} on {_text(storage.get('endpoint'))}: "
                f"{_text(storage.get('uploaded'))} uploaded, {_text(storage.get('pending'))} pending, "
                f"{_text(storage.get('failed_attempts'))} failed attempt(s)",
            )
        )
    width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{width}}  {value}" for key, value in rows]
    if plugins is not None:
        lines += _plugin_failures(plugins["failed"])
    pipelines = info["pipelines"]
    lines += ["", f"PIPELINES ({len(pipelines)})"]
    lines += _pipeline_table(pipelines) if pipelines else ["  (none)"]
    invalid = info["invalid_pipelines"]
    if invalid:
        lines += ["", f"INVALID PIPELINES ({len(invalid)})"]
        for item in invalid:
            lines.append(f"  {_text(item.get('name'))}  ({_text(item.get('file'))})")
            lines += [f"    - {error}" for error in item.get("errors") or []]
    lines += _network_table(info.get("network"), info.get("admin_pipeline"))
    return "\n".join(lines)


def _network_table(network: dict[str, Any] | None, admin: dict[str, Any] | None) -> list[str]:
    """The NETWORK section: every node heard on the broker (``network`` in local_info.json), online first."""
    if network is None:
        return []
    nodes: list[dict[str, Any]] = network["nodes"]
    role = " (supervisor: publishes NET_MON_01)" if admin is not None and admin.get("supervisor") else ""
    total = network.get("total", len(nodes))
    listed = f"; the {len(nodes)} heard from last listed" if isinstance(total, int) and total > len(nodes) else ""
    lines = [
        "",
        f"NETWORK ({_text(network.get('online'))} of {_text(total)} online; offline after "
        f"{_text(network.get('offline_after_seconds'))} s{listed}){role}",
    ]
    if not nodes:
        return [*lines, "  (no heartbeat heard yet)"]
    rows = [("ALIAS", "ADDRESS", "STATUS", "LAST SEEN", "VERSION", "SECURED")]
    for n in sorted(nodes, key=lambda n: (not n.get("online"), not n.get("self"), _text(n.get("alias")))):
        alias = _text(n.get("alias")) + (" (this node)" if n.get("self") else "")
        seen = f"{_text(n.get('seconds_ago'))} s ago"
        rows.append(
            (
                alias,
                _text(n.get("address")),
                _text(n.get("status")),
                seen,
                _text(n.get("version")),
                _text(n.get("secured")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


def _plugin_failures(failed: list[PluginFailure]) -> list[str]:
    lines = []
    for failure in failed:
        where = " › ".join(_text(failure.get(k)) for k in ("source", "name") if failure.get(k))
        lines.append(f"  failed plugin {where}: {_shorten(failure.get('reason'), 100)}")
    return lines


def _pipeline_table(pipelines: list[PipelineSnapshot]) -> list[str]:
    header = ("NAME", "TYPE", "STATUS", "INPUTS", "RATE/s", "DROPPED", "PAYLOADS", "ERRORS", "LAST ERROR")
    table: list[tuple[str, ...]] = [header]
    for pipeline in pipelines:
        capture = pipeline["capture"]
        table.append(
            (
                _text(pipeline.get("name")),
                _text(pipeline.get("type")),
                _text(pipeline.get("status") or capture.get("status")),
                _text(capture.get("inputs")),
                _rate(capture.get("rate")),
                _text(capture.get("dropped")),
                "",
                _text(capture.get("errors")),
                _shorten(capture.get("last_error")),
            )
        )
        for instance in pipeline["instances"]:
            name = f"{_text(instance.get('signature'))}/{_text(instance.get('instance_id'))}"
            table.append(
                (
                    f"  {name}",
                    "",
                    _text(instance.get("status")),
                    _text(instance.get("inputs")),
                    "",
                    _text(instance.get("dropped")),
                    _text(instance.get("payloads")),
                    _text(instance.get("errors")),
                    _shorten(instance.get("last_error")),
                )
            )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    numeric = {3, 4, 5, 6, 7}
    lines = []
    for row in table:
        cells = [cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _freshness(info: NodeSnapshot, now: datetime) -> str:
    updated = info.get("updated_at")
    if not updated:
        return "-"
    try:
        moment = datetime.fromisoformat(str(updated).replace("Z", "+00:00"))
    except ValueError:
        return f"{updated}  (unparsable time)"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    age = (now - moment).total_seconds()
    refresh = info.get("refresh_seconds")
    limit = STALE_PERIODS * refresh if isinstance(refresh, (int, float)) and refresh > 0 else DEFAULT_STALE_SECONDS
    if age > limit:
        return f"{updated}  STALE ({age:.0f} s old, limit {limit:.0f} s: is the node running?)"
    return f"{updated}  ({max(age, 0.0):.0f} s ago)"


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _rate(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else _text(value)


def _shorten(value: Any, limit: int = _ERROR_WIDTH) -> str:
    if value is None or value == "":
        return "-"
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- history ------------------------------------------------------------------------------------------------
def node_history(cache: Path, last: int | None = None) -> dict[str, Any]:
    """Content of ``_data/local_history.json``; with ``last``, every rolling list cut to its last ``last`` items."""
    path = CacheLayout(Path(cache)).local_history
    history = _read_node_file(path, Path(cache), "the node writes it after its first history sample")
    if not isinstance(history, dict):
        raise CacheError(f"{path} does not hold a JSON object")
    if last is None:
        return history
    if last < 0:
        raise ValueError(f"--last must be 0 or more (got {last})")
    return _cut_lists(history, last)


def _cut_lists(value: Any, last: int) -> Any:
    if isinstance(value, dict):
        return {key: _cut_lists(item, last) for key, item in value.items()}
    if isinstance(value, list):
        return value[len(value) - last :] if last else []
    return value


# --- health ----------------------------------------------------------------------------------------------
def health(cache: Path, now: datetime | None = None) -> tuple[bool, str]:
    """Whether the node's engine loop is fresh, and a one-line reason.

    Healthy means ``local_info.json`` says ``running`` and was refreshed within 3 of its periods. The broker
    state is reported in the message but never makes the node unhealthy: an orchestrator must not restart a
    node during a broker outage that its outbox exists to ride out.
    """
    now = now or datetime.now(timezone.utc)
    info = read_snapshot(node_info(cache))
    name = f"{_text(info.get('alias'))} ({_text(info.get('address'))})"
    status = info.get("status") or "running"
    moment = _parse_time(info.get("updated_at"))
    if moment is None:
        return False, f"{name}: local_info.json has no valid updated_at ({info.get('updated_at')!r})"
    age = (now - moment).total_seconds()
    refresh = info.get("refresh_seconds")
    limit = STALE_PERIODS * refresh if isinstance(refresh, (int, float)) and refresh > 0 else DEFAULT_STALE_SECONDS
    if status != "running":
        return False, f"{name} is {status} (local_info.json {age:.0f} s old)"
    if age > limit:
        return (
            False,
            f"{name}: local_info.json is {age:.0f} s old (limit {limit:.0f} s): the engine loop is stuck or stopped",
        )
    comms = info.get("comms")
    if comms is not None:
        state = "connected" if comms.get("connected") else "NOT connected (reported, not unhealthy)"
        broker = f"; broker {_text(comms.get('broker'))} {state}"
    else:
        broker = "; comms off"
    return True, f"{name} running, local_info.json {max(age, 0.0):.0f} s old (limit {limit:.0f} s){broker}"


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


# --- alias --------------------------------------------------------------------------------------------------
def validate_alias(new: str) -> str:
    """Return ``new`` if it is a valid alias, else raise ValueError saying what is allowed."""
    if not ALIAS_RE.fullmatch(new):
        raise ValueError(
            f"invalid alias {new!r} ({len(new)} characters): use 1 to {C.ALIAS_MAX_LEN} characters among "
            "letters, digits, '-', '_' and '.'"
        )
    return new


def change_alias(cache: Path, new: str) -> str:
    """Set ``EE_ID`` in ``<cache>/config_startup.json`` (other keys kept); return the message to show."""
    validate_alias(new)
    path = CacheLayout(Path(cache)).startup_config
    config: dict[str, Any] = {}
    owner: tuple[int, int] | None = None
    mode = 0o600
    if path.exists():
        loaded = read_json(path)
        if not isinstance(loaded, dict):
            raise CacheError(f"{path} does not hold a JSON object; fix or remove it first")
        config = loaded
        st = path.stat()
        mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
    else:
        st = Path(cache).stat()
        owner = (st.st_uid, st.st_gid)
    config[C.ENV_ID] = new
    atomic_write_json(path, config, indent=2, mode=mode)
    _keep_owner(path, owner)
    return f"alias set to {new}; it takes effect when the node restarts"


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def _keep_owner(path: Path, owner: tuple[int, int] | None) -> None:
    """Run as root (``docker exec``), give the rewritten file back to the cache's owner so the node can read it."""
    if owner is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    st = path.stat()
    if (st.st_uid, st.st_gid) != owner:
        os.chown(path, *owner)


# --- command-line entry points ---------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse that exits with 1 (not 2) on a bad argument, like the other errors of the commands."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _parser(prog: str, description: str) -> _Parser:
    parser = _Parser(prog=prog, description=description)
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=f"local cache folder (default: ${C.ENV_CACHE_DIR}, ./{C.DEFAULT_CACHE_DIR} or {C.IMAGE_CACHE_DIR})",
    )
    return parser


def _run(prog: str, parser: _Parser, argv: Sequence[str] | None, action: Callable[[argparse.Namespace], str]) -> int:
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help (0) or a bad argument (1)
        return exc.code if isinstance(exc.code, int) else 1
    try:
        output = action(args)
    except (CacheError, ValueError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(output + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def main_get_node_info(argv: Sequence[str] | None = None) -> int:
    """``get_node_info [--cache-dir DIR] [--pretty]``: print local_info.json (JSON, indent 2) or a summary."""
    parser = _parser("get_node_info", "Show the node's local_info.json (written by the running node).")
    parser.add_argument("--pretty", action="store_true", help="readable summary instead of JSON")

    def action(args: argparse.Namespace) -> str:
        info = node_info(find_cache_dir(args.cache_dir))
        return format_node_info(info) if args.pretty else json.dumps(info, indent=2, ensure_ascii=False)

    return _run("get_node_info", parser, argv, action)


def main_get_node_history(argv: Sequence[str] | None = None) -> int:
    """``get_node_history [--cache-dir DIR] [--last N] [--indent N] [--plot FILE [--coarse]]``.

    Prints local_history.json, or with ``--plot`` writes its charts to an SVG file.
    """
    parser = _parser("get_node_history", "Show the node's resource history (local_history.json).")
    parser.add_argument("--last", type=_non_negative, metavar="N", help="keep only the last N entries of each list")
    parser.add_argument("--indent", type=_non_negative, metavar="N", help="indent the JSON (default: compact)")
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="write charts (CPU, memory, disk, RSS, pipeline rates; last hour) to FILE instead; SVG only (.svg)",
    )
    parser.add_argument("--coarse", action="store_true", help="with --plot: chart the last day (5-minute means)")

    def action(args: argparse.Namespace) -> str:
        if args.plot is not None:
            return _plot(args)
        if args.coarse:
            raise ValueError("--coarse goes with --plot")
        history = node_history(find_cache_dir(args.cache_dir), args.last)
        if args.indent:
            return json.dumps(history, indent=args.indent, ensure_ascii=False)
        return json.dumps(history, separators=(",", ":"), ensure_ascii=False)

    return _run("get_node_history", parser, argv, action)


def _plot(args: argparse.Namespace) -> str:
    target = Path(args.plot).expanduser()
    if target.suffix.lower() != ".svg":
        raise ValueError(f"--plot writes SVG only: give a file name ending in .svg (got {str(target)!r})")
    history = node_history(find_cache_dir(args.cache_dir), args.last)
    svg = render_svg(history, coarse=args.coarse)
    target.write_text(svg, encoding="utf-8")
    return f"wrote {target}"


def main_change_alias(argv: Sequence[str] | None = None) -> int:
    """``change_alias [--cache-dir DIR] NEW``: set the alias used from the next start of the node."""
    parser = _parser("change_alias", "Set the node's alias (EE_ID in config_startup.json); restart to apply.")
    parser.add_argument("alias", help=f"new alias: 1 to {C.ALIAS_MAX_LEN} letters, digits, '-', '_' or '.'")

    def action(args: argparse.Namespace) -> str:
        validate_alias(args.alias)
        return change_alias(find_cache_dir(args.cache_dir), args.alias)

    return _run("change_alias", parser, argv, action)


def main_healthcheck(argv: Sequence[str] | None = None) -> int:
    """``healthcheck [--cache-dir DIR]``: exit 0 if the node's engine loop is fresh, else 1 (Docker HEALTHCHECK)."""
    parser = _parser("healthcheck", "Exit 0 if the node refreshed local_info.json within 3 periods, else 1.")
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    try:
        healthy, message = health(find_cache_dir(args.cache_dir))
    except (CacheError, OSError) as exc:
        print(f"healthcheck: unhealthy: {exc}", file=sys.stderr)
        return 1
    print(
        f"healthcheck: {'healthy' if healthy else 'unhealthy'}: {message}", file=sys.stdout if healthy else sys.stderr
    )
    return 0 if healthy else 1


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


# --- allowlist and keys -------------------------------------------------------------------------------------
def main_get_allowed(argv: Sequence[str] | None = None) -> int:
    """``get_allowed [--cache-dir DIR]``: print the allowlist file (authorized_addrs)."""
    from edge_engine.local import allowlist

    parser = _parser("get_allowed", "Show the addresses allowed to change the node (authorized_addrs).")

    def action(args: argparse.Namespace) -> str:
        path = find_cache_dir(args.cache_dir) / C.AUTHORIZED_ADDRS_FILE
        entries = allowlist.read(path)
        return "\n".join(f"{e.address}  {e.alias}" if e.alias else e.address for e in entries) or "(no address)"

    return _run("get_allowed", parser, argv, action)


def main_add_allowed(argv: Sequence[str] | None = None) -> int:
    """``add_allowed [--cache-dir DIR] ADDRESS [ALIAS]``: allow a sender; the running node picks it up."""
    from edge_engine.local import allowlist

    parser = _parser("add_allowed", "Allow a sender to change the node (applies without a restart).")
    parser.add_argument("address", help="the sender's address, 0xai_...")
    parser.add_argument("alias", nargs="?", help=f"a name for it (max {C.ALIAS_MAX_LEN} characters)")

    def action(args: argparse.Namespace) -> str:
        cache = find_cache_dir(args.cache_dir)
        path = cache / C.AUTHORIZED_ADDRS_FILE
        entry = allowlist.add(path, args.address, args.alias)
        _keep_owner(path, _owner(cache))
        return f"allowed {entry.address}" + (f" ({entry.alias})" if entry.alias else "")

    return _run("add_allowed", parser, argv, action)


def main_remove_allowed(argv: Sequence[str] | None = None) -> int:
    """``remove_allowed [--cache-dir DIR] ADDRESS``: stop allowing a sender."""
    from edge_engine.local import allowlist

    parser = _parser("remove_allowed", "Stop allowing a sender to change the node (applies without a restart).")
    parser.add_argument("address", help="the sender's address, 0xai_...")

    def action(args: argparse.Namespace) -> str:
        cache = find_cache_dir(args.cache_dir)
        path = cache / C.AUTHORIZED_ADDRS_FILE
        if not allowlist.remove(path, args.address):
            raise ValueError(f"{args.address} is not in {path}")
        _keep_owner(path, _owner(cache))
        return f"removed {allowlist.normalize_address(args.address)}"

    return _run("remove_allowed", parser, argv, action)


def main_reset_node_keys(argv: Sequence[str] | None = None) -> int:
    """``reset_node_keys --yes``: back up the node key; a new identity is made at the next start."""
    parser = _parser("reset_node_keys", "Make a new node identity (the old key is kept as a backup).")
    parser.add_argument("--yes", action="store_true", help="confirm: the node gets a new address")

    def action(args: argparse.Namespace) -> str:
        if not args.yes:
            raise ValueError("this gives the node a new address; run again with --yes to confirm")
        key_file = find_cache_dir(args.cache_dir) / C.CACHE_DATA / C.KEY_FILE
        if not key_file.exists():
            raise CacheError(f"{key_file} does not exist: there is no node key to reset")
        from edge_engine.local.identity import reset_identity

        backup = reset_identity(key_file)
        return f"old key kept as {backup}; restart the node to create its new identity"

    return _run("reset_node_keys", parser, argv, action)
