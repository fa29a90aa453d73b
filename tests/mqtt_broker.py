"""A real Mosquitto broker for tests: started on a free port (never 1883), stopped at teardown.

``mosquitto`` (fixture) yields a running :class:`Mosquitto`; ``broker.stop()`` and ``broker.start()`` again
restart it on the same port (broker outage tests). When the ``mosquitto`` binary is missing the test fails
with how to install it: the comms tests are not optional.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_engine.comms.broker import broker_answering
from edge_engine.local.identity import Identity
from edge_engine.remote.node_client import EdgeClient

INSTALL_HINT = (
    "the mosquitto binary is needed by the comms tests and was not found on PATH (nor in /usr/sbin). "
    "Install it: `sudo apt-get install mosquitto` (Debian/Ubuntu), `brew install mosquitto` (macOS), "
    "or set EE_TEST_MOSQUITTO=/path/to/mosquitto"
)


def mosquitto_binary() -> str | None:
    """Path of the mosquitto binary ($EE_TEST_MOSQUITTO, PATH, then the sbin folders), or None."""
    explicit = os.environ.get("EE_TEST_MOSQUITTO")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"):
        candidate = os.path.join(folder, "mosquitto")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (never 1883), below the kernel's ephemeral range when possible.

    A port from the ephemeral range can be taken, between this call and the server's bind (or while a server is
    stopped for an outage test), by any outgoing connection's local end; ports below the range cannot. No port is
    handed out twice in one test process, nor by two pytest-xdist workers (each draws from its own slice of the
    range: :func:`_worker_ports`): a server that asks for several ports at once (SeaweedFS asks for eight)
    binds them later, so two equal draws would collide inside it (CI saw its volume's gRPC port equal its master's).
    """
    first, last = _worker_ports(10_000, _ephemeral_low() - 1)
    for _ in range(200):
        port = random.randint(first, last) if last > first else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = sock.getsockname()[1]
        if port != 1883 and port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free TCP port found on 127.0.0.1")


def _worker_ports(first: int, last: int) -> tuple[int, int]:
    """This test process's share of the ports ``first..last``: under pytest-xdist each worker (``gw0``, ``gw1``...)
    draws from a slice of its own, so two workers never hand out the same port (each one's bookkeeping only knows
    its own draws); the whole range in a single process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count < 2 or last - first < 100 * count:
        return first, last
    index = int(worker[2:]) % count
    span = (last - first + 1) // count
    return first + index * span, first + (index + 1) * span - 1


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    return broker_answering(host, port, timeout)


class Mosquitto:
    """One mosquitto process on 127.0.0.1:``port`` with anonymous access and no persistence."""

    def __init__(self, binary: str, folder: Path, port: int | None = None, persistence: bool = False):
        self.binary = binary
        self.folder = folder
        self.port = port or free_port()
        assert self.port != 1883, "tests never use port 1883"
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = folder / "mosquitto.conf"
        self.log_path = folder / "mosquitto.log"
        # persistence true only where a subscriber's session must survive a broker restart (outage tests)
        stored = f"persistence true\npersistence_location {folder}/\n" if persistence else "persistence false\n"
        if persistence and os.geteuid() == 0:
            stored += "user root\n"  # else mosquitto drops to its own user, which cannot write the test's folder
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{stored}"
            "max_inflight_messages 0\nmax_queued_messages 100000\n",
            encoding="utf-8",
        )

    @property
    def env(self) -> dict[str, str]:
        """Environment that points a node at this broker."""
        return {"EE_COMMS": "1", "EE_MQTT_HOST": self.host, "EE_MQTT_PORT": str(self.port)}

    def start(self, timeout: float = 10.0) -> Mosquitto:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        deadline = time.monotonic() + timeout
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)  # the previous instance is still releasing the port
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=out, stderr=subprocess.STDOUT)
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s:\n{self.log()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def require_binary() -> str:
    """The mosquitto binary, or fail the test saying how to install it."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return binary


@pytest.fixture
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Mosquitto]]:
    """``mosquitto_factory(persistence=False)``: start more brokers; all are stopped at teardown."""
    brokers: list[Mosquitto] = []

    def make(persistence: bool = False) -> Mosquitto:
        broker = Mosquitto(require_binary(), tmp_path_factory.mktemp("mosquitto"), persistence=persistence)
        brokers.append(broker)
        return broker.start()

    try:
        yield make
    finally:
        for broker in brokers:
            broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A running Mosquitto on a free port; fails (never skips) when the binary is missing."""
    return mosquitto_factory()


@pytest.fixture
def clients() -> Iterator[Callable[..., EdgeClient]]:
    """``clients(identity, port, **kw)``: connected EdgeClients, closed at teardown."""
    made: list[EdgeClient] = []

    def make(identity: Identity, port: int, **kw: Any) -> EdgeClient:
        client = EdgeClient(identity, port=port, **kw).connect()
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
