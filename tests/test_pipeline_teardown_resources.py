"""Deploying and deleting pipelines leaves nothing behind: open files, threads and memory return to baseline.

Each cycle deploys a pipeline with a new name (a synthetic source and a business instance that writes a payload,
so ``_output/<pipeline>/<SIGNATURE>_<INSTANCE>/payloads.jsonl`` is opened), waits for its first payload on disk,
and deletes it. ``EE_TEST_TEARDOWN_CYCLES`` sets the number of cycles (200 by default).

The same with ``python device.py`` driven over a real broker by signed commands (the way an owner does it) runs
``EE_TEST_TEARDOWN_PROCESS_CYCLES`` cycles (20 in CI; 200 take about 45 s on two shared cores)::

    EE_TEST_TEARDOWN_PROCESS_CYCLES=200 .venv/bin/python -m pytest tests/test_pipeline_teardown_resources.py -q -s
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from node_runner import NodeRunner, base_env, rss_bytes
from plugins_src import synthetic_pipeline

from edge_engine.node.core import Node

CYCLES = int(os.environ.get("EE_TEST_TEARDOWN_CYCLES", "200"))
PROCESS_CYCLES = int(os.environ.get("EE_TEST_TEARDOWN_PROCESS_CYCLES", "20"))
WARMUP_CYCLES = 20  # first imports, allocator arenas, logging handlers: settled before the baseline
RSS_MARGIN_MB = 12.0  # allocator noise on 2 shared cores; one leaked pipeline costs far more per cycle x 200

EMITTER = """
from edge_engine.api import BusinessPlugin


class EmitEach(BusinessPlugin):
    SIGNATURE = "EMIT_EACH"

    def process(self, inp):
        return {"INDEX": inp.data["index"]} if inp is not None and inp.data else None
"""


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def pipeline(name: str) -> dict[str, Any]:
    return synthetic_pipeline(name, "EMIT_EACH", {"INSTANCE_ID": "main"}, COUNT=3)


def deploy_and_delete(node: Node, name: str) -> None:
    node.add_pipeline(pipeline(name))
    written = node.layout.output / name / "EMIT_EACH_main" / "payloads.jsonl"
    wait_for(lambda: written.exists() and written.stat().st_size > 0, timeout=20)
    assert node.remove_pipeline(name)


def resources() -> tuple[int, int, float]:
    return open_descriptors(), threading.active_count(), rss_mb()


def settled(baseline: tuple[int, int, float]) -> bool:
    fds, threads, _ = resources()
    return fds <= baseline[0] and threads <= baseline[1]


def test_deleted_pipelines_release_files_threads_and_memory(node_factory: Any, capsys: Any) -> None:
    node = node_factory(plugins={"business/emit_each.py": EMITTER})
    for index in range(WARMUP_CYCLES):
        deploy_and_delete(node, f"warmup_{index}")
    wait_for(lambda: not node.pipelines)
    baseline = resources()
    loggers = len(logging.Logger.manager.loggerDict)
    for index in range(CYCLES):
        deploy_and_delete(node, f"generated_{index}")
    try:  # the last pipelines' threads end within the join deadline
        wait_for(lambda: settled(baseline), timeout=10)
    except AssertionError:
        pass  # the figures below say what is left
    after = resources()
    with capsys.disabled():
        print(f"\n{CYCLES} deploy+delete cycles: descriptors {baseline[0]} -> {after[0]}, threads {baseline[1]} -> "
              f"{after[1]}, RSS {baseline[2]:.1f} -> {after[2]:.1f} MB")  # fmt: skip
    assert after[0] <= baseline[0], f"open descriptors grew: {baseline[0]} -> {after[0]}"
    assert after[1] <= baseline[1], f"threads grew: {baseline[1]} -> {after[1]}"
    assert after[2] - baseline[2] < RSS_MARGIN_MB, f"RSS grew by {after[2] - baseline[2]:.1f} MB"
    assert not [target for target in open_files() if target.endswith("payloads.jsonl")]
    assert len(logging.Logger.manager.loggerDict) <= loggers, "each pipeline's plugin loggers stayed registered"


def open_files() -> list[str]:
    """What this process's descriptors point at (a descriptor closed meanwhile is skipped)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return targets


