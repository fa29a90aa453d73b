"""Witness image files: unique across restarts, and no path to an image a full disk kept from being written."""

from __future__ import annotations

from pathlib import Path

from edge_engine.local.cache import CacheLayout
from edge_engine.messages import Payload
from edge_engine.node.local_output import LocalOutput, image_relpath
from edge_engine.runtime.supervisor import Supervisor
from edge_engine.storage.service import StorageService
from edge_engine.storage.storage_settings import StorageSettings

PATH = ["node", "pipe", "SIG", "inst"]


def test_image_of_a_restarted_node_does_not_overwrite_an_older_one(tmp_path: Path):
    output = LocalOutput(tmp_path, log_payloads=False)
    before = Payload(list(PATH), {"n": 1}, seq=1, created=1_800_000_000.25, image_jpeg=b"old image")
    after_restart = Payload(list(PATH), {"n": 1}, seq=1, created=1_800_000_060.5, image_jpeg=b"new image")
    output.write_payload(before)
    output.write_payload(after_restart)
    output.close()
    assert image_relpath(before) == "pipe/SIG_inst/images/20270115T080000.250Z_00000001.jpg"
    assert (tmp_path / image_relpath(before)).read_bytes() == b"old image"
    assert (tmp_path / image_relpath(after_restart)).read_bytes() == b"new image"


def test_no_image_path_while_outputs_are_paused(tmp_path: Path):
    storage = StorageService(CacheLayout(tmp_path), StorageSettings(), Supervisor())
    written = Payload(list(PATH), {}, seq=1, image_jpeg=b"jpeg")
    written = storage.place_image(written)  # a copy: payloads are frozen
    assert written.image_path == f"_output/{image_relpath(written)}"
    storage.outputs_paused = lambda: True
    skipped = Payload(list(PATH), {}, seq=2, image_jpeg=b"jpeg")
    skipped = storage.place_image(skipped)
    assert skipped.image_path is None
