"""``edge-client``: remote control of edge nodes over MQTT (see ``docs/remote-control.md``).

    edge-client address                         # this client's address: allow it on the node with add_allowed
    edge-client nodes [--wait S]                # nodes seen by heartbeat
    edge-client deploy NODE pipeline.json       # create or replace a pipeline, wait for the node's answer
    edge-client update NODE PIPELINE SIGNATURE INSTANCE KEY=VALUE...
    edge-client command NODE PIPELINE SIGNATURE INSTANCE JSON
    edge-client delete NODE PIPELINE
    edge-client keep-alive NODE PIPELINE [--every S]   # the owner's keep-alive (pipeline key KEEP_ALIVE_SECONDS)
    edge-client stop NODE | restart NODE
    edge-client watch [--node NODE] [--payloads] [--notifications] [--heartbeats]

NODE is a node's alias (resolved from its heartbeats) or its ``0xai_`` address. Exit code 0 on success, 1 when
the node refused the command or did not answer (the reason goes to stderr), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from edge_engine.config.settings_schema import read_group
from edge_engine.remote.node_client import (
    DEFAULT_KEY_FILE,
    DEFAULT_ROOT_TOPIC,
    DEFAULT_TIMEOUT,
    ClientError,
    CommandResult,
    EdgeClient,
    load_client_identity,
)


def _env_defaults() -> dict[str, Any]:
    """The broker settings from ``EE_*`` (read and checked by the node's settings schema), or exit with its message."""
    values, issues = read_group("comms", os.environ)
    if issues:
        for issue in issues:
            print(f"edge-client: {issue}", file=sys.stderr)
        raise SystemExit(2)
    return values


def _common(suppress: bool) -> argparse.ArgumentParser:
    """The connection options; accepted before and after the command (after: no defaults, so none is reset)."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS if suppress else None)
    env = {} if suppress else _env_defaults()

    def default(value: Any) -> dict[str, Any]:
        return {} if suppress else {"default": value}

    common.add_argument(
        "--key", metavar="FILE", help=f"client key file (created at first use; default {DEFAULT_KEY_FILE})"
    )
    common.add_argument(
        "--host",
        **default(env.get("EE_MQTT_HOST") or "127.0.0.1"),
        help="MQTT broker host (default $EE_MQTT_HOST or 127.0.0.1)",
    )
    common.add_argument(
        "--port",
        type=int,
        **default(env.get("EE_MQTT_PORT", 1883)),
        help="MQTT broker port (default $EE_MQTT_PORT or 1883)",
    )
    common.add_argument("--user", **default(env.get("EE_MQTT_USER")), help="broker user (default $EE_MQTT_USER)")
    common.add_argument("--password", help="broker password (default $EE_MQTT)")
    common.add_argument(
        "--ca",
        metavar="FILE",
        **default(env.get("EE_MQTT_CERT")),
        help="CA certificate: connect with TLS (default $EE_MQTT_CERT)",
    )
    common.add_argument("--tls", action="store_true", **default(False), help="TLS with the system CAs")
    common.add_argument(
        "--root-topic",
        **default(env.get("EE_ROOT_TOPIC") or DEFAULT_ROOT_TOPIC),
        help=f"topic root (default $EE_ROOT_TOPIC or {DEFAULT_ROOT_TOPIC})",
    )
    common.add_argument(
        "--subtopic",
        choices=("address", "alias"),
        **default("address"),
        help="nodes listen on {root}/<address>/config (default) or {root}/<alias>/config",
    )
    common.add_argument("--encrypt", action="store_true", **default(False), help="send commands encrypted to the node")
    common.add_argument(
        "--timeout",
        type=float,
        **default(DEFAULT_TIMEOUT),
        help=f"seconds to wait for the node's answer (default {DEFAULT_TIMEOUT:.0f})",
    )
    common.add_argument(
        "--wait", type=float, help="seconds to wait for heartbeats (nodes: default 11; resolving an alias: default 15)"
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common(suppress=True)
    parser = argparse.ArgumentParser(
        prog="edge-client",
        description="Remote control of edge nodes over MQTT: deploy pipelines, change them live, watch messages.",
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(suppress=False)],
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("address", parents=[common], help="print this client's address")
    nodes = sub.add_parser("nodes", parents=[common], help="list nodes seen by heartbeat")
    nodes.add_argument("--json", action="store_true", help="one JSON object per line")
    network = sub.add_parser("network", parents=[common], help="the network view of a supervisor node (NET_MON_01)")
    network.add_argument("--json", action="store_true", help="print the CURRENT_NETWORK object as JSON")
    deploy = sub.add_parser("deploy", parents=[common], help="create or replace a pipeline from a JSON file")
    deploy.add_argument("node")
    deploy.add_argument("file", help="pipeline JSON (an object, or a list of them)")
    update = sub.add_parser("update", parents=[common], help="change instance config keys live")
    for name in ("node", "pipeline", "signature", "instance"):
        update.add_argument(name)
    update.add_argument(
        "changes", nargs="+", metavar="KEY=JSONVALUE", help="new values; a VALUE that is not JSON is taken as a string"
    )
    command = sub.add_parser("command", parents=[common], help="run an instance command")
    for name in ("node", "pipeline", "signature", "instance"):
        command.add_argument(name)
    command.add_argument("json", metavar="JSON", help="the command: JSON (e.g. '{\"CMD\": 1}') or a plain word")
    delete = sub.add_parser("delete", parents=[common], help="delete a pipeline")
    delete.add_argument("node")
    delete.add_argument("pipeline")
    keep = sub.add_parser("keep-alive", parents=[common], help="send a pipeline's keep-alive (KEEP_ALIVE_SECONDS)")
    keep.add_argument("node")
    keep.add_argument("pipeline")
    keep.add_argument("--every", type=float, default=0.0, help="send again every EVERY seconds until ^C (default once)")
    for name in ("stop", "restart"):
        sub.add_parser(name, parents=[common], help=f"{name} the node").add_argument("node")
    watch = sub.add_parser("watch", parents=[common], help="stream messages as JSON lines (verified or marked)")
    watch.add_argument("--node", help="only this node (alias or address)")
    watch.add_argument("--payloads", action="store_true", help="payloads (default: every kind)")
    watch.add_argument("--notifications", action="store_true", help="notifications")
    watch.add_argument("--heartbeats", action="store_true", help="heartbeats")
    watch.add_argument("--raw", action="store_true", help="messages as received (heartbeat data not decoded)")
    watch.add_argument("--count", type=int, default=0, help="exit after COUNT messages (default: run until ^C)")
    return parser


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _changes(items: Sequence[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ClientError(f"expected KEY=VALUE, got {item!r}")
        changes[key.strip()] = _json_value(value)
    return changes


def _report(result: CommandResult, what: str) -> int:
    if result.ok:
        print(f"{what}: {result.reason or 'ok'} (code {result.code})")
        for extra in result.notifications:
            if extra.code is not None and extra.message.get("NOTIFICATION") != result.reason:
                print(f"  {extra.code}: {extra.message.get('NOTIFICATION')}")
        if result.result is not None:
            print(json.dumps(result.result, ensure_ascii=False, indent=2, default=str))
        return 0
    print(
        f"{what} failed: {result.reason}" + (f" (code {result.code})" if result.code is not None else ""),
        file=sys.stderr,
    )
    return 1


def _client(args: argparse.Namespace, channels: tuple[str, ...] = ("heartbeats", "notifications")) -> EdgeClient:
    identity = load_client_identity(args.key)
    password = args.password if args.password is not None else os.environ.get("EE_MQTT")
    client = EdgeClient(
        identity,
        host=args.host,
        port=args.port,
        user=args.user,
        password=password,
        ca_file=args.ca,
        tls=args.tls,
        root_topic=args.root_topic,
        channels=channels,
        encrypt=args.encrypt,
        subtopic=args.subtopic,
    )
    return client.connect()


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "address":
        print(load_client_identity(args.key).address)
        return 0
    resolve_wait = args.wait if args.wait is not None else 15.0
    if args.cmd == "watch":
        return _watch(args)
    if args.cmd == "network":
        return _network(args)
    with _client(args, ("heartbeats",) if args.cmd == "nodes" else ("heartbeats", "notifications")) as client:
        if args.cmd == "nodes":
            found = client.nodes(wait=args.wait if args.wait is not None else 11.0)
            if args.json:
                for info in found:
                    print(json.dumps(info.to_dict(), ensure_ascii=False))
                return 0
            if not found:
                print("no node heard from (heartbeats come every 10 s by default; try --wait 20)", file=sys.stderr)
                return 1
            rows = [("ALIAS", "ADDRESS", "VERSION", "PIPELINES", "STATUS", "LAST SEEN")]
            for info in found:
                d = info.to_dict()
                rows.append(
                    (
                        d["alias"],
                        d["address"],
                        str(d["version"]),
                        str(d["pipelines"]),
                        d["status"],
                        f"{d['last_seen']} ({d['seconds_ago']:.0f} s ago)",
                    )
                )
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for row in rows:
                print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
            return 0
        client.resolve(args.node, resolve_wait)  # alias → address once, before the answer's timeout starts
        if args.cmd == "deploy":
            try:
                with open(args.file, encoding="utf-8") as handle:
                    data = json.load(handle)
            except (OSError, json.JSONDecodeError) as exc:
                raise ClientError(f"{args.file}: {exc}") from exc
            code = 0
            for config in data if isinstance(data, list) else [data]:
                name = config.get("NAME") if isinstance(config, dict) else None
                code = max(code, _report(client.deploy(args.node, config, args.timeout), f"deploy {name}"))
            return code
        if args.cmd == "update":
            result = client.update_instance(
                args.node, args.pipeline, args.signature, args.instance, _changes(args.changes), args.timeout
            )
            return _report(result, f"update {args.pipeline}/{args.signature}/{args.instance}")
        if args.cmd == "command":
            result = client.instance_command(
                args.node, args.pipeline, args.signature, args.instance, _json_value(args.json), timeout=args.timeout
            )
            return _report(result, f"command {args.pipeline}/{args.signature}/{args.instance}")
        if args.cmd == "delete":
            return _report(client.delete(args.node, args.pipeline, args.timeout), f"delete {args.pipeline}")
        if args.cmd == "keep-alive":
            return _keep_alive(client, args)
        if args.cmd == "stop":
            return _report(client.stop(args.node, args.timeout), "stop")
        if args.cmd == "restart":
            return _report(client.restart(args.node, args.timeout), "restart")
    raise ClientError(f"unknown command {args.cmd!r}")


def _keep_alive(client: EdgeClient, args: argparse.Namespace) -> int:
    """Send the keep-alive once, or every ``--every`` seconds until interrupted."""
    pause = threading.Event()
    while True:
        client.keep_alive(args.node, args.pipeline)
        print(f"keep-alive sent to {args.node} for pipeline {args.pipeline}", flush=True)
        if args.every <= 0 or pause.wait(args.every):
            return 0


def _network(args: argparse.Namespace) -> int:
    """``edge-client network``: the nodes a supervisor sees (online/offline, last seen), from its NET_MON_01."""
    wait = args.wait if args.wait is not None else 12.0
    with _client(args, ("payloads",)) as client:
        received = client.network(wait)
    if received is None:
        print(
            f"no NET_MON_01 within {wait:g} s: no supervisor node on this broker (start one with "
            "EE_SUPERVISOR=1), or try --wait; `edge-client nodes` lists nodes by heartbeat",
            file=sys.stderr,
        )
        return 1
    network = received.data["CURRENT_NETWORK"]
    if args.json:
        print(json.dumps(network, indent=2, ensure_ascii=False))
        return 0
    print(f"network seen by supervisor {received.alias} ({received.sender}):")
    rows = [("ALIAS", "ADDRESS", "STATUS", "LAST SEEN", "VERSION", "SECURED")]
    for entry in sorted(network.values(), key=lambda e: (e.get("working") != "ONLINE", str(e.get("eeid")))):
        rows.append(
            (
                str(entry.get("eeid")),
                str(entry.get("address")),
                str(entry.get("working")),
                f"{entry.get('last_seen_sec')} s ago",
                str(entry.get("version")),
                str(entry.get("secured")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _watch(args: argparse.Namespace) -> int:
    chosen = [name for name in ("payloads", "notifications", "heartbeats") if getattr(args, name)]
    channels = tuple(chosen or ("payloads", "notifications", "heartbeats"))
    client = _client(args, channels)
    stop = threading.Event()
    shown = 0
    try:
        for received in client.watch(channels, args.node, stop):
            sys.stdout.write(received.to_json(raw=args.raw) + "\n")
            sys.stdout.flush()
            shown += 1
            if args.count and shown >= args.count:
                break
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `edge-client watch | head`
        pass
    finally:
        client.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ClientError as exc:
        print(f"edge-client: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
