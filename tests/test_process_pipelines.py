"""Pipelines in worker processes (``PROCESS: "worker"``, issue 19 item 3): real spawned processes, a real broker.

A worker pipeline's payloads come back into the node's message flow (outbox numbering, local output), a worker
killed with SIGKILL is restarted by the node's supervisor and its pipeline resumes, a node stop ends the worker
within the stop deadline (a plugin stuck in ``process()`` included), and an unknown process mode is refused
naming the key and the modes.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import comms_node, wait_for, write_plugin
from node_runner import REPO, NodeRunner, base_env
from plugins_src import message_pipeline, payload_plugin

from edge_engine.errors import ConfigError
from edge_engine.node import Node
from edge_engine.runtime.pipeline import PipelineRunner
from edge_engine.runtime.process_group import ProcessPipelineRunner

PID_PLUGIN = payload_plugin("Pid", "TEST_PID", '{"I": inp.seq, "PID": os.getpid()}', imports="import os")
STUCK_PLUGIN = payload_plugin(
    "Stuck", "TEST_STUCK", '{"I": inp.seq, "PID": os.getpid(), "S": time.sleep(3600)}', imports="import os\nimport time"
)
ASKED_PLUGIN = """from typing import Any, ClassVar
import os

from edge_engine.api import BusinessPlugin, Key


class Asked(BusinessPlugin):
    SIGNATURE = "TEST_ASKED"
    CONFIG: ClassVar[dict[str, Any]] = {"LABEL": Key("a", type=str, doc="label of the payloads")}

    def process(self, inp):
        if inp is None:
            return None
        return {"I": inp.seq, "PID": os.getpid(), "LABEL": self.config["LABEL"]}

    def on_command(self, command, **params):
        return {"PID": os.getpid(), "COMMAND": command, "PARAMS": params}
