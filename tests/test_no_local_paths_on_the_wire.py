"""Decision 37: nothing a node publishes names its local paths. A real node process on a real Mosquitto, with
invalid pipelines in its cache and a refused deploy whose reason quotes a model file in ``_models/``: every message
it publishes (heartbeats decoded, notifications, payloads) is scanned for the cache folder and the working folder."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_for
from node_runner import NodeRunner, base_env
from plugins_src import synthetic_pipeline

from edge_engine.cli.ops import main_add_allowed
from edge_engine.comms.heartbeat import build_heartbeat, decode_data
from edge_engine.redact import LocalPaths
from edge_engine.remote.node_client import EdgeClient, load_client_identity

pytestmark = pytest.mark.timeout(90)

STATS = synthetic_pipeline("stats", "FRAME_STATS", {"INSTANCE_ID": "fs", "REPORT_EVERY": 5}, CAP_RESOLUTION=20)
BENCH_VIDEO = {"NAME": "BENCH_VIDEO", "TYPE": "VIDEO_FILE", "URL": "bench.mp4",
               "PLUGINS": [{"SIGNATURE": "NO_SUCH_PLUGIN", "INSTANCES": [{"INSTANCE_ID": "a"}]}]}  # fmt: skip
DETECTOR = {"INSTANCE_ID": "people", "AI_ENGINE": "YOLO", "STARTUP_AI_ENGINE_PARAMS": {"ONNX_MODEL": "missing.onnx"}}
MISSING_MODEL = {"NAME": "detect", "TYPE": "SYNTHETIC", "MODE": "messages",
                 "PLUGINS": [{"SIGNATURE": "OBJECT_DETECTOR", "INSTANCES": [DETECTOR]}]}  # fmt: skip


class Tap:
    """Every message on the broker (``#``), as published."""

    def __init__(self, port: int):
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="path-tap")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("#", qos=1)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def texts(self) -> list[tuple[str, str]]:
        """Each message's text, a heartbeat's ``ENCODED_DATA`` decoded into it."""
        with self._lock:
            captured = list(self.messages)
        result = []
        for topic, data in captured:
            text = data.decode("utf-8", errors="replace")
            try:
                message = json.loads(text)
            except ValueError:
                message = None
            if isinstance(message, dict) and isinstance(message.get("ENCODED_DATA"), str):
                text += json.dumps(decode_data(message["ENCODED_DATA"]), ensure_ascii=False)
            result.append((topic, text))
        return result

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _heartbeats(tap: Tap, address: str) -> list[dict[str, Any]]:
    beats = []
    for _topic, data in list(tap.messages):
        message = json.loads(data)
        if message.get("EE_EVENT_TYPE") == "HEARTBEAT" and message.get("EE_SENDER") == address:
            beats.append(decode_data(message["ENCODED_DATA"]))
    return beats


