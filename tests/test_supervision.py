"""Supervision: the flapping policy, silent sources, and the keep-alive watchdog (issue 5, item 3).

The window logic is unit-tested with a fake clock; the rest runs real nodes in-process (``node_factory``) with
small test plugins, and one test goes through a real Mosquitto broker: the flapping notification reaches an MQTT
subscriber and the owner's keep-alive command ends a pipeline's safe mode.

Durations are parameters: short in CI; ``EE_TEST_SUPERVISION_SCALE=10`` multiplies every backoff cap, silence,
keep-alive period, measuring window and timeout by 10 for the documented slow run.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import plugin_class, wait_for
from mqtt_broker import Mosquitto
from plugins_src import synthetic_pipeline

from edge_engine.cli.ops import main_add_allowed
from edge_engine.comms.heartbeat import active_plugins
from edge_engine.config.node_settings import load_settings
from edge_engine.constants import KIND_BUSINESS, KIND_CAPTURE
from edge_engine.errors import ConfigError
from edge_engine.node.core import Node
from edge_engine.remote import command_line as client_cli
from edge_engine.remote.node_client import EdgeClient, Received, load_client_identity
from edge_engine.runtime.supervisor import RestartPolicy, Supervisor

SCALE = float(os.environ.get("EE_TEST_SUPERVISION_SCALE", "1"))
BACKOFF_CAP = 0.2 * SCALE  # seconds: RESTART_BACKOFF_MAX of the test nodes (flapping within about a second)
SHORT_CAP = 0.1 * SCALE  # RESTART_BACKOFF_MAX where only the flapping matters
SILENT_S = 0.5 * SCALE  # SILENT_SOURCE_SECONDS of the silent-source tests
KEEP_ALIVE_S = 0.6 * SCALE  # KEEP_ALIVE_SECONDS of the keep-alive tests
RATE_WINDOW_S = 1.0 * SCALE  # seconds over which the healthy pipeline's progress is compared before/after flapping


def within(seconds: float) -> float:
    """A wait_for timeout, scaled with the durations."""
    return seconds * SCALE


PLUGINS = {
    "business/sup_plugins.py": '''
import threading

from edge_engine.api import BusinessPlugin, Key


class Failer(BusinessPlugin):
    """Raises in process() while FAIL is true."""

    SIGNATURE = "FAILER"
    CONFIG = {"FAIL": Key(True, type=bool, doc="raise on every input")}
    closed = []  # instance ids whose on_close ran

    def process(self, inp):
        if self.config["FAIL"]:
            raise RuntimeError(f"boom at input {inp.seq if inp else None} from rtsp://admin:hunter2@cam/x")
        return None

    def on_close(self):
        self.closed.append(self.context.instance_id)


class SafeProbe(BusinessPlugin):
    """Records on_safe_mode/on_resume calls, with the thread they ran on."""

    SIGNATURE = "SAFE_PROBE"
    CONFIG = {}
    calls = []  # (instance_id, "safe" | "resume", reason, thread name)

    def process(self, inp):
        return None

    def on_safe_mode(self, reason):
        self.calls.append((self.context.instance_id, "safe", reason, threading.current_thread().name))

    def on_resume(self):
        self.calls.append((self.context.instance_id, "resume", None, threading.current_thread().name))
''',
    "data/sup_source.py": '''
import itertools

from edge_engine.api import CapturePlugin, Input, Key


class FlakySource(CapturePlugin):
    """FRAMES inputs per connection, then: None for ever (silent), a read() that blocks (block), a read() that
    raises RuntimeError (crash: it opens and crashes), or connect() refuses (refuse: the source is away)."""

    SIGNATURE = "FLAKY_SRC"
    CONFIG = {
        "BEHAVIOUR": Key("silent", type=str, choices=("silent", "block", "crash", "refuse"), doc="how it fails"),
        "FRAMES": Key(5, type=int, min=0, doc="inputs per connection before it fails"),
        "LIVE_FEED": Key(True, type=bool, doc="live"),
    }
    objects = 0
    connects = 0
    calls = []  # ("safe" | "resume", reason)

    def __init__(self, config, context):
        super().__init__(config, context)
        type(self).objects += 1
        self.left = 0

    def connect(self):
        type(self).connects += 1
        if self.config["BEHAVIOUR"] == "refuse":
            raise ConnectionError("cannot open rtsp://admin:hunter2@10.0.0.9/live")
        self.left = self.config["FRAMES"]

    def read(self):
        if self.left > 0:
            self.left -= 1
            return Input(data={"n": self.left})
        if self.config["BEHAVIOUR"] == "crash":
            raise RuntimeError("decoder crashed reading rtsp://admin:hunter2@10.0.0.9/live")
        if self.config["BEHAVIOUR"] == "block":
            self.context.stop_event.wait(30)  # blocked far longer than SILENT_SOURCE_SECONDS (until the node stops)
            return None
        self.context.stop_event.wait(0.02)
        return None

    def on_safe_mode(self, reason):
        self.calls.append(("safe", reason))

    def on_resume(self):
        self.calls.append(("resume", None))
''',
}


def synthetic(name: str, signature: str, *instances: dict[str, Any], **capture: Any) -> dict[str, Any]:
    """A pipeline of SYNTHETIC messages at 100/s (unless ``capture`` says otherwise)."""
    return synthetic_pipeline(name, signature, *instances, **{"CAP_RESOLUTION": 100, **capture})


def flaky(name: str, behaviour: str, **capture: Any) -> dict[str, Any]:
    return {"NAME": name, "TYPE": "FLAKY_SRC", "BEHAVIOUR": behaviour, **capture,
            "PLUGINS": [{"SIGNATURE": "SAFE_PROBE", "INSTANCES": [{"INSTANCE_ID": "s"}]}]}  # fmt: skip


def notifications(node: Node) -> list[dict[str, Any]]:
    path = node.layout.output / "notifications.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def flapping_notes(node: Node, pipeline: str) -> list[dict[str, Any]]:
    return [n for n in notifications(node) if n.get("STATUS") == "flapping" and n["path"][1] == pipeline]


def progress(read: Any, seconds: float) -> int:
    """How much the counter ``read()`` grows in ``seconds``."""
    start = read()
    time.sleep(seconds)
    return read() - start


# --- the window logic, with a fake clock --------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def supervisor(clock: FakeClock, failures: int = 4, window: float = 60.0) -> Supervisor:
    policy = RestartPolicy(initial=0.5, cap=30.0, jitter=0.0, flap_max_failures=failures, flap_window=window)
    return Supervisor(policy, random.Random(0), clock=clock)


def test_n_failures_within_the_window_mark_a_part_flapping() -> None:
    clock = FakeClock()
    sup = supervisor(clock)
    verdicts = []
    for _ in range(4):
        verdicts.append(sup.record("p/SIG/i", RuntimeError("bad frame from rtsp://u:secret@h/x")))
        clock.now += 10.0  # 4 failures within 30 s
    assert [v.flapping for v in verdicts] == [False, False, False, True]
    assert [v.delay for v in verdicts[:3]] == [0.5, 1.0, 2.0]
    assert verdicts[3].failures == 4 and verdicts[3].delay == 0.0
    assert sup.is_flapping("p/SIG/i")
    fields = sup.flap_fields("p/SIG/i")
    assert fields["failures"] == 4 and fields["window_seconds"] == 60.0 and fields["since"].endswith("Z")
    assert fields["reason"] == "RuntimeError: bad frame from rtsp://***@h/x"  # the reason is redacted
    assert sup.record("p/SIG/i", "again").flapping  # stays flapping: no restart is offered
    assert sup.state("p/SIG/i").restarts == 3
    sup.recovered("p/SIG/i", clear_window=True)  # a flapping part does not recover by itself
    assert sup.is_flapping("p/SIG/i")
    sup.forget("p/SIG/i")  # started afresh (config update, restart)
    assert not sup.is_flapping("p/SIG/i") and not sup.record("p/SIG/i", "x").flapping


def test_failures_spread_wider_than_the_window_never_flap() -> None:
    clock = FakeClock()
    sup = supervisor(clock)
    for _ in range(20):
        assert not sup.record("p/capture", "down").flapping
        clock.now += 20.5  # at most 3 failures in any 60 s
    assert sup.state("p/capture").restarts == 20
    clock.now += 0.5
    for _ in range(2):
        sup.record("p/capture", "down")  # now 4 failures within 41 s
    assert sup.is_flapping("p/capture")


def test_recovery_resets_the_backoff_and_only_on_request_the_window() -> None:
    clock = FakeClock()
    sup = supervisor(clock)
    for _ in range(3):
        sup.record("src", "down")
    sup.recovered("src")  # a capture reconnected: backoff from the start, failures still counted
    verdict = sup.record("src", "down")
    assert verdict.flapping and verdict.failures == 4

    for _ in range(3):
        sup.record("inst", "raised")
    sup.recovered("inst", clear_window=True)  # an instance processed an input: its run of failures ended
    verdict = sup.record("inst", "raised")
    assert not verdict.flapping and verdict.failures == 1 and verdict.delay == 0.5


@pytest.mark.parametrize(("failures", "window", "flaps"), [(0, 60.0, False), (2, 60.0, True), (4, 5.0, False)])
def test_policy_limits(failures: int, window: float, flaps: bool) -> None:
    clock = FakeClock()
    sup = supervisor(clock, failures, window)
    for _ in range(10):
        sup.record("x", "e")
        clock.now += 2.0  # 10 failures in 20 s: at most 3 within 5 s
    assert sup.is_flapping("x") is flaps


def test_exempt_parts_and_prefixes() -> None:
    clock = FakeClock()
    sup = supervisor(clock, failures=2)
    assert not any(sup.record("comms", "broker away", flap=False).flapping for _ in range(10))
    for part in ("cam/capture", "cam/SIG/a", "camera2/capture"):
        sup.record(part, "e")
        sup.record(part, "e")
    assert all(sup.is_flapping(p) for p in ("cam/capture", "cam/SIG/a", "camera2/capture"))
    sup.forget_prefix("cam/")
    assert not sup.is_flapping("cam/capture") and not sup.is_flapping("cam/SIG/a")
    assert sup.is_flapping("camera2/capture")


def test_env_tunables_reach_the_supervisor(node_factory: Any, tmp_path: Path) -> None:
    node = node_factory(environ={"EE_FLAP_MAX_FAILURES": "7", "EE_FLAP_WINDOW_SECONDS": "12.5"})
    assert node.env is not None
    policy = node.env.supervisor.policy
    assert (policy.flap_max_failures, policy.flap_window) == (7, 12.5)
    default = node_factory(start=False)  # defaults: 4 failures within 60 s
    assert (default.settings.startup["FLAP_MAX_FAILURES"], default.settings.startup["FLAP_WINDOW_SECONDS"]) == (4, 60)
    with pytest.raises(ConfigError, match="EE_FLAP_MAX_FAILURES"):
        load_settings(tmp_path / "bad", tmp_path / "bad" / "cache", {"EE_FLAP_MAX_FAILURES": "four"})


# --- flapping parts in a running node ------------------------------------------------------------------------------
def test_instance_raising_on_every_frame_flaps_while_other_pipelines_keep_their_rate(node_factory: Any) -> None:
    node = node_factory(
        plugins=PLUGINS,
        pipelines=[
            synthetic("broken", "FAILER", {"INSTANCE_ID": "x"}),
            synthetic("healthy", "SAFE_PROBE", {"INSTANCE_ID": "h"}, CAP_RESOLUTION=50),
        ],
        startup={"RESTART_BACKOFF_MAX": BACKOFF_CAP},
    )
    broken = node.pipelines["broken"].instance("FAILER", "x")
    healthy = node.pipelines["healthy"].instance("SAFE_PROBE", "h")
    assert broken is not None and healthy is not None
    before = progress(lambda: healthy.stats.inputs, RATE_WINDOW_S)
    wait_for(lambda: broken.status == "flapping", timeout=within(10))

    # stopped: closed, no more process() calls, its inputs no longer handed to it
    assert "x" in plugin_class(node, KIND_BUSINESS, "FAILER").closed
    errors = broken.stats.errors
    assert errors >= 4
    after = progress(lambda: healthy.stats.inputs, RATE_WINDOW_S)
    assert broken.stats.errors == errors and broken._plugin is None
    assert after >= 0.5 * before > 0, (before, after)  # the other pipeline keeps its rate

    (note,) = wait_for(lambda: flapping_notes(node, "broken"))
    assert note["level"] == "error" and note["NOTIFICATION_TYPE"] == "ABNORMAL FUNCTIONING"
    assert note["path"] == [node.alias, "broken", "FAILER", "x"]
    assert note["REASON"].startswith("RuntimeError: boom at input") and "hunter2" not in note["REASON"]
    assert note["FAILURES"] == 4 and note["WINDOW_SECONDS"] == 60.0 and "flapping" in note["message"]

    # shown everywhere statuses are: local_info, heartbeat ACTIVE_PLUGINS, /metrics
    node.write_local_info()
    info = json.loads(node.layout.local_info.read_text(encoding="utf-8"))
    (pipe,) = [p for p in info["pipelines"] if p["name"] == "broken"]
    (inst,) = pipe["instances"]
    assert inst["status"] == "flapping" and inst["flapping"]["failures"] == 4
    assert inst["flapping"]["reason"] == note["REASON"] and inst["flapping"]["since"]
    (active,) = [a for a in active_plugins(info) if a["STREAM_ID"] == "broken"]
    assert active["STATUS"] == "flapping" and active["FLAPPING"]["reason"] == note["REASON"]
    from edge_engine.observe.metrics import MetricsExporter

    metrics = MetricsExporter(node.snapshot).render().decode()
    assert 'edge_flapping{instance="x",pipeline="broken",signature="FAILER",stage="instance"} 1.0' in metrics
    assert 'edge_flapping{instance="h",pipeline="healthy",signature="SAFE_PROBE",stage="instance"} 0.0' in metrics

    # the same config sent again starts it again (and it flaps again: it still fails)
    node.add_pipeline(node.pipelines["broken"].spec.raw)
    wait_for(lambda: len(flapping_notes(node, "broken")) == 2, timeout=within(10))
    # a config update that fixes it starts it for good
    node.update_instance("broken", "FAILER", "x", {"FAIL": False})
    wait_for(lambda: broken.status == "running" and broken._plugin is not None)
    inputs = broken.stats.inputs
    wait_for(lambda: broken.stats.inputs >= inputs + 20)
    assert broken.status == "running" and len(flapping_notes(node, "broken")) == 2


def test_intermittent_errors_do_not_flap(node_factory: Any) -> None:
    source = """
