"""``kill -9`` at random moments, then a restart: the same identity, allowlist, alias and pipelines, no torn file.

A real node process (``device.py``) with comms on a real Mosquitto (free port) is killed with SIGKILL (its
whole process group) at seeded random moments (``EE_TEST_CRASH_SEED``; ``EE_TEST_CRASH_ROUNDS`` rounds of
every scenario, 1 in CI): during its first start and later starts, in steady state with pipelines running,
right after an accepted deploy / live update / delete (the owner's client got the confirmation), while a
deploy is being applied (a random delay after it was sent), and right after ``add_allowed`` and
``change_alias``. After every kill: no JSON file (or JSON line) of the cache is torn, the cache's logical
state (:func:`cache_state.cache_state`) is what was confirmed before the kill, and the restarted node runs it:
same address, alias, allowlist, pipelines (none invalid), and a heartbeat.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cache_state import DRAINING, cache_state, temp_files, torn_files
from mqtt_broker import Mosquitto
from node_runner import REPO, NodeRunner, base_env

from edge_engine.client import EdgeClient, load_client_identity
from edge_engine.ops import main_add_allowed, main_change_alias

SEED = int(os.environ.get("EE_TEST_CRASH_SEED", str(int(time.time()))))
ROUNDS = int(os.environ.get("EE_TEST_CRASH_ROUNDS", "1"))
pytestmark = pytest.mark.timeout(120 + 60 * ROUNDS)


def counter(name: str, rate: int = 20) -> dict[str, Any]:
    """A cheap pipeline: the tutorial counter source into the tutorial hello plugin."""
    instances = [{"INSTANCE_ID": "hello", "EVERY": 5}]
    return {"NAME": name, "TYPE": "TUTORIAL_COUNTER", "RATE": rate,
            "PLUGINS": [{"SIGNATURE": "TUTORIAL_HELLO", "INSTANCES": instances}]}  # fmt: skip


def stats(name: str) -> dict[str, Any]:
    instances = [{"INSTANCE_ID": "fs", "REPORT_EVERY": 10}]
    return {"NAME": name, "TYPE": "SYNTHETIC", "MODE": "messages", "CAP_RESOLUTION": 30,
            "PLUGINS": [{"SIGNATURE": "FRAME_STATS", "INSTANCES": instances}]}  # fmt: skip


class Crasher:
    """One node that is killed and restarted, with the owner's client and the expected state."""

    def __init__(self, runner: NodeRunner, broker: Mosquitto, rng: random.Random, tmp: Path):
        self.runner = runner
        self.broker = broker
        self.rng = rng
        self.owner = load_client_identity(tmp / "owner.pem")
        self.client: EdgeClient | None = None
        self.expected: dict[str, Any] | None = None  # confirmed state; None until the first clean start
        self.kills = 0

    @property
    def cache(self) -> Path:
        return self.runner.cache

    def start(self) -> dict[str, Any]:
        self.runner.start()
        info = self.runner.wait_running(lambda i: bool((i.get("comms") or {}).get("connected")), timeout=30)
        if self.client is None:
            self.client = EdgeClient(self.owner, port=self.broker.port).connect()
        return info

    def kill(self, why: str) -> dict[str, Any]:
        """SIGKILL now; check that no file is torn; return the cache's logical state."""
        self.runner.kill()
        self.kills += 1
        torn = torn_files(self.cache)
        assert torn == [], f"after kill #{self.kills} ({why}): torn files {torn}"
        left = temp_files(self.cache)
        if left:
            print(f"kill #{self.kills} ({why}): temporary files left: {left}")
        return cache_state(self.cache)

    def restart_and_check(self, state: dict[str, Any], why: str) -> dict[str, Any]:
        """Restart; the node must run exactly the state found on disk after the kill (and the expected one)."""
        if self.expected is not None:
            assert state == self.expected, f"after kill #{self.kills} ({why}): state on disk differs from the confirmed"
        info = self.start()
        assert info["address"] == state["address"], why
        assert info["alias"] == state["alias"], why
        assert sorted(info["info"]["whitelist"]) == sorted(a for a, _ in state["allowlist"]), why
        running = sorted(p["name"] for p in info["pipelines"] if p["name"] != "admin_pipeline")
        assert running == sorted(state["pipelines"]), (why, running, sorted(state["pipelines"]))
        assert info["invalid_pipelines"] == [], (why, info["invalid_pipelines"])
        now = cache_state(self.cache)
        stable = [part for part in state if part not in DRAINING]
        assert {p: now[p] for p in stable} == {p: state[p] for p in stable}, f"the restart after {why} changed it"
        assert self.client is not None and self.runner.proc is not None
        pid = self.runner.proc.pid
        with self.client.listen(lambda r: r.channel == "heartbeats" and r.data.get("PID") == pid) as beats:
            beat = beats.get(10)
        assert beat is not None and beat.verified and beat.sender == state["address"], why
        assert beat.data["EE_ID"] == state["alias"], why
        output = self.runner.output()
        assert "Traceback" not in output, output[-4000:]
        self.expected = state
        return info

    def delay(self, low: float, high: float) -> float:
        seconds = self.rng.uniform(low, high)
        time.sleep(seconds)
        return seconds


@pytest.fixture
def crasher(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Crasher]:
    config = {"DEMO_PIPELINE": False, "PIPELINES": [counter("seeded")], "SECONDS_LOCAL_INFO": 0.2,
              "SECONDS_HEARTBEAT": 1, "EE_ID": "crash-1"}  # fmt: skip
    runner = NodeRunner(tmp_path / "work", base_env(tmp_path / "work" / "cache", **mosquitto.env), config)
    made = Crasher(runner, mosquitto, random.Random(SEED), tmp_path)
    try:
        yield made
    finally:
        if made.client is not None:
            made.client.close()
        runner.cleanup()


