"""Ratio1's official SDK (``ratio1`` from PyPI, pinned in requirements-sdk.txt) drives a real node, unchanged.

One Mosquitto broker on a free port and one node process (``device.py``, supervisor: ``EE_SUPERVISOR=true``) serve
the whole module. The SDK runs in its own virtual environment (:mod:`sdk_env`), as separate processes, through
``tests/sdk_scenarios/harness.py``, which times each ``Session()``. The code blocks of docs/ratio1-sdk.md are
extracted and run as they are, so the page and the test cannot drift apart. Each SDK process has its own ``HOME``,
hence its own key: the "allowed" key is written there beforehand and added with ``cmds/add_allowed``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from mqtt_broker import Mosquitto, require_binary
from node_runner import NodeRunner
from plugins_src import synthetic_pipeline
from sdk_env import sdk_python

from edge_engine.local.identity import load_or_create_identity
from edge_engine.remote.node_client import EdgeClient

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "ratio1-sdk.md"
HARNESS = REPO / "tests" / "sdk_scenarios" / "harness.py"
SCENARIOS = REPO / "tests" / "sdk_scenarios"
SDK_KEY = Path(".ratio1") / "_local_cache" / "_data" / "_pk.pem"  # where the SDK keeps its key under HOME
SDK_RUN_TIMEOUT = 90.0
SESSION_START_LIMIT = 5.0  # issue 8: a session starts at once against a supervisor (not after the SDK's 30 s wait)

# Already running when the SDK arrives (seeded at the node's first start, beside the default "demo" pipeline):
# what the attach example attaches to when PIPELINE names it.
RUNNING = synthetic_pipeline("door", "FRAME_STATS", {"INSTANCE_ID": "seen", "REPORT_EVERY": 5}, CAP_RESOLUTION=5)

pytestmark = pytest.mark.timeout(180)


def doc_blocks() -> list[str]:
    """The Python blocks of docs/ratio1-sdk.md marked as tested, in order."""
    text = DOC.read_text(encoding="utf-8")
    return re.findall(r"<!-- tested: [^>]*-->\n```python\n(.*?)```", text, flags=re.DOTALL)


@dataclass
class Rig:
    broker: Mosquitto
    node: NodeRunner
    address: str
    alias: str
    tmp: Path
    sdk: Path
    watcher: EdgeClient
    homes: int = 0

    def info(self) -> dict[str, Any]:
        info = self.node.info()
        assert info is not None
        return info

    def pipelines(self) -> list[str]:
        return sorted(p["name"] for p in self.info()["pipelines"])

    def stream_files(self) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in sorted(self.node.streams.glob("*.json"))}

    def new_home(self, allowed: bool) -> tuple[Path, str]:
        """A fresh HOME for one SDK process, with its key made beforehand; allowlisted on the node if asked."""
        self.homes += 1
        home = self.tmp / f"sdk-home{self.homes}"
        key = home / SDK_KEY
        key.parent.mkdir(parents=True)
        address = load_or_create_identity(key).address
        if not allowed:
            return home, address
        # the node sends a heartbeat at once with the new EE_WHITELIST (what the SDK calls peered)
        with self.watcher.listen(lambda r: r.channel == "heartbeats" and r.sender == self.address) as beats:
            done = subprocess.run(
                [sys.executable, str(REPO / "cmds" / "add_allowed"), "--cache-dir", str(self.node.cache), address,
                 f"sdk{self.homes}"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            wait_for(lambda: (beat := beats.get(0.2)) is not None and address in beat.data["EE_WHITELIST"], 5)
        return home, address


@dataclass
class SdkRun:
    code: int
    output: str
    harness: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    def lines(self, prefix: str) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith(prefix)]


def run_sdk(rig: Rig, script: Path, home: Path, watch: Any = None, **env: str) -> SdkRun:
    """Run ``script`` with the SDK's interpreter (through the harness); ``watch()`` is called every 50 ms meanwhile."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "EE_MQTT_HOST": rig.broker.host,
        "EE_MQTT_PORT": str(rig.broker.port),
        "EE_MQTT_USER": "my-app",  # the SDK insists on a user; Mosquitto with anonymous access takes any
        "EE_MQTT": "secret",
        "EE_MQTT_SECURED": "false",
        "NODE_ADDRESS": rig.address,
        # the SDK must not reach out (dAuth, oracles...): any HTTP(S) it tries ends at a closed local port
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        **env,
    }
    log_path = home / "sdk-output.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [str(rig.sdk), str(HARNESS), str(script)], cwd=home, env=environ, stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + SDK_RUN_TIMEOUT
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if watch is not None:
                    watch()
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    output = log_path.read_text(encoding="utf-8", errors="replace")
    run = SdkRun(proc.returncode, output)
    for line in output.splitlines():
        if line.startswith("SDK_HARNESS "):
            run.harness = json.loads(line.split(" ", 1)[1])
        elif line.startswith("RESULT "):
            run.result = json.loads(line.split(" ", 1)[1])
    assert run.code == 0 and run.harness, f"the SDK script failed ({run.code}):\n{output[-6000:]}"
    assert "Skipping dAuth process" in output and "dAuth with" not in output, "the SDK asked Ratio1's dAuth service"
    return run


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    sdk = sdk_python()  # the SDK's own venv (made by scripts/run-tests.sh; made here when missing)
    tmp = tmp_path_factory.mktemp("ratio1-sdk")
    (tmp / "broker").mkdir()
    broker = Mosquitto(require_binary(), tmp / "broker").start()
    workdir = tmp / "node"
    config = {"EE_ID": "sdk-node", "PIPELINES": [RUNNING]}  # and the demo pipeline, as every new node
    env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")}
    env.pop("PYTHONPATH", None)
    env.update({"EE_CACHE_DIR": str(workdir / "cache"), "EE_SECONDS_LOCAL_INFO": "0.5", "EE_STATUS_PORT": "0",
                "EE_SUPERVISOR": "true", **broker.env})  # fmt: skip
    # as Ratio1's images: heartbeats without pipeline configs, so the SDK learns them only by the config exchange
    env["EE_HB_CONTAINS_PIPELINES"] = "0"
    node = NodeRunner(workdir, env, config)
    node.start()
    watcher = EdgeClient(load_or_create_identity(tmp / "watcher.pem"), port=broker.port).connect()
    try:
        info = node.wait_running(lambda i: {"door", "demo"} <= {p["name"] for p in i["pipelines"]})
        yield Rig(broker, node, info["address"], info["alias"], tmp, sdk, watcher)
    finally:
        watcher.close()
        if node.proc is not None and node.proc.poll() is None:
            node.stop()
        node.cleanup()
        broker.stop()


