"""Models delivered remotely, in a node: a pipeline names ``MODEL_URL`` + ``MODEL_SHA256``, the node fetches the
model (a real local HTTP server, a real S3 server), and an update to a new version swaps models without losing
a frame; a wrong hash, a 404 or a model that does not load leaves the old version serving (decision 36)."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EmitTap, wait_for
from model_http import ModelHttpServer
from mqtt_broker import free_port
from onnx_models import offset_mean_model

from edge_engine.constants import KIND_BUSINESS

pytest.importorskip("onnxruntime", reason="model serving needs onnxruntime (requirements.txt)")

SOURCE = """
    import numpy as np
    from edge_engine.api import CapturePlugin, Input, Key


    class Counting(CapturePlugin):
        SIGNATURE = "COUNTING_FRAMES"
        CONFIG = {"FPS": Key(60.0)}

        def connect(self):
            self.index = 0

        def read(self):
            self.context.stop_event.wait(1 / self.config["FPS"])
            self.index += 1
            value = self.index % 50
            return Input(image=np.full((24, 32, 3), value, np.uint8), metadata={"value": value})
"""

RECORDER = """
    from edge_engine.api import BusinessPlugin, ServingError


    class Versions(BusinessPlugin):
        SIGNATURE = "VERSIONS"
        SEEN = []  # (seq, model offset or error kind), read by the test

        def process(self, inp):
            value = inp.inferences.get("ONNX")
            if isinstance(value, ServingError):
                type(self).SEEN.append((inp.seq, value.kind))
            else:
                type(self).SEEN.append((inp.seq, round(float(value["mean"][0]) - inp.metadata["value"])))
"""

PARAMS = {"INPUT_WIDTH": 16, "INPUT_HEIGHT": 16, "COLOR_ORDER": "BGR", "SCALE": 1.0, "WORKERS": 1}


def pipeline(url: str, sha: str) -> dict[str, Any]:
    params = {**PARAMS, "MODEL_URL": url, "MODEL_SHA256": sha}
    return {"NAME": "fleet", "TYPE": "COUNTING_FRAMES", "PLUGINS": [{"SIGNATURE": "VERSIONS", "INSTANCES": [
        {"INSTANCE_ID": "v", "AI_ENGINE": "ONNX", "STARTUP_AI_ENGINE_PARAMS": params}]}]}  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def models(tmp_path: Path) -> Iterator[tuple[ModelHttpServer, dict[str, str]]]:
    """Versions 1 and 2 (means plus 100 or 200), a file that is not a model, on a local HTTP server."""
    server = ModelHttpServer().start()
    shas = {}
    for name, offset in (("v1", 100.0), ("v2", 200.0)):
        path = offset_mean_model(tmp_path / "built" / f"{name}.onnx", offset)
        server.files[f"/models/{name}.onnx"] = path.read_bytes()
        shas[name] = sha256(path)
    server.files["/models/broken.onnx"] = b"this is not an onnx model"
    shas["broken"] = hashlib.sha256(b"this is not an onnx model").hexdigest()
    yield server, shas
    server.stop()


def seen(node: Any) -> list[tuple[int, Any]]:
    """(seq, model offset or error kind) of every input the node's VERSIONS instance got, in order."""
    return node.registry.get(KIND_BUSINESS, "VERSIONS").cls.SEEN  # type: ignore[no-any-return]


def seen_after(node: Any, start: int) -> list[tuple[int, Any]]:
    return [item for item in seen(node) if item[0] > start]


