"""Disk bounds (DECISIONS 25): ``_output`` and ``_logs`` capped by size, oldest first out; a full disk pauses outputs.

Pruning runs on real files. A full disk is real too: the kernel's ENOSPC comes from ``/dev/full`` (files of the
output folder linked to it) for a node in-process, and from a 1 MB tmpfs mounted on ``_output`` for a node
process run in its own user and mount namespace (``unshare -rm``; Linux).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, wait_for
from plugins_src import message_pipeline, payload_plugin

from edge_engine.errors import ConfigError
from edge_engine.messages import Notification
from edge_engine.node.core import Node
from edge_engine.node.disk_bounds import (
    MB,
    DiskManager,
    DiskSettings,
    delete_file,
    folder_files,
    load_disk_settings,
    prune_oldest,
)
from edge_engine.plugin.hookspecs import hookimpl

pytestmark = pytest.mark.timeout(90)

BULKY_PLUGIN = payload_plugin("Bulky", "TEST_BULKY", '{"I": inp.seq, "FILL": "x" * 2000}')


def bulky_pipeline(fps: int = 200) -> dict[str, Any]:
    return message_pipeline("bulky", "TEST_BULKY", fps, "b")


def make_files(folder: Path, sizes: list[int], start: float = 1_700_000_000.0) -> list[Path]:
    """Files f00, f01, ... with the given sizes, each one second newer than the previous."""
    paths = []
    for i, size in enumerate(sizes):
        path = folder / ("sub" if i % 2 else "") / f"f{i:02d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
        os.utime(path, (start + i, start + i))
        paths.append(path)
    return paths


def folder_bytes(folder: Path) -> int:
    return sum(size for _, size, _ in folder_files(folder))


# --- pruning on real files ----------------------------------------------------------------------------------------
def test_prune_deletes_the_oldest_files_first(tmp_path: Path) -> None:
    paths = make_files(tmp_path, [1000] * 10)
    untouched = prune_oldest(tmp_path, 10_000)
    assert untouched.deleted == 0 and all(p.exists() for p in paths)

    released: list[Path] = []
    result = prune_oldest(tmp_path, 6000, on_delete=released.append)  # over: down to 90 % of the bound
    assert result.deleted == 5 and result.freed_bytes == 5000 and result.total_bytes == 5000
    assert [p.exists() for p in paths] == [False] * 5 + [True] * 5
    assert released == paths[:5]
    assert folder_bytes(tmp_path) == 5000


def test_prune_keeps_protected_files(tmp_path: Path) -> None:
    paths = make_files(tmp_path, [4000, 1000, 1000, 1000])
    result = prune_oldest(tmp_path, 3000, keep=lambda p: p == paths[0])
    assert paths[0].exists() and result.deleted == 3 and result.total_bytes == 4000  # nothing else to delete


def test_delete_file_keeps_counting_honest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The one deletion step of prune_oldest and DiskManager: told first, False when the file stays."""
    stuck = tmp_path / "stuck"
    stuck.mkdir()  # unlinking a directory fails (an OSError) even as root
    released: list[Path] = []
    assert delete_file(stuck, released.append) is False and stuck.exists() and released == [stuck]
    assert "cannot delete" in caplog.text
    assert delete_file(tmp_path / "gone") is True  # already gone: counted as deleted