def test_the_doc_has_the_tested_blocks() -> None:
    blocks = doc_blocks()
    assert len(blocks) == 2, "docs/ratio1-sdk.md should hold two tested Python blocks"
    assert "pipeline.deploy(wait_confirmation=True)" in blocks[0] and "attach_to_pipeline" in blocks[1]


def test_doc_example_deploys_watches_updates_and_closes(rig: Rig) -> None:
    home, address = rig.new_home(allowed=True)
    seen: list[int | None] = []  # REPORT_EVERY in the node's stream file over time (None: no file)
    last: dict[str, Any] = {}  # the stream file's last content

    def watch() -> None:
        path = rig.node.streams / "sdk-demo.json"
        try:
            data = json.loads(path.read_bytes())
            value = data["PLUGINS"][0]["INSTANCES"][0].get("REPORT_EVERY")
        except FileNotFoundError:
            value = None
        except (json.JSONDecodeError, KeyError, IndexError):
            return
        if not seen or seen[-1] != value:
            seen.append(value)
        if value is not None:
            last.update(data)

    script = home / "doc_example.py"
    script.write_text(doc_blocks()[0], encoding="utf-8")
    run = run_sdk(rig, script, home, watch)

    # the session started at once (a supervisor's NET_MON_01), with the key we allowlisted
    (session,) = run.harness["sessions"]
    assert session["address"] == address
    assert session["seconds"] < SESSION_START_LIMIT, run.output[-3000:]
    assert "Timeout waiting for NET_MON_01" not in run.output
    assert run.lines("my address:") == [f"my address: {address}"]
    assert run.lines("node online:") == ["node online: True peered: True"], run.output[-3000:]
    # deploy, update and close confirmed by the node's notifications
    assert run.lines("deployed:") == ["deployed: True"], run.output[-3000:]
    assert run.lines("updated:") == ["updated: True"], run.output[-3000:]
    assert run.lines("closed:") == ["closed: True"], run.output[-3000:]
    # the SDK's on_data got our payloads, for that instance: 5 inputs each, then 10 after the live update
    payloads = run.lines("payload from ")
    assert payloads and all(line.startswith("payload from FRAME_STATS/stats: INPUTS=") for line in payloads), payloads
    before = payloads[: payloads.index(next(p for p in payloads if p.endswith("=10")))]
    assert before and set(before) == {"payload from FRAME_STATS/stats: INPUTS=5"}, payloads
    assert payloads[-1] == "payload from FRAME_STATS/stats: INPUTS=10", payloads
    # on the node: created with REPORT_EVERY 5, changed to 10, then deleted by the close
    assert seen == [None, 5, 10, None] or seen == [5, 10, None], seen
    assert "sdk-demo" not in rig.pipelines()
    assert last["SESSION_ID"] == last["INITIATOR_ID"] == "my-app" and last["TYPE"] == "SYNTHETIC", last
    assert last["INITIATOR_ADDR"] == last["MODIFIED_BY_ADDR"] == address, last  # the SDK sends no INITIATOR_ADDR


