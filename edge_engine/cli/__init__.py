"""The ``edge-node`` command for plugin authors and operators: ``validate``, ``plugins``, ``dry-run``, ``deploy``,
``delete``.

    edge-node validate [FILE ...] [--json]
    edge-node plugins [SIGNATURE ...] [--json] [--all]
    edge-node dry-run PIPELINE.json | --plugin SIG [--config JSON] [--source SRC] [--inputs N | --seconds T]
    edge-node deploy FILE [--timeout S] [--json]     # through the running node, or its cache when stopped
    edge-node delete NAME [--timeout S] [--json]

Each subcommand lives in its own module, imported only when it runs, and is also a thin executable in
``cmds/`` (``cmds/validate``, ``cmds/plugins``, ``cmds/dry_run``, ``cmds/deploy``, ``cmds/delete``).
``python -m edge_engine.cli.gen_reference``
regenerates the generated sections of ``docs/plugins.md``.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("edge_engine.cli.validate", "check startup config, app config and pipeline JSON without starting"),
    "plugins": ("edge_engine.cli.plugins", "list every plugin found and every plugin that failed to load"),
    "dry-run": ("edge_engine.cli.dry_run", "run one pipeline or plugin on a local source, payloads to stdout"),
    "deploy": ("edge_engine.cli.deploy", "add or replace pipelines on this machine's node, without MQTT"),
    "delete": ("edge_engine.cli.delete", "stop and remove a pipeline on this machine's node, without MQTT"),
}
ALIASES = {"dry_run": "dry-run", "dryrun": "dry-run"}


def usage() -> str:
    lines = ["usage: edge-node COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "edge-node COMMAND --help describes a command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; returns its exit code (0 ok, 1 problems found, 2 usage error)."""
    started = time.perf_counter()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name = ALIASES.get(args[0], args[0])
    if name not in COMMANDS:
        print(f"edge-node: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(args[1:], prog=f"edge-node {name}", started=started))
