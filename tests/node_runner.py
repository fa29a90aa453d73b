"""A node as a real process for fault tests: ``python device.py`` in a working folder of its own.

``NodeRunner(tmp_path / "work", env)`` links the repository's ``extensions/``, ``plugins/``, ``pipelines/`` and
``samples/`` into the folder, writes ``.config_startup.json`` if given, and starts ``device.py`` in its own
session (so ``kill()`` takes the whole process group: a crash, nothing cleans up). Output goes to one log file
per run. ``info()`` reads ``local_info.json``; ``wait_running()`` waits for this run's ``status: running``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LINKED_DIRS = ("extensions", "plugins", "pipelines", "samples")


def base_env(cache: Path, **extra: str) -> dict[str, str]:
    """The environment without the caller's ``EE_*`` settings, comms off unless ``extra`` says otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")}
    env.pop("PYTHONPATH", None)
    env.update({"EE_CACHE_DIR": str(cache), "EE_COMMS": "0", "EE_STATUS_PORT": "0", "EE_LOAD_ENTRY_POINTS": "0"})
    env.update(extra)
    return env


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (``VmRSS`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class NodeRunner:
    """One node (working folder + cache) started, killed and restarted as a real process."""

    def __init__(self, workdir: Path, env: dict[str, str], config: dict[str, Any] | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        for name in LINKED_DIRS:
            link = workdir / name
            if not link.exists():
                link.symlink_to(REPO / name, target_is_directory=True)
        if config is not None:
            (workdir / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
        self.env = env
        self.cache = Path(env["EE_CACHE_DIR"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs: list[subprocess.Popen[bytes]] = []
        self.log_path = workdir / "node-run0.log"

    @property
    def local_info_path(self) -> Path:
        return self.cache / "_data" / "local_info.json"

    @property
    def streams(self) -> Path:
        return self.cache / "_data" / "box_configuration" / "streams"

    def start(self, *python_args: str, **env: str) -> subprocess.Popen[bytes]:
        """Start ``python [python_args] device.py`` with ``env`` over the runner's environment."""
        assert self.proc is None or self.proc.poll() is not None, "the previous run is still alive"
        self.log_path = self.workdir / f"node-run{len(self.runs) + 1}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *python_args, str(REPO / "device.py")],
                cwd=self.workdir,
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.runs.append(self.proc)
        return self.proc

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it (a crash: nothing gets to clean up)."""
        assert self.proc is not None
        _kill_group(self.proc)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, float]:
        """Send ``sig`` to the node process; return its exit code and how long it took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def cleanup(self) -> None:
        for proc in self.runs:
            _kill_group(proc)

    def info(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.local_info_path.read_bytes())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def wait_running(self, check: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 20.0) -> dict:
        """``local_info.json`` of this run with status running and ``check`` true; AssertionError otherwise."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the node exited with code {self.proc.returncode}:\n{self.output()[-5000:]}")
            info = self.info()
            fresh = info and info.get("pid") == self.proc.pid and info.get("status") == "running"
            if fresh and (check is None or check(info)):
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"node not ready in {timeout} s; last info {info}\n{self.output()[-5000:]}")
            time.sleep(0.05)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