def test_kill9_at_random_moments_keeps_the_state(crasher: Crasher) -> None:
    print(f"\ncrash test seed {SEED} (EE_TEST_CRASH_SEED), {ROUNDS} round(s)")
    c = crasher

    # during the first start: whatever was written is whole, and the next start completes it
    c.runner.start()
    why = f"first start, after {c.delay(0.05, 0.6):.2f} s"
    state = c.kill(why)
    print(f"kill during the first start: key {'written' if state['address'] else 'not yet written'}")
    info = c.start()  # the state of a half-done first start is not confirmed: check it now, from the node
    assert info["alias"] == "crash-1" and [p["name"] for p in info["pipelines"] if p["name"] == "seeded"]
    if state["address"] is not None:
        assert info["address"] == state["address"], "a key written before the crash must be kept"
    c.expected = cache_state(c.cache)
    assert c.client is not None
    assert main_add_allowed(["--cache-dir", str(c.cache), c.owner.address, "owner"]) == 0
    c.expected = cache_state(c.cache)

    for round_ in range(ROUNDS):
        # during a later start
        c.runner.kill()
        c.runner.start()
        why = f"round {round_}: restart, after {c.delay(0.0, 0.8):.2f} s"
        c.restart_and_check(c.kill(why), why)

        # steady state, pipelines running
        why = f"round {round_}: steady state, after {c.delay(0.3, 1.5):.2f} s"
        c.restart_and_check(c.kill(why), why)

        # right after a confirmed deploy: the pipeline is there after the restart
        name = f"deployed-{round_}"
        result = c.client.deploy(c.runner.info()["address"], stats(name), timeout=20)
        assert result.ok, result.reason
        state = c.kill(f"round {round_}: right after deploying {name}")
        assert name in state["pipelines"] and state["pipelines"][name]["PLUGINS"] == stats(name)["PLUGINS"]
        c.expected = state
        c.restart_and_check(state, f"round {round_}: after deploy")

        # right after a confirmed live update
        address = c.runner.info()["address"]
        update = c.client.update_instance(address, name, "FRAME_STATS", "fs", {"REPORT_EVERY": 7}, timeout=20)
        assert update.ok, update.reason
        state = c.kill(f"round {round_}: right after updating {name}")
        assert state["pipelines"][name]["PLUGINS"][0]["INSTANCES"][0]["REPORT_EVERY"] == 7
        c.expected = state
        c.restart_and_check(state, f"round {round_}: after update")

        # while a deploy is being applied: after the restart it is there whole, or not at all
        racing = f"racing-{round_}"
        c.client.send(c.runner.info()["address"], "UPDATE_CONFIG", stats(racing))
        why = f"round {round_}: {c.delay(0.0, 0.05) * 1000:.0f} ms after sending deploy {racing}"
        state = c.kill(why)
        if racing in state["pipelines"]:
            assert state["pipelines"][racing]["PLUGINS"] == stats(racing)["PLUGINS"]
        print(f"{why}: {'applied' if racing in state['pipelines'] else 'not applied'} before the kill")
        c.expected = state
        c.restart_and_check(state, why)

        # right after a confirmed delete: it stays deleted
        deleted = c.client.delete(c.runner.info()["address"], name, timeout=20)
        assert deleted.ok, deleted.reason
        state = c.kill(f"round {round_}: right after deleting {name}")
        assert name not in state["pipelines"]
        c.expected = state
        c.restart_and_check(state, f"round {round_}: after delete")

        # right after add_allowed and change_alias (ops commands while the node runs)
        friend = load_client_identity(c.runner.workdir / f"friend{round_}.pem")
        assert main_add_allowed(["--cache-dir", str(c.cache), friend.address, f"friend{round_}"]) == 0
        alias = f"crash-{round_ + 2}"
        assert main_change_alias(["--cache-dir", str(c.cache), alias]) == 0
        state = c.kill(f"round {round_}: right after add_allowed and change_alias")
        assert (friend.address, f"friend{round_}") in state["allowlist"] and state["alias"] == alias
        c.expected = state
        c.restart_and_check(state, f"round {round_}: after add_allowed")

    print(f"{c.kills} kills, {len(c.runner.runs)} starts: state back every time")


def test_a_first_start_killed_before_seeding_seeds_at_the_next_start(tmp_path: Path) -> None:
    """The startup config reaches the cache before the pipelines are seeded: a crash in between must not lose them."""
    from edge_engine.node import Node
    from edge_engine.settings import load_settings

    base = tmp_path / "node"
    base.mkdir()
    config = {"DEMO_PIPELINE": False, "PIPELINES": [counter("seeded")], "PLUGIN_FOLDERS": [str(REPO / "plugins")]}
    (base / ".config_startup.json").write_text(json.dumps(config))
    env = {"EE_COMMS": "0", "EE_STATUS_PORT": "0", "EE_LOAD_ENTRY_POINTS": "0"}
    crashed = load_settings(base, base / "cache", env)  # the first start writes the cached startup config...
    assert crashed.first_start and (base / "cache" / "config_startup.json").exists()
    # ... and dies here, before Node.start() seeds the pipelines
    again = load_settings(base, base / "cache", env)
    assert again.first_start, "the interrupted first start must be completed"
    node = Node(again)
    node.start()
    try:
        assert "seeded" in node.pipeline_names()
    finally:
        node.stop("test")
    assert not load_settings(base, base / "cache", env).first_start
