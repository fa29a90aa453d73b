"""A live source that cannot be reached is *away*, not *flapping* (decision 32, issue 14 item 1).

The policy is unit-tested with a fake clock (an absence of hours, the lost/back bookkeeping, which errors mean
away); a small test plugin checks the lost warning comes on time while a probe blocks; and real servers are
killed and started again on the same port while a node in this process reads them with ``VIDEO_STREAM``:
FFmpeg over TCP (the issue's command) and GStreamer's RTSP server (``tests/rtsp_server.py`` under the system
Python). Frames must resume, one *stream lost* warning and one *stream back* info must be sent, and the
counters in local_info, heartbeats and ``/metrics`` must agree. A headless Chromium checks the status page.

In CI the outage is short (``EE_TEST_STREAM_OUTAGE_SECONDS``, default 4 s, with ``STREAM_LOST_SECONDS`` 2 s).
The documented slow runs use the issue's outages with the default ``STREAM_LOST_SECONDS`` (10 s)::

    EE_TEST_STREAM_OUTAGE_SECONDS=20 .venv/bin/python -m pytest tests/test_stream_away.py -k real_server
    EE_TEST_STREAM_OUTAGE_SECONDS=120 .venv/bin/python -m pytest tests/test_stream_away.py -k real_server

The first frame after the source is back must come within ``FIRST_FRAME_LIMIT_S`` (6 s: twice the 3 s goal,
margin for a loaded CI machine); ``benchmarks/bench_stream_return.py`` measures the figure itself.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import EmitTap, plugin_class, wait_for
from mqtt_broker import free_port
from stream_servers import SERVERS, listening

from edge_engine.comms.heartbeat import build_heartbeat
from edge_engine.comms.network import heartbeat_fields
from edge_engine.comms.service import notification_body
from edge_engine.constants import KIND_BUSINESS, KIND_CAPTURE
from edge_engine.node.core import Node
from edge_engine.observe.metrics import MetricsExporter
from edge_engine.runtime.capture import STREAM_BACK, STREAM_LOST, SilentSource
from edge_engine.runtime.presence import Presence, is_away_error
from edge_engine.runtime.supervisor import RestartPolicy, Supervisor

OUTAGE_S = float(os.environ.get("EE_TEST_STREAM_OUTAGE_SECONDS", "4"))
SLOW_RUN = OUTAGE_S >= 15
LOST_S = 10.0 if SLOW_RUN else 2.0  # STREAM_LOST_SECONDS: the default in slow runs, lowered in CI
FIRST_FRAME_LIMIT_S = 6.0

PLUGINS = {
    "business/frame_clock.py": '''
import time

from edge_engine.api import BusinessPlugin


class FrameClock(BusinessPlugin):
    """Keeps the monotonic time at which each input reached it."""

    SIGNATURE = "FRAME_CLOCK"
    CONFIG = {}
    times = []

    def process(self, inp):
        self.times.append(time.monotonic())
        del self.times[:-2000]
        return None
''',
    "data/away_source.py": '''
import time

from edge_engine.api import CapturePlugin, Input, Key


class AwaySource(CapturePlugin):
    """Refuses while the class's AWAY flag is set (at once the first time, then after blocking up to BLOCK_S in
    connect()), else gives inputs."""

    SIGNATURE = "AWAY_SRC"
    CONFIG = {"BLOCK_S": Key(0.0, min=0, doc="connect() blocks this long before refusing"),
              "QUIET": Key(False, type=bool, doc="once there, read() returns None (no message yet)"),
              "POLL_S": Key(0.02, min=0, doc="read() polls this long after the previous poll (the first at once)"),
              "LIVE_FEED": Key(True, type=bool, doc="live")}
    away = True
    attempts = []  # monotonic times of connect() calls

    def connect(self):
        self.attempts.append(time.monotonic())
        self.next_due = 0.0
        deadline = time.monotonic() + (self.config["BLOCK_S"] if len(self.attempts) > 1 else 0.0)
        while type(self).away and time.monotonic() < deadline and not self.context.stop_event.wait(0.01):
            pass  # a connection attempt in flight: it succeeds as soon as the source is back
        if type(self).away:
            raise ConnectionError("cannot open rtsp://admin:hunter2@10.0.0.9/live")

    fail_next_read = False  # the next read() fails once (one failed poll)

    def read(self):
        if type(self).away:
            raise ConnectionError("stream of rtsp://admin:hunter2@10.0.0.9/live ended")
        self.context.stop_event.wait(max(0.0, self.next_due - time.monotonic()))  # the first poll at once
        self.next_due = time.monotonic() + self.config["POLL_S"]
        if type(self).fail_next_read:
            type(self).fail_next_read = False
            raise ConnectionError("HTTP 503 from http://***@10.0.0.9/api")
        return None if self.config["QUIET"] else Input(data={"t": time.time()})
''',
}


def notes(node: Node, pipeline: str, status: str | None = None) -> list[dict[str, Any]]:
    path = node.layout.output / "notifications.jsonl"
    if not path.exists():
        return []
    found = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [n for n in found if n["path"][1] == pipeline and (status is None or n.get("STATUS") == status)]


def stream_notes(node: Node, pipeline: str) -> list[dict[str, Any]]:
    return [n for n in notes(node, pipeline) if n.get("STATUS") in (STREAM_LOST, STREAM_BACK)]


# --- the policy ---------------------------------------------------------------------------------------------------
def test_an_away_source_is_probed_for_hours_and_never_flaps() -> None:
    sup = Supervisor(RestartPolicy(cap=30.0, flap_max_failures=4, flap_window=60.0))
    delays = [sup.away("cam/capture", ConnectionRefusedError("refused"), cap=1.0) for _ in range(3 * 3600)]
    assert not sup.is_flapping("cam/capture")
    assert max(delays) <= 1.0 and min(delays[2:]) >= 0.8  # capped at 1 s, never 30 s, and not a busy loop
    assert sum(delays) > 2.5 * 3600  # three hours of probes at most a second apart
    assert sup.state("cam/capture").restarts == 3 * 3600
    # the absence left nothing in the flapping window: a source that then opens and crashes flaps only after
    # its own four crashes
    verdicts = [sup.record("cam/capture", RuntimeError("decoder crashed")) for _ in range(4)]
    assert [v.flapping for v in verdicts] == [False, False, False, True]


def test_presence_reports_lost_once_and_back_once() -> None:
    clock = [1000.0]
    presence = Presence(lost_seconds=10.0, probe_max_seconds=1.0, clock=lambda: clock[0])
    assert presence.failed("SilentSource: no input for 1 s", last_seen=999.0)  # silent: gone since its last input
    assert presence.next_check() == 1009.0
    clock[0] = 1005.0
    assert not presence.failed("ConnectionRefusedError: refused")  # the same absence
    clock[0] = 1008.9
    assert presence.lost_due() is None
    clock[0] = 1009.0
    absence = presence.lost_due()
    assert absence is not None and absence.probes == 2 and absence.last_error == "ConnectionRefusedError: refused"
    assert presence.lost_due() is None and presence.next_check() is None  # once
    snap = presence.snapshot()
    assert snap["away"] and snap["lost"] and snap["away_seconds"] == 10.0 and snap["times_lost"] == 1
    clock[0] = 1012.5
    back = presence.returned({"connect_ms": 700.0, "first_input_ms": 2.0})
    assert back is absence and back.lost_reported
    snap = presence.snapshot()
    assert not snap["away"] and snap["away_seconds"] == 0.0 and snap["probes"] == 0
    assert (snap["times_away"], snap["times_lost"], snap["times_back"]) == (1, 1, 1)
    assert snap["last_away_seconds"] == 13.5 and snap["last_back"] and snap["last_lost"]
    assert snap["last_return"] == {"away_seconds": 13.5, "probes": 2, "connect_ms": 700.0, "first_input_ms": 2.0}
    assert presence.returned({}) is None  # no absence: nothing to end


def test_a_short_blip_is_counted_but_not_reported() -> None:
    clock = [50.0]
    presence = Presence(lost_seconds=10.0, probe_max_seconds=1.0, clock=lambda: clock[0])
    presence.failed("ConnectionError: x")  # a failed attempt: the absence starts now
    clock[0] = 53.0
    assert presence.lost_due() is None
    back = presence.returned({})
    assert back is not None and not back.lost_reported
    snap = presence.snapshot()
    assert (snap["times_away"], snap["times_lost"], snap["times_back"], snap["last_away_seconds"]) == (1, 0, 0, 3.0)


@pytest.mark.parametrize(
    ("error", "away"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True),
        (ConnectionError("cannot open video stream rtsp://***@cam/x"), True),
        (TimeoutError("read timed out"), True),
        (SilentSource("no input for 30 s"), True),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), True),
        (OSError(errno.EHOSTUNREACH, "No route to host"), True),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), True),
        (RuntimeError("decoder crashed"), False),
        (ValueError("bad frame"), False),
        (FileNotFoundError(errno.ENOENT, "video file not found"), False),
        (OSError(errno.EACCES, "Permission denied"), False),
    ],
)
def test_which_errors_mean_away(error: BaseException, away: bool) -> None:
    assert is_away_error(error) is away


# --- a node with a test source ------------------------------------------------------------------------------------
def test_lost_is_sent_on_time_while_a_probe_blocks_and_back_with_the_first_input(node_factory: Any) -> None:
    # the first connect() refuses at once, the next ones block 3 s before refusing: the warning, due 1 s after the
    # first failure, must not wait for the blocked probe (the watchdog sends it). Flapping after 2 failures would
    # stop the source if away counted as failing.
    cam = {"NAME": "cam", "TYPE": "AWAY_SRC", "BLOCK_S": 3.0, "STREAM_LOST_SECONDS": 1.0,
           "PLUGINS": [{"SIGNATURE": "FRAME_CLOCK", "INSTANCES": [{"INSTANCE_ID": "c"}]}]}  # fmt: skip
    started = time.monotonic()
    node = node_factory(plugins=PLUGINS, pipelines=[cam], environ={"EE_FLAP_MAX_FAILURES": "2"})
    tap = EmitTap()
    node.pm.register(tap)  # before the warning is due (1 s): what goes to MQTT is built from these
    source = plugin_class(node, KIND_CAPTURE, "AWAY_SRC")  # loaded by this node: away, no attempts before it
    capture = node.pipelines["cam"].capture
    (lost,) = wait_for(lambda: notes(node, "cam", STREAM_LOST), timeout=10)
    assert time.monotonic() - started < 3.0  # before the blocked second probe returned
    assert lost["level"] == "warning" and lost["NOTIFICATION_TYPE"] == "ABNORMAL FUNCTIONING"
    assert lost["path"] == [node.alias, "cam", None, None] and lost["PART"] == "cam/capture"
    assert lost["REASON"] == "ConnectionError: cannot open rtsp://***@10.0.0.9/live"
    wait_for(lambda: len(source.attempts) >= 3, timeout=15)  # still probed after the limit of 2 failures
    assert capture.status == "away" and not node.env.supervisor.is_flapping("cam/capture")
    assert not notes(node, "cam", "flapping")
    assert "hunter2" not in json.dumps(node.snapshot())

    source.away = False
    clock = plugin_class(node, KIND_BUSINESS, "FRAME_CLOCK")
    wait_for(lambda: clock.times, timeout=10)
    (back,) = wait_for(lambda: notes(node, "cam", STREAM_BACK), timeout=5)
    assert back["level"] == "info" and back["AWAY_SECONDS"] >= 1.0 and back["PROBES"] >= 2
    assert [n["STATUS"] for n in stream_notes(node, "cam")] == [STREAM_LOST, STREAM_BACK]
    wait_for(lambda: capture.status == "running")
    stream = node.pipelines["cam"].snapshot()["capture"]["stream"]
    assert (stream["away"], stream["times_lost"], stream["times_back"]) == (False, 1, 1)
    bodies = [notification_body(n) for n in tap.notifications if n.fields.get("STATUS") in (STREAM_LOST, STREAM_BACK)]
    assert [(b["STATUS"], b["NOTIFICATION_TYPE"], b["NOTIFICATION_LEVEL"], b["STREAM_NAME"]) for b in bodies] == [
        (STREAM_LOST, "ABNORMAL FUNCTIONING", "warning", "cam"),
        (STREAM_BACK, "NORMAL", "info", "cam"),
    ]  # on MQTT


@pytest.mark.parametrize("silent", [0.0, 30.0])
def test_a_quiet_source_is_back_when_read_answers_unless_it_must_give_inputs(node_factory: Any, silent: float) -> None:
    # a message source (MQTT_TOPIC: SILENT_SOURCE_SECONDS 0) may have nothing to say: connected and read() answering
    # is being there; a source that must give inputs (a camera: SILENT_SOURCE_SECONDS set) is back with an input
    cam = {"NAME": "q", "TYPE": "AWAY_SRC", "QUIET": True, "SILENT_SOURCE_SECONDS": silent,
           "PLUGINS": [{"SIGNATURE": "FRAME_CLOCK", "INSTANCES": [{"INSTANCE_ID": "c"}]}]}  # fmt: skip
    node = node_factory(plugins=PLUGINS, pipelines=[cam])
    source = plugin_class(node, KIND_CAPTURE, "AWAY_SRC")
    capture = node.pipelines["q"].capture
    wait_for(lambda: capture.status == "away" and len(source.attempts) >= 2)
    source.away = False
    if silent:
        wait_for(lambda: len(source.attempts) >= 3 and capture.last_connect.get("connected", 0) > source.attempts[-1])
        time.sleep(0.3)  # read() answers None meanwhile
        assert capture.status == "away" and capture.presence.away
    else:
        wait_for(lambda: capture.status == "running")
        stream = node.pipelines["q"].snapshot()["capture"]["stream"]
        assert not stream["away"] and stream["times_away"] == 1 and stream["last_return"]["probes"] >= 2
    assert capture.stats.inputs == 0


def test_one_failed_poll_of_a_slow_poller_is_a_blip_not_a_lost_source(node_factory: Any) -> None:
    # polled every 1.5 s, lost after 1 s away: one failed poll, answered again by the probe 0.5 s later, is a short
    # absence (counted, not reported), however long ago the previous poll was
    poller = {"NAME": "p", "TYPE": "AWAY_SRC", "POLL_S": 1.5, "STREAM_LOST_SECONDS": 1.0,
              "PLUGINS": [{"SIGNATURE": "FRAME_CLOCK", "INSTANCES": [{"INSTANCE_ID": "c"}]}]}  # fmt: skip
    node = node_factory(plugins=PLUGINS, pipelines=[poller])
    source = plugin_class(node, KIND_CAPTURE, "AWAY_SRC")
    capture = node.pipelines["p"].capture
    wait_for(lambda: capture.status == "away")
    source.away = False
    wait_for(lambda: capture.stats.inputs >= 1)  # there (the first refusal at start was an absence too)
    assert capture.presence.times_lost == 0
    source.fail_next_read = True
    wait_for(lambda: capture.stats.errors >= 2 and capture.stats.inputs >= 2, timeout=10)
    wait_for(lambda: not capture.presence.away)
    stream = node.pipelines["p"].snapshot()["capture"]["stream"]
    assert stream["times_away"] == 2 and stream["times_lost"] == 0 and stream["last_away_seconds"] < 1.0
    assert not notes(node, "p", STREAM_LOST)


# --- real servers killed and started again ------------------------------------------------------------------------
def stream_pipeline(url: str, **capture: Any) -> dict[str, Any]:
    return {"NAME": "cam", "TYPE": "VIDEO_STREAM", "URL": url, **capture,
            "PLUGINS": [{"SIGNATURE": "FRAME_CLOCK", "INSTANCES": [{"INSTANCE_ID": "c"}]}]}  # fmt: skip


@pytest.mark.timeout(max(120, int(OUTAGE_S) + 100))  # the slow runs' outage is longer than the suite's per-test limit
@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_real_server_killed_and_back(kind: str, node_factory: Any, tmp_path: Path) -> None:
    server = SERVERS[kind](free_port(), tmp_path)
    server.start()
    capture_keys = {} if SLOW_RUN else {"STREAM_LOST_SECONDS": LOST_S}
    node = node_factory(plugins=PLUGINS, pipelines=[stream_pipeline(server.url, **capture_keys)])
    clock = plugin_class(node, KIND_BUSINESS, "FRAME_CLOCK")  # loaded by this node: no times before it
    try:
        runner = node.pipelines["cam"]
        capture = runner.capture
        wait_for(lambda: len(clock.times) >= 5, timeout=20)
        assert capture.stats.errors == 0

        server.kill()
        killed = time.monotonic()
        wait_for(lambda: capture.status == "away", timeout=10)
        (lost,) = wait_for(lambda: notes(node, "cam", STREAM_LOST), timeout=LOST_S + 10)
        assert lost["level"] == "warning" and lost["AWAY_SECONDS"] >= LOST_S - 0.5
        time.sleep(max(0.0, killed + OUTAGE_S - time.monotonic()))  # the outage itself: the camera is off
        away = runner.snapshot()
        assert away["status"] == "away" and away["capture"]["status"] == "away"
        stream = away["capture"]["stream"]
        assert stream["away"] and stream["lost"] and stream["away_seconds"] >= OUTAGE_S - 1.0
        assert stream["probes"] >= OUTAGE_S / 2  # still probed, about once a second
        assert not node.env.supervisor.is_flapping("cam/capture") and not notes(node, "cam", "flapping")
        frames_before = len(clock.times)

        back_at = server.start()
        wait_for(lambda: clock.times and clock.times[-1] > back_at, timeout=FIRST_FRAME_LIMIT_S + 10)
        first = next(t for t in clock.times if t > back_at)
        print(f"{kind}: first frame {first - back_at:.2f} s after the source was back ({OUTAGE_S:g} s outage)")
        assert first - back_at <= FIRST_FRAME_LIMIT_S, f"first frame {first - back_at:.2f} s after the source was back"
        wait_for(lambda: len(clock.times) >= frames_before + 10, timeout=10)  # frames keep coming
        (back,) = wait_for(lambda: notes(node, "cam", STREAM_BACK), timeout=5)
        assert [n["STATUS"] for n in stream_notes(node, "cam")] == [STREAM_LOST, STREAM_BACK]
        assert back["level"] == "info" and back["AWAY_SECONDS"] >= OUTAGE_S - 0.5
        assert back["CONNECT_MS"] > 0 and back["FIRST_INPUT_MS"] >= 0

        assert_counters_everywhere(node, OUTAGE_S)
    finally:
        server.kill()


def assert_counters_everywhere(node: Node, outage: float) -> None:
    """local_info.json, the heartbeat and /metrics show the same absence: lost once, back once, there now."""
    wait_for(lambda: node.pipelines["cam"].capture.status == "running")
    node.write_local_info()
    info = json.loads(node.layout.local_info.read_text(encoding="utf-8"))
    (pipe,) = [p for p in info["pipelines"] if p["name"] == "cam"]
    capture = pipe["capture"]
    stream = capture["stream"]
    assert pipe["status"] == "running" and capture["status"] == "running"
    assert (stream["away"], stream["times_away"], stream["times_lost"], stream["times_back"]) == (False, 1, 1, 1)
    assert stream["last_away_seconds"] >= outage - 0.5 and stream["last_back"] and stream["last_lost"]
    assert stream["last_return"]["probes"] == capture["errors"]  # each failed attempt counted once, in the absence
    assert capture["restarts"] == capture["errors"]

    heartbeat = heartbeat_fields(build_heartbeat(info, [], False, False, {}))
    (beat,) = [p for p in heartbeat["PIPELINES_STATUS"] if p["name"] == "cam"]
    assert beat["capture"]["stream"]["times_lost"] == 1 and beat["capture"]["stream"]["times_back"] == 1

    metrics = MetricsExporter(node.snapshot).render().decode()
    labels = 'instance="",pipeline="cam",signature="VIDEO_STREAM",stage="capture"'
    for line in (f"edge_stream_away{{{labels}}} 0.0", f"edge_stream_lost_total{{{labels}}} 1.0",
                 f"edge_stream_back_total{{{labels}}} 1.0", f"edge_stream_away_seconds{{{labels}}} 0.0"):  # fmt: skip
        assert line in metrics, line


# --- the status page ----------------------------------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def test_status_page_shows_a_lost_source(node_factory: Any) -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"the browser test needs Debian's chromium and chromium-driver (missing {missing})")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    port = free_port()
    assert not listening(port)  # nothing serves the camera's port: the source is away from the start
    status_port = free_port()
    cam = stream_pipeline(f"tcp://127.0.0.1:{port}", STREAM_LOST_SECONDS=0.5)
    node = node_factory(plugins=PLUGINS, pipelines=[cam], environ={"EE_STATUS_PORT": str(status_port)})
    wait_for(lambda: notes(node, "cam", STREAM_LOST), timeout=10)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(15)
        driver.get(f"http://127.0.0.1:{status_port}/")
        script = ("const e = document.querySelector('[data-pipeline=\"cam\"] .stream');"
                  " return e ? [e.dataset.away, e.innerText] : null;")  # fmt: skip
        away, text = wait_for(lambda: driver.execute_script(script), timeout=10, interval=0.2)
        assert away == "true" and "source lost for" in text and "probes" in text, text
        status = driver.execute_script("return document.querySelector('[data-pipeline=\"cam\"]').dataset.status;")
        assert status == "away"
    finally:
        driver.quit()