from edge_engine.api import BusinessPlugin


class EveryOther(BusinessPlugin):
    SIGNATURE = "EVERY_OTHER"
    CONFIG = {}

    def process(self, inp):
        if inp.seq % 2:
            raise ValueError("odd input")
"""
    node = node_factory(plugins={"business/every_other.py": source},
                        pipelines=[synthetic("p", "EVERY_OTHER", {"INSTANCE_ID": "e"})])  # fmt: skip
    runner = node.pipelines["p"].instance("EVERY_OTHER", "e")
    assert runner is not None
    wait_for(lambda: runner.stats.errors >= 40)  # far beyond 4 failures within 60 s, never twice in a row
    assert runner.status == "running" and runner.stats.restarts == 0
    assert not flapping_notes(node, "p")


def test_flapping_capture_source_is_stopped_with_a_notification(node_factory: Any) -> None:
    # a source that opens and then crashes (not a connection error) flaps; one that is away does not
    # (decision 32, tests/test_stream_away.py)
    cam = flaky("cam", "crash", FRAMES=2)
    node = node_factory(plugins=PLUGINS, pipelines=[cam], startup={"RESTART_BACKOFF_MAX": SHORT_CAP})
    runner = node.pipelines["cam"]
    wait_for(lambda: runner.capture.status == "flapping", timeout=within(10))
    cls = plugin_class(node, KIND_CAPTURE, "FLAKY_SRC")
    connects = cls.connects
    assert connects == 4 and runner.status() == "flapping" and runner.capture.stats.inputs == 8
    (note,) = wait_for(lambda: flapping_notes(node, "cam"))
    assert note["path"] == [node.alias, "cam", None, None] and note["level"] == "error"
    assert note["REASON"] == "RuntimeError: decoder crashed reading rtsp://***@10.0.0.9/live"
    snap = runner.snapshot()
    assert snap["status"] == "flapping" and snap["capture"]["flapping"]["failures"] == 4
    assert not snap["capture"]["stream"]["away"]  # it connected and gave inputs every time: never away
    time.sleep(3 * SHORT_CAP)
    assert cls.connects == connects  # no more reconnects

    node.add_pipeline({**runner.spec.raw, "BEHAVIOUR": "silent", "FRAMES": 5})  # a config update starts it afresh
    wait_for(lambda: node.pipelines["cam"].capture.status == "running")
    wait_for(lambda: node.pipelines["cam"].capture.stats.inputs >= 5)


BROKEN_MODEL = {
    "serving/broken_model.py": """
