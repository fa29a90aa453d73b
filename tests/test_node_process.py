"""The node as a real process: ``python device.py`` started in a temporary folder, as an operator runs it.

Each test copies nothing: it links the repository's ``extensions/``, ``plugins/``, ``pipelines/`` and
``samples/`` into a fresh working folder, points ``EE_CACHE_DIR`` into ``tmp_path`` and starts
``device.py`` in its own session, so that teardown can kill the whole process group whatever happens.
The node's stdout and stderr go to one log file per run (no pipe to fill up).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import wait_for
from node_runner import REPO, NodeRunner

STOP_BUDGET = 5.0
HEAVY_MODULES = {"cv2", "numpy", "torch"}

# A cheap pipeline (standard library only): the tutorial counter source into the tutorial hello plugin.
COUNTER = {
    "NAME": "count",
    "TYPE": "TUTORIAL_COUNTER",
    "RATE": 20,
    "PLUGINS": [{"SIGNATURE": "TUTORIAL_HELLO", "INSTANCES": [{"INSTANCE_ID": "hello", "EVERY": 5}]}],
}

pytestmark = pytest.mark.timeout(90)


def find_pipeline(info: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for pipeline in (info or {}).get("pipelines") or []:
        if pipeline.get("name") == name:
            return pipeline
    return None


def pipeline_running(name: str, min_inputs: int = 1) -> Callable[[dict[str, Any]], bool]:
    def check(info: dict[str, Any]) -> bool:
        pipeline = find_pipeline(info, name)
        return bool(pipeline and pipeline["status"] == "running" and pipeline["capture"]["inputs"] >= min_inputs)

    return check


def imported_modules(text: str) -> set[str]:
    """Module names from ``python -X importtime`` output (``import time: self | cumulative | name``)."""
    modules = set()
    for line in text.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                modules.add(name)
    return modules


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_cmd(name: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "cmds" / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., NodeRunner]]:
    """``make_node(config=None, **env)``: a working folder (with ``.config_startup.json`` if given) and cache."""
    nodes: list[NodeRunner] = []

    def make(config: dict[str, Any] | None = None, **env: str) -> NodeRunner:
        workdir = tmp_path / f"node{len(nodes) + 1}"
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")}
        base_env.pop("PYTHONPATH", None)
        # comms off: tests never touch a broker on 1883 (DECISIONS 31); these tests are about the node process
        base_env.update({"EE_CACHE_DIR": str(workdir / "cache"), "EE_SECONDS_LOCAL_INFO": "0.5", "EE_COMMS": "0"})
        base_env.update(env)
        node = NodeRunner(workdir, base_env, config)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.cleanup()


# --- (a) zero-config demo ---------------------------------------------------------------------------------
def test_zero_config_runs_the_demo(make_node: Callable[..., NodeRunner]) -> None:
    node = make_node()  # no .config_startup.json, no .config_app.json, no .env
    assert not (node.workdir / ".config_startup.json").exists()
    node.start()
    first = node.wait_running(pipeline_running("demo"))
    demo = find_pipeline(first, "demo")
    assert demo is not None and demo["type"] == "VIDEO_FILE"
    assert {i["signature"] for i in demo["instances"]} == {"MOTION_DETECTOR", "FRAME_STATS"}
    before = demo["capture"]["inputs"]
    node.wait_running(pipeline_running("demo", min_inputs=before + 1))
    assert (node.streams / "demo.json").is_file()

    payloads = node.cache / "_output" / "demo" / "MOTION_DETECTOR_DEFAULT" / "payloads.jsonl"
    wait_for(lambda: payloads.exists() and payloads.read_text(encoding="utf-8").strip(), timeout=15)
    record = json.loads(payloads.read_text(encoding="utf-8").splitlines()[0])
    assert record["path"] == [first["alias"], "demo", "MOTION_DETECTOR", "DEFAULT"]
    assert record["data"]["EVENT"] == "MOTION_START"
    wait_for(lambda: "payload demo" in node.output(), timeout=5)


# --- (b) persistence across a crash -------------------------------------------------------------------------
def test_pipelines_and_identity_survive_kill9(make_node: Callable[..., NodeRunner]) -> None:
    node = make_node({"DEMO_PIPELINE": False, "PIPELINES": [COUNTER]}, EE_ID="keeper-1")
    node.start()
    first = node.wait_running(pipeline_running("count"))
    assert first["alias"] == "keeper-1"
    assert (node.streams / "count.json").is_file()
    key = (node.cache / "_data" / "e2.pem").read_bytes()

    node.kill()
    assert node.proc is not None and node.proc.returncode == -signal.SIGKILL

    node.start(EE_ID="someone-else")  # EE_ID only seeds the alias at first start; the cached alias wins
    second = node.wait_running(pipeline_running("count"))
    assert second["pid"] != first["pid"]
    assert second["address"] == first["address"]
    assert second["alias"] == "keeper-1"
    assert (node.cache / "_data" / "e2.pem").read_bytes() == key
    assert [p["name"] for p in second["pipelines"]] == ["count"]
    assert second["invalid_pipelines"] == []
    assert "seeded pipeline" not in node.output()


# --- (c) a removed pipeline stays removed, the demo is not re-seeded ------------------------------------------------
def test_removed_pipeline_stays_removed_and_demo_is_not_reseeded(make_node: Callable[..., NodeRunner]) -> None:
    node = make_node({"PIPELINES": [COUNTER]})  # DEMO_PIPELINE defaults to true: demo + count
    node.start()
    first = node.wait_running(lambda i: pipeline_running("count")(i) and pipeline_running("demo")(i))
    assert sorted(p["name"] for p in first["pipelines"]) == ["count", "demo"]
    assert node.stop()[0] == 0
    assert (node.cache / "_data" / "cache_version").is_file()

    (node.streams / "demo.json").unlink()  # what removing the pipeline does, done while the node is stopped
    node.start()
    second = node.wait_running(pipeline_running("count"))
    assert [p["name"] for p in second["pipelines"]] == ["count"]
    assert second["invalid_pipelines"] == []
    assert not (node.streams / "demo.json").exists()
    assert "seeded pipeline" not in node.output()


# --- (d) clean stop on SIGTERM / SIGINT -------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_process_tree_cleanly(make_node: Callable[..., NodeRunner], sig: int) -> None:
    node = make_node({"PIPELINES": [COUNTER]})
    proc = node.start()
    node.wait_running(lambda i: pipeline_running("count")(i) and pipeline_running("demo")(i))
    children = psutil.Process(proc.pid).children(recursive=True)

    code, seconds = node.stop(sig)
    assert code == 0, node.output()
    assert seconds < STOP_BUDGET, f"took {seconds:.2f} s to exit"
    wait_for(lambda: not group_alive(proc.pid), timeout=max(0.1, STOP_BUDGET - seconds))
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

    info = node.info()
    assert info is not None and info["pid"] == proc.pid
    assert info["status"] == "stopped"
    assert {p["status"] for p in info["pipelines"]} == {"stopped"}
    output = node.output()
    assert f"node stopping ({signal.Signals(sig).name})" in output
    assert "node stopped" in output
    assert "Traceback" not in output


# --- (e) ops commands against the running node ---------------------------------------------------------------
def test_ops_commands_read_the_running_node(make_node: Callable[..., NodeRunner]) -> None:
    config = {"DEMO_PIPELINE": False, "PIPELINES": [COUNTER], "SECONDS_HISTORY_SAMPLE": 1, "SECONDS_HISTORY_SAVE": 1}
    node = make_node(config)
    proc = node.start()
    node.wait_running(pipeline_running("count", min_inputs=5))

    result = run_cmd("get_node_info", "--cache-dir", str(node.cache), cwd=node.workdir)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["pid"] == proc.pid and info["status"] == "running"
    count = find_pipeline(info, "count")
    assert count is not None and count["capture"]["inputs"] >= 5
    (hello,) = count["instances"]
    assert hello["signature"] == "TUTORIAL_HELLO" and hello["inputs"] >= 1
    assert {"payloads", "dropped", "errors", "rate"} <= hello.keys()

    pretty = run_cmd("get_node_info", "--pretty", cwd=node.workdir, env=node.env)  # cache from $EE_CACHE_DIR
    assert pretty.returncode == 0, pretty.stderr
    assert "PIPELINES (1)" in pretty.stdout
    assert "count" in pretty.stdout and "TUTORIAL_HELLO/hello" in pretty.stdout
    assert info["alias"] in pretty.stdout

    history_file = node.cache / "_data" / "local_history.json"

    def saved_samples() -> int:
        try:
            return len(json.loads(history_file.read_bytes()).get("timestamps") or [])
        except (FileNotFoundError, json.JSONDecodeError):
            return 0

    wait_for(lambda: saved_samples() >= 2, timeout=10)
    result = run_cmd("get_node_history", "--cache-dir", str(node.cache), cwd=node.workdir)
    assert result.returncode == 0, result.stderr
    history = json.loads(result.stdout)
    assert len(history["timestamps"]) >= 2
    assert len(history["cpu_load"]) == len(history["timestamps"])
    assert "count" in history["pipelines"]
    last = run_cmd("get_node_history", "--cache-dir", str(node.cache), "--last", "1", cwd=node.workdir)
    assert last.returncode == 0, last.stderr
    assert len(json.loads(last.stdout)["timestamps"]) == 1


# --- (f) local_info.json is never seen half-written --------------------------------------------------------------
def test_local_info_is_never_torn(make_node: Callable[..., NodeRunner]) -> None:
    node = make_node({"DEMO_PIPELINE": False, "PIPELINES": [COUNTER]}, EE_SECONDS_LOCAL_INFO="0.2")
    node.start()
    node.wait_running(pipeline_running("count"))
    path = node.local_info_path
    stats: dict[str, Any] = {"reads": 0, "errors": [], "stamps": set()}

    def reader() -> None:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                data = json.loads(path.read_bytes())
                stats["stamps"].add(data["updated_at"])
            except Exception as exc:  # any failure to read a whole, valid file counts
                stats["errors"].append(f"{type(exc).__name__}: {exc}")
            stats["reads"] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    thread.join(10)
    assert stats["errors"] == [], stats["errors"][:5]
    assert stats["reads"] > 100
    assert len(stats["stamps"]) >= 5, stats["stamps"]


# --- (g) a broken startup config stops the node with a clear message ---------------------------------------------
def test_unknown_startup_key_exits_2_with_hint(make_node: Callable[..., NodeRunner]) -> None:
    node = make_node({"SECONDS_HEARTBEATS": 10, "DEMO_PIPELINE": False, "PIPELINES": [COUNTER]})
    proc = node.start()
    assert proc.wait(15) == 2
    output = node.output()
    assert str(node.workdir / ".config_startup.json") in output
    assert "'SECONDS_HEARTBEATS'" in output
    assert "did you mean 'SECONDS_HEARTBEAT'" in output
    assert not (node.cache / "config_startup.json").exists(), "a rejected config must not seed the cache"

    # once the file is fixed, the next start is a first start: the config seeds the cache and its pipelines run
    (node.workdir / ".config_startup.json").write_text(
        json.dumps({"SECONDS_HEARTBEAT": 10, "DEMO_PIPELINE": False, "PIPELINES": [COUNTER]}), encoding="utf-8"
    )
    node.start()
    node.wait_running(pipeline_running("count"))
    cached = json.loads((node.cache / "config_startup.json").read_text(encoding="utf-8"))
    assert "SECONDS_HEARTBEATS" not in cached and cached["SECONDS_HEARTBEAT"] == 10


# --- (h) change_alias applies at the next start --------------------------------------------------------------------
def test_change_alias_then_restart(make_node: Callable[..., NodeRunner]) -> None:
    node = make_node({"DEMO_PIPELINE": False})
    node.start()
    first = node.wait_running()
    assert first["alias"] != "renamed-1"

    result = run_cmd("change_alias", "--cache-dir", str(node.cache), "renamed-1", cwd=node.workdir)
    assert result.returncode == 0, result.stderr
    assert "restart" in result.stdout
    assert node.stop()[0] == 0

    node.start()
    second = node.wait_running()
    assert second["alias"] == "renamed-1"
    assert second["address"] == first["address"]


# --- (i) an idle node imports no heavy library ---------------------------------------------------------------------
@pytest.mark.parametrize("demo", [False, True], ids=["idle", "demo-control"])
def test_idle_node_imports_no_heavy_modules(make_node: Callable[..., NodeRunner], demo: bool) -> None:
    """``python -X importtime device.py`` lists every import, lazy ones in pipeline threads included.

    The demo run is the control: it must show cv2, which proves the check would see it.
    """
    node = make_node({"DEMO_PIPELINE": demo})
    node.start("-X", "importtime")
    check = pipeline_running("demo") if demo else None
    first = node.wait_running(check)
    second = node.wait_running(lambda i: i["updated_at"] != first["updated_at"])  # a few housekeeping rounds too
    node.wait_running(lambda i: i["updated_at"] != second["updated_at"])
    assert node.stop()[0] == 0
    modules = imported_modules(node.output())
    assert "edge_engine.node.core" in modules  # the parser sees the engine's own imports
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY_MODULES)
    if demo:
        assert "cv2" in modules and "numpy" in modules
        assert "torch" not in modules
    else:
        assert heavy == [], f"an idle node imported {heavy}"
