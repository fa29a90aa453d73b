"""The runtime, in-process: isolation, back-pressure, pacing, live updates, outputs, persistence and shutdown.

Each test starts a real :class:`~edge_engine.node.core.Node` (``node_factory``) with the built-in capture plugins
and a ``PROBE`` business plugin that records what the engine does to it.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import pytest
from conftest import REPO, wait_for

from edge_engine.errors import ConfigError, PipelineError
from edge_engine.node.core import Node
from edge_engine.runtime.environment import RuntimeEnv

DEMO_VIDEO = REPO / "samples" / "demo.mp4"
DEMO_FRAMES = 120

PROBE = '''
import threading
import time

from edge_engine.api import BusinessPlugin, Key


class Probe(BusinessPlugin):
    """Records every call the engine makes; misbehaves on demand."""

    SIGNATURE = "PROBE"
    CONFIG = {
        "LABEL": "a",
        "FAIL": Key(False, type=bool, doc="raise in process()"),
        "FAIL_INIT": Key(0, type=int, doc="on_init fails this many times (-1: always)"),
        "SLEEP_S": Key(0.0, min=0, doc="work time per input (interruptible)"),
        "BLOCK": Key(False, type=bool, doc="block in process() for 30 s, ignoring the stop"),
        "EMIT_IMAGE": Key(False, type=bool, doc="emit each input's image as a witness"),
        "RETURN_EVERY": Key(0, type=int, min=0, doc="return a payload every N inputs"),
    }
    attempts = {}  # (pipeline, instance) -> monotonic times of on_init calls

    def __init__(self, config, context):
        super().__init__(config, context)
        self.seqs = []
        self.frames = []
        self.times = []
        self.nones = 0
        self.config_calls = []
        self.closed = False
        self.blocking = threading.Event()
        self.release = threading.Event()

    def on_init(self):
        attempts = self.attempts.setdefault((self.context.pipeline, self.context.instance_id), [])
        attempts.append(time.monotonic())
        limit = self.config["FAIL_INIT"]
        if limit < 0 or len(attempts) <= limit:
            raise RuntimeError(f"init failure #{len(attempts)}")

    def process(self, inp):
        self.times.append(time.monotonic())
        if inp is None:
            self.nones += 1
            return None
        self.seqs.append(inp.seq)
        self.frames.append(inp.metadata.get("frame_index"))
        if self.config["BLOCK"]:
            self.blocking.set()
            self.release.wait(30)
        if self.config["SLEEP_S"]:
            self.context.stop_event.wait(self.config["SLEEP_S"])
        if self.config["FAIL"]:
            raise ValueError(f"boom at input {inp.seq}")
        if self.config["EMIT_IMAGE"] and inp.image is not None:
            self.emit({"SEQ": inp.seq, "LABEL": self.config["LABEL"]}, image=inp.image)
        every = self.config["RETURN_EVERY"]
        if every and len(self.seqs) % every == 0:
            return {"SEEN": len(self.seqs), "LABEL": self.config["LABEL"]}
        return None

    def on_config(self, changed):
        if changed.get("LABEL") == "bad":
            raise ValueError("LABEL 'bad' is refused")
        self.config_calls.append(dict(changed))

    def on_command(self, command, **params):
        if command == "EXPLODE":
            raise RuntimeError("exploded on request")
        return {"command": command, "params": params, "label": self.config["LABEL"], "seen": len(self.seqs)}

    def on_close(self):
        self.closed = True
'''
PLUGINS = {"business/probe.py": PROBE}

# every PROBE object created in the current test, by (pipeline, instance): finished instances drop theirs
_PROBES: dict[tuple[str, str], Any] = {}


@pytest.fixture(autouse=True)
def _keep_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a reference to every PROBE object the engine creates, so closed instances can be inspected."""
    original = RuntimeEnv.create
    _PROBES.clear()

    def create(self: RuntimeEnv, record: Any, config: dict[str, Any], context: Any) -> Any:
        obj = original(self, record, config, context)
        if record.signature == "PROBE":
            _PROBES[(context.pipeline, context.instance_id)] = obj
        return obj

    monkeypatch.setattr(RuntimeEnv, "create", create)


