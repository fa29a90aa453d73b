"""No object is PUT twice, also when the same bytes are produced again after a restart (issue 14 item 17).

The queue forgets what it uploaded when the node stops, and content-addressed keys make the same bytes the same
key; so the uploader asks the bucket first (HEAD) for every entry. Counted on the server: SeaweedFS with its
Prometheus metrics on (``SeaweedFS_s3_request_total{type="PUT"}``), so what is measured is what reached S3.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from mqtt_broker import free_port
from s3_server import SeaweedS3, require_weed
from test_storage import IMAGER, imager_pipeline, local_images

from edge_engine.node.core import Node

pytestmark = pytest.mark.timeout(120)
FRAMES = 8
PUT_METRIC = re.compile(r'^SeaweedFS_s3_request_total\{bucket="([^"]*)",code="(\d+)",type="PUT"\} (\S+)$', re.M)


class MeteredS3(SeaweedS3):
    """SeaweedFS with ``-metricsPort``: the server's own count of requests by type."""

    def __init__(self, binary: str, folder: Path):
        super().__init__(binary, folder)
        self.metrics_port = free_port()

    def command(self) -> list[str]:
        return [*super().command(), f"-metricsPort={self.metrics_port}"]

    def puts(self) -> int:
        """Successful PUT requests on the bucket so far (objects, and the bucket's creation)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(
            int(float(n)) for bucket, code, n in PUT_METRIC.findall(text) if bucket == self.bucket and code == "200"
        )


@pytest.fixture
def metered_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeteredS3]:
    server = MeteredS3(require_weed(), tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server.start()
    finally:
        server.cleanup()


def run_once(node_factory: Callable[..., Node], env: dict[str, str], first: bool) -> tuple[Node, dict[str, Any]]:
    """Start the node (the same cache each time), let its pipeline make its frames, wait for the uploads, stop."""
    node = node_factory(plugins={"business/imager.py": IMAGER}, environ=env)
    if first:
        node.add_pipeline(imager_pipeline(FRAMES, 20, REPEAT_EVERY=0, FILE_EVERY=0))
    wait_for(lambda: len(local_images(node.layout.root)) == FRAMES and node.output.written >= FRAMES, timeout=30)
    wait_for(lambda: node.storage.snapshot()["pending"] == 0, timeout=30)
    stats = node.storage.snapshot()
    node.stop("test")
    return node, stats


def test_same_bytes_after_a_restart_are_not_put_again(metered_s3: MeteredS3, node_factory) -> None:
    env = dict(metered_s3.env)
    before = metered_s3.puts()
    node, first = run_once(node_factory, env, first=True)
    images = set(local_images(node.layout.root))
    after_first = metered_s3.puts()
    assert first["uploaded"] == FRAMES and after_first - before == FRAMES + 1, "the bucket's creation, one per image"

    node, second = run_once(node_factory, env, first=False)  # restart: the pipeline makes the same frames again
    assert set(local_images(node.layout.root)) == images, "the second run produced the same bytes"
    assert second["already_in_bucket"] == FRAMES and second["uploaded"] == 0
    assert metered_s3.puts() == after_first, "no PUT for bytes the bucket already holds"
    assert set(metered_s3.objects()) == {f"{sha}.jpg" for sha in images}