def test_a_key_that_is_not_allowed_gets_the_refusal_and_nothing_changes(rig: Rig) -> None:
    home, address = rig.new_home(allowed=False)
    files, pipelines = rig.stream_files(), rig.pipelines()
    run = run_sdk(rig, SCENARIOS / "refused_deploy.py", home, PIPELINE="intruder", INSTANCE_CONFIG="{}")
    result = run.result
    assert result["online"] is True and result["peered"] is False, result  # the SDK reads EE_WHITELIST
    assert result["deployed"] is False, result
    assert result["reasons"] and all(f"sender {address} is not in authorized_addrs" in r for r in result["reasons"])
    assert not any("Transaction timeout" in r for r in result["reasons"]), result  # answered, not timed out
    assert rig.stream_files() == files and rig.pipelines() == pipelines


def test_a_pipeline_the_node_cannot_run_is_refused_with_the_node_reason(rig: Rig) -> None:
    home, _ = rig.new_home(allowed=True)
    files = rig.stream_files()
    run = run_sdk(rig, SCENARIOS / "refused_deploy.py", home, PIPELINE="typo", INSTANCE_CONFIG='{"REPORT_EVRY": 5}')
    result = run.result
    assert result["online"] is True and result["peered"] is True, result
    assert result["deployed"] is False, result
    assert any("key 'REPORT_EVRY': unknown key; did you mean 'REPORT_EVERY'?" in r for r in result["reasons"]), result
    assert not any("Transaction timeout" in r for r in result["reasons"]), result
    assert rig.stream_files() == files and "typo" not in rig.pipelines()


def test_doc_example_attaches_to_the_default_nodes_pipeline_as_written(rig: Rig) -> None:
    home, _ = rig.new_home(allowed=True)
    script = home / "doc_attach.py"
    script.write_text(doc_blocks()[1], encoding="utf-8")
    run = run_sdk(rig, script, home)  # no PIPELINE: the block's default must be a pipeline every new node runs
    (listing,) = run.lines("pipelines:")
    assert "'demo'" in listing, run.output[-3000:]
    commands = run.lines("command to")
    assert commands == ["command to DEFAULT confirmed: True"] * 2, run.output[-3000:]  # MOTION_DETECTOR, FRAME_STATS
    assert "demo" in rig.pipelines()


def test_doc_example_attaches_to_a_running_pipeline(rig: Rig) -> None:
    home, _ = rig.new_home(allowed=True)
    script = home / "doc_attach.py"
    script.write_text(doc_blocks()[1], encoding="utf-8")
    run = run_sdk(rig, script, home, PIPELINE="door")
    (listing,) = run.lines("pipelines:")
    assert "'door'" in listing and "'admin_pipeline'" in listing, run.output[-3000:]
    assert run.lines("command to") == ["command to seen confirmed: True"], run.output[-3000:]
    assert run.lines("payload from seen"), run.output[-3000:]
    assert "door" in rig.pipelines()  # attaching changes nothing