def probe(instance_id: str = "a", **keys: Any) -> dict[str, Any]:
    return {"INSTANCE_ID": instance_id, **keys}


def pipeline(name: str, *instances: dict[str, Any], **capture: Any) -> dict[str, Any]:
    """A pipeline of PROBE instances; by default a SYNTHETIC source of messages at 200/s."""
    capture = capture or {"TYPE": "SYNTHETIC", "MODE": "messages", "CAP_RESOLUTION": 200}
    return {"NAME": name, **capture, "PLUGINS": [{"SIGNATURE": "PROBE", "INSTANCES": list(instances)}]}


def instance(node: Node, pipe: str, instance_id: str = "a") -> Any:
    runner = node.pipelines[pipe].instance("PROBE", instance_id)
    assert runner is not None, f"no instance {pipe}/{instance_id}"
    return runner


def plugin(node: Node, pipe: str, instance_id: str = "a") -> Any:
    """The running PROBE object of an instance (waits until it has started)."""
    return wait_for(lambda: instance(node, pipe, instance_id)._plugin, timeout=5)


def capture_running(node: Node, pipe: str) -> None:
    """Wait until the capture runs: only then is an instance-only change applied live (else it restarts)."""
    wait_for(lambda: node.pipelines[pipe].capture.status == "running")


def inputs_of(node: Node, pipe: str) -> int:
    return node.pipelines[pipe].capture.stats.inputs


def grows(read: Any, by: int = 5, timeout: float = 5.0) -> None:
    """Wait until the counter ``read()`` has grown by ``by``."""
    start = read()
    wait_for(lambda: read() >= start + by, timeout=timeout)


def gaps_of(times: list[float]) -> list[float]:
    """Intervals between successive times (of a list another thread may still be appending to)."""
    return [b - a for a, b in itertools.pairwise(list(times))]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- isolation and restarts -------------------------------------------------------------------------------------
def test_failing_plugin_is_isolated(node_factory: Any) -> None:
    # flapping off, backoff short: this test is about isolation (tests/test_supervision.py covers flapping)
    node = node_factory(
        plugins=PLUGINS,
        pipelines=[
            pipeline("mixed", probe("bad", FAIL=True), probe("good")),
            pipeline("other", probe("c")),
        ],
        startup={"RESTART_BACKOFF_MAX": 0.1},
        environ={"EE_FLAP_MAX_FAILURES": "0"},
    )
    bad = instance(node, "mixed", "bad")
    wait_for(lambda: bad.stats.errors >= 20)
    assert bad.stats.last_error.startswith("ValueError: boom at input ")
    assert bad.status == "running"  # it goes on with the next input
    errors, inputs = bad.stats.errors, bad.stats.inputs  # in this order: errors never run ahead of inputs
    assert inputs - 3 <= errors <= inputs
    grows(lambda: bad.stats.errors)  # still called, still failing
    grows(lambda: instance(node, "mixed", "good").stats.inputs)
    grows(lambda: instance(node, "other", "c").stats.inputs)
    good = instance(node, "mixed", "good").stats
    assert good.errors == 0 and good.last_error is None
    snap = {p["name"]: p for p in node.snapshot()["pipelines"]}
    assert snap["mixed"]["status"] == "running" and snap["other"]["status"] == "running"
    (bad_snap,) = [i for i in snap["mixed"]["instances"] if i["instance_id"] == "bad"]
    assert bad_snap["errors"] >= 20 and bad_snap["last_error"].startswith("ValueError: boom")
    assert node.status == "running"


