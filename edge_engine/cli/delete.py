"""``edge-node delete NAME``: stop and remove a pipeline on this machine's node, without MQTT.

    edge-node delete door                 # through the running node, or from the cache when it is stopped
    docker exec NODE delete door          # the same inside the image (cmds/delete)

The counterpart of ``edge-node deploy`` (:mod:`edge_engine.cli.deploy`, same channel and options). Exit code 0
when the pipeline was deleted, 1 when there was none of that name or the node refused, 2 for a usage error.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from edge_engine import constants as C
from edge_engine.cli._common import display_path
from edge_engine.cli.deploy import Outcome, add_common_args, cache_layout, run, through_node
from edge_engine.config.pipelines import NAME_PATTERN
from edge_engine.node import local_deploy as L


def delete(args: argparse.Namespace, outcome: Outcome) -> None:
    name = args.name
    if name.lower() == C.ADMIN_PIPELINE_NAME:
        outcome.add(
            {
                "status": "refused",
                "pipeline": name,
                "reasons": ["the admin pipeline cannot be deleted"],
                "message": "nothing changed",
            }
        )
        return
    if not NAME_PATTERN.match(name):
        outcome.add(
            {
                "status": "refused",
                "pipeline": name,
                "message": "not a pipeline NAME (letters, digits, '_', "
                "'.', '-'; up to 64 characters, starting with a letter or digit); nothing changed",
            }
        )
        return
    layout = cache_layout(args)

    def offline(why: str) -> dict[str, Any]:
        removed = L.delete_from_stopped_cache(layout, name)
        if not removed:
            return {"status": "not_found", "message": f"{why}; its cache has no pipeline {name!r}"}
        files = ", ".join(display_path(p) for p in removed)
        return {"status": "deleted", "message": f"{why}: pipeline {name!r} deleted from the cache ({files})"}

    result = through_node(layout, L.new_request("delete", name=name), args.timeout, offline)
    result.setdefault("pipeline", name)
    outcome.add(result)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Stop and remove a pipeline on this machine's node without MQTT: through the running node, or "
        "from its cache when it is stopped. Exit code 0 when deleted, 1 when not.",
    )
    parser.add_argument("name", metavar="NAME", help="the pipeline's NAME")
    add_common_args(parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "delete", started: float | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    return run(Outcome(prog), args, delete)
