"""The typed seams of serving: the messages on a model worker's pipe, the worker and server states, and how the
serving stage wakes the pipeline's dispatcher (a proper wait, no fake message in its inbox)."""

from __future__ import annotations

import json
import pickle
import threading
from typing import Any

import pytest
from conftest import wait_for

from edge_engine.plugin.kinds import Input
from edge_engine.runtime.mailbox import Mailbox
from edge_engine.runtime.serving_stage import ServingStage
from edge_engine.serving.colocated import Cascaded, CascadeOutcome, ColocatedCascade
from edge_engine.serving.model_server import ServerState, WorkerState
from edge_engine.serving.tickets import Ticket
from edge_engine.serving.worker import (
    BatchDone,
    BatchFailed,
    FrameItem,
    LoadFailed,
    Loading,
    Ready,
    RunBatch,
    StopWorker,
    WorkerSpec,
)


def test_a_batch_crosses_the_pipe_as_typed_items() -> None:
    ref = ("/ee_frames_1", (48, 64, 3), "|u1")
    batch = RunBatch(7, [FrameItem(ref, {"k": 1}, {"m": 2}, seq, 1.5) for seq in range(3)])
    back = pickle.loads(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == batch and isinstance(back, RunBatch)
    assert all(isinstance(item, FrameItem) for item in back.items)
    assert [item.seq for item in back.items] == [0, 1, 2] and back.items[0].ref == ref
    _ref, data, metadata, seq, timestamp, cascades = back.items[1]  # still a tuple: the worker unpacks it as one
    assert (data, metadata, seq, timestamp, cascades) == ({"k": 1}, {"m": 2}, 1, 1.5, ())


def test_a_colocated_cascade_travels_with_its_frame_and_comes_back_with_the_answer() -> None:
    spec = WorkerSpec("ONNX", "edge_plugins.onnx", None, "OnnxModel", {"INPUT_WIDTH": 16}, "/models")
    cascade = ColocatedCascade("k1", "m1", spec, "mean.onnx", ("text",), 0.5, 0.1, 8, "box", 320, 8)
    item = FrameItem(("/ee_frames_1", (48, 64, 3), "|u1"), None, {}, 3, 1.5, (cascade,))
    back = pickle.loads(pickle.dumps(RunBatch(1, [item, item]), protocol=pickle.HIGHEST_PROTOCOL))
    assert back.items[0].cascades == (cascade,)
    assert back.items[0].cascades[0] is back.items[1].cascades[0]  # read once per process, not once per frame
    answer = Cascaded([{"box": [0, 0, 1, 1]}], {"k1": CascadeOutcome([{"mean": [1, 2, 3]}], 1, 0)})
    done = pickle.loads(pickle.dumps(BatchDone(1, [answer], 0.01)))
    assert done == BatchDone(1, [answer], 0.01) and type(done.results[0]) is Cascaded


def test_every_worker_message_pickles_to_itself() -> None:
    messages: list[Any] = [StopWorker(), Ready({"providers": ["CPUExecutionProvider"], "pid": 1}),
                           LoadFailed("FileNotFoundError: x.onnx"), BatchDone(3, [{"a": 1}, None], 0.01, {1: "gone"}),
                           BatchFailed(4, "ValueError: bad"), Loading(True)]  # fmt: skip
    for message in messages:
        assert pickle.loads(pickle.dumps(message)) == message


def test_states_are_enums_that_show_as_plain_strings() -> None:
    assert WorkerState.BUSY == "busy" and str(WorkerState.BUSY) == "busy" and f"{ServerState.RUNNING}" == "running"
    assert json.loads(json.dumps({"state": ServerState.FLAPPING})) == {"state": "flapping"}


def test_mailbox_wake_ends_a_wait_without_a_message() -> None:
    box = Mailbox(4)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(box.get()))
    waiter.start()
    box.wake()
    waiter.join(5)
    assert not waiter.is_alive() and got == [None]
    box.put("frame")
    assert box.get() == ("input", "frame")  # the wake was used up: nothing left behind