def test_failing_on_init_is_retried_with_backoff(node_factory: Any) -> None:
    node = node_factory(
        plugins=PLUGINS,
        pipelines=[pipeline("p", probe("flaky", FAIL_INIT=3), probe("dead", FAIL_INIT=-1), probe("ok"))],
        startup={"RESTART_BACKOFF_MAX": 0.1},
        environ={"EE_FLAP_MAX_FAILURES": "0"},  # retried for ever (flapping: tests/test_supervision.py)
    )
    dead = instance(node, "p", "dead")
    wait_for(lambda: dead.stats.restarts >= 3)
    assert dead.status == "error"
    assert dead.stats.last_error.startswith("RuntimeError: init failure #")
    assert dead.stats.inputs == 0 and dead._plugin is None

    flaky = instance(node, "p", "flaky")
    wait_for(lambda: flaky.status == "running")
    assert flaky.stats.restarts == 3 and flaky.stats.errors == 3
    grows(lambda: flaky.stats.inputs)
    attempts = plugin(node, "p", "flaky").attempts[("p", "flaky")]
    assert len(attempts) == 4
    gaps = gaps_of(attempts)
    assert all(gap >= 0.075 for gap in gaps), gaps  # 0.1 s capped backoff, at most 20 % jitter
    assert all(gap < 2.0 for gap in gaps), gaps
    assert node.env.supervisor.state("p/PROBE/flaky").consecutive_failures == 0  # recovered
    assert instance(node, "p", "ok").stats.restarts == 0
    grows(lambda: instance(node, "p", "ok").stats.inputs)


# --- frames: back-pressure, drops, pacing ---------------------------------------------------------------------------
def test_file_source_back_pressure_loses_no_frame(node_factory: Any) -> None:
    video = {"TYPE": "VIDEO_FILE", "URL": str(DEMO_VIDEO)}
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("file", probe("slow", SLEEP_S=0.002), **video)])
    slow = instance(node, "file", "slow")
    wait_for(lambda: slow.status == "finished", timeout=20)
    runner = node.pipelines["file"]
    assert runner.capture.status == "finished"
    assert runner.capture.stats.inputs == DEMO_FRAMES
    assert runner.capture.stats.dropped == 0
    assert slow.stats.inputs == DEMO_FRAMES and slow.stats.dropped == 0
    assert runner.status() == "finished"
    probe_obj = _PROBES[("file", "slow")]  # closed at the end of the stream; its records remain
    assert probe_obj.seqs == list(range(1, DEMO_FRAMES + 1))
    assert probe_obj.frames == list(range(DEMO_FRAMES))
    assert probe_obj.closed


def test_live_source_drops_oldest_and_counts(node_factory: Any) -> None:
    live = {"TYPE": "SYNTHETIC", "MODE": "messages", "LIVE_FEED": True}
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("live", probe("slow", SLEEP_S=0.01), **live)])
    slow = instance(node, "live", "slow")
    wait_for(lambda: slow.stats.inputs >= 20 and slow.stats.dropped > 100)
    node.remove_pipeline("live")  # freeze the counters
    seqs = _PROBES[("live", "slow")].seqs
    assert slow.stats.inputs < slow.stats.dropped  # most frames were dropped, not queued
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # order kept, nothing twice
    assert seqs[-1] - seqs[0] > len(seqs) * 5  # large gaps: it saw the newest frames, not a backlog


def test_live_source_counters_are_consistent(node_factory: Any) -> None:
    live = {"TYPE": "SYNTHETIC", "MODE": "messages", "LIVE_FEED": True}
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("live", probe("slow", SLEEP_S=0.01), **live)])
    runner = node.pipelines["live"]
    slow = instance(node, "live", "slow")
    wait_for(lambda: slow.stats.inputs >= 10)
    node.remove_pipeline("live")
    produced = runner.capture.stats.inputs
    assert slow.stats.inputs < produced
    assert slow.stats.dropped > 0
    # every produced input was processed, dropped (by the pipeline or the instance), or still queued or in
    # flight when the pipeline stopped (at most both queues plus one input per thread)
    accounted = slow.stats.inputs + slow.stats.dropped + runner.capture.stats.dropped
    slack = runner.inbox.maxsize + slow.mailbox.maxsize + 2
    assert produced - slack <= accounted <= produced


