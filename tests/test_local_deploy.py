"""``edge-node deploy`` / ``delete`` (``cmds/deploy``, ``cmds/delete``): pipelines changed without MQTT.

Against a real node process (``tests/node_runner.py``): a pipeline deployed, replaced and deleted through the
running node; a file with a typo refused before anything is sent; a request the node itself refuses; the same
commands on a stopped node write the cache, and the next start runs what they wrote; a pipeline added to the
startup config's PIPELINES after the first start is named in a warning at the next start. Without a node: a crashed
node's stale ``local_info.json``, and the watcher's answers to malformed, expired and failing requests.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from node_runner import REPO, NodeRunner, base_env

from edge_engine.errors import ConfigError, ConfigIssue
from edge_engine.local.cache import CacheLayout, atomic_write_json, read_json
from edge_engine.node import local_deploy as L

pytestmark = pytest.mark.timeout(120)

COUNTER = {
    "NAME": "count",
    "TYPE": "TUTORIAL_COUNTER",
    "RATE": 20,
    "PLUGINS": [{"SIGNATURE": "TUTORIAL_HELLO", "INSTANCES": [{"INSTANCE_ID": "hello", "EVERY": 5}]}],
}


def counter(name: str, rate: int = 20, **instance: Any) -> dict[str, Any]:
    pipeline = json.loads(json.dumps(COUNTER))
    pipeline["NAME"] = name
    pipeline["RATE"] = rate
    pipeline["PLUGINS"][0]["INSTANCES"][0].update(instance)
    return pipeline


def run_cmd(name: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "cmds" / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def running(info: dict[str, Any], name: str) -> dict[str, Any] | None:
    for pipeline in info.get("pipelines") or []:
        if pipeline.get("name") == name and pipeline.get("status") == "running":
            return pipeline
    return None


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeRunner]:
    env = base_env(tmp_path / "cache", EE_SECONDS_LOCAL_INFO="0.5")
    runner = NodeRunner(tmp_path / "work", env, {"DEMO_PIPELINE": False, "PIPELINES": [COUNTER]})
    yield runner
    runner.cleanup()


def write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_deploy_replace_delete_through_a_running_node_then_on_the_stopped_cache(node: NodeRunner) -> None:
    node.start()
    node.wait_running(lambda info: running(info, "count") is not None)
    work, env = node.workdir, node.env
    requests = node.cache / "_data" / L.REQUESTS_DIR
    assert stat.S_IMODE(requests.stat().st_mode) == 0o700  # owner only

    # a new pipeline: validated, then applied by the running node
    done = run_cmd("deploy", str(write(work / "extra.json", counter("extra"))), cwd=work, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "applied: pipeline 'extra' added on the running node" in done.stdout
    node.wait_running(lambda info: running(info, "extra") is not None)
    assert read_json(node.streams / "extra.json")["RATE"] == 20

    # replaced with a new rate
    done = run_cmd("deploy", str(write(work / "extra.json", counter("extra", rate=7))), cwd=work, env=env)
    assert done.returncode == 0 and "'extra' replaced" in done.stdout, done.stdout + done.stderr
    assert read_json(node.streams / "extra.json")["RATE"] == 7

    # a typo: refused by the shared validation before anything reaches the node
    typo = counter("typo")
    typo["PLUGINS"][0]["INSTANCES"][0]["EVRY"] = 5
    done = run_cmd("deploy", str(write(work / "typo.json", typo)), cwd=work, env=env)
    assert done.returncode == 1
    assert "did you mean 'EVERY'" in done.stdout and "nothing sent, nothing changed" in done.stdout
    assert not (node.streams / "typo.json").exists()

    # refused by the node itself: the admin pipeline is the startup config's
    admin = counter("admin_pipeline")
    done = run_cmd("deploy", str(write(work / "admin.json", admin)), cwd=work, env=env)
    assert done.returncode == 1 and "refused" in done.stdout and "admin pipeline" in done.stdout, done.stdout

    # deleted, then a second delete finds nothing
    done = run_cmd("delete", "extra", cwd=work, env=env)
    assert done.returncode == 0 and "deleted from the running node" in done.stdout, done.stdout + done.stderr
    node.wait_running(lambda info: running(info, "extra") is None)
    assert not (node.streams / "extra.json").exists()
    done = run_cmd("delete", "extra", cwd=work, env=env)
    assert done.returncode == 1 and "not_found" in done.stdout
    assert [p.name for p in requests.iterdir()] == []  # every request taken, every result read and removed

    # stopped: the commands write the cache; a pipeline added to PIPELINES after the first start is warned about
    assert node.stop()[0] == 0
    done = run_cmd("deploy", str(write(work / "later.json", counter("later"))), cwd=work, env=env)
    assert done.returncode == 0 and "written to the cache" in done.stdout, done.stdout + done.stderr
    done = run_cmd("delete", "count", cwd=work, env=env)
    assert done.returncode == 0 and "deleted from the cache" in done.stdout, done.stdout + done.stderr
    write(work / "late.json", counter("late"))
    write(work / ".config_startup.json", {"DEMO_PIPELINE": False, "PIPELINES": [COUNTER, "late.json"]})
    node.start()
    info = node.wait_running(lambda info: running(info, "later") is not None)
    assert running(info, "count") is None
    log = node.output()
    assert "lists pipeline 'late' (late.json) but this node's cache does not have it" in log
    assert "edge-node deploy late.json" in log
    assert "lists pipeline 'count'" in log  # deleted on purpose: still named, with how to silence it


def make_cache(root: Path, status: str, age_seconds: float) -> CacheLayout:
    layout = CacheLayout(root)
    layout.ensure()
    updated = datetime.now(timezone.utc) - timedelta(seconds=age_seconds)
    atomic_write_json(layout.local_info, {"status": status, "updated_at": updated.isoformat(), "refresh_seconds": 5.0})
    return layout


def test_a_crashed_node_stale_info_means_the_cache_is_written(tmp_path: Path) -> None:
    layout = make_cache(tmp_path / "cache", "running", age_seconds=60)
    L.requests_dir(layout).mkdir(mode=0o700)  # left by the crashed node: the request is tried, then withdrawn
    env = base_env(layout.root)
    started = time.monotonic()
    done = run_cmd("deploy", str(write(tmp_path / "p.json", counter("p"))), cwd=REPO, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"says running but is \d+ s old: the node is not running: pipeline 'p' written to the cache",
                     done.stdout), done.stdout  # fmt: skip
    assert time.monotonic() - started < 30
    assert read_json(layout.stream_file("p"))["NAME"] == "p"
    assert "LAST_UPDATE_TIME" in read_json(layout.stream_file("p"))
    assert list(L.requests_dir(layout).iterdir()) == []  # withdrawn, not left for the next start


def test_no_cache_is_a_clear_error(tmp_path: Path) -> None:
    env = base_env(tmp_path / "nothing-here")
    done = run_cmd("deploy", str(write(tmp_path / "p.json", counter("p"))), cwd=REPO, env=env)
    assert done.returncode == 1 and "no local cache at" in done.stdout and "Traceback" not in done.stderr
    done = run_cmd("delete", "../etc", cwd=REPO, env=env)
    assert done.returncode == 1 and "not a pipeline NAME" in done.stdout


class FakeNode:
    """The engine API the watcher calls, recording what it was asked."""

    def __init__(self, layout: CacheLayout):
        self.layout = layout
        self.added: list[dict[str, Any]] = []

    def pipeline_names(self) -> list[str]:
        return [p["NAME"] for p in self.added]

    def add_pipeline(self, raw: dict[str, Any], source: str = "api") -> Any:
        if raw.get("NAME") == "bad":
            raise ConfigError([ConfigIssue("unknown capture TYPE", file=source, key="TYPE")])
        if raw.get("NAME") == "boom":
            raise RuntimeError("capture failed to start")
        self.added.append(raw)
        return type("Spec", (), {"name": raw["NAME"]})()

    def remove_pipeline(self, name: str) -> bool:
        return False


def test_the_watcher_answers_every_request_and_never_raises(tmp_path: Path) -> None:
    layout = make_cache(tmp_path / "cache", "running", 0)
    fake = FakeNode(layout)
    watcher = L.LocalRequestWatcher(fake)
    assert watcher.prepare()
    folder = L.requests_dir(layout)
    cases = {
        "1": L.new_request("deploy", pipeline={"NAME": "ok"}, source="deploy ok.json"),
        "2": L.new_request("deploy", pipeline={"NAME": "bad"}, source="deploy bad.json"),
        "3": L.new_request("deploy", pipeline={"NAME": "boom"}),
        "4": {**L.new_request("delete", name="x"), "created_at": time.time() - L.REQUEST_MAX_AGE - 1},
        "5": L.new_request("format", name="x"),
        "6": L.new_request("delete", name="gone"),
    }
    for request_id, request in cases.items():
        atomic_write_json(folder / f"{request_id}{L.REQUEST_SUFFIX}", request)
    (folder / f"7{L.REQUEST_SUFFIX}").write_text("{not json", encoding="utf-8")
    assert watcher.process_pending() == 7
    results = {p.name.split(".")[0]: read_json(p) for p in folder.glob(f"*{L.RESULT_SUFFIX}")}
    assert results["1"]["status"] == "applied" and fake.pipeline_names() == ["ok"]
    assert results["2"]["status"] == "refused" and "deploy bad.json › key 'TYPE'" in results["2"]["reasons"][0]
    assert results["3"]["reasons"] == ["RuntimeError: capture failed to start"]
    assert "expired" in results["4"]["reasons"][0]
    assert "unknown action 'format'" in results["5"]["reasons"][0]
    assert results["6"]["status"] == "not_found"
    assert "not valid JSON" in results["7"]["reasons"][0]
    assert not list(folder.glob(f"*{L.REQUEST_SUFFIX}"))
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir())


def test_wait_result_withdraws_a_request_nobody_took(tmp_path: Path) -> None:
    layout = make_cache(tmp_path / "cache", "running", 0)
    L.requests_dir(layout).mkdir(mode=0o700)
    request_id = L.send_request(layout, L.new_request("delete", name="x"))
    assert stat.S_IMODE((L.requests_dir(layout) / f"{request_id}{L.REQUEST_SUFFIX}").stat().st_mode) == 0o600
    assert L.wait_result(layout, request_id, timeout=0.1) == {"status": "not_taken"}
    assert list(L.requests_dir(layout).iterdir()) == []


def test_node_state_reads_local_info(tmp_path: Path) -> None:
    assert L.node_state(CacheLayout(tmp_path)).status == "absent"
    assert L.node_state(make_cache(tmp_path / "a", "running", 1)).running
    assert L.node_state(make_cache(tmp_path / "b", "starting", 1)).running
    assert L.node_state(make_cache(tmp_path / "c", "running", 16)).status == "stale"
    assert not L.node_state(make_cache(tmp_path / "d", "stopped", 1)).running


def test_unseeded_pipeline_warnings(tmp_path: Path) -> None:
    layout = make_cache(tmp_path / "cache", "stopped", 0)
    atomic_write_json(layout.stream_file("kept"), counter("kept"))
    atomic_write_json(layout.stream_file("file-name"), counter("inner-name"))
    write(tmp_path / "new.json", [counter("new1"), counter("new2")])
    config = {"PIPELINES": [counter("kept"), counter("inner-name"), "new.json", counter("inline"), "missing.json"]}
    write(tmp_path / ".config_startup.json", config)
    messages = L.unseeded_pipeline_warnings(tmp_path, layout, {})
    assert len(messages) == 3, messages
    assert "'new1' (new.json)" in messages[0] and "`edge-node deploy new.json`" in messages[0]
    assert "'new2' (new.json)" in messages[1]
    assert "'inline' (.config_startup.json › PIPELINES[3])" in messages[2] and "edge-node deploy FILE" in messages[2]
    inline = {"EE_CONFIG": json.dumps({"PIPELINES": [counter("from-env")]})}
    assert "'from-env' (EE_CONFIG › PIPELINES[0])" in L.unseeded_pipeline_warnings(tmp_path, layout, inline)[0]