def test_disk_settings_from_the_environment() -> None:
    settings = load_disk_settings({"EE_OUTPUT_MAX_MB": "0.5", "EE_LOGS_MAX_MB": "2"})
    assert settings == DiskSettings(MB // 2, 2 * MB, 50 * MB)
    with pytest.raises(ConfigError) as caught:
        load_disk_settings({"EE_OUTPUT_MAX_MB": "lots", "EE_DISK_MIN_FREE_MB": "-1"})
    text = str(caught.value)
    assert "EE_OUTPUT_MAX_MB" in text and "EE_DISK_MIN_FREE_MB" in text


def test_low_free_space_pauses_once_and_resumes(tmp_path: Path) -> None:
    """The free-space threshold, with the free space given by the test: one alert, a margin before resuming."""
    out, logs = tmp_path / "out", tmp_path / "logs"
    out.mkdir()
    logs.mkdir()
    free: dict[Path, int] = {}
    free[out] = free[logs] = 500 * MB
    alerts: list[tuple[str, str]] = []
    settings = DiskSettings(MB, MB, 100 * MB)
    disk = DiskManager(settings, out, logs, lambda level, text, _: alerts.append((level, text)), None, free.get)
    disk.tick()
    assert not disk.paused and alerts == []
    free[out] = free[logs] = 20 * MB
    for _ in range(3):
        disk.tick()
    assert disk.paused and disk.snapshot()["full"] is True
    assert len(alerts) == 1 and alerts[0][0] == "error" and "under 100 MB" in alerts[0][1]
    free[out] = free[logs] = 100 * MB + 1  # at the threshold: not yet (margin)
    disk.tick()
    assert disk.paused
    free[out] = free[logs] = 200 * MB
    disk.tick()
    assert not disk.paused and len(alerts) == 2 and alerts[1][0] == "info" and "resumed" in alerts[1][1]


# --- a node in-process --------------------------------------------------------------------------------------------
class Collector:
    """Collects the node's notifications (a hook implementation, as comms is)."""

    def __init__(self) -> None:
        self.items: list[Notification] = []

    @hookimpl
    def edge_notification(self, notification: Notification) -> None:
        self.items.append(notification)

    def disk(self) -> list[Notification]:
        return [n for n in self.items if "DISK_FULL" in n.fields]


@pytest.fixture
def running(node_factory: Callable[..., Node]) -> Iterator[Callable[..., tuple[Node, Collector]]]:
    """``running(prepare=None, **env)``: a node with the bulky pipeline and its housekeeping loop in a thread."""
    started: list[tuple[Node, threading.Thread]] = []

    def make(prepare: Callable[[Path], None] | None = None, **env: str) -> tuple[Node, Collector]:
        node = node_factory(plugins={"business/bulky.py": BULKY_PLUGIN}, pipelines=[bulky_pipeline()],
                            startup={"SECONDS_LOCAL_INFO": 0.2}, environ=env, start=False)  # fmt: skip
        if prepare is not None:
            prepare(node.layout.output)
        collector = Collector()
        node.pm.register(collector, name="test-collector")
        node.start()
        thread = threading.Thread(target=node.run_forever, daemon=True)
        thread.start()
        started.append((node, thread))
        return node, collector

    yield make
    for node, thread in started:
        node.request_stop("test teardown")
        thread.join(10)


def inputs(node: Node) -> int:
    return node.pipelines["bulky"].capture.stats.inputs


def test_output_folder_stays_under_its_bound(running) -> None:
    node, _ = running(EE_OUTPUT_MAX_MB="0.3")
    node.output.rotate_bytes = 40_000  # small JSON-lines files, so that the oldest can go
    disk = node.disk
    assert disk is not None
    wait_for(lambda: disk.pruned_files >= 10, timeout=20)
    node.pipelines["bulky"].stop()
    node.pipelines["bulky"].join(time.monotonic() + 5)
    disk.prune_output()
    folder = node.layout.output / "bulky" / "TEST_BULKY_b"
    assert folder_bytes(node.layout.output) <= 0.3 * MB
    files = sorted(folder.glob("payloads*.jsonl"))
    assert len(files) >= 3  # rotated files plus the current one
    seqs = [json.loads(line)["seq"] for f in files for line in f.read_text().splitlines()]
    assert min(seqs) > 1, "the oldest payloads should have gone"
    assert max(seqs) == node.output.written, "the newest payloads must stay"  # one instance: seq = count
    info = node.snapshot()["disk"]
    assert info["pruned_files"] == disk.pruned_files >= 10 and info["output_max_mb"] == 0.3 and not info["full"]


def test_logs_folder_stays_under_its_bound(tmp_path: Path) -> None:
    logs = tmp_path / "_logs"
    paths = make_files(logs, [300_000] * 6)
    current = logs / "node.log"
    current.write_bytes(b"\0" * 300_000)
    os.utime(current, (1_600_000_000, 1_600_000_000))  # oldest of all, and still kept: it is being written
    disk = DiskManager(DiskSettings(MB, MB, 0), tmp_path / "_output", logs, lambda *_: None)
    disk.prune_logs()
    assert current.exists() and folder_bytes(logs) <= MB
    assert [p.exists() for p in paths] == [False] * 4 + [True] * 2


def test_enospc_pauses_outputs_alerts_once_and_resumes(running) -> None:
    """Writes to ``/dev/full`` fail with the kernel's ENOSPC: the payload file and the probe file point there."""
    if not os.path.exists("/dev/full"):
        pytest.fail("/dev/full is needed (Linux)")
    instance_dir_name = "TEST_BULKY_b"

    def prepare(output: Path) -> None:
        folder = output / "bulky" / instance_dir_name
        folder.mkdir(parents=True)
        (folder / "payloads.jsonl").symlink_to("/dev/full")
        (output / ".disk_probe").symlink_to("/dev/full")

    node, collector = running(prepare=prepare, EE_DISK_MIN_FREE_MB="0")
    disk = node.disk
    assert disk is not None
    wait_for(lambda: disk.paused, timeout=10)
    skipped = disk.outputs_skipped
    before = inputs(node)
    rounds = [0]
    housekeeping = disk.tick

    def counted_tick() -> None:
        housekeeping()
        rounds[0] += 1

    disk.tick = counted_tick  # type: ignore[method-assign]
    # several housekeeping rounds: still full, still one alert, the pipeline keeps going
    wait_for(lambda: rounds[0] >= 3 and disk.outputs_skipped > skipped and inputs(node) > before, timeout=10)
    assert disk.paused and disk.outputs_skipped > skipped and inputs(node) > before
    assert [n.level for n in collector.disk()] == ["error"], [n.message for n in collector.items]
    assert "disk full" in collector.disk()[0].message and "No space left on device" in collector.disk()[0].message
    info = json.loads(node.layout.local_info.read_text())
    assert info["disk"]["full"] is True and info["disk"]["alerts"] == 1 and info["status"] == "running"

    folder = node.layout.output / "bulky" / instance_dir_name
    (folder / "payloads.jsonl").unlink()  # space is back
    (node.layout.output / ".disk_probe").unlink()
    wait_for(lambda: not disk.paused, timeout=10)
    wait_for(lambda: (folder / "payloads.jsonl").is_file() and (folder / "payloads.jsonl").stat().st_size > 0)
    assert [n.level for n in collector.disk()] == ["error", "info"]
    lines = (folder / "payloads.jsonl").read_text().splitlines()
    assert all(json.loads(line)["data"]["FILL"] for line in lines)  # whole lines only
    wait_for(lambda: json.loads(node.layout.local_info.read_text())["disk"]["full"] is False, timeout=5)


# --- a node process on a full tmpfs ----------------------------------------------------------------------------------
def namespaces_work() -> str | None:
    """None when ``unshare -rm`` can mount a tmpfs here, else why not."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run([unshare, "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>&1 || "
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True, text=True)  # fmt: skip
    return None if probe.returncode == 0 else f"unshare -rm cannot mount a tmpfs: {probe.stdout or probe.stderr}"


def test_node_process_on_a_full_tmpfs(tmp_path: Path) -> None:
    why = namespaces_work()
    if why is not None:
        pytest.skip(f"no real full disk here: {why} (the /dev/full test covers ENOSPC)")
    work = tmp_path / "work"
    (work / "plugins" / "business").mkdir(parents=True)
    (work / "plugins" / "business" / "bulky.py").write_text(BULKY_PLUGIN)
    config = {"DEMO_PIPELINE": False, "PIPELINES": [bulky_pipeline()], "SECONDS_LOCAL_INFO": 0.3,
              "PLUGIN_FOLDERS": [str(REPO / "extensions"), str(work / "plugins")]}  # fmt: skip
    (work / ".config_startup.json").write_text(json.dumps(config))
    cache = work / "cache"
    output = cache / "_output"
    output.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")}
    env.update({"EE_CACHE_DIR": str(cache), "EE_COMMS": "0", "EE_STATUS_PORT": "0", "EE_LOAD_ENTRY_POINTS": "0",
                "EE_DISK_MIN_FREE_MB": "0", "EE_OUTPUT_MAX_MB": "100"})  # fmt: skip
    script = f'mount -t tmpfs -o size=1m tmpfs "{output}" && exec "{sys.executable}" "{REPO / "device.py"}"'
    log_path = work / "node.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(["unshare", "-rm", "sh", "-c", script], cwd=work, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    info_path = cache / "_data" / "local_info.json"

    def info() -> dict[str, Any]:
        try:
            return json.loads(info_path.read_bytes())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    try:
        full = wait_for(lambda: (info().get("disk") or {}).get("full") and info(), timeout=30)
        assert proc.poll() is None, log_path.read_text()
        assert "No space left on device" in full["disk"]["reason"]
        inputs_then = full["pipelines"][0]["capture"]["inputs"]
        wait_for(lambda: info()["pipelines"][0]["capture"]["inputs"] > inputs_then + 50, timeout=10)
        later = info()
        assert later["status"] == "running" and later["disk"]["full"] and later["disk"]["alerts"] == 1
        assert later["disk"]["outputs_skipped"] > full["disk"]["outputs_skipped"]
        # make room inside the node's mount namespace (its view of the tmpfs, through /proc/<pid>/root)
        seen = Path(f"/proc/{proc.pid}/root") / str(output).lstrip("/")
        for path in seen.rglob("payloads*.jsonl"):
            path.unlink()
        wait_for(lambda: info()["disk"]["full"] is False, timeout=10)
        resumed = info()["disk"]
        assert resumed["alerts"] == 1 and resumed["reason"] is None
        text = log_path.read_text()
        assert text.count("disk full:") == 2, text[-3000:]  # the log line and the notification's line
        assert "outputs resumed" in text and "Traceback" not in text and "Logging error" not in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, text[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