def test_process_delay_is_respected(node_factory: Any) -> None:
    delay = 0.05
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("p", probe("paced", PROCESS_DELAY=delay), probe("free"))])
    paced = plugin(node, "p", "paced")
    wait_for(lambda: len(paced.times) >= 8)
    gaps = gaps_of(paced.times)
    assert min(gaps) >= delay * 0.98, gaps
    assert sum(gaps) / len(gaps) < delay * 1.6, gaps  # the delay, not much more
    free = plugin(node, "p", "free")
    assert len(free.times) > 2 * len(paced.times)  # the other instance is not slowed down


def test_allow_empty_inputs_on_a_void_pipeline(node_factory: Any) -> None:
    delay = 0.05
    node = node_factory(
        plugins=PLUGINS,
        pipelines=[
            pipeline(
                "timer",
                probe("tick", ALLOW_EMPTY_INPUTS=True, PROCESS_DELAY=delay),
                probe("idle"),
                TYPE="Void",
            )
        ],
    )
    tick = plugin(node, "timer", "tick")
    wait_for(lambda: tick.nones >= 8)
    assert tick.seqs == []
    gaps = gaps_of(tick.times)
    assert min(gaps) >= delay * 0.98, gaps
    assert sum(gaps) / len(gaps) < delay * 1.5, gaps  # process(None) every PROCESS_DELAY, not every 2x
    idle = plugin(node, "timer", "idle")
    assert idle.times == []  # without ALLOW_EMPTY_INPUTS nothing calls it
    assert node.pipelines["timer"].capture.stats.inputs == 0


def test_cap_resolution_paces_a_synthetic_source(node_factory: Any) -> None:
    paced = {"TYPE": "SYNTHETIC", "MODE": "messages", "CAP_RESOLUTION": 20}
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("paced", probe(), **paced)])
    obj = plugin(node, "paced")
    wait_for(lambda: len(obj.times) >= 11)
    span = obj.times[10] - obj.times[0]
    assert 0.45 <= span <= 0.8, span  # 10 intervals at 20/s = 0.5 s
    assert obj.seqs[:11] == list(range(1, 12))  # paced, not dropped


# --- live changes -----------------------------------------------------------------------------------------------
def test_instance_only_update_is_applied_live(node_factory: Any) -> None:
    raw = pipeline("p", probe("a", LABEL="x"))
    node = node_factory(plugins=PLUGINS, pipelines=[raw])
    capture_running(node, "p")
    runner = node.pipelines["p"]
    capture_thread = runner.capture.thread
    obj = plugin(node, "p")
    grows(lambda: inputs_of(node, "p"))

    changed = copy.deepcopy(raw)
    changed["PLUGINS"][0]["INSTANCES"][0]["LABEL"] = "y"
    node.add_pipeline(changed)
    wait_for(lambda: obj.config_calls == [{"LABEL": "y"}])
    assert obj.config["LABEL"] == "y"
    assert node.pipelines["p"] is runner and runner.capture.thread is capture_thread
    assert plugin(node, "p") is obj  # the same plugin object: not restarted
    grows(lambda: inputs_of(node, "p"))
    assert runner.capture.stats.restarts == 0
    assert json.loads(node.layout.stream_file("p").read_text())["PLUGINS"][0]["INSTANCES"][0]["LABEL"] == "y"

    # adding an instance starts it, the others go on
    changed["PLUGINS"][0]["INSTANCES"].append(probe("b", LABEL="new"))
    node.add_pipeline(changed)
    assert node.pipelines["p"] is runner
    new = plugin(node, "p", "b")
    wait_for(lambda: len(new.seqs) >= 5)
    assert new.config["LABEL"] == "new"
    assert plugin(node, "p") is obj and obj.config_calls == [{"LABEL": "y"}]

    # removing it stops it
    node.add_pipeline(raw)
    assert runner.instance("PROBE", "b") is None
    wait_for(lambda: new.closed)
    wait_for(lambda: obj.config_calls[-1] == {"LABEL": "x"})
    assert runner.capture.thread is capture_thread


