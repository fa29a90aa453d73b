"""The status page, its JSON API, the witness endpoint, /metrics and the token rule, against a live node.

One node runs for the module: SYNTHETIC → FRAME_STATS, the demo video (REALTIME, LOOP) → MOTION_DETECTOR,
and a short SYNTHETIC pipeline that finishes. The browser test drives Debian's chromium with Selenium.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import REPO, wait_for

from edge_engine.config.node_settings import load_settings
from edge_engine.errors import ConfigError
from edge_engine.node.core import Node
from edge_engine.observe import ObserveServer, ObserveSettings, load_observe_settings

PIPELINES: list[dict[str, Any]] = [
    {"NAME": "synth", "TYPE": "SYNTHETIC",
     "PLUGINS": [{"SIGNATURE": "FRAME_STATS", "INSTANCES": [{"INSTANCE_ID": "S1"}]}]},
    {"NAME": "video", "TYPE": "VIDEO_FILE", "URL": str(REPO / "samples" / "demo.mp4"), "REALTIME": True, "LOOP": True,
     "PLUGINS": [{"SIGNATURE": "MOTION_DETECTOR",
                  "INSTANCES": [{"INSTANCE_ID": "M1", "ON_THRESHOLD": 0.01, "OFF_THRESHOLD": 0.003}]}]},
    {"NAME": "short", "TYPE": "SYNTHETIC", "COUNT": 3,
     "PLUGINS": [{"SIGNATURE": "FRAME_STATS", "INSTANCES": [{"INSTANCE_ID": "F1"}]}]},
]  # fmt: skip
WITNESS = "/api/witness/video/MOTION_DETECTOR_M1"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "test-artifacts"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--window-size=1280,1400")  # fmt: skip


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def non_loopback_ip() -> str:
    """This machine's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            ip = str(sock.getsockname()[0])
        except OSError as exc:
            pytest.fail(f"no non-loopback address to test the token rule from: {exc}")
    if ip.startswith("127.") or ip == "0.0.0.0":
        pytest.fail(f"no non-loopback address to test the token rule from (got {ip})")
    return ip


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("status_node")
    config = {"PLUGIN_FOLDERS": [str(REPO / "extensions")], "DEMO_PIPELINE": False, "SECONDS_LOCAL_INFO": 0.5,
              "SECONDS_HISTORY_SAMPLE": 1, "PIPELINES": PIPELINES}  # fmt: skip
    (base / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
    env = {"EE_LOAD_ENTRY_POINTS": "0", "EE_COMMS": "0", "EE_STATUS_PORT": str(free_port())}
    node = Node(load_settings(base, base / "_local_cache", env))
    node.start()
    assert node.observe is not None and node.observe.port() > 0
    yield node
    node.stop("test teardown")


@pytest.fixture(scope="module")
def base_url(node: Node) -> str:
    return f"http://127.0.0.1:{node.observe.port()}"


def status(base_url: str) -> dict[str, Any]:
    code, body = get(base_url + "/api/status")
    assert code == 200
    return json.loads(body)


def counters(snap: dict[str, Any]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for pipe in snap["pipelines"]:
        out[(pipe["name"], "capture")] = pipe["capture"]["inputs"]
        for inst in pipe["instances"]:
            out[(pipe["name"], f"{inst['signature']}_{inst['instance_id']}")] = inst["inputs"]
    return out


def wait_witness(base_url: str) -> bytes:
    def fetch() -> bytes | None:
        code, body = get(base_url + WITNESS)
        return body if code == 200 else None

    return wait_for(fetch, timeout=20, interval=0.2)


def test_api_status_agrees_with_snapshot_and_counters_move(node: Node, base_url: str) -> None:
    first = status(base_url)
    snap = node.snapshot()
    assert first["address"] == snap["address"] and first["alias"] == snap["alias"]
    assert [p["name"] for p in first["pipelines"]] == [p["name"] for p in snap["pipelines"]]
    for key, value in counters(first).items():
        assert value <= counters(snap)[key]

    def moved() -> dict[str, Any] | None:
        now = status(base_url)
        return now if counters(now)[("synth", "capture")] > counters(first)[("synth", "capture")] else None

    second = wait_for(moved)
    assert counters(second)[("synth", "capture")] > counters(first)[("synth", "capture")]
    code, page = get(base_url + "/")
    assert code == 200 and b"/api/status" in page and b"<canvas" in page
    code, body = get(base_url + "/api/history")
    assert code == 200 and "cpu_load" in json.loads(body)


def test_witness_is_a_real_jpeg_and_traversal_is_refused(node: Node, base_url: str) -> None:
    image = cv2.imdecode(np.frombuffer(wait_witness(base_url), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 0
    for bad in ("/api/witness/../../_data", "/api/witness/video/..%2F..%2F_data", "/api/witness/%2E%2E/x",
                "/api/witness/video/MOTION_DETECTOR_M1/../../x", "/api/witness/..%2F/etc"):  # fmt: skip
        code, _ = get(base_url + bad)
        assert code == 404, bad


def test_finished_pipeline_shows_its_status(base_url: str) -> None:
    def short_status() -> str | None:
        found = [p["status"] for p in status(base_url)["pipelines"] if p["name"] == "short"]
        return found[0] if found and found[0] in ("finished", "stopped") else None

    assert wait_for(short_status, timeout=10) in ("finished", "stopped")


def test_metrics_agree_with_local_info(node: Node, base_url: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    before = node.snapshot()
    code, body = get(base_url + "/metrics")
    after = node.snapshot()
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in ("edge_inputs", "edge_payloads", "edge_dropped", "edge_errors", "edge_restarts", "edge_queue_depth"):
        assert name in families, name
    assert next(iter(families["edge_process_rss_bytes"].samples)).value > 1e6
    low, high = counters(before), counters(after)
    seen = 0
    for sample in families["edge_inputs"].samples:
        labels = sample.labels
        key = (labels["pipeline"], "capture" if labels["stage"] == "capture"
               else f"{labels['signature']}_{labels['instance']}")  # fmt: skip
        assert low[key] <= sample.value <= high[key], (key, low[key], sample.value, high[key])
        seen += 1
    assert seen == len(high)


def test_non_loopback_needs_the_token(node: Node) -> None:
    ip = non_loopback_ip()
    server = ObserveServer(node, ObserveSettings(status_port=free_port("0.0.0.0"), status_bind="0.0.0.0",
                                                 token="s3cret"))  # fmt: skip
    server.start()
    try:
        url = f"http://{ip}:{server.port()}/api/status"
        assert get(url)[0] in (401, 403)
        assert get(url, {"Authorization": "Bearer wrong"})[0] in (401, 403)
        assert get(url, {"Authorization": "Bearer s3cret"})[0] == 200
        assert get(url + "?token=s3cret")[0] == 200
        assert get(f"http://127.0.0.1:{server.port()}/api/status")[0] == 200  # loopback needs no token
    finally:
        server.stop()


def test_public_bind_without_token_refuses_the_start() -> None:
    with pytest.raises(ConfigError, match=r"EE_STATUS_BIND.*needs EE_STATUS_TOKEN.*got '0\.0\.0\.0'"):
        load_observe_settings({"EE_STATUS_BIND": "0.0.0.0", "EE_STATUS_PORT": "0"})
    assert load_observe_settings({}).status_port == 8089
    assert load_observe_settings({"EE_STATUS_BIND": "0.0.0.0", "EE_STATUS_TOKEN": "t"}).status_bind == "0.0.0.0"


def test_page_in_headless_chromium(node: Node, base_url: str) -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"the browser test needs Debian's chromium and chromium-driver (missing {missing}); "
                    "scripts/run-tests.sh installs them")  # fmt: skip
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.fail(f"the browser test needs selenium (requirements-dev.txt): {exc}")
    wait_witness(base_url)
    assert node.history is not None
    for _ in range(5):  # the housekeeping loop is not running in-process: give the charts some points
        node.history.sample({name: node.pipelines[name].capture.stats.rate for name in node.pipeline_names()})
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(15)
        driver.get(base_url + "/")

        # read the page in one script call: the page re-renders every second, so an element found by one WebDriver
        # call may be gone (stale) by the next
        def names() -> set[str] | None:
            found = set(driver.execute_script(
                "return [...document.querySelectorAll('.pipeline')].map(e => e.dataset.pipeline);"))  # fmt: skip
            return found if {"synth", "video"} <= found else None

        wait_for(names, timeout=10, interval=0.2)

        def synth_inputs() -> int:
            text = driver.execute_script(
                "const e = document.querySelector('[data-pipeline=\"synth\"] .capture-inputs');"
                " return e ? e.innerText : '';")  # fmt: skip
            return int(text.replace(",", "").replace(".", "").replace("\u202f", "").replace("\xa0", "") or 0)

        first = synth_inputs()
        wait_for(lambda: synth_inputs() > first, timeout=6, interval=0.3)
        script = ("const i = document.querySelector('[data-pipeline=\"video\"] img.witness');"
                  " return i && i.complete ? i.naturalWidth : 0;")  # fmt: skip
        assert wait_for(lambda: driver.execute_script(script), timeout=8, interval=0.3) > 0
        finished = driver.execute_script("return document.querySelector('[data-pipeline=\"short\"]').dataset.status;")
        assert finished in ("finished", "stopped")
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "status_page.png"))
    finally:
        driver.quit()


def test_a_port_in_use_is_logged_and_the_node_keeps_running(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = ObserveServer(node, ObserveSettings(status_port=busy.getsockname()[1]))
        server.start()
    assert server.port() == 0 and "cannot listen" in caplog.text
    assert node.status == "running"