def test_a_real_node_publishes_no_local_path(mosquitto, clients, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    streams = cache / "_data" / "box_configuration" / "streams"
    streams.mkdir(parents=True)
    (streams / "BENCH_VIDEO.json").write_text(json.dumps(BENCH_VIDEO), encoding="utf-8")
    (streams / "broken.json").write_text('{"NAME": "broken", ', encoding="utf-8")
    (streams / "two.json").write_text(json.dumps([STATS, STATS]), encoding="utf-8")
    runner = NodeRunner(tmp_path / "work", base_env(cache, **mosquitto.env),
                        {"SECONDS_HEARTBEAT": 1, "DEMO_PIPELINE": False, "PIPELINES": [STATS]})  # fmt: skip
    tap = Tap(mosquitto.port)
    try:
        runner.start()
        info = runner.wait_running(lambda i: bool(i.get("comms", {}).get("connected")), timeout=40)
        address = info["address"]
        assert {p["name"] for p in info["invalid_pipelines"]} == {"BENCH_VIDEO", "broken", "two"}
        assert any(str(cache) in e for p in info["invalid_pipelines"] for e in p["errors"])  # local: the file shown

        me = load_client_identity(tmp_path / "client" / "client.pem")
        assert main_add_allowed(["--cache-dir", str(cache), me.address]) == 0
        client: EdgeClient = clients(me, mosquitto.port)
        refused = client.deploy(address, MISSING_MODEL, timeout=20)
        assert not refused.ok and "missing.onnx" in refused.reason and "file not found" in refused.reason, refused
        seen = len(_heartbeats(tap, address))
        wait_for(lambda: len(_heartbeats(tap, address)) >= seen + 2, timeout=20)  # heartbeats after the refusal

        beat = _heartbeats(tap, address)[-1]
        invalid = {p["name"]: p["errors"] for p in beat["INVALID_PIPELINES"]}
        assert set(invalid) == {"BENCH_VIDEO", "broken", "two"}, invalid
        assert any("NO_SUCH_PLUGIN" in e for e in invalid["BENCH_VIDEO"]), invalid
        assert any("not valid JSON" in e for e in invalid["broken"]) and invalid["two"], invalid

        kinds = {json.loads(data).get("EE_EVENT_TYPE") for _t, data in list(tap.messages)}
        assert {"HEARTBEAT", "NOTIFICATION", "PAYLOAD"} <= kinds, kinds
        local = {str(cache), os.path.realpath(cache), str(runner.workdir), os.path.realpath(runner.workdir)}
        leaks = [(topic, path) for topic, text in tap.texts() for path in local if path in text]
        assert not leaks, leaks[:5]
    finally:
        tap.close()
        runner.cleanup()


def test_heartbeat_invalid_pipelines_carry_names_and_reasons_only(tmp_path: Path) -> None:
    """The heartbeat body on its own: the snapshot's local fields (file, errors quoting it) stay home."""
    (tmp_path / "cache").mkdir()
    cache = str(tmp_path / "cache")
    file = f"{cache}/_data/box_configuration/streams/BENCH_VIDEO.json"
    invalid = {"name": "BENCH_VIDEO", "file": file, "errors": [f"{file} › key 'TYPE': x"], "reasons": ["key 'TYPE': x"]}
    snapshot = {
        "address": "0xai_x", "alias": "n", "cache_dir": cache, "pipelines": [], "invalid_pipelines": [invalid],
        "storage": {"queue_error": f"cannot write {cache}/_data/upload_queue/a.jpg"},
    }  # fmt: skip
    body = decode_data(build_heartbeat(snapshot, [], True, True, {})["ENCODED_DATA"])
    assert body["INVALID_PIPELINES"] == [{"name": "BENCH_VIDEO", "errors": ["key 'TYPE': x"]}]
    assert body["UPLOAD_STATS"] == {"queue_error": "cannot write a.jpg"}
    assert cache not in json.dumps(body)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/n/cache/_data/box_configuration/streams/cam.json › key 'TYPE': x", "cam.json › key 'TYPE': x"),
        ("model 'm': file not found (/n/cache/_models/m.onnx)", "model 'm': file not found (m.onnx)"),
        ('File "/n/work/plugins/p.py", line 3', 'File "p.py", line 3'),
        ("disk full under /n/cache", "disk full under <node folder>"),
        (
            "rtsp://camera/n/work/x and /n/cache2/y and /n/workshop",
            "rtsp://camera/n/work/x and /n/cache2/y and /n/workshop",
        ),
        ("no path here", "no path here"),
    ],
)
def test_local_paths_become_their_last_part(text: str, expected: str) -> None:
    paths = LocalPaths("/n/cache", "/n/work")
    assert paths.text(text) == expected
    assert paths.scrub({"A": [text], "CONFIG_STREAMS": [text]}, skip=frozenset({"CONFIG_STREAMS"})) == {
        "A": [expected], "CONFIG_STREAMS": [text]
    }  # fmt: skip