def test_capture_change_restarts_the_pipeline(node_factory: Any) -> None:
    raw = pipeline("p", probe())
    node = node_factory(plugins=PLUGINS, pipelines=[raw])
    old = node.pipelines["p"]
    old_plugin = plugin(node, "p")
    grows(lambda: inputs_of(node, "p"))
    changed = {**raw, "CAP_RESOLUTION": 100}
    node.add_pipeline(changed)
    new = node.pipelines["p"]
    assert new is not old
    assert not old.capture.thread.is_alive()
    assert old_plugin.closed
    assert new.spec.capture_config["CAP_RESOLUTION"] == 100
    grows(lambda: inputs_of(node, "p"))
    assert plugin(node, "p") is not old_plugin


def test_bad_update_is_refused_and_changes_nothing(node_factory: Any) -> None:
    raw = pipeline("p", probe())
    node = node_factory(plugins=PLUGINS, pipelines=[raw])
    capture_running(node, "p")
    runner = node.pipelines["p"]
    obj = plugin(node, "p")
    stream_file = node.layout.stream_file("p")
    before = stream_file.read_bytes()
    bad = copy.deepcopy(raw)
    bad["CAP_RESOLUTION"] = "fast"
    bad["PLUGINS"][0]["INSTANCES"][0]["LABL"] = "y"
    with pytest.raises(ConfigError) as info:
        node.add_pipeline(bad)
    assert [i.key for i in info.value.issues] == ["CAP_RESOLUTION", "LABL"]
    assert "did you mean 'LABEL'?" in str(info.value)
    assert node.pipelines["p"] is runner and plugin(node, "p") is obj
    assert obj.config_calls == []
    assert stream_file.read_bytes() == before
    assert node.snapshot()["invalid_pipelines"] == []
    grows(lambda: inputs_of(node, "p"))


def test_update_instance_validates_and_persists(node_factory: Any) -> None:
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("p", probe())])
    capture_running(node, "p")
    obj = plugin(node, "p")
    node.update_instance("p", "probe", "a", {"LABEL": "z", "PROCESS_DELAY": 0.01})
    wait_for(lambda: obj.config["LABEL"] == "z")
    assert obj.config_calls == [{"LABEL": "z", "PROCESS_DELAY": 0.01}]
    saved = json.loads(node.layout.stream_file("p").read_text(encoding="utf-8"))
    assert saved["PLUGINS"][0]["INSTANCES"][0] == {"INSTANCE_ID": "a", "LABEL": "z", "PROCESS_DELAY": 0.01}
    assert "LAST_UPDATE_TIME" in saved

    with pytest.raises(ConfigError) as info:
        node.update_instance("p", "PROBE", "a", {"LABL": "q", "SLEEP_S": -1})
    assert [str(i) for i in info.value.issues] == [
        "api › pipeline 'p' › plugin 'PROBE' › instance 'a' › key 'LABL': unknown key; did you mean 'LABEL'?",
        "api › pipeline 'p' › plugin 'PROBE' › instance 'a' › key 'SLEEP_S': must be >= 0 (got -1)",
    ]
    with pytest.raises(PipelineError, match="no instance PROBE/zz"):
        node.update_instance("p", "PROBE", "zz", {"LABEL": "q"})
    with pytest.raises(PipelineError, match="no such pipeline"):
        node.update_instance("nope", "PROBE", "a", {"LABEL": "q"})
    assert json.loads(node.layout.stream_file("p").read_text(encoding="utf-8")) == saved


def test_instance_command_returns_the_result_through_the_future(node_factory: Any) -> None:
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("p", probe(LABEL="cmd"))])
    plugin(node, "p")
    future = node.instance_command("p", "PROBE", "a", "STATUS", verbose=True)
    result = future.result(timeout=5)
    assert result["command"] == "STATUS" and result["params"] == {"verbose": True} and result["label"] == "cmd"

    failing = node.instance_command("p", "PROBE", "a", "EXPLODE")
    assert isinstance(failing.exception(timeout=5), RuntimeError)
    assert instance(node, "p").stats.last_error == "RuntimeError: exploded on request"
    grows(lambda: instance(node, "p").stats.inputs)  # still running

    with pytest.raises(PipelineError):
        node.instance_command("p", "PROBE", "missing", "STATUS")


