"""A Mosquitto of the benchmark's own on a free port (never 1883), shared by the benchmarks that need a broker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, never 1883."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != 1883:
            return port


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something listens on ``port``; RuntimeError after ``timeout`` or when ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while not port_answers(port):
        if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            raise RuntimeError(f"nothing listens on {port}")
        time.sleep(0.02)


def mosquitto_binary() -> str | None:
    """``$EE_TEST_MOSQUITTO``, ``mosquitto`` on PATH, or ``/usr/sbin/mosquitto``; None when there is none."""
    for candidate in (os.environ.get("EE_TEST_MOSQUITTO"), shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def start_mosquitto(
    folder: Path, extra_config: str = "", log: Path | None = None, missing_hint: str = ""
) -> tuple[subprocess.Popen[bytes], int]:
    """Start Mosquitto (anonymous, no persistence) on a free port, its config in ``folder``; (process, port)."""
    binary = mosquitto_binary()
    if binary is None:
        raise SystemExit(f"mosquitto not found: install it (apt-get install mosquitto){missing_hint}")
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_config}")
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
    try:
        proc = subprocess.Popen([binary, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    try:
        wait_port(port, proc=proc)
    except RuntimeError as exc:
        proc.kill()
        raise SystemExit(f"mosquitto did not start: {exc}") from None
    return proc, port
