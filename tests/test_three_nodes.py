"""Three real node processes on one Mosquitto: each one's network view lists all three online; one stopped cleanly
(SIGTERM) is shown offline by the other two at once (its OFFLINE message), started again it is online again; one
that goes silent without a word (SIGSTOP: no OFFLINE, and its connection stays up, so no last will either) is shown
offline after the offline timeout, and online again when it resumes.

The view is read the way an operator reads it: ``local_info.json`` (``network`` section) and ``get_node_info
--pretty``. node1 (the supervisor) uses a long offline timeout (``LONG_OFFLINE_SECONDS``, 60 s, the default a node
uses), so only the OFFLINE message can make it show a node offline quickly; node2 uses ``OFFLINE_SECONDS``
(``EE_TEST_OFFLINE_SECONDS``; 4 s in CI, 60 s in the documented slow run:
``EE_TEST_OFFLINE_SECONDS=60 pytest tests/test_three_nodes.py``) for the timeout path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from mqtt_broker import Mosquitto
from node_runner import NodeRunner

from edge_engine.cli.ops import main_get_node_info

OFFLINE_SECONDS = float(os.environ.get("EE_TEST_OFFLINE_SECONDS", "4"))
LONG_OFFLINE_SECONDS = max(60.0, 3 * OFFLINE_SECONDS)
KEEPALIVE_WILL_SECONDS = 45  # the broker fires a silent client's last will after 1.5 x its 30 s keepalive
STARTUP = {"SECONDS_HEARTBEAT": 1, "SECONDS_LOCAL_INFO": 0.5, "DEMO_PIPELINE": False}


class NodeProcess(NodeRunner):
    """``python device.py`` in its own working folder and cache, pointed at the test broker."""

    def __init__(self, folder: Path, name: str, broker: Mosquitto, supervisor: bool = False,
                 offline_seconds: float = OFFLINE_SECONDS):  # fmt: skip
        cache = folder / name / "cache"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")}
        env.pop("PYTHONPATH", None)
        env.update(broker.env)
        env.update({"EE_CACHE_DIR": str(cache), "EE_ID": name, "EE_STATUS_PORT": "0", "EE_DEMO": "0",
                    "EE_CONFIG": json.dumps(STARTUP), "EE_NETMON_OFFLINE_SECONDS": str(offline_seconds),
                    "EE_SUPERVISOR": "1" if supervisor else "0"})  # fmt: skip
        super().__init__(folder / name, env)
        self.folder = self.workdir

    def start(self) -> NodeProcess:  # type: ignore[override]
        super().start()
        return self

    def stop(self) -> None:  # type: ignore[override]
        """SIGTERM (after SIGCONT, in case it was paused) and wait; nothing when it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        try:
            super().stop(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None

    def info(self) -> dict[str, Any]:  # type: ignore[override]
        return super().info() or {}

    def view(self) -> dict[str, bool]:
        """address -> online, from this node's local_info.json."""
        network = self.info().get("network") or {}
        return {n["address"]: n["online"] for n in network.get("nodes") or []}

    def log(self) -> str:
        """This run's output."""
        return self.output()


@pytest.fixture
def three(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[list[NodeProcess]]:
    nodes = [NodeProcess(tmp_path, f"node{i}", mosquitto, supervisor=i == 1,
                         offline_seconds=LONG_OFFLINE_SECONDS if i == 1 else OFFLINE_SECONDS).start()
             for i in (1, 2, 3)]  # fmt: skip
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def test_three_nodes_see_each_other_offline_and_back(three: list[NodeProcess], capsys) -> None:
    wait_for(lambda: all(n.info().get("status") == "running" for n in three), timeout=30)
    addresses = {n.info()["address"] for n in three}
    assert len(addresses) == 3

    def all_online(observers: list[NodeProcess], expected: dict[str, bool]) -> bool:
        return all(all(o.view().get(a) is state for a, state in expected.items()) for o in observers)

    try:
        wait_for(lambda: all_online(three, dict.fromkeys(addresses, True)), timeout=20)
    except AssertionError:
        raise AssertionError("\n\n".join(f"{n.folder.name}: {n.view()}\n{n.log()[-2000:]}" for n in three)) from None

    # what an operator sees
    capsys.readouterr()
    assert main_get_node_info(["--cache-dir", str(three[0].cache), "--pretty"]) == 0
    pretty = capsys.readouterr().out
    assert "NETWORK (3 of 3 online" in pretty and "supervisor" in pretty
    for node in three:
        assert node.info()["alias"] in pretty

    stopped = three[2]
    stopped_address = stopped.info()["address"]
    observers = three[:2]
    others = addresses - {stopped_address}

    # a clean stop: its OFFLINE message shows it offline at once, also on node1, whose timeout is 60 s
    stopped.stop()
    stopped_at = time.monotonic()
    wait_for(lambda: all(o.view().get(stopped_address) is False for o in observers), timeout=15)
    print(f"\nSIGTERM: shown offline after {time.monotonic() - stopped_at:.1f} s (timeout {LONG_OFFLINE_SECONDS:g} s)")
    assert "OFFLINE published" in stopped.log()
    assert all(o.view().get(a) is True for o in observers for a in others)

    stopped.start()
    wait_for(lambda: all_online(observers, {stopped_address: True}), timeout=30)
    wait_for(lambda: all_online([stopped], dict.fromkeys(addresses, True)), timeout=20)

    # silent (paused: no heartbeat, no OFFLINE, the TCP connection stays up): offline after node2's timeout
    proc = stopped.proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        paused_at = time.monotonic()
        wait_for(lambda: three[1].view().get(stopped_address) is False, timeout=OFFLINE_SECONDS + 10)
        waited = time.monotonic() - paused_at
        print(f"SIGSTOP: shown offline after {waited:.1f} s (timeout {OFFLINE_SECONDS:g} s)")
        if waited < KEEPALIVE_WILL_SECONDS - 5:  # (the slow run's 60 s lets the broker's last will come first)
            assert three[0].view().get(stopped_address) is True  # node1 (60 s) heard no OFFLINE
    finally:
        proc.send_signal(signal.SIGCONT)
    wait_for(lambda: all_online(observers, {stopped_address: True}), timeout=20)