def test_config_refused_by_on_config_is_rolled_back(node_factory: Any) -> None:
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("p", probe(LABEL="good"))])
    capture_running(node, "p")
    obj = plugin(node, "p")
    runner = instance(node, "p")
    node.update_instance("p", "PROBE", "a", {"LABEL": "bad"})
    wait_for(lambda: runner.stats.errors == 1)
    assert runner.stats.last_error == "config update refused: ValueError: LABEL 'bad' is refused"
    assert obj.config["LABEL"] == "good"
    assert runner.config["LABEL"] == "good"
    assert plugin(node, "p") is obj
    grows(lambda: runner.stats.inputs)
    notes = read_jsonl(node.layout.output / "notifications.jsonl")
    assert any(n["message"].startswith("config update refused") and n["path"][3] == "a" for n in notes)
    # a later valid update still applies
    node.update_instance("p", "PROBE", "a", {"LABEL": "better"})
    wait_for(lambda: obj.config["LABEL"] == "better")


def test_disabled_instance_does_not_run_until_enabled(node_factory: Any) -> None:
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("p", probe("off", DISABLED=True), probe("on"))])
    capture_running(node, "p")
    off = instance(node, "p", "off")
    wait_for(lambda: off.status == "disabled")
    grows(lambda: instance(node, "p", "on").stats.inputs, by=20)
    assert off.stats.inputs == 0 and off._plugin is None
    assert ("p", "off") not in _PROBES  # never even created

    node.update_instance("p", "PROBE", "off", {"DISABLED": False})
    wait_for(lambda: off.status == "running")
    grows(lambda: off.stats.inputs)
    obj = plugin(node, "p", "off")

    node.update_instance("p", "PROBE", "off", {"DISABLED": True})
    wait_for(lambda: off.status == "disabled" and obj.closed)
    frozen = off.stats.inputs
    grows(lambda: instance(node, "p", "on").stats.inputs, by=20)
    assert off.stats.inputs == frozen


# --- outputs ------------------------------------------------------------------------------------------------------
def test_payloads_and_witness_images_are_written(node_factory: Any) -> None:
    source = {"TYPE": "SYNTHETIC", "MODE": "moving_box", "WIDTH": 64, "HEIGHT": 48, "COUNT": 6}
    node = node_factory(
        plugins=PLUGINS,
        pipelines=[pipeline("cam", probe("w", EMIT_IMAGE=True, LABEL="seen"), probe("broken", FAIL_INIT=-1), **source)],
        startup={"RESTART_BACKOFF_MAX": 0.1},
    )
    witness = instance(node, "cam", "w")
    wait_for(lambda: witness.status == "finished")
    folder = node.layout.output / "cam" / "PROBE_w"
    records = read_jsonl(folder / "payloads.jsonl")
    assert [r["data"] for r in records] == [{"SEQ": i, "LABEL": "seen"} for i in range(1, 7)]
    assert [r["seq"] for r in records] == list(range(1, 7))
    for record in records:
        assert record["path"] == [node.alias, "cam", "PROBE", "w"]
        assert record["time"].endswith("Z")
        image = cv2.imread(str(node.layout.output / record["image"]))
        assert image is not None and image.shape == (48, 64, 3)
        assert (node.layout.output / record["image"]).read_bytes()[:2] == b"\xff\xd8"  # JPEG
    # the moving box is in the witness image (a bright square on a dark background)
    first = cv2.imread(str(node.layout.output / records[0]["image"]))
    assert first.max() > 200 and first.min() < 60

    wait_for(lambda: (node.layout.output / "notifications.jsonl").exists())
    notes = read_jsonl(node.layout.output / "notifications.jsonl")
    failures = [n for n in notes if n["path"][1:] == ["cam", "PROBE", "broken"]]
    assert failures and failures[0]["level"] == "error"
    assert failures[0]["message"] == "instance start failed: RuntimeError: init failure #1"