"""
CRASH_PLUGIN = payload_plugin("Crash", "TEST_CRASH", '{"X": os._exit(1)}', imports="import os")
PLUGINS = {
    "business/pid.py": PID_PLUGIN,
    "business/stuck.py": STUCK_PLUGIN,
    "business/asked.py": ASKED_PLUGIN,
    "business/crash.py": CRASH_PLUGIN,
}
STARTUP = {"RESTART_BACKOFF_MAX": 0.5, "SHUTDOWN_SECONDS": 4}


def worker_pipeline(name: str = "w", signature: str = "TEST_PID", fps: int = 40) -> dict[str, Any]:
    return {**message_pipeline(name, signature, fps), "PROCESS": "worker"}


def process_section(node: Node, name: str) -> dict[str, Any]:
    snap = node.pipelines[name].snapshot()
    return snap["process"]


def output_lines(cache: Path, pipeline: str) -> list[dict[str, Any]]:
    lines = []
    for path in (cache / "_output" / pipeline).rglob("payloads*.jsonl"):
        lines.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return lines


class Payloads:
    """Every payload message the broker carries, decoded."""

    def __init__(self, port: int):
        self.received: list[dict[str, Any]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="process-test")
        self.client.on_connect = lambda c, *_: c.subscribe("naeural/payloads", 1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.received.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_an_unknown_process_mode_is_refused_naming_the_key_and_the_modes(node_factory: Callable[..., Node]) -> None:
    node = node_factory(plugins=PLUGINS)
    raw = {**worker_pipeline(), "PROCESS": "threads"}
    with pytest.raises(ConfigError) as caught:
        node.add_pipeline(raw)
    text = str(caught.value)
    assert "PROCESS" in text and "'node'" in text and "'worker'" in text and "threads" in text, text
    assert "w" not in node.pipelines


def test_the_default_stays_in_the_node_process(node_factory: Callable[..., Node]) -> None:
    node = node_factory(plugins=PLUGINS, pipelines=[message_pipeline("here", "TEST_PID", 20)])
    assert type(node.pipelines["here"]) is PipelineRunner
    assert "process" not in node.pipelines["here"].snapshot()


def test_worker_payloads_reach_the_outbox_in_order_and_local_output(
    node_factory: Callable[..., Node], mosquitto_factory: Any
) -> None:
    broker = mosquitto_factory()
    listener = Payloads(broker.port)
    try:
        node = comms_node(node_factory, broker, plugins=PLUGINS, startup=STARTUP, pipelines=[worker_pipeline()])
        runner = node.pipelines["w"]
        assert isinstance(runner, ProcessPipelineRunner)
        wait_for(lambda: len([m for m in listener.received if m.get("I") is not None]) >= 20, timeout=30)
        mine = [m for m in listener.received if m["EE_PAYLOAD_PATH"][1] == "w"]
        pids = {m["PID"] for m in mine}
        assert pids == {runner.pid} and runner.pid != os.getpid(), pids
        seqs = [m["EE_MESSAGE_SEQ"] for m in mine]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # numbered by the node's outbox, no gap
        inputs = [m["I"] for m in mine]
        assert all(b > a for a, b in itertools.pairwise(inputs)), inputs
        written = {line["data"]["I"] for line in output_lines(node.layout.root, "w")}
        assert set(inputs) <= written | {inputs[-1]}  # local output writes right after the outbox
        snap = node.snapshot()
        (pipe,) = [p for p in snap["pipelines"] if p["name"] == "w"]
        assert pipe["process"]["pid"] == runner.pid and pipe["process"]["alive"]
        assert pipe["instances"] and pipe["instances"][0]["payloads"] > 0, pipe  # the worker's own counters
    finally:
        listener.close()


def test_a_worker_killed_with_sigkill_is_restarted_and_its_pipeline_resumes(node_factory: Callable[..., Node]) -> None:
    node = node_factory(plugins=PLUGINS, startup=STARTUP, pipelines=[worker_pipeline()])
    runner = node.pipelines["w"]
    assert isinstance(runner, ProcessPipelineRunner)
    wait_for(lambda: runner.payloads >= 5, timeout=30)
    wait_for(lambda: runner.capture.stats.inputs >= 5 and runner.capture.status == "running", timeout=10)
    assert runner.capture.stats.rate >= 0  # what the node's history samples
    first = runner.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: runner.pid != first and process_section(node, "w")["alive"], timeout=30)
    before = runner.payloads
    wait_for(lambda: runner.payloads >= before + 5, timeout=30)
    section = process_section(node, "w")
    assert section["restarts"] == 1 and section["starts"] == 2, section
    assert "-9" in (section["last_error"] or ""), section
    lines = output_lines(node.layout.root, "w")
    assert {line["data"]["PID"] for line in lines} >= {first, runner.pid}


def test_node_stop_ends_stuck_workers_within_the_stop_deadline(node_factory: Callable[..., Node]) -> None:
    pipelines = [worker_pipeline(name, "TEST_STUCK", 5) for name in ("s1", "s2")]
    node = node_factory(plugins=PLUGINS, startup=STARTUP, pipelines=pipelines)
    runners = [node.pipelines["s1"], node.pipelines["s2"]]
    assert all(isinstance(r, ProcessPipelineRunner) for r in runners)

    def stuck(runner: Any) -> bool:  # its plugin sleeps in process() for an hour
        return bool((runner._snapshot or {}).get("instances", [{}])[0].get("inputs", 0) >= 1)

    wait_for(lambda: all(stuck(r) for r in runners), timeout=30)
    pids = [r.pid for r in runners]
    started = time.monotonic()
    node.stop("test")
    took = time.monotonic() - started
    assert took <= STARTUP["SHUTDOWN_SECONDS"], took
    for runner, pid in zip(runners, pids, strict=True):
        assert runner._process is not None and not runner._process.is_alive()
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_commands_and_config_updates_reach_a_worker_pipeline(node_factory: Callable[..., Node]) -> None:
    node = node_factory(plugins=PLUGINS, startup=STARTUP, pipelines=[worker_pipeline("a", "TEST_ASKED", 20)])
    runner = node.pipelines["a"]
    assert isinstance(runner, ProcessPipelineRunner)
    wait_for(lambda: runner.payloads >= 2, timeout=30)
    answer = node.instance_command("a", "TEST_ASKED", "t", "HELLO", X=1).result(20)
    assert answer == {"PID": runner.pid, "COMMAND": "HELLO", "PARAMS": {"X": 1}}
    with pytest.raises(ConfigError):
        node.update_instance("a", "TEST_ASKED", "t", {"LABEL": 5})  # validated in the node, as for any pipeline
    node.update_instance("a", "TEST_ASKED", "t", {"LABEL": "b"})  # a new worker with the new config
    updated = node.pipelines["a"]
    assert isinstance(updated, ProcessPipelineRunner) and updated is not runner
    assert not runner.thread.is_alive() and runner._process is not None and not runner._process.is_alive()
    wait_for(lambda: any(line["data"]["LABEL"] == "b" for line in output_lines(node.layout.root, "a")), timeout=30)


def test_a_finite_source_finishes_in_its_worker(node_factory: Callable[..., Node]) -> None:
    raw = {**worker_pipeline("f"), "COUNT": 7}
    node = node_factory(plugins=PLUGINS, startup=STARTUP, pipelines=[raw])
    runner = node.pipelines["f"]
    wait_for(lambda: runner.snapshot()["status"] == "finished", timeout=30)
    wait_for(lambda: process_section(node, "f")["last_exit_code"] == 0, timeout=10)  # the worker ends once finished
    assert sorted(line["data"]["I"] for line in output_lines(node.layout.root, "f")) == list(range(1, 8))
    section = process_section(node, "f")
    assert section["restarts"] == 0 and section["last_exit_code"] == 0 and not section["alive"], section


def test_a_worker_that_keeps_dying_is_stopped_as_flapping_with_a_notification(
    node_factory: Callable[..., Node],
) -> None:
    startup = {**STARTUP, "FLAP_MAX_FAILURES": 3, "FLAP_WINDOW_SECONDS": 120, "RESTART_BACKOFF_MAX": 0.2}
    node = node_factory(plugins=PLUGINS, startup=startup, pipelines=[worker_pipeline("c", "TEST_CRASH", 20)])
    runner = node.pipelines["c"]
    wait_for(lambda: runner.snapshot()["status"] == "flapping", timeout=60)
    section = process_section(node, "c")
    assert section["starts"] == 3 and section["flapping"]["failures"] == 3, section
    assert "code 1" in section["flapping"]["reason"], section
    assert not runner.thread.is_alive()
    lines = (node.layout.output / "notifications.jsonl").read_text(encoding="utf-8").splitlines()
    notes = [json.loads(line) for line in lines if line.strip()]
    flapping = [n for n in notes if "flapping" in n["message"] and n["path"][1] == "c"]
    assert len(flapping) == 1 and "worker process" in flapping[0]["message"], flapping


def test_a_real_node_process_runs_a_worker_pipeline_and_sigterm_ends_both(tmp_path: Path) -> None:
    """``python device.py``: the worker is spawned from the real entry point (spawn imports the main module
    again) and ends with the node on SIGTERM, within the stop deadline; no orphan is left."""
    plugins = tmp_path / "user_plugins"
    write_plugin(plugins, "business/pid.py", PID_PLUGIN)
    config = {
        "PLUGIN_FOLDERS": [str(REPO / "extensions"), str(plugins)],
        "DEMO_PIPELINE": False,
        "SECONDS_LOCAL_INFO": 0.5,
        "SHUTDOWN_SECONDS": STARTUP["SHUTDOWN_SECONDS"],
        "PIPELINES": [worker_pipeline()],
    }
    cache = tmp_path / "work" / "cache"
    node = NodeRunner(tmp_path / "work", base_env(cache), config)
    try:
        node.start()

        def worker_pid(info: dict[str, Any]) -> int | None:
            return next((p["process"]["pid"] for p in info.get("pipelines", []) if "process" in p), None)

        info = node.wait_running(lambda i: worker_pid(i) is not None, timeout=60)
        pid = worker_pid(info)
        assert pid is not None and node.proc is not None and pid != node.proc.pid
        wait_for(lambda: any(line["data"]["PID"] == pid for line in output_lines(cache, "w")), timeout=30)
        code, took = node.stop()
        assert code == 0 and took <= STARTUP["SHUTDOWN_SECONDS"] + 1, (code, took, node.output()[-3000:])
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        node.cleanup()


def test_the_runner_answers_what_the_node_asks_of_a_runner(node_factory: Callable[..., Node]) -> None:
    """The node keeps worker runners in its map of :class:`PipelineRunner` (a cast): every name the node, the
    reloader and the watchdog use on a runner exists on the worker's runner."""
    node = node_factory(plugins=PLUGINS, startup=STARTUP, pipelines=[worker_pipeline()])
    runner = node.pipelines["w"]
    used = (
        "capture",
        "instance",
        "join",
        "name",
        "restart_instances",
        "snapshot",
        "spec",
        "start",
        "stop",
        "watch",
        "can_update_live",
        "update_live",
        "stopping",
        "keep_alive",
        "status",
    )
    assert [name for name in used if not hasattr(runner, name)] == []


