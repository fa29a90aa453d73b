"""The confirmations Ratio1's SDK waits for: after each command, the notification codes on the paths it matches.

The SDK's ``deploy``/``close``/``send_instance_command`` register responses that wait for a code on
``EE_PAYLOAD_PATH`` ``[alias, pipeline]`` (1 / -1, 4 / -4) or ``[alias, pipeline, SIGNATURE, INSTANCE_ID]``
(100 / -100, 101 / -101); an answer on another path, or none, leaves it waiting for its timeout. Here a real
Mosquitto, a node in-process and our client (which signs commands in the SDK's format) check the exact set of
answers for each case; tests/test_ratio1_sdk.py drives the same node code with the SDK itself.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import comms_node, wait_for
from mqtt_broker import Mosquitto
from plugins_src import synthetic_pipeline

from edge_engine.cli.ops import main_add_allowed
from edge_engine.comms.commands import ACTIONS, MAX_ANSWERS, PEEK_MAX_BYTES, expected_failures
from edge_engine.node.core import Node
from edge_engine.remote.node_client import EdgeClient, Received, load_client_identity

pytestmark = pytest.mark.timeout(60)

STATS = synthetic_pipeline("stats", "FRAME_STATS", {"INSTANCE_ID": "fs", "REPORT_EVERY": 1000}, CAP_RESOLUTION=20)
# The ACTIONs of Ratio1's command list (reference §5): each is handled, or refused with a reason.
RATIO1_ACTIONS = (
    "UPDATE_CONFIG", "DELETE_CONFIG", "ARCHIVE_CONFIG", "DELETE_CONFIG_ALL", "ARCHIVE_CONFIG_ALL",
    "UPDATE_PIPELINE_INSTANCE", "BATCH_UPDATE_PIPELINE_INSTANCE", "PIPELINE_COMMAND", "STOP", "RESTART",
    "FULL_HEARTBEAT", "TIMERS_ONLY_HEARTBEAT", "SIMPLE_HEARTBEAT", "RELOAD_CONFIG_FROM_DISK", "ACTIVE_PLUGINS",
    "STATUS",
)  # fmt: skip

Answer = tuple[int, str | None, str | None, str | None]  # code, pipeline, signature, instance


class Rig:
    """A node with the ``stats`` pipeline, an allowed client and a stranger, all on one broker."""

    def __init__(self, node: Node, client: EdgeClient, stranger: EdgeClient):
        self.node, self.client, self.stranger = node, client, stranger
        assert node.identity is not None
        self.address = node.identity.address

    def send(
        self, action: str, payload: Any, by: EdgeClient | None = None, encrypt: bool = False, quiet: float = 0.7
    ) -> list[Received]:
        """Send one signed command; return the notifications answering it (until ``quiet`` s pass without one)."""
        sender = by or self.client
        message = sender.build_command(self.address, action, payload, encrypt=encrypt)

        def ours(r: Received) -> bool:
            return r.channel == "notifications" and r.verified and r.message.get("COMMAND_HASH") == message["EE_HASH"]

        got: list[Received] = []
        with sender.listen(ours) as listener:
            sender.publish(self.address, json.dumps(message).encode())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                item = listener.get(quiet if got else 0.2)
                if item is not None:
                    got.append(item)
                elif got:
                    break
        assert got, f"no answer to {action}"
        return got

    def state(self) -> tuple[list[str], dict[str, bytes]]:
        streams = {p.name: p.read_bytes() for p in sorted(self.node.layout.streams.glob("*.json"))}
        return sorted(self.node.pipeline_names()), streams


def answers(notes: list[Received]) -> set[Answer]:
    return {(n.code, *n.message["EE_PAYLOAD_PATH"][1:4]) for n in notes if n.code is not None}


@pytest.fixture
def rig(mosquitto: Mosquitto, node_factory: Callable[..., Node], tmp_path: Path, clients: Any) -> Rig:
    node = comms_node(node_factory, mosquitto, pipelines=[STATS], startup={"SECONDS_HEARTBEAT": 1})
    me = load_client_identity(tmp_path / "me" / "client.pem")
    assert main_add_allowed(["--cache-dir", str(node.layout.root), me.address, "me"]) == 0
    stranger = load_client_identity(tmp_path / "stranger" / "client.pem")
    return Rig(node, clients(me, mosquitto.port), clients(stranger, mosquitto.port))


def instance_update(changes: dict[str, Any], instance: str = "fs") -> dict[str, Any]:
    return {"NAME": "stats", "SIGNATURE": "FRAME_STATS", "INSTANCE_ID": instance, "INSTANCE_CONFIG": changes}


def test_instance_update_is_confirmed_on_the_instance_and_the_pipeline(rig: Rig) -> None:
    notes = rig.send("UPDATE_PIPELINE_INSTANCE", instance_update({"REPORT_EVERY": 3}))
    assert answers(notes) == {(100, "stats", "FRAME_STATS", "fs"), (1, "stats", None, None)}
    for note in notes:  # the command's session and initiator come back with every answer
        assert note.message["SESSION_ID"] == rig.client.session_id
        assert note.message["INITIATOR_ID"] == rig.client.initiator_id
        assert note.message["INITIATOR_ADDR"] == rig.client.address
        assert note.message["EE_PAYLOAD_PATH"][0] == rig.node.alias and note.message["NOTIFICATION_TYPE"] == "NORMAL"
    assert rig.node.pipelines["stats"].instance("FRAME_STATS", "fs").config["REPORT_EVERY"] == 3


def test_sdk_instance_command_reaches_the_plugin_by_name(rig: Rig) -> None:
    # the SDK sends instance.send_instance_command("REPORT") as {"COMMAND_PARAMS": {"REPORT": true}}
    notes = rig.send(
        "UPDATE_PIPELINE_INSTANCE", instance_update({"INSTANCE_COMMAND": {"COMMAND_PARAMS": {"REPORT": True}}})
    )
    assert answers(notes) == {(101, "stats", "FRAME_STATS", "fs"), (1, "stats", None, None)}
    (done,) = [n for n in notes if n.code == 101]
    result = done.message["INFO"]["RESULT"]
    assert isinstance(result, dict) and "error" not in result and "INPUTS" in result, result  # FRAME_STATS's report


def test_refused_instance_update_fails_both_responses_with_the_reason(rig: Rig) -> None:
    before = rig.state()
    notes = rig.send("UPDATE_PIPELINE_INSTANCE", instance_update({"REPORT_EVRY": 3}))
    assert answers(notes) == {(-100, "stats", "FRAME_STATS", "fs"), (-1, "stats", None, None)}
    (failed,) = [n for n in notes if n.code == -100]  # the SDK reports INFO as the instance's failure reason
    assert "did you mean 'REPORT_EVERY'" in failed.message["INFO"]["REASON"]
    assert all(n.message["NOTIFICATION_TYPE"] == "EXCEPTION" for n in notes)
    assert rig.state() == before


def test_batch_answers_each_item_once(rig: Rig) -> None:
    good, missing = instance_update({"REPORT_EVERY": 4}), instance_update({"REPORT_EVERY": 4}, instance="nope")
    notes = rig.send("BATCH_UPDATE_PIPELINE_INSTANCE", [good, missing])
    # the first item was applied (100, and 1 for its pipeline); the second names no instance: -100 on its path
    assert sorted(answers(notes), key=str) == sorted(
        {(100, "stats", "FRAME_STATS", "fs"), (1, "stats", None, None), (-100, "stats", "FRAME_STATS", "nope")}, key=str
    )
    assert len(notes) == 3


@pytest.mark.parametrize("encrypt", [False, True], ids=["clear", "encrypted"])
def test_deploy_from_a_key_that_is_not_allowed_fails_every_sdk_response(rig: Rig, encrypt: bool) -> None:
    before = rig.state()
    two = {**STATS, "NAME": "intruder"}
    two["PLUGINS"] = [{"SIGNATURE": "FRAME_STATS", "INSTANCES": [{"INSTANCE_ID": "a"}, {"INSTANCE_ID": "b"}]}]
    notes = rig.send("UPDATE_CONFIG", two, by=rig.stranger, encrypt=encrypt)  # the SDK encrypts by default
    assert answers(notes) == {
        (-5000, None, None, None),
        (-1, "intruder", None, None),
        (-100, "intruder", "FRAME_STATS", "a"),
        (-100, "intruder", "FRAME_STATS", "b"),
    }
    assert notes[0].code == -5000  # first, as our client and older callers expect
    assert all("is not in authorized_addrs" in n.message["NOTIFICATION"] for n in notes)
    assert rig.state() == before


def test_a_large_encrypted_command_from_a_stranger_is_not_opened(rig: Rig) -> None:
    big = {**STATS, "NAME": "intruder", "PADDING": os.urandom(PEEK_MAX_BYTES).hex()}  # incompressible
    notes = rig.send("UPDATE_CONFIG", big, by=rig.stranger, encrypt=True)
    assert answers(notes) == {(-5000, None, None, None)}  # refused without decrypting: no pipeline to name


def test_close_of_an_unknown_pipeline_fails_on_its_path(rig: Rig) -> None:
    notes = rig.send("ARCHIVE_CONFIG", "ghost")
    assert answers(notes) == {(-4, "ghost", None, None)} and len(notes) == 1
    assert "no pipeline named 'ghost'" in notes[0].message["NOTIFICATION"]


def test_reload_config_from_disk_restarts_pipelines_from_the_cache(rig: Rig) -> None:
    path = rig.node.layout.stream_file("stats")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["PLUGINS"][0]["INSTANCES"][0]["REPORT_EVERY"] = 7  # edited on disk, behind the node's back
    path.write_text(json.dumps(data), encoding="utf-8")
    loop = threading.Thread(target=rig.node.run_forever, daemon=True)  # restarts happen in the node's main loop
    loop.start()
    notes = rig.send("RELOAD_CONFIG_FROM_DISK", None)
    assert answers(notes) == {(1, None, None, None)}

    def reloaded() -> bool:
        runner = rig.node.pipelines.get("stats")
        instance = runner.instance("FRAME_STATS", "fs") if runner is not None else None
        return instance is not None and instance.config["REPORT_EVERY"] == 7

    try:
        wait_for(reloaded, timeout=10)
    finally:
        rig.node.request_stop("test done")
        loop.join(10)


def test_every_ratio1_action_is_handled_or_refused_with_a_reason(rig: Rig) -> None:
    assert set(RATIO1_ACTIONS) <= set(ACTIONS)
    notes = rig.send("NOT_AN_ACTION", None)
    assert answers(notes) == {(-5000, None, None, None)}
    assert "unknown ACTION 'NOT_AN_ACTION'; known: " in notes[0].message["NOTIFICATION"]
    status = rig.send("STATUS", None)
    assert answers(status) == {(1, None, None, None)} and "stats" in status[0].message["INFO"]["PIPELINES"]
    refused = rig.send("PIPELINE_COMMAND", {"NAME": "stats", "PIPELINE_COMMAND": {"DANCE": True}})
    assert (-1, "stats", None, None) in answers(refused)


def test_expected_failures_cover_what_the_sdk_waits_for() -> None:
    many = {**STATS, "PLUGINS": [{"SIGNATURE": "X", "INSTANCES": [{"INSTANCE_ID": str(i)} for i in range(100)]}]}
    assert len(expected_failures("UPDATE_CONFIG", many)) == MAX_ANSWERS  # bounded, whatever the payload
    assert expected_failures("ARCHIVE_CONFIG", "p") == [(-4, "p", None, None)]
    command = instance_update({"INSTANCE_COMMAND": "RESET"})
    assert expected_failures("UPDATE_PIPELINE_INSTANCE", command) == [
        (-1, "stats", None, None),
        (-101, "stats", "FRAME_STATS", "fs"),
    ]
    for malformed in (None, "x", [], {"NAME": 3}, {"PLUGINS": "x"}, [{"NAME": "p"}]):
        for action in ("UPDATE_CONFIG", "UPDATE_PIPELINE_INSTANCE", "BATCH_UPDATE_PIPELINE_INSTANCE"):
            assert all(isinstance(a[1], str) for a in expected_failures(action, malformed))