def test_snapshot_counters_match_the_runners(node_factory: Any) -> None:
    source = {"TYPE": "SYNTHETIC", "MODE": "messages", "COUNT": 40}
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("count", probe(RETURN_EVERY=10), **source)])
    runner = node.pipelines["count"]
    wait_for(lambda: runner.status() == "finished")
    node.write_local_info()
    info = json.loads(node.layout.local_info.read_text(encoding="utf-8"))
    assert info["status"] == "running" and info["address"] == node.identity.address
    (snap,) = info["pipelines"]
    assert snap["name"] == "count" and snap["type"] == "SYNTHETIC" and snap["status"] == "finished"
    assert snap["capture"]["status"] == "finished"
    assert snap["capture"]["inputs"] == runner.capture.stats.inputs == 40
    assert snap["capture"]["dropped"] == 0 and snap["capture"]["errors"] == 0
    (inst,) = snap["instances"]
    probe_runner = instance(node, "count")
    assert inst["inputs"] == probe_runner.stats.inputs == 40
    assert inst["payloads"] == inst["outputs"] == probe_runner.stats.outputs == 4
    assert inst["errors"] == 0 and inst["status"] == "finished" and inst["queue"] == 0
    assert inst["process_ms_avg"] is not None
    lines = read_jsonl(node.layout.output / "count" / "PROBE_a" / "payloads.jsonl")
    assert [line["data"]["SEEN"] for line in lines] == [10, 20, 30, 40]
    assert [line["input_seq"] for line in lines] == [10, 20, 30, 40]
    assert "PROBE" in info["plugins"]["by_kind"]["business"]
    assert info["invalid_pipelines"] == []


# --- persistence ------------------------------------------------------------------------------------------------------
def test_pipelines_added_through_the_api_survive_a_restart(node_factory: Any) -> None:
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("seeded", probe())])
    added = pipeline("added", probe("x", LABEL="kept"))
    node.add_pipeline(added)
    saved = json.loads(node.layout.stream_file("added").read_text(encoding="utf-8"))
    assert {k: v for k, v in saved.items() if k != "LAST_UPDATE_TIME"} == added
    node.update_instance("added", "PROBE", "x", {"LABEL": "changed"})
    assert node.remove_pipeline("seeded") is True
    assert node.remove_pipeline("seeded") is False
    assert not node.layout.stream_file("seeded").exists()
    node.stop()

    again = node_factory(plugins=PLUGINS, pipelines=[pipeline("seeded", probe())])
    assert not again.settings.first_start
    assert set(again.pipelines) == {"added"}  # the removed one stays removed, the startup seed is not re-read
    obj = plugin(again, "added", "x")
    assert obj.config["LABEL"] == "changed"
    grows(lambda: instance(again, "added", "x").stats.inputs)


