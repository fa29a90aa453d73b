"""``_output/`` stays within ``EE_OUTPUT_MAX_MB`` at every moment, not only after a housekeeping prune.

A node whose pipeline writes a witness image and a JSON line per payload, at 100 payloads/s, into an output
folder bounded at 0.25 MB (a few seconds' worth) runs with its housekeeping loop. The folder's size is observed
after every payload the local writer writes and, independently, by a thread sampling it as fast as it can; no
observation may exceed the bound. The newest payloads are kept, the oldest are gone.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from plugins_src import message_pipeline

from edge_engine.node.core import Node
from edge_engine.node.disk_bounds import MB, DiskManager, DiskSettings, folder_files

pytestmark = pytest.mark.timeout(90)
BOUND_MB = 0.25

IMAGE_PLUGIN = """
import numpy as np

from edge_engine.api import BusinessPlugin


class ImageFill(BusinessPlugin):
    SIGNATURE = "TEST_IMAGE_FILL"

    def process(self, inp):
        if inp is None:
            return None
        noise = np.random.default_rng(inp.seq).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        self.emit({"I": inp.seq, "FILL": "x" * 1500}, image=noise)
        return None
"""


def folder_bytes(folder: Path) -> int:
    return sum(size for _, size, _ in folder_files(folder))


def test_output_never_exceeds_its_bound_between_prunes(node_factory: Callable[..., Node]) -> None:
    pipeline = message_pipeline("fill", "TEST_IMAGE_FILL", 100, "f")
    node = node_factory(plugins={"business/image_fill.py": IMAGE_PLUGIN}, pipelines=[pipeline],
                        environ={"EE_OUTPUT_MAX_MB": str(BOUND_MB)}, start=False)  # fmt: skip
    node.output.rotate_bytes = 20_000  # small JSON-lines files, so that old lines can go too
    output = node.layout.output
    bound = int(BOUND_MB * MB)
    after_write: list[int] = []
    write_payload = node.output._write_payload

    def observed(payload: Any) -> str | None:
        image = write_payload(payload)
        after_write.append(folder_bytes(output))
        return image

    node.output._write_payload = observed  # type: ignore[method-assign]
    sampled: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            sampled.append(folder_bytes(output))

    sampler = threading.Thread(target=sample, daemon=True)
    node.start()
    loop = threading.Thread(target=node.run_forever, daemon=True)  # housekeeping too, as in a real node
    loop.start()
    sampler.start()
    try:
        wait_for(lambda: len(after_write) >= 300, timeout=60)  # several times the bound written
    finally:
        stop.set()
        sampler.join(5)
        node.request_stop("test")
        loop.join(10)

    assert max(after_write) <= bound, f"{max(after_write)} bytes after a write, bound {bound}"
    assert max(sampled) <= bound, f"{max(sampled)} bytes seen by the sampler, bound {bound}"
    assert len(sampled) > 100
    assert node.disk is not None and node.disk.pruned_files > 0
    lines = [json.loads(line) for f in output.rglob("payloads*.jsonl") for line in f.read_text().splitlines()]
    seqs = sorted(record["seq"] for record in lines)
    assert seqs[-1] == node.output.written and seqs[0] > 1, "the newest payloads stay, the oldest went"
    images = sorted(output.rglob("*.jpg"))
    assert images and len(images) < len(after_write)


def test_a_file_larger_than_the_bound_is_refused_and_counted(tmp_path: Path) -> None:
    disk = DiskManager(DiskSettings(1000, MB, 0), tmp_path / "_output", tmp_path / "_logs", lambda *_: None)
    (tmp_path / "_output").mkdir()
    with disk.writing(tmp_path / "_output" / "big.bin", 1001) as fits:
        assert not fits
    with disk.writing(tmp_path / "_output" / "a.bin", 600) as fits:
        assert fits
        (tmp_path / "_output" / "a.bin").write_bytes(b"a" * 600)
    with disk.writing(tmp_path / "_output" / "b.bin", 600) as fits:  # a.bin goes first
        assert fits
        assert not (tmp_path / "_output" / "a.bin").exists()
        (tmp_path / "_output" / "b.bin").write_bytes(b"b" * 600)
    assert folder_bytes(tmp_path / "_output") == 600 and disk.pruned_files == 1