def test_open_payload_files_are_bounded(tmp_path: Any) -> None:
    """Instances removed by live updates (their pipeline keeps running) cannot pile up open files either."""
    from edge_engine.messages import Payload
    from edge_engine.node.local_output import MAX_OPEN_FILES, LocalOutput

    output = LocalOutput(tmp_path / "_output", log_payloads=False)
    before = open_descriptors()
    for index in range(MAX_OPEN_FILES + 50):
        output.write_payload(Payload(path=["node", "p", "SIG", f"i{index}"], data={"N": index}, seq=1, created=0.0))
    assert len(list((tmp_path / "_output" / "p").iterdir())) == MAX_OPEN_FILES + 50
    assert open_descriptors() - before <= MAX_OPEN_FILES
    output.close()
    assert open_descriptors() <= before


def process_resources(pid: int) -> tuple[int, int, float]:
    """Open descriptors, threads and RSS (MB) of the node process."""
    threads = len(os.listdir(f"/proc/{pid}/task"))
    return len(os.listdir(f"/proc/{pid}/fd")), threads, rss_bytes(pid) / 1e6


@pytest.mark.timeout(1800)
def test_a_node_process_returns_to_baseline(tmp_path: Path, mosquitto: Any, clients: Any, capsys: Any) -> None:
    from edge_engine.cli.ops import main_add_allowed
    from edge_engine.remote.node_client import load_client_identity

    folder = tmp_path / "more_plugins"
    folder.joinpath("business").mkdir(parents=True)
    folder.joinpath("business", "emit_each.py").write_text(EMITTER, encoding="utf-8")
    config = {"PLUGIN_FOLDERS": ["extensions", "plugins", str(folder)], "DEMO_PIPELINE": False,
              "SECONDS_LOCAL_INFO": 1}  # fmt: skip
    runner = NodeRunner(tmp_path / "work", base_env(tmp_path / "cache", **mosquitto.env), config)
    me = load_client_identity(tmp_path / "client" / "client.pem")
    try:
        proc = runner.start()
        info = runner.wait_running(timeout=30)
        assert main_add_allowed(["--cache-dir", str(runner.cache), me.address, "me"]) == 0
        client = clients(me, mosquitto.port)
        client.wait_node(info["address"])

        def cycle(name: str) -> None:
            assert client.deploy(info["address"], pipeline(name), timeout=30).ok
            written = runner.cache / "_output" / name / "EMIT_EACH_main" / "payloads.jsonl"
            wait_for(lambda: written.exists() and written.stat().st_size > 0, timeout=30)
            assert client.delete(info["address"], name, timeout=30).ok

        for index in range(WARMUP_CYCLES // 2):
            cycle(f"warmup_{index}")
        baseline = process_resources(proc.pid)
        for index in range(PROCESS_CYCLES):
            cycle(f"generated_{index}")
        try:
            wait_for(lambda: process_resources(proc.pid)[:2] <= baseline[:2], timeout=10)
        except AssertionError:
            pass  # the figures below say what is left
        after = process_resources(proc.pid)
        with capsys.disabled():
            print(f"\nnode process, {PROCESS_CYCLES} deploy+delete cycles over MQTT: descriptors {baseline[0]} -> "
                  f"{after[0]}, threads {baseline[1]} -> {after[1]}, "
                  f"RSS {baseline[2]:.1f} -> {after[2]:.1f} MB")  # fmt: skip
        assert after[0] <= baseline[0] and after[1] <= baseline[1], (baseline, after)
        assert after[2] - baseline[2] < RSS_MARGIN_MB, (baseline, after)
    finally:
        runner.cleanup()
