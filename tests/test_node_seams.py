"""The node's seams (issue 15 items 2 and 3): services started in order and stopped in reverse within one deadline,
a payload that carries its intent, and the node's sinks in a fixed order whatever the hooks' order (decision 38)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import EmitTap, comms_node, wait_for
from plugins_src import message_pipeline, payload_plugin

from edge_engine.api import hookimpl
from edge_engine.messages import Delivery, Notification, Payload, PayloadIntent, image_file_name
from edge_engine.node.core import Node
from edge_engine.node.message_flow import MessageFlow
from edge_engine.node.seams import Service, start_in_order, stop_in_reverse
from edge_engine.plugin.hooks import Hooks, get_plugin_manager

TICK_PLUGIN = payload_plugin("Tick", "TEST_TICK", '{"I": inp.seq}')
PATH = ["node", "pipe", "SIG", "inst"]


class FakeService:
    """A service that writes what it is asked into ``journal``; ``fail`` makes its start raise."""

    def __init__(self, name: str, journal: list[tuple[str, str, Any]], fail: bool = False):
        self.name = name
        self.journal = journal
        self.fail = fail
        self.running = False

    def start(self) -> None:
        self.journal.append(("start", self.name, None))
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.running = True

    def stop(self, deadline: float | None = None) -> list[str]:
        self.journal.append(("stop", self.name, deadline))
        self.running = False
        return [f"{self.name}-thread"] if self.name == "slow" else []

    def snapshot(self) -> dict[str, Any]:
        return {"running": self.running}


# --- the Service protocol ------------------------------------------------------------------------------------
def test_services_start_in_order_and_stop_in_reverse_with_one_deadline() -> None:
    journal: list[tuple[str, str, Any]] = []
    services = [FakeService(name, journal) for name in ("storage", "comms", "slow", "pipelines")]
    started: list[Service] = []
    start_in_order(services, started, time.monotonic)
    assert [s.name for s in started] == ["storage", "comms", "slow", "pipelines"]
    assert all(s.snapshot() == {"running": True} for s in services)
    left = stop_in_reverse(started, 123.0)
    assert [(what, name) for what, name, _ in journal[4:]] == [
        ("stop", "pipelines"),
        ("stop", "slow"),
        ("stop", "comms"),
        ("stop", "storage"),
    ]
    assert {deadline for what, _, deadline in journal if what == "stop"} == {123.0}
    assert left == ["slow-thread"] and started == []


def test_a_service_that_fails_to_start_leaves_no_other_running() -> None:
    journal: list[tuple[str, str, Any]] = []
    services = [FakeService("a", journal), FakeService("b", journal), FakeService("c", journal, fail=True)]
    services.append(FakeService("d", journal))
    started: list[Service] = []
    with pytest.raises(RuntimeError, match="c cannot start"):
        start_in_order(services, started, lambda: 7.0)
    assert [(what, name) for what, name, _ in journal] == [
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("stop", "b"),
        ("stop", "a"),
    ]
    assert started == [] and not any(s.running for s in services)


def test_a_service_that_cannot_be_made_leaves_no_other_running() -> None:
    """The node makes each service when the ones before it run (a bad setting is found then)."""
    journal: list[tuple[str, str, Any]] = []

    def services() -> Iterator[Service]:
        yield FakeService("storage", journal)
        raise ValueError("comms: EE_MQTT_PORT is not a port")

    with pytest.raises(ValueError, match="EE_MQTT_PORT"):
        start_in_order(services(), [], lambda: 1.0)
    assert [(what, name) for what, name, _ in journal] == [("start", "storage"), ("stop", "storage")]


def test_a_service_that_fails_to_stop_does_not_keep_the_others_running(caplog: pytest.LogCaptureFixture) -> None:
    journal: list[tuple[str, str, Any]] = []
    broken = FakeService("broken", journal)
    broken.stop = lambda deadline=None: (_ for _ in ()).throw(OSError("stuck"))  # type: ignore[method-assign]
    others = [FakeService("first", journal), broken, FakeService("last", journal)]
    started: list[Service] = list(others)
    stop_in_reverse(started, 1.0)
    assert [name for what, name, _ in journal if what == "stop"] == ["last", "first"]
    assert "service broken failed to stop" in caplog.text


def recording(node: Node, journal: list[tuple[str, str, Any]], extra: Service | None = None) -> None:
    """Make ``node`` record its services' starts and stops into ``journal`` (``extra``: one more, after the
    pipelines)."""
    make = node._make_services

    class Recorder:
        def __init__(self, inner: Service):
            self.inner = inner
            self.name = inner.name

        def start(self) -> None:
            journal.append(("start", self.name, None))
            self.inner.start()

        def stop(self, deadline: float | None = None) -> list[str]:
            journal.append(("stop", self.name, deadline))
            return self.inner.stop(deadline)

        def snapshot(self) -> Any:
            return self.inner.snapshot()

    def services() -> Iterator[Service]:
        for service in make():
            yield Recorder(service)
            if service.name == "pipelines" and extra is not None:
                yield extra

    node._make_services = services  # type: ignore[method-assign]


def test_the_node_loops_over_its_services(node_factory: Callable[..., Node]) -> None:
    node = node_factory(plugins={"business/tick.py": TICK_PLUGIN}, start=False)
    journal: list[tuple[str, str, Any]] = []
    recording(node, journal)
    node.start()
    node.add_pipeline(message_pipeline("tick", "TEST_TICK", 20))
    order = ["storage", "serving", "pipelines", "local requests", "watchdog"]  # comms and the page are off here
    assert [s.name for s in node.services] == order
    assert [name for what, name, _ in journal] == order
    runner = node.pipelines["tick"]
    node.stop("test")
    stops = [(name, deadline) for what, name, deadline in journal if what == "stop"]
    assert [name for name, _ in stops] == order[::-1]
    assert len({deadline for _, deadline in stops}) == 1  # one shutdown deadline for all
    assert node.services == [] and runner.join(time.monotonic()) == []


def test_a_node_whose_service_fails_to_start_leaves_nothing_running(node_factory: Callable[..., Node]) -> None:
    pipeline = message_pipeline("tick", "TEST_TICK", 20)
    node = node_factory(plugins={"business/tick.py": TICK_PLUGIN}, pipelines=[pipeline], start=False)
    journal: list[tuple[str, str, Any]] = []
    recording(node, journal, extra=FakeService("broken", journal, fail=True))
    with pytest.raises(RuntimeError, match="broken cannot start"):
        node.start()
    assert [(what, name) for what, name, _ in journal] == [
        ("start", "storage"),
        ("start", "serving"),
        ("start", "pipelines"),
        ("start", "broken"),
        ("stop", "pipelines"),
        ("stop", "serving"),
        ("stop", "storage"),
    ]
    assert node.services == []
    assert node.pipelines["tick"].join(time.monotonic()) == []  # its threads ended


# --- a payload carries its intent ----------------------------------------------------------------------------
def test_the_intent_is_decided_once_from_the_instance_and_its_pipeline() -> None:
    pipeline = {"NAME": "pipe", "SESSION_ID": "s1", "INITIATOR_ADDR": "0xai_owner", "MODIFIED_BY_ADDR": "0xai_x",
                "INITIATOR_ID": None}  # fmt: skip
    plain = PayloadIntent.decide(PATH, 1_800_000_000.25, 3, False, {}, pipeline)
    assert dict(plain.routing) == {"SESSION_ID": "s1", "INITIATOR_ADDR": "0xai_owner", "MODIFIED_BY_ADDR": "0xai_x"}
    assert not plain.encrypt and plain.encrypt_to is None and plain.image_name is None
    secret = PayloadIntent.decide(PATH, 1_800_000_000.25, 3, True, {"ENCRYPT_PAYLOAD": True}, pipeline)
    assert secret.encrypt and secret.encrypt_to == "0xai_owner"
    assert secret.image_name == image_file_name(PATH, 1_800_000_000.25, 3)
    modifier_only = PayloadIntent.decide(PATH, 0.0, 1, False, {"ENCRYPT_PAYLOAD": True}, {"MODIFIED_BY_ADDR": "m"})
    assert modifier_only.encrypt_to == "m"
    nobody = PayloadIntent.decide(PATH, 0.0, 1, False, {"ENCRYPT_PAYLOAD": True}, {})
    assert nobody.encrypt and nobody.encrypt_to is None
    with pytest.raises(TypeError):
        secret.routing["SESSION_ID"] = "changed"  # type: ignore[index]


def test_a_payload_is_frozen_and_names_its_image_without_an_instance() -> None:
    payload = Payload(list(PATH), {"N": 1}, seq=2, created=1_800_000_000.5, image_jpeg=b"jpeg")
    assert payload.intent.image_name == "pipe/SIG_inst/images/20270115T080000.500Z_00000002.jpg"
    with pytest.raises(AttributeError):
        payload.image_url = "https://elsewhere"  # type: ignore[misc]


# --- the node's sinks in a fixed order (decision 38 by construction) -----------------------------------------
class Journal:
    """Fake sinks that write each call into one list; the local sink checks that the outbox holds what it writes."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.in_outbox: list[Any] = []
        self.violations: list[str] = []

    def place_image(self, payload: Payload) -> Payload:
        self.calls.append("storage")
        return Payload(payload.path, payload.data, payload.seq, payload.created, payload.image_jpeg,
                       image_path="_output/x.jpg", intent=payload.intent)  # fmt: skip

    def accept_payload(self, payload: Payload) -> str | None:
        self.calls.append("outbox")
        assert payload.image_path == "_output/x.jpg", "storage placed the image before the outbox took it"
        self.in_outbox.append(payload)
        return None

    def accept_notification(self, notification: Notification) -> None:
        self.calls.append("outbox")
        self.in_outbox.append(notification)

    def write_payload(self, payload: Payload) -> None:
        self.calls.append("local")
        if payload not in self.in_outbox:
            self.violations.append(f"payload {payload.seq} reached local output before the outbox")

    def write_notification(self, notification: Notification) -> None:
        self.calls.append("local")
        if notification not in self.in_outbox:
            self.violations.append("notification reached local output before the outbox")