def status_page(port: int) -> Any:
    """What the status page shows (it renders /api/status)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as response:
        return json.loads(response.read())


def server_states(node: Any) -> dict[str, tuple[str, Any]]:
    return {s["model"]: (s["state"], s.get("load_error")) for s in node.snapshot()["models"]["servers"]}


def test_an_update_to_a_new_model_version_loses_no_frame_and_a_bad_one_keeps_the_old(
    node_factory: Any, models: tuple[ModelHttpServer, dict[str, str]]
) -> None:
    http, shas = models
    port = free_port()
    node = node_factory(plugins={"data/counting.py": SOURCE, "business/versions.py": RECORDER}, start=False,
                        environ={"EE_STATUS_PORT": str(port)})  # fmt: skip
    tap = EmitTap()
    node.pm.register(tap, name="test-tap")
    node.start()
    seen(node).clear()
    node.add_pipeline(pipeline(http.url("/models/v1.onnx"), shas["v1"]))
    wait_for(lambda: sum(1 for _, v in seen(node) if v == 100) >= 10, timeout=60)
    assert {v for _, v in seen(node)} == {100}  # frames waited for the first download: none failed
    fetched = node.layout.models / "fetched" / f"{shas['v1']}.onnx"
    assert fetched.read_bytes() == http.files["/models/v1.onnx"]
    (download,) = node.snapshot()["models"]["downloads"]
    assert download["state"] == "ready" and download["model"] == "v1.onnx" and download["percent"] == 100.0

    # version 2, slowed down on the wire: version 1 keeps serving until version 2 is downloaded and loaded
    http.gate = gate = threading.Event()
    half = len(http.files["/models/v2.onnx"]) // 2
    http.cut_after["/models/v2.onnx"] = half  # and its first response is cut halfway: the download resumes
    mark = seen(node)[-1][0]
    node.add_pipeline(pipeline(http.url("/models/v2.onnx"), shas["v2"]))
    wait_for(lambda: server_states(node).get("v2.onnx", ("",))[0] == "downloading", timeout=10)

    def local_info() -> Any:
        node.write_local_info()  # (the node's run loop does it every SECONDS_LOCAL_INFO; an in-process node has none)
        return json.loads(node.layout.local_info.read_text())

    def v2_shown(where: Any) -> dict[str, Any] | None:
        return next((s for s in where()["models"]["servers"] if s["model"] == "v2.onnx"), None)

    for where in (local_info, lambda: status_page(port)):  # both show it
        # "downloading 0.0 MB" until the response's headers give the size, then "0.0 of 0.0 MB" (held by the gate)
        wait_for(lambda w=where: " of " in ((v2_shown(w) or {}).get("download") or ""), timeout=10)
        shown = v2_shown(where)
        assert shown is not None and shown["state"] == "downloading", shown
        assert shown["download"].startswith("downloading 0.0 of 0.0 MB"), shown
        assert shown["source"] == http.url("/models/v2.onnx") and shown["sha256"] == shas["v2"]
    wait_for(lambda: len(seen_after(node, mark)) >= 10, timeout=30)
    assert {v for _, v in seen_after(node, mark)} == {100}
    gate.set()
    wait_for(lambda: any(v == 200 for _, v in seen(node)[-5:]), timeout=60)
    wait_for(lambda: sum(1 for _, v in seen_after(node, mark) if v == 200) >= 10, timeout=30)
    after = seen_after(node, mark)
    values = [v for _, v in after]
    switch = values.index(200)
    assert set(values[:switch]) == {100} and set(values[switch:]) == {200}, values  # one switch, no error
    seqs = [s for s, _ in seen(node)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a frame was lost or repeated"
    http.gate = None
    v2_download = [d for d in node.snapshot()["models"]["downloads"] if d["model"] == "v2.onnx"][-1]
    assert (v2_download["attempts"], v2_download["resumed_from"], v2_download["state"]) == (2, half, "ready")
    assert (node.layout.models / "fetched" / f"{shas['v2']}.onnx").read_bytes() == http.files["/models/v2.onnx"]

    # a wrong hash, a 404, a file that is not a model: each is a clear error naming the model; v2 keeps serving
    bad = [
        (http.url("/models/v1.onnx"), "0" * 64, "v1.onnx", "SHA-256 mismatch"),
        (http.url("/models/gone.onnx"), "2" * 64, "gone.onnx", "HTTP 404"),  # (v1 would come from the cache)
        (http.url("/models/broken.onnx"), shas["broken"], "broken.onnx", "failed to load"),
    ]
    for url, sha, model, reason in bad:
        mark = seen(node)[-1][0]
        node.add_pipeline(pipeline(url, sha))
        wait_for(lambda m=model, r=reason: any(m in n.message and r in n.message for n in tap.notifications), 60)
        wait_for(lambda m=mark: len(seen_after(node, m)) >= 10, timeout=30)
        assert {v for _, v in seen_after(node, mark)} == {200}, seen_after(node, mark)
        state, error = server_states(node)[model]
        assert state in ("failed", "restarting", "starting") and model in str(error), (state, error)
        assert str(node.layout.root) not in str(error), error  # no local path on the wire (decision 37)
    seqs = [s for s, _ in seen(node)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    info = json.loads(json.dumps(node.snapshot()["models"]))  # what local_info.json carries
    assert [d["model"] for d in info["downloads"]] == ["v1.onnx", "v2.onnx", "v1.onnx", "gone.onnx", "broken.onnx"]
    assert [d["state"] for d in info["downloads"]] == ["ready", "ready", "failed", "failed", "ready"]
    assert str(node.layout.models) not in json.dumps(info["downloads"])  # no local path on the wire


def test_a_model_in_s3_comes_through_the_node_storage_settings(
    node_factory: Any, s3_server: Any, tmp_path: Path
) -> None:
    import io

    path = offset_mean_model(tmp_path / "v1.onnx", 100.0)
    client = s3_server.client()
    if not client.bucket_exists(s3_server.bucket):
        client.make_bucket(s3_server.bucket)
    client.put_object(s3_server.bucket, "fleet/v1.onnx", io.BytesIO(path.read_bytes()), path.stat().st_size)
    node = node_factory(plugins={"data/counting.py": SOURCE, "business/versions.py": RECORDER},
                        environ=s3_server.env)  # fmt: skip
    seen(node).clear()
    mark = 0
    node.add_pipeline(pipeline("s3:fleet/v1.onnx", sha256(path)))
    wait_for(lambda: sum(1 for _, v in seen_after(node, mark) if v == 100) >= 5, timeout=60)
    assert {v for _, v in seen_after(node, mark)} == {100}
    (download,) = node.snapshot()["models"]["downloads"]
    assert download["source"] == "s3:fleet/v1.onnx" and download["state"] == "ready"


def test_a_model_server_that_cannot_be_reached_yet_is_tried_again_until_it_answers(
    node_factory: Any, tmp_path: Path
) -> None:
    path = offset_mean_model(tmp_path / "v1.onnx", 100.0)
    down = ModelHttpServer().start()
    url, port = down.url("/models/v1.onnx"), down.port
    down.stop()  # the model server is not up yet (a node booting before the network)
    node = node_factory(plugins={"data/counting.py": SOURCE, "business/versions.py": RECORDER}, start=False)
    tap = EmitTap()
    node.pm.register(tap, name="test-tap")
    node.start()
    node.serving.fetcher.attempts = 1  # report the first failure at once (5 tries with backoff by default)
    seen(node).clear()
    node.add_pipeline(pipeline(url, sha256(path)))
    wait_for(lambda: any("cannot reach" in n.message and "trying again" in n.message for n in tap.notifications), 30)
    assert server_states(node)["v1.onnx"][0] == "downloading"
    up = ModelHttpServer(port).start()
    try:
        up.files["/models/v1.onnx"] = path.read_bytes()
        wait_for(lambda: sum(1 for _, v in seen(node) if v == 100) >= 5, timeout=60)
        assert {v for _, v in seen(node)} == {100}  # the frames waited for the model: none failed
    finally:
        up.stop()
