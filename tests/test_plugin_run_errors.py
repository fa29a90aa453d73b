"""Errors a plugin makes at run time are its instance's errors, with a message its author can act on (decision 33).

``process()`` returning something other than a dict or None, ``emit()`` given a non-dict, and a payload value
that is not JSON (an arbitrary object, a ``datetime``) are counted on the instance with a readable reason and
never written or sent (no ``"<object object at 0x...>"`` in a payload); numpy values are converted as before.
``sys.exit()`` in ``process()`` is an error of the call, not the end of the instance. An ``on_command()`` result
that is not JSON fails the command with the reason.
Other instances and pipelines keep running.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import wait_for
from plugins_src import synthetic_pipeline

MISBEHAVING = """
import datetime
import sys

import numpy as np

from edge_engine.api import BusinessPlugin


class Misbehaving(BusinessPlugin):
    SIGNATURE = "MISBEHAVING"
    CONFIG = {"MODE": "list"}

    def on_command(self, command, **params):
        return object() if command == "OBJECT" else {"COUNT": np.int64(3)}

    def process(self, inp):
        mode = self.config["MODE"]
        if mode == "list":
            return [("A", 1)]
        if mode == "emit_list":
            self.emit([("A", 1)])
            return None
        if mode == "object":
            return {"OK": 1, "NESTED": {"WHEN": [1, object()]}}
        if mode == "exit":
            sys.exit(3)
        if mode == "datetime":
            self.emit({"AT": datetime.datetime(2026, 1, 1)})
            return None
        return {"ARRAY": np.arange(3), "SCALAR": np.float32(0.5), "TAGS": {"b"}}
"""


def pipeline(mode: str) -> dict[str, Any]:
    return synthetic_pipeline(mode, "MISBEHAVING", {"INSTANCE_ID": "i", "MODE": mode}, CAP_RESOLUTION=50)


MODES = ("list", "emit_list", "object", "datetime", "exit", "numpy")


def test_run_time_mistakes_are_the_instances_errors(node_factory: Any) -> None:
    modes = MODES
    node = node_factory(plugins={"business/misbehaving.py": MISBEHAVING}, pipelines=[pipeline(m) for m in modes])
    instance = {mode: node.pipelines[mode].instances[("MISBEHAVING", "i")] for mode in modes}
    wait_for(lambda: all(instance[m].stats.errors for m in modes if m != "numpy"), timeout=15)
    wait_for(lambda: instance["numpy"].stats.outputs >= 2, timeout=15)
    errors = {mode: instance[mode].stats.last_error for mode in modes}
    assert errors["list"] == "TypeError: process() must return a dict or None (got list)"
    assert errors["emit_list"] == "TypeError: emit() needs a dict payload (got list)"
    assert errors["object"] == (
        "TypeError: payload['NESTED']['WHEN'][1] is not JSON: a value of type object is not JSON; "
        "send numbers, text, lists or dicts"
    )
    assert errors["datetime"].startswith("TypeError: payload['AT'] is not JSON: a value of type datetime")
    assert errors["exit"] == "SystemExit: 3" and instance["exit"].thread.is_alive()
    assert errors["numpy"] is None and node.status == "running"
    for mode in modes[:-1]:
        assert instance[mode].stats.outputs == 0 and not (node.layout.output / mode).exists()
    answer = node.instance_command("numpy", "MISBEHAVING", "i", "COUNT").result(10)
    assert answer == {"COUNT": 3}
    with pytest.raises(TypeError, match=r"^on_command\(\) result is not JSON: a value of type object is not JSON"):
        node.instance_command("numpy", "MISBEHAVING", "i", "OBJECT").result(10)
    [line, *_] = (node.layout.output / "numpy" / "MISBEHAVING_i" / "payloads.jsonl").read_text().splitlines()
    assert json.loads(line)["data"] == {"ARRAY": [0, 1, 2], "SCALAR": 0.5, "TAGS": ["b"]}


def test_check_payload_names_keys_that_are_not_json() -> None:
    from edge_engine.runtime.instance import check_payload

    check_payload({"A": [1, 2.5, "x", None, True, {"B": []}]})
    with pytest.raises(TypeError, match=r"payload key \('a', 1\) is not JSON"):
        check_payload({("a", 1): 1})
    looped: dict[str, Any] = {}
    looped["SELF"] = looped
    with pytest.raises(TypeError, match="is not JSON: Circular reference detected"):
        check_payload(looped)