def test_reloaded_plugin_files_reach_a_worker_when_its_instances_restart(node_factory: Callable[..., Node]) -> None:
    node = node_factory(plugins=PLUGINS, startup=STARTUP, pipelines=[worker_pipeline()])
    runner = node.pipelines["w"]
    assert isinstance(runner, ProcessPipelineRunner)
    wait_for(lambda: runner.payloads >= 2, timeout=30)
    first = runner.pid
    new_source = payload_plugin("Pid", "TEST_PID", '{"I": inp.seq, "PID": os.getpid(), "V": 2}', imports="import os")
    write_plugin(node.settings.base_dir / "plugins", "business/pid.py", new_source)
    assert runner.restart_instances(runner.spec, {"TEST_PID"}) == ["TEST_PID/t"]
    wait_for(lambda: any(line["data"].get("V") == 2 for line in output_lines(node.layout.root, "w")), timeout=30)
    assert runner.pid != first
    assert process_section(node, "w")["restarts"] == 0  # asked for, not a failure


def test_keep_alive_deadlines_are_watched_in_the_worker_and_keep_alives_reach_it(
    node_factory: Callable[..., Node],
) -> None:
    raw = {**worker_pipeline("k"), "KEEP_ALIVE_SECONDS": 1.0}
    node = node_factory(plugins=PLUGINS, startup=STARTUP, pipelines=[raw])

    def notes() -> list[dict[str, Any]]:
        path = node.layout.output / "notifications.jsonl"
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        return [n for n in (json.loads(line) for line in text.splitlines() if line.strip()) if n["path"][1] == "k"]

    wait_for(lambda: any(n.get("SAFE_MODE") is True for n in notes()), timeout=30)
    wait_for(lambda: node.pipelines["k"].snapshot().get("keep_alive", {}).get("safe_mode") is True, timeout=10)
    node.keep_alive("k")
    wait_for(lambda: any(n.get("SAFE_MODE") is False for n in notes()), timeout=10)


def test_a_workers_log_records_reach_the_nodes_loggers(
    node_factory: Callable[..., Node], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):  # the worker's level is the node's at its start
        node = node_factory(plugins=PLUGINS, startup=STARTUP, pipelines=[worker_pipeline("l")])
        runner = node.pipelines["l"]
        assert isinstance(runner, ProcessPipelineRunner)
        wait_for(lambda: runner.payloads >= 2, timeout=30)
        pid = runner.pid
        node.remove_pipeline("l")
    from_worker = [(r.name, r.getMessage()) for r in caplog.records if r.process == pid]
    assert any(name.endswith("process_worker") and "stopped in" in text for name, text in from_worker), from_worker