class EarlyAndLateHooks:
    """A plugin whose hooks ask to run first and last: both see what the node's sinks already did."""

    def __init__(self, journal: Journal):
        self.journal = journal
        self.seen: list[tuple[str, list[str], str | None]] = []

    @hookimpl(tryfirst=True)
    def edge_payload(self, payload: Payload) -> None:
        self.seen.append(("tryfirst", list(self.journal.calls), payload.image_path))

    @hookimpl(trylast=True)
    def edge_notification(self, notification: Notification) -> None:
        self.seen.append(("trylast", list(self.journal.calls), None))


def test_the_outbox_takes_a_message_before_local_output_and_before_any_hook() -> None:
    journal = Journal()
    flow = MessageFlow(journal)
    flow.storage = journal
    flow.outbox = journal
    pm = get_plugin_manager()
    plugin = EarlyAndLateHooks(journal)
    pm.register(plugin)
    hooks = Hooks(pm, sinks=flow)
    assert hooks.payload(Payload(list(PATH), {}, seq=1, image_jpeg=b"jpeg")) is None
    hooks.notification(Notification("info", "hello", list(PATH)))
    assert journal.calls == ["storage", "outbox", "local", "outbox", "local"]
    assert journal.violations == []
    assert plugin.seen == [
        ("tryfirst", ["storage", "outbox", "local"], "_output/x.jpg"),
        ("trylast", ["storage", "outbox", "local", "outbox", "local"], None),
    ]