from edge_engine.api import ServingPlugin


class BrokenModel(ServingPlugin):
    SIGNATURE = "BROKEN_MODEL"
    CONFIG = {"WORKERS": 1}

    def on_init(self):
        raise RuntimeError("model file corrupt at s3://key:secret@bucket/m.onnx")
""",
    "business/uses_model.py": """
from edge_engine.api import BusinessPlugin, ServingError


class UsesModel(BusinessPlugin):
    SIGNATURE = "USES_MODEL"
    CONFIG = {"AI_ENGINE": "BROKEN_MODEL"}
    kinds = []

    def process(self, inp):
        value = inp.inferences.get("BROKEN_MODEL")
        if isinstance(value, ServingError):
            self.kinds.append(value.kind)
""",
}


def test_flapping_model_server_is_stopped_with_a_notification(node_factory: Any) -> None:
    node = node_factory(plugins=BROKEN_MODEL, pipelines=[synthetic("m", "USES_MODEL", {"INSTANCE_ID": "u"},
                                                                   CAP_RESOLUTION=20)],
                        startup={"RESTART_BACKOFF_MAX": SHORT_CAP}, environ={"EE_FLAP_MAX_FAILURES": "2"})  # fmt: skip
    assert node.serving is not None
    (server,) = wait_for(lambda: node.serving.servers())
    wait_for(lambda: server.state == "flapping", timeout=within(30))
    note = wait_for(lambda: [n for n in notifications(node) if n.get("STATUS") == "flapping"], timeout=within(5))[0]
    assert note["level"] == "error" and note["model"] and "secret" not in note["REASON"]
    assert "model file corrupt" in note["REASON"] and note["FAILURES"] == 2
    snap = node.serving.snapshot()["servers"][0]
    assert snap["state"] == "flapping" and snap["flapping"]["failures"] == 2 and snap["workers"][0]["pid"] is None
    kinds = plugin_class(node, KIND_BUSINESS, "USES_MODEL").kinds
    wait_for(lambda: "flapping" in kinds, timeout=within(5))  # inputs fail at once, explicitly
    restarts = server.stats.restarts
    time.sleep(5 * SHORT_CAP)
    assert server.stats.restarts == restarts and not server.pids()  # no more processes started
    node.restart_pipelines()  # the pipelines start again: a new server, which tries (and flaps) again
    wait_for(lambda: len([n for n in notifications(node) if n.get("STATUS") == "flapping"]) == 2, timeout=within(30))
    assert node.serving.servers()[0] is not server


# --- silent sources -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("behaviour", ["silent", "block"])
def test_silent_source_counts_as_failed_and_reconnects(node_factory: Any, behaviour: str) -> None:
    node = node_factory(
        plugins=PLUGINS,
        pipelines=[flaky("cam", behaviour, SILENT_SOURCE_SECONDS=SILENT_S)],
        startup={"RESTART_BACKOFF_MAX": BACKOFF_CAP},
        environ={"EE_FLAP_MAX_FAILURES": "100"},
    )
    capture = node.pipelines["cam"].capture
    cls = plugin_class(node, KIND_CAPTURE, "FLAKY_SRC")
    wait_for(lambda: capture.stats.inputs >= 5)
    wait_for(lambda: capture.silent_failures >= 2 and capture.stats.inputs >= 15, timeout=within(10))
    assert capture.stats.restarts >= 2 and cls.connects >= 3
    assert "no input for" in (capture.stats.last_error or "") and "SilentSource" in capture.stats.last_error
    if behaviour == "block":
        # the blocked thread could not help: the watchdog gave up on it and a new plugin object reconnected
        assert cls.objects >= 3
        assert "read() is blocked" in capture.stats.last_error
    snap = node.pipelines["cam"].snapshot()["capture"]
    assert snap["silent_failures"] >= 2 and snap["silent_source_seconds"] == SILENT_S


def test_silent_sources_flap_too(node_factory: Any) -> None:
    cam = flaky("cam", "block", SILENT_SOURCE_SECONDS=0.6 * SILENT_S, FRAMES=1)
    node = node_factory(plugins=PLUGINS, pipelines=[cam], startup={"RESTART_BACKOFF_MAX": SHORT_CAP},
                        environ={"EE_FLAP_MAX_FAILURES": "2"})  # fmt: skip
    wait_for(lambda: node.pipelines["cam"].capture.status == "flapping", timeout=within(10))
    (note,) = wait_for(lambda: flapping_notes(node, "cam"))
    assert note["FAILURES"] == 2 and "SilentSource" in note["REASON"]
    stopped = time.monotonic()
    node.stop("test")  # the abandoned, blocked threads do not hold up the stop
    assert time.monotonic() - stopped < 5.0


def test_a_file_at_its_end_is_not_silence(node_factory: Any) -> None:
    node = node_factory(
        plugins=PLUGINS,
        pipelines=[synthetic("f", "SAFE_PROBE", {"INSTANCE_ID": "s"}, COUNT=20, SILENT_SOURCE_SECONDS=0.4 * SILENT_S)],
    )
    runner = node.pipelines["f"]
    wait_for(lambda: runner.capture.status == "finished")
    time.sleep(SILENT_S)
    assert runner.capture.stats.errors == 0 and runner.capture.silent_failures == 0
    assert runner.capture.stats.inputs == 20


def test_video_stream_watches_for_silence_by_default(node_factory: Any) -> None:
    node = node_factory(start=True)
    assert node.registry.get(KIND_CAPTURE, "VIDEO_STREAM").cls.config_schema()["SILENT_SOURCE_SECONDS"].default == 30
    assert node.registry.get(KIND_CAPTURE, "MQTT_TOPIC").cls.config_schema()["SILENT_SOURCE_SECONDS"].default == 0


# --- keep-alive -----------------------------------------------------------------------------------------------------
def test_keep_alive_lapse_enters_safe_mode_and_resume_leaves_it(node_factory: Any) -> None:
    node = node_factory(
        plugins=PLUGINS,
        pipelines=[
            flaky("guarded", "silent", FRAMES=1_000_000, CAP_RESOLUTION=50, KEEP_ALIVE_SECONDS=KEEP_ALIVE_S),
            synthetic("free", "SAFE_PROBE", {"INSTANCE_ID": "f"}),
        ],
    )
    calls = plugin_class(node, KIND_BUSINESS, "SAFE_PROBE").calls
    source_calls = plugin_class(node, KIND_CAPTURE, "FLAKY_SRC").calls
    wait_for(lambda: ("s", "safe") in [(c[0], c[1]) for c in calls], timeout=within(5))
    (_, _, reason, thread) = calls[0]
    assert "no keep-alive" in reason and "KEEP_ALIVE_SECONDS" in reason
    assert thread == "instance:guarded/SAFE_PROBE/s"  # in the plugin's own thread
    wait_for(lambda: source_calls and source_calls[0][0] == "safe")
    assert all(c[0] != "f" for c in calls)  # other pipelines are not concerned
    snap = node.pipelines["guarded"].snapshot()
    assert snap["keep_alive"]["safe_mode"] is True and snap["status"] == "running"
    (entered,) = wait_for(lambda: [n for n in notifications(node) if n.get("SAFE_MODE") is True])
    assert entered["path"] == [node.alias, "guarded", None, None] and entered["level"] == "warning"
    assert entered["NOTIFICATION_TYPE"] == "ABNORMAL FUNCTIONING"

    assert node.keep_alive("guarded") is True
    wait_for(lambda: ("s", "resume") in [(c[0], c[1]) for c in calls])
    wait_for(lambda: source_calls[-1][0] == "resume")
    (resumed,) = wait_for(lambda: [n for n in notifications(node) if n.get("SAFE_MODE") is False])
    assert resumed["level"] == "info" and resumed["path"][1] == "guarded"
    assert node.pipelines["guarded"].snapshot()["keep_alive"]["safe_mode"] is False

    # kept alive: no new safe mode
    count = len(calls)
    for _ in range(12):  # 3 periods, a keep-alive every quarter of one
        assert node.keep_alive("guarded") is False
        time.sleep(KEEP_ALIVE_S / 4)
    assert len(calls) == count
    # lapses again
    wait_for(lambda: len(calls) == count + 1 and calls[-1][1] == "safe", timeout=within(5))


def test_instances_started_during_safe_mode_start_in_it(node_factory: Any) -> None:
    node = node_factory(plugins=PLUGINS, pipelines=[
        synthetic("g", "SAFE_PROBE", {"INSTANCE_ID": "a"}, KEEP_ALIVE_SECONDS=KEEP_ALIVE_S)])  # fmt: skip
    calls = plugin_class(node, KIND_BUSINESS, "SAFE_PROBE").calls
    wait_for(lambda: node.pipelines["g"].safe_mode is not None, timeout=within(5))
    raw = node.pipelines["g"].spec.raw
    raw["PLUGINS"][0]["INSTANCES"].append({"INSTANCE_ID": "b"})
    node.add_pipeline(raw)  # an instance-only change: applied live, the pipeline stays in safe mode
    wait_for(lambda: ("b", "safe") in [(c[0], c[1]) for c in calls])


# --- through a real broker ------------------------------------------------------------------------------------------
def test_flapping_and_keep_alive_over_mqtt(mosquitto: Mosquitto, node_factory: Any, tmp_path: Path) -> None:
    node = node_factory(
        plugins=PLUGINS,
        pipelines=[
            synthetic("broken", "FAILER", {"INSTANCE_ID": "x"}, KEEP_ALIVE_SECONDS=KEEP_ALIVE_S),
        ],
        startup={"RESTART_BACKOFF_MAX": BACKOFF_CAP, "SECONDS_HEARTBEAT": 1},
        environ=mosquitto.env,
        start=False,  # the subscriber listens before anything can happen
    )
    owner = load_client_identity(tmp_path / "owner" / "client.pem")
    assert main_add_allowed(["--cache-dir", str(node.layout.root), owner.address, "owner"]) == 0
    client = EdgeClient(owner, port=mosquitto.port, channels=("heartbeats", "notifications")).connect()
    try:
        with client.listen(lambda r: r.channel == "notifications" and r.sender == _address(node)) as got:
            node.start()
            wait_for(lambda: node.pipelines["broken"].instance("FAILER", "x").status == "flapping", timeout=within(10))
            flapping = _next(got, lambda r: r.message.get("STATUS") == "flapping")
            body = flapping.message
            assert body["NOTIFICATION_TYPE"] == "ABNORMAL FUNCTIONING" and body["NOTIFICATION_LEVEL"] == "error"
            assert (body["STREAM_NAME"], body["SIGNATURE"], body["INSTANCE_ID"]) == ("broken", "FAILER", "x")
            assert body["REASON"].startswith("RuntimeError: boom") and "hunter2" not in json.dumps(body)
            _next(got, lambda r: r.message.get("SAFE_MODE") is True)
            client.keep_alive(node.alias, "broken")
            resumed = _next(got, lambda r: r.message.get("SAFE_MODE") is False)
            assert resumed.message["STREAM_NAME"] == "broken"
            client.send(node.alias, "PIPELINE_COMMAND", {"NAME": "nope", "PIPELINE_COMMAND": {"KEEP_ALIVE": True}})
            refused = _next(got, lambda r: r.code == -1)
            assert "no such pipeline" in refused.message["NOTIFICATION"]
            # edge-client keep-alive NODE PIPELINE (once)
            before = node.pipelines["broken"].last_keep_alive
            key = str(tmp_path / "owner" / "client.pem")
            argv = ["keep-alive", node.alias, "broken", "--port", str(mosquitto.port), "--key", key]
            assert client_cli.main(argv) == 0
            wait_for(lambda: node.pipelines["broken"].last_keep_alive != before, timeout=within(10))
    finally:
        client.close()


def _address(node: Node) -> str | None:
    return node.identity.address if node.identity is not None else None


def _next(listener: Any, accept: Any, timeout: float = within(10)) -> Received:
    """The first notification ``accept`` takes, among those already received (in any order) or coming."""
    seen = listener.__dict__.setdefault("seen_by_test", [])
    for item in seen:
        if accept(item):
            return item
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = listener.get(0.1)
        if item is None:
            continue
        seen.append(item)
        if accept(item):
            return item
    raise AssertionError("the expected notification did not come")
