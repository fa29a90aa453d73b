"""``edge-node deploy FILE``: add or replace pipelines on this machine's node, without MQTT.

    edge-node deploy pipelines/door.json          # validate, then apply through the running node
    edge-node deploy door.json --json             # the results as JSON
    docker exec NODE deploy /tmp/door.json        # the same inside the image (cmds/deploy)

The file (one pipeline object, or a list of them) is checked first with the code of ``edge-node validate``;
with any problem nothing is sent and nothing changes. Then, for each pipeline:

- a node runs on the cache: the request goes to it through ``_data/local_requests`` (see
  :mod:`edge_engine.node.local_deploy`); it validates again, applies, and answers ``applied`` or ``refused`` with
  its reasons;
- no node runs on it (stopped, or crashed: ``local_info.json`` stale): the pipeline is written to the cache as
  the node would write it, and starts with the node.

Exit code 0 when every pipeline was applied or written, 1 otherwise, 2 for a usage error.
``edge-node delete NAME`` (:mod:`edge_engine.cli.delete`) removes one the same way.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_engine.cli._common import add_node_args, display_path, load_plugins, print_json, settings_from
from edge_engine.cli.validate import check_pipeline_file
from edge_engine.errors import CacheError
from edge_engine.local.cache import CacheLayout, read_json
from edge_engine.node import local_deploy as L

DEFAULT_TIMEOUT = 30.0
STALE_WAIT = 3.0  # seconds to wait for a node whose local_info.json is stale before treating it as stopped


class Outcome:
    """The results of one command run, printed as text or JSON."""

    def __init__(self, prog: str):
        self.prog = prog
        self.results: list[dict[str, Any]] = []

    def add(self, result: dict[str, Any]) -> None:
        self.results.append(result)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.get("status") in ("applied", "written", "deleted") for r in self.results)

    def render(self) -> str:
        lines = []
        for result in self.results:
            lines += [f"{self.prog}: {result.get('pipeline') or '-'}: {reason}" for reason in result.get("reasons", [])]
            lines.append(f"{self.prog}: {result['status']}: {result.get('message', '')}")
        return "\n".join(lines)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the running node's answer (default {DEFAULT_TIMEOUT:.0f} s)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    add_node_args(parser)


def settled_state(layout: CacheLayout, timeout: float) -> L.NodeState:
    """The node's state, waiting while it is ``stopping`` (it writes ``stopped`` within its shutdown deadline)."""
    deadline = time.monotonic() + timeout
    state = L.node_state(layout)
    while state.status == "stopping" and time.monotonic() < deadline:
        time.sleep(0.1)
        state = L.node_state(layout)
    return state


def through_node(
    layout: CacheLayout,
    request: dict[str, Any],
    timeout: float,
    offline: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """Hand ``request`` to the running node; ``offline(why)`` does the work when no node runs on the cache."""
    state = settled_state(layout, timeout)
    if state.status == "stopping":
        return {
            "status": "refused",
            "reasons": [f"{state.detail} for more than {timeout:.0f} s"],
            "message": "nothing changed; run the command again once it has stopped",
        }
    if not state.running and state.status != "stale":
        return offline(state.detail)
    try:
        request_id = L.send_request(layout, request)
    except L.RequestError as exc:
        if not state.running:
            return offline(state.detail)
        return {"status": "refused", "reasons": [str(exc)], "message": "nothing changed"}
    result = L.wait_result(layout, request_id, timeout if state.running else STALE_WAIT) or {}
    if result.get("status") == "not_taken":
        now = L.node_state(layout)
        if not now.running:
            return offline(now.detail)
        return {
            "status": "refused",
            "reasons": [f"the node did not take the request within {timeout:.0f} s"],
            "message": "nothing changed (the request was withdrawn)",
        }
    if result.get("status") == "no_answer":
        return {
            "status": "no_answer",
            "message": f"the node took the request but did not answer within {timeout:.0f} "
            "s; see get_node_info for what it runs",
        }
    return result


def deploy_one(layout: CacheLayout, raw: dict[str, Any], source: str, timeout: float) -> dict[str, Any]:
    name = raw["NAME"]

    def offline(why: str) -> dict[str, Any]:
        path = L.write_stopped_cache(layout, raw)
        return {
            "status": "written",
            "pipeline": name,
            "file": display_path(path),
            "message": f"{why}: pipeline {name!r} written to the cache ({display_path(path)}); it starts with the node",
        }

    request = L.new_request("deploy", pipeline=raw, source=source)
    result = through_node(layout, request, timeout, offline)
    result.setdefault("pipeline", name)
    return result


def cache_layout(args: argparse.Namespace) -> CacheLayout:
    """The node's cache (as ``validate`` and the node resolve it); CacheError when it does not exist."""
    settings, _ = settings_from(args)
    layout = settings.layout
    if not layout.data.is_dir():
        raise CacheError(f"no local cache at {layout.root}: start the node once, or pass --cache-dir / EE_CACHE_DIR")
    return layout


def deploy(args: argparse.Namespace, outcome: Outcome) -> None:
    settings, _ = settings_from(args)
    registry = load_plugins(args, settings).registry
    check = check_pipeline_file(args.file, registry)
    if check.issues:
        message = f"{len(check.issues)} problem(s) in {check.file}; nothing sent, nothing changed"
        outcome.add({"status": "invalid", "reasons": [str(issue) for issue in check.issues], "message": message})
        return
    layout = cache_layout(args)
    data = read_json(args.file)
    for raw in data if isinstance(data, list) else [data]:
        outcome.add(deploy_one(layout, raw, f"deploy {args.file.name}", args.timeout))


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Add or replace pipelines on this machine's node without MQTT: validated, then applied by the "
        "running node, or written to its cache when it is stopped. Exit code 0 when applied or written, 1 when not.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="pipeline JSON file (one object or a list)")
    add_common_args(parser)
    return parser


def run(outcome: Outcome, args: argparse.Namespace, action: Callable[[argparse.Namespace, Outcome], None]) -> int:
    """Run ``action``, print the outcome; a cache or request problem is one clear error line."""
    try:
        action(args, outcome)
    except (CacheError, L.RequestError, OSError) as exc:
        outcome.add({"status": "error", "message": str(exc)})
    if args.json:
        print_json({"ok": outcome.ok, "results": outcome.results})
    else:
        print(outcome.render())
    return 0 if outcome.ok else 1


def main(argv: Sequence[str] | None = None, prog: str = "deploy", started: float | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    return run(Outcome(prog), args, deploy)
