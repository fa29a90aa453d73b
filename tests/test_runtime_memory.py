"""Memory of many cameras: no thread of a pipeline keeps a frame alive once it has handed it on.

At 64 cameras a frame held by each idle thread (the capture's previous frame while it waits for the next; each
instance's last frame while it waits in its mailbox) is three 0.9 MB frames per camera that nothing uses.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from conftest import wait_for

from edge_engine.node.core import Node

HELD = '''
import weakref

from edge_engine.api import CapturePlugin, Input, Key


class Frame:
    """Stands in for a decoded image; weak references tell whether anyone still holds it."""


class HeldFrames(CapturePlugin):
    """Gives FRAMES inputs, then blocks in read() as a paced camera waits for its next frame."""

    SIGNATURE = "HELD_FRAMES"
    CONFIG = {"FRAMES": Key(3, type=int, min=1, doc="inputs before read() blocks")}
    alive = []  # weak references to every frame handed on

    def connect(self):
        self.given = 0

    def read(self):
        if self.given >= self.config["FRAMES"]:
            self.context.stop_event.wait(30)
            return None
        self.given += 1
        frame = Frame()
        HeldFrames.alive.append(weakref.ref(frame))
        return Input(image=frame, metadata={"frame_index": self.given})
'''

COUNTER = '''
from edge_engine.api import BusinessPlugin


class Counter(BusinessPlugin):
    """Counts inputs and keeps none of them."""

    SIGNATURE = "COUNTER"

    def on_init(self):
        self.seen = 0

    def process(self, inp):
        self.seen += 1
        return None
'''


def _held_alive(node: Node) -> list[Any]:
    assert node.pipelines["cam"].capture.status == "running"
    gc.collect()
    module = _held_module()
    return [ref for ref in module.HeldFrames.alive if ref() is not None]


def _held_module() -> Any:
    import sys

    for module in list(sys.modules.values()):
        cls = getattr(module, "HeldFrames", None)
        if cls is not None and hasattr(cls, "alive"):
            return module
    raise AssertionError("HELD_FRAMES was not loaded")


@pytest.mark.parametrize("live", [True, False], ids=["live", "file"])
def test_idle_threads_hold_no_frame(node_factory: Any, live: bool) -> None:
    pipe = {
        "NAME": "cam",
        "TYPE": "HELD_FRAMES",
        "FRAMES": 3,
        "LIVE_FEED": live,
        "PLUGINS": [{"SIGNATURE": "COUNTER", "INSTANCES": [{"INSTANCE_ID": "a"}, {"INSTANCE_ID": "b"}]}],
    }
    node = node_factory(plugins={"data/held.py": HELD, "business/counter.py": COUNTER}, pipelines=[pipe])
    runners = list(node.pipelines["cam"].instances.values())
    wait_for(lambda: all(r.stats.inputs + r.stats.dropped == 3 for r in runners))
    # every frame was processed by both instances; the capture blocks in read(), the instances wait for input:
    # nothing may hold a frame now
    wait_for(lambda: not _held_alive(node), timeout=3)
    assert len(_held_module().HeldFrames.alive) == 3


ARENAS_SCRIPT = r"""
import ctypes, json, sys, tempfile, threading
from pathlib import Path

import numpy as np

from edge_engine.config.node_settings import load_settings
from edge_engine.node.core import Node

def arenas():
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        stream = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        return Path(out.name).read_text().count("<heap nr=")

base = Path(sys.argv[1])
config = {"DEMO_PIPELINE": False, "PLUGIN_FOLDERS": [sys.argv[2]], "PIPELINES": []}
(base / ".config_startup.json").write_text(json.dumps(config))
env = {"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0", "EE_STATUS_PORT": "0"}
node = Node(load_settings(base, base / "_local_cache", env))
node.start()
before = arenas()
node.add_pipeline({"NAME": "cam", "TYPE": "SYNTHETIC", "MODE": "messages", "CAP_RESOLUTION": 20,
                   "PLUGINS": [{"SIGNATURE": "MOTION_DETECTOR", "INSTANCES": [{"INSTANCE_ID": "m"}]}]})
# twelve more threads, each holding frame-sized buffers at the same time: glibc's default gives most their own arena
barrier = threading.Barrier(12)
def work():
    frames = [np.ones((480, 640, 3), np.uint8) for _ in range(2)]
    barrier.wait()
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(12)]
for thread in threads:
    thread.start()
print(before, arenas(), flush=True)
barrier.abort()
node.stop("done")
"""


@pytest.mark.parametrize("operator", [None, "8"], ids=["default", "operator"])
def test_many_threads_share_two_malloc_arenas(tmp_path: Any, operator: str | None) -> None:
    """From the first pipeline on, new threads get no arena of their own (the node's first threads may have)."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    if operator:
        env["MALLOC_ARENA_MAX"] = operator  # the operator's choice is glibc's, not the node's
    done = subprocess.run(
        [sys.executable, "-c", ARENAS_SCRIPT, str(tmp_path), str(REPO / "extensions")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = (int(n) for n in done.stdout.split()[-2:])
    if operator:
        assert before < after <= 8  # the node did not lower the operator's limit
    else:
        assert after <= max(before, 2)


RELEASE_SCRIPT = r"""
import json, sys, time
from pathlib import Path

from edge_engine.config.node_settings import load_settings
from edge_engine.node.core import Node

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

base, extensions, video = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
(base / ".config_startup.json").write_text(json.dumps({"DEMO_PIPELINE": False, "PLUGIN_FOLDERS": [extensions]}))
env = {"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0", "EE_STATUS_PORT": "0"}
node = Node(load_settings(base, base / "_local_cache", env))
node.start()
import cv2, numpy  # noqa: E401 (loaded by the pipelines; their libraries are not what this measures)
cv2.VideoCapture(video).read()
idle = rss()
names = [f"cam{i}" for i in range(16)]
for name in names:
    node.add_pipeline({"NAME": name, "TYPE": "VIDEO_FILE", "URL": video, "LOOP": True, "LIVE_FEED": True,
                       "DECODE_THREADS": 1, "CAP_RESOLUTION": 50,
                       "PLUGINS": [{"SIGNATURE": "MOTION_DETECTOR", "INSTANCES": [{"INSTANCE_ID": "m"}]}]})
deadline = time.monotonic() + 20
while time.monotonic() < deadline and min(node.pipelines[n].capture.stats.inputs for n in names) < 20:
    time.sleep(0.05)
running = rss()
for name in names:
    node.remove_pipeline(name)
deadline = time.monotonic() + 10  # the watchdog trims on its next tick; a loaded machine stretches the ticks
while time.monotonic() < deadline and rss() - idle > (running - idle) / 2:
    time.sleep(0.05)
print(round(idle), round(running), round(rss()), flush=True)
node.stop("done")
"""


def test_removed_pipelines_give_their_memory_back(tmp_path: Any) -> None:
    """Decoders and frames freed by removed pipelines go back to the system, not into the allocator's free lists."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    video = str(REPO / "samples" / "demo.mp4")
    done = subprocess.run(
        [sys.executable, "-c", RELEASE_SCRIPT, str(tmp_path), str(REPO / "extensions"), video],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    idle, running, removed = (int(n) for n in done.stdout.split()[-3:])
    assert running - idle > 10, (idle, running, removed)  # 16 decoders and their frames took memory
    # kept without the trim: 0.63-0.70 of the growth (Python 3.11, Debian 12); with it 0.14 there and 0.34 on
    # Python 3.13 / Debian 13's glibc, which hands back less of the arenas' top
    assert removed - idle <= (running - idle) / 2, (idle, running, removed)
