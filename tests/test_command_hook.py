"""``edge_command_received`` fires for every command comms applies, over a real broker with signed commands.

A plugin module implements the hook: it records what it is told and handles one ACTION the node does not know
(``PING_PLUGIN``), answering with a result the sender receives. A refused command is not passed on, an unknown
ACTION no plugin handles is still refused, and a hook that raises changes nothing for the command.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import comms_node, wait_for

from edge_engine.cli.ops import main_add_allowed
from edge_engine.node.core import Node
from edge_engine.remote.node_client import Received

pytestmark = pytest.mark.timeout(90)

HOOKED = """
from edge_engine.api import hookimpl

SEEN = []


@hookimpl
def edge_command_received(action, payload, sender):
    SEEN.append([action, payload, sender])
    if action == "EXPLODE_PLUGIN":
        raise RuntimeError("hook failure")
    if action == "PING_PLUGIN":
        return {"PONG": payload}
    return None
"""
PIPELINE = {"NAME": "hooked", "TYPE": "VOID", "PLUGINS": [{"SIGNATURE": "FRAME_STATS",
            "INSTANCES": [{"INSTANCE_ID": "fs"}]}]}  # fmt: skip


def seen_by_plugin(node: Node) -> list[list[Any]]:
    module = next(p for name, p in node.pm.list_name_plugin() if name.endswith("business.hooked"))
    return module.SEEN


def notice_code(expected: int) -> Any:
    def decide(received: Received) -> bool | None:
        return True if received.code == expected else None

    return decide


def test_applied_commands_reach_the_hook_and_plugins_may_add_actions(mosquitto, node_factory, me, clients) -> None:
    node = comms_node(node_factory, mosquitto, plugins={"business/hooked.py": HOOKED},
                      startup={"SECONDS_HEARTBEAT": 1})  # fmt: skip
    assert main_add_allowed(["--cache-dir", str(node.layout.root), me.address, "me"]) == 0
    client = clients(me, mosquitto.port)
    seen = seen_by_plugin(node)

    assert client.deploy(node.alias, PIPELINE, timeout=15).ok
    wait_for(lambda: any(action == "UPDATE_CONFIG" for action, _, _ in seen))
    [[_, payload, sender]] = [s for s in seen if s[0] == "UPDATE_CONFIG"]
    assert payload["NAME"] == "hooked" and sender == me.address  # decrypted (the client encrypts by default)

    refused = client.deploy(node.alias, {**PIPELINE, "PLUGINS": "not a list"}, timeout=15)
    assert not refused.ok
    assert [s[0] for s in seen] == ["UPDATE_CONFIG"], "a refused command is not passed on"

    answer = client.command(node.alias, "PING_PLUGIN", {"N": 1}, notice_code(1), timeout=15)
    assert answer.ok and answer.result == {"PONG": {"N": 1}}, answer
    assert seen[-1] == ["PING_PLUGIN", {"N": 1}, me.address]

    unknown = client.command(node.alias, "NOBODY_KNOWS", None, notice_code(1), timeout=15)
    assert not unknown.ok and "unknown ACTION 'NOBODY_KNOWS'" in unknown.reason, unknown
    exploded = client.command(node.alias, "EXPLODE_PLUGIN", None, notice_code(1), timeout=15)
    assert not exploded.ok and "unknown ACTION 'EXPLODE_PLUGIN'" in exploded.reason, exploded

    assert client.delete(node.alias, "hooked", timeout=15).ok
    wait_for(lambda: seen[-1][:2] == ["DELETE_CONFIG", "hooked"])
    assert node.status == "running" and json.dumps(seen)