def test_removed_demo_stays_removed(node_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "node"
    base.mkdir()
    shutil.copytree(REPO / "pipelines", base / "pipelines")
    (base / "samples").mkdir()
    shutil.copy(DEMO_VIDEO, base / "samples" / DEMO_VIDEO.name)
    monkeypatch.chdir(base)  # the demo's URL is relative to the current folder
    node = node_factory(startup={"DEMO_PIPELINE": True})
    assert node.settings.first_start
    assert set(node.pipelines) == {"demo"}
    demo = node.pipelines["demo"]
    wait_for(lambda: demo.capture.stats.inputs >= 3)
    assert demo.capture.status == "running" and demo.capture.stats.errors == 0
    assert {i["instance_id"] for i in demo.snapshot()["instances"]} == {"DEFAULT"}
    assert node.remove_pipeline("demo")
    node.stop()

    again = node_factory(startup={"DEMO_PIPELINE": True})
    assert not again.settings.first_start
    assert again.pipelines == {}
    assert not again.layout.stream_file("demo").exists()
    assert again.snapshot()["invalid_pipelines"] == []


# --- shutdown and secrets ---------------------------------------------------------------------------------------------
def test_stop_meets_the_deadline_with_a_blocked_plugin(node_factory: Any) -> None:
    node = node_factory(
        plugins=PLUGINS,
        pipelines=[pipeline("stuck", probe("blk", BLOCK=True), probe("fine"))],
        startup={"SHUTDOWN_SECONDS": 1.0},
    )
    obj = plugin(node, "stuck", "blk")
    assert obj.blocking.wait(5)
    try:
        started = time.monotonic()
        left = node.stop("test")
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, elapsed
        assert left == ["instance:stuck/PROBE/blk"]
        assert node.status == "stopped"
        assert json.loads(node.layout.local_info.read_text(encoding="utf-8"))["status"] == "stopped"
        assert _PROBES[("stuck", "fine")].closed
    finally:
        obj.release.set()


def test_url_credentials_never_show(node_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stream = {"TYPE": "VIDEO_STREAM", "URL": "rtsp://user:secret@127.0.0.1:9/x", "OPEN_TIMEOUT_MS": 300}
    node = node_factory(
        plugins=PLUGINS, pipelines=[pipeline("cam", probe(), **stream)], startup={"RESTART_BACKOFF_MAX": 0.1}
    )
    capture = node.pipelines["cam"].capture
    wait_for(lambda: capture.stats.errors >= 2, timeout=15)
    assert capture.status in ("away", "starting")
    assert capture.stats.last_error == "ConnectionError: cannot open video stream rtsp://***@127.0.0.1:9/x"
    snapshot = json.dumps(node.snapshot())
    assert "rtsp://***@127.0.0.1:9/x" in snapshot
    assert "secret" not in snapshot and "user:" not in snapshot
    node.write_local_info()
    assert "secret" not in node.layout.local_info.read_text(encoding="utf-8")
    assert "rtsp://***@127.0.0.1:9/x" in caplog.text
    assert "secret" not in caplog.text


# --- hand-off between threads (issue 19) ---------------------------------------------------------------------------
def test_pipeline_without_models_hands_frames_straight_to_its_instances(node_factory: Any) -> None:
    video = {"TYPE": "VIDEO_FILE", "URL": str(DEMO_VIDEO)}
    node = node_factory(plugins=PLUGINS, pipelines=[pipeline("file", probe("slow", SLEEP_S=0.002), probe("fast"),
                                                             **video)])  # fmt: skip
    runner = node.pipelines["file"]
    wait_for(lambda: runner.status() == "finished", timeout=20)
    assert runner.inlet.direct and runner.dispatcher.ident is None  # no dispatcher thread: one hand-off per frame
    for name in ("slow", "fast"):
        assert instance(node, "file", name).stats.inputs == DEMO_FRAMES
        assert instance(node, "file", name).stats.dropped == 0
        assert _PROBES[("file", name)].seqs == list(range(1, DEMO_FRAMES + 1))  # every frame, in order
        assert _PROBES[("file", name)].closed
    assert runner.capture.stats.dropped == 0


def test_a_model_added_live_routes_inputs_through_the_dispatcher_in_order(node_factory: Any) -> None:
    raw = pipeline("p", probe("a"))
    node = node_factory(plugins=PLUGINS, pipelines=[raw])
    capture_running(node, "p")
    runner = node.pipelines["p"]
    obj = plugin(node, "p")
    wait_for(lambda: len(obj.seqs) >= 5)
    assert runner.inlet.direct and runner.dispatcher.ident is None
    changed = copy.deepcopy(raw)
    changed["PLUGINS"][0]["INSTANCES"].append(probe("b", AI_ENGINE="NO_SUCH_ENGINE"))  # needs the serving stage
    node.add_pipeline(changed)
    assert node.pipelines["p"] is runner
    wait_for(lambda: runner.dispatcher.is_alive())
    assert not runner.inlet.direct
    other = plugin(node, "p", "b")
    wait_for(lambda: len(other.seqs) >= 5)
    grows(lambda: len(obj.seqs))
    seqs = list(obj.seqs)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # a file-like source: no frame lost, none reordered
    assert instance(node, "p", "a").stats.dropped == 0