def test_an_outbox_refusal_comes_back_to_the_instance_and_stops_nothing_else() -> None:
    journal = Journal()
    flow = MessageFlow(journal)
    flow.outbox = journal
    journal.accept_payload = lambda payload: "payload not sent: no initiator"  # type: ignore[method-assign]
    delivery = flow.payload(Payload(list(PATH), {}, seq=1))
    assert isinstance(delivery, Delivery) and delivery.refused == "payload not sent: no initiator"
    assert journal.calls == ["local"]  # written locally, as before: only the broker never gets it


def test_a_payload_in_output_is_already_in_the_outbox(mosquitto: Any, node_factory: Callable[..., Node]) -> None:
    """The real node with comms: when the local output writer gets a payload, comms has stored it in its
    outbox; a plugin's ``tryfirst`` hook sees it stored too (hook order plays no part)."""
    node = comms_node(node_factory, mosquitto, plugins={"business/tick.py": TICK_PLUGIN})
    comms = node.comms
    assert comms is not None
    stored: list[Any] = []
    violations: list[str] = []
    enqueue, write = comms._enqueue, node.output.write_payload

    def enqueue_and_record(item: Any) -> None:
        enqueue(item)
        stored.append(item.source)

    def check_then_write(payload: Payload) -> None:
        if not any(p is payload for p in stored):
            violations.append(f"local output before the outbox: {payload.seq}")
        write(payload)

    class TryFirst:
        def __init__(self) -> None:
            self.seen: list[bool] = []

        @hookimpl(tryfirst=True)
        def edge_payload(self, payload: Payload) -> None:
            self.seen.append(any(p is payload for p in stored))

    comms._enqueue = enqueue_and_record  # type: ignore[method-assign]
    node.output.write_payload = check_then_write  # type: ignore[method-assign]
    early, tap = TryFirst(), EmitTap()
    node.pm.register(early)
    node.pm.register(tap)
    node.add_pipeline(message_pipeline("tick", "TEST_TICK", 50))
    wait_for(lambda: len(tap.payloads) >= 10)
    assert violations == []
    assert early.seen and all(early.seen)
