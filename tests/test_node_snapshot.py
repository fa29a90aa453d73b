"""The typed snapshot (edge_engine/node/snapshot.py) says what local_info.json really holds.

A running node's snapshot is checked against the TypedDicts, recursively: every required key is there, and no key
is there that the types do not declare. So heartbeats, /metrics and get_node_info can read the declared keys
without re-checking them, and a field added to the snapshot must be added to its type too.
"""

from __future__ import annotations

import json
import typing
from typing import Any, get_args, get_origin, get_type_hints

from conftest import wait_for
from plugins_src import message_pipeline, payload_plugin

from edge_engine.cli.ops import format_node_info
from edge_engine.node import snapshot as S

COUNTER = payload_plugin("Counter", "SNAP_COUNTER", '{"SEQ": inp.seq}')


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and typing.is_typeddict(tp)


def mismatches(value: Any, tp: Any, where: str = "snapshot") -> list[str]:
    """Where ``value`` does not have the keys of ``tp`` (TypedDicts, and lists / optionals of them)."""
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        hints = get_type_hints(tp)
        found = [f"{where}: missing {k!r}" for k in sorted(tp.__required_keys__ - value.keys())]
        found += [f"{where}: {k!r} is not declared" for k in sorted(value.keys() - hints.keys())]
        for key in value.keys() & hints.keys():
            found += mismatches(value[key], hints[key], f"{where}.{key}")
        return found
    args = [a for a in get_args(tp) if a is not type(None)]
    if get_origin(tp) is list and args and isinstance(value, list):
        return [m for i, item in enumerate(value) for m in mismatches(item, args[0], f"{where}[{i}]")]
    if value is not None and len(args) == 1 and _is_typeddict(args[0]):  # SomeTypedDict | None
        return mismatches(value, args[0], where)
    return []


def test_the_snapshot_of_a_running_node_has_exactly_the_declared_keys(node_factory) -> None:
    bad = {"NAME": "broken", "TYPE": "NO_SUCH_CAPTURE", "PLUGINS": []}
    node = node_factory(
        plugins={"business/counter.py": COUNTER},
        pipelines=[message_pipeline("snap", "SNAP_COUNTER", 20), bad],
        startup={"SECONDS_LOCAL_INFO": 0.2},
    )
    wait_for(lambda: node.snapshot()["pipelines"][0]["instances"][0]["payloads"] >= 3, timeout=20)
    snap = node.snapshot()
    assert snap["invalid_pipelines"] and snap["pipelines"][0]["capture"]["stream"]
    assert mismatches(snap, S.NodeSnapshot) == []
    written = json.loads(node.layout.local_info.read_text(encoding="utf-8"))  # the file: same keys, JSON types
    assert mismatches(written, S.NodeSnapshot) == []


def test_the_checker_sees_a_missing_and_an_undeclared_key() -> None:
    stats = {"inputs": 1, "outputs": 0, "dropped": 0, "errors": 0, "restarts": 0, "rate": 0.0}
    extra = {**stats, "process_ms_max": None, "last_error": None, "last_error_time": None, "surprise": 1}
    assert mismatches(extra, S.StageStats) == [
        "snapshot: missing 'process_ms_avg'",
        "snapshot: 'surprise' is not declared",
    ]


def test_a_file_of_another_shape_reads_as_a_snapshot() -> None:
    """local_info.json from an older version or a Ratio1 node: read_snapshot keeps only what has the declared shape."""
    odd = {
        "alias": "n1",
        "info": ["not", "an", "object"],
        "plugins": {"loaded": 2, "failed": ["x", {"source": "a.py", "name": "A", "reason": "boom"}]},
        "pipelines": [
            "junk",
            {"name": "p", "capture": [1, 2], "instances": [3, {"signature": "S", "instance_id": "i"}]},
        ],
        "invalid_pipelines": "none",
        "network": {"nodes": "none"},
    }
    snap = S.read_snapshot(odd)
    assert "info" not in snap
    assert snap["plugins"]["failed"] == [{"source": "a.py", "name": "A", "reason": "boom"}]
    assert [p["name"] for p in snap["pipelines"]] == ["p"]
    assert snap["pipelines"][0]["capture"] == {}
    assert snap["pipelines"][0]["instances"] == [{"signature": "S", "instance_id": "i"}]
    assert snap["invalid_pipelines"] == [] and snap["network"]["nodes"] == []
    text = format_node_info(odd)
    assert "S/i" in text and "failed plugin a.py › A: boom" in text and "2 loaded, 1 failed" in text