class Waker:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_the_stage_wakes_the_dispatcher_only_for_the_ticket_it_watches() -> None:
    waker = Waker()
    stage = ServingStage(None, "p", wake=waker)
    head, later = (Ticket(Input(image=None), 1, stage._cond, None, None, stage._done) for _ in range(2))
    assert stage.watch(head)
    later.resolve("m", {"x": 1})  # another input's results: the dispatcher keeps waiting for an input
    assert waker.calls == 0
    head.resolve("m", {"x": 2})
    wait_for(lambda: waker.calls == 1, 5)
    assert not stage.watch(head)  # already done: the dispatcher does not wait at all
    stage.unwatch()
    assert waker.calls == 1


def test_a_result_ends_the_dispatchers_wait_for_inputs_through_the_mailbox() -> None:
    box = Mailbox(4)
    stage = ServingStage(None, "p", wake=box.wake)
    ticket = Ticket(Input(image=None), 1, stage._cond, None, None, stage._done)
    assert stage.watch(ticket)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(box.get()))
    waiter.start()
    ticket.resolve("m", {"x": 1})
    waiter.join(5)
    assert not waiter.is_alive() and got == [None]  # woken with no message: nothing was put in the inbox
    assert not box._controls


@pytest.mark.parametrize("direct", [True, False])
def test_a_ready_batch_is_sent_by_the_pipelines_own_thread(node_factory: Any, monkeypatch: Any, direct: bool) -> None:
    """One frame at a time into one free process: the dispatcher sends the batch itself (no scheduler hop); with
    ``DIRECT_SEND`` off every batch goes through the scheduler thread, as before."""
    from test_serving import PLUGINS, const_pipeline, instance_state, mean_model, pipeline_finished

    from edge_engine.serving import model_server

    senders: list[str] = []
    original = model_server.ModelServer._send

    def send(self: Any, worker: Any, batch_id: int, batch: list[Any]) -> None:
        senders.append(threading.current_thread().name)
        original(self, worker, batch_id, batch)

    monkeypatch.setattr(model_server.ModelServer, "_send", send)
    monkeypatch.setattr(model_server, "DIRECT_SEND", direct)
    node = node_factory(plugins=PLUGINS, start=False)
    mean_model(node.layout.models / "mean.onnx")
    node.start()
    params = {"ONNX_MODEL": "mean.onnx", "INPUT_WIDTH": 16, "INPUT_HEIGHT": 16, "COLOR_ORDER": "BGR", "SCALE": 1.0,
              "WORKERS": 1, "MAX_IN_FLIGHT": 1}  # fmt: skip
    node.add_pipeline(const_pipeline("one", params, COUNT=30))
    wait_for(lambda: pipeline_finished(node, "one"), timeout=60)
    rec = instance_state(node, "one")
    assert len(rec.ok) == 30 and not rec.errors and not rec.wrong
    by_dispatcher = sum(name == "dispatch:one" for name in senders)
    if direct:
        assert by_dispatcher >= 25, senders  # the first waits for the process to load: the scheduler sends it
    else:
        assert by_dispatcher == 0 and all(name.startswith("serving:") for name in senders), senders


class SlowToDie:
    """A process that outlives its SIGKILL's join (a crowded machine): close() would raise."""

    pid = 4242

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return True

    def kill(self) -> None:
        pass

    def close(self) -> None:
        raise ValueError("Cannot close a process while it is still running")


def test_reaping_a_process_still_exiting_does_not_end_the_scheduler() -> None:
    from edge_engine.serving.model_server import ModelServer, WorkerHandle

    worker = WorkerHandle(0, "serving/X/abc/worker0")
    worker.process = SlowToDie()
    ModelServer._reap(None, worker, grace=0.0)  # type: ignore[arg-type]  # it reads only the worker
    assert worker.process is None and worker.pid is None
