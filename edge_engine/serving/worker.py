"""The model-server process: load one serving plugin, then run the batches its node sends, until told to stop.

Started with the ``spawn`` method (a fresh interpreter: never a fork of the threaded node), it imports the
plugin's module, creates the plugin with its effective config and calls ``on_init()`` (where the model is
loaded: the only place onnxruntime is imported). It then answers on its pipe:

* node → server: :class:`RunBatch` (a batch id and one :class:`FrameItem` per input), or :class:`StopWorker`;
* server → node: :class:`Ready` (the model's info) or :class:`LoadFailed` once, then :class:`BatchDone` (results,
  seconds, lost inputs) or :class:`BatchFailed` per batch, and :class:`Loading` around the load of a co-located
  cascade's model during a batch (see :mod:`~edge_engine.serving.colocated`).

The messages are frozen dataclasses; a batch travels as plain tuples (its ``__reduce__``), which pickle fastest.

Frames are read in place from shared memory (see :mod:`edge_engine.serving.frame_slots`). An input whose frame
cannot be read (its segment is gone) is left out of the batch and reported in ``lost`` (``{index: reason}``,
its entry in ``results`` is None): it fails alone, never the other pipelines' inputs batched with it. The process
ignores SIGINT (the node decides when it stops) and exits when its pipe closes, so a node killed with
SIGKILL leaves no server behind.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple


# --- the messages on a worker's pipe --------------------------------------------------------------------------------
class FrameItem(NamedTuple):
    """One input of a batch: where its frame is (a :mod:`~edge_engine.serving.frame_slots` reference) and the rest of
    its :class:`~edge_engine.plugin.kinds.Input`."""

    ref: tuple[Any, ...]
    data: Any
    metadata: Any
    seq: int
    timestamp: float
    cascades: tuple[Any, ...] = ()  # co-located cascades to run on this frame's answer (ColocatedCascade)


def _rebuild_batch(batch_id: int, rows: list[tuple[Any, ...]]) -> RunBatch:
    return RunBatch(batch_id, [tuple.__new__(FrameItem, row) for row in rows])


@dataclass(frozen=True)
class RunBatch:
    """node → server: run these inputs as one batch."""

    batch_id: int
    items: list[FrameItem]

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_batch, (self.batch_id, [tuple(item) for item in self.items])


@dataclass(frozen=True)
class StopWorker:
    """node → server: exit now."""


@dataclass(frozen=True)
class Ready:
    """server → node, once: the model is loaded; ``info`` is its ``model_info()`` plus the process id."""

    info: dict[str, Any]


@dataclass(frozen=True)
class LoadFailed:
    """server → node, once: the plugin could not be created or its model loaded (the process then exits)."""

    text: str


@dataclass(frozen=True)
class BatchDone:
    """server → node: one result per input (None for a lost one), the batch's seconds in the plugin, and why each
    lost input's frame could not be read (``{index: reason}``)."""

    batch_id: int
    results: list[Any]
    seconds: float
    lost: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Loading:
    """server → node, during a batch: a co-located cascade's model starts loading (``True``: the watchdog gives the
    batch the load's time, ``LOAD_TIMEOUT``) or has loaded (``False``: the batch's clock starts again)."""

    started: bool


@dataclass(frozen=True)
class BatchFailed:
    """server → node: the batch raised (every input in it gets a ``ServingError``)."""

    batch_id: int
    text: str


ToWorker = RunBatch | StopWorker
FromWorker = Ready | LoadFailed | BatchDone | BatchFailed | Loading


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a server process needs to load its plugin (picklable)."""

    signature: str
    module_name: str
    module_file: str | None
    class_name: str
    config: dict[str, Any]
    models_dir: str
    index: int = 0
    log_level: int = logging.WARNING

    @classmethod
    def for_class(cls, plugin_cls: type, config: dict[str, Any], models_dir: Path, index: int) -> WorkerSpec:
        import inspect

        try:
            module_file: str | None = inspect.getfile(plugin_cls)
        except (TypeError, OSError):
            module_file = None
        return cls(
            signature=str(getattr(plugin_cls, "SIGNATURE", "")),
            module_name=plugin_cls.__module__,
            module_file=module_file,
            class_name=plugin_cls.__qualname__,
            config=dict(config),
            models_dir=str(models_dir),
            index=index,
            log_level=logging.getLogger("edge_engine").getEffectiveLevel(),
        )


def run_worker(spec: WorkerSpec, conn: Any) -> None:
    """Entry point of a model-server process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _lower_priority(int(spec.config.get("PROCESS_NICE") or 0))
    logging.basicConfig(
        level=max(spec.log_level, logging.INFO),
        format=f"%(asctime)s %(levelname)-7s model-server {spec.signature}#{spec.index} (pid %(process)d): %(message)s",
    )
    log = logging.getLogger(f"edge.serving.{spec.signature}")
    try:
        plugin = create_plugin(spec, log)
        plugin.on_init()
        info = dict(plugin.model_info() or {})
    except Exception as exc:
        _send(conn, LoadFailed(f"{type(exc).__name__}: {exc}"))
        return
    info["pid"] = os.getpid()
    import edge_engine.serving.frame_slots  # noqa: F401  (before Ready: the first batch's watchdog clock runs)

    if not _send(conn, Ready(info)):
        return
    try:
        _serve(plugin, conn)
    finally:
        try:
            plugin.on_close()
        except Exception:
            log.exception("on_close raised")


def _lower_priority(increment: int) -> None:
    """Run below the node (Unix nice): capture, comms and the node's own threads stay responsive, and feed the
    models sooner, when the models keep every core busy."""
    if increment > 0 and hasattr(os, "nice"):
        try:
            os.nice(increment)
        except OSError:
            pass


def create_plugin(spec: WorkerSpec, log: logging.Logger) -> Any:
    """The plugin a spec names, created with its config (``on_init`` not called yet)."""
    from edge_engine.plugin.kinds import PluginContext

    cls = _load_class(spec)
    context = PluginContext(
        node_alias="",
        pipeline="",
        signature=spec.signature,
        instance_id=None,
        log=log,
        output_dir=Path(spec.models_dir),
        models_dir=Path(spec.models_dir),
        stop_event=threading.Event(),
    )
    return cls(dict(spec.config), context)


def _load_class(spec: WorkerSpec) -> type:
    """Import the plugin's module as the node did: folder plugins by file, packages by name."""
    if spec.module_name.startswith("edge_plugins.") and spec.module_file:
        from edge_engine.plugin.discovery import import_file

        module: Any = import_file(Path(spec.module_file), spec.module_name)
    else:
        module = importlib.import_module(spec.module_name)
    obj: Any = module
    for part in spec.class_name.split("."):
        obj = getattr(obj, part)
    return obj


def _serve(plugin: Any, conn: Any) -> None:
    from edge_engine.plugin.kinds import Input
    from edge_engine.serving.colocated import SecondStages
    from edge_engine.serving.frame_slots import FrameReader

    reader = FrameReader()
    seconds = SecondStages(logging.getLogger("edge.serving.colocated"), lambda started: _send(conn, Loading(started)))
    perf = time.perf_counter
    try:
        while True:
            try:
                message: ToWorker = conn.recv()
            except (EOFError, OSError):
                return  # the node is gone
            if not isinstance(message, RunBatch):
                return  # StopWorker
            batch_id = message.batch_id
            started = perf()
            try:
                results, lost = _run_batch(plugin, reader, message.items, Input, seconds)
                reply: FromWorker = BatchDone(batch_id, results, perf() - started, lost)
            except Exception as exc:
                reply = BatchFailed(batch_id, f"{type(exc).__name__}: {exc}")
            if not _send(conn, reply) and isinstance(reply, BatchDone):
                _send(conn, BatchFailed(batch_id, "the results could not be sent (not picklable?)"))
    finally:
        seconds.close()
        reader.close()


def _run_batch(
    plugin: Any, reader: Any, items: list[FrameItem], input_type: type, seconds: Any = None
) -> tuple[list[Any], dict[int, str]]:
    """One result per item (None for the lost ones), and why each lost item's frame could not be read. Items with
    co-located cascades get their answer wrapped with the cascades' outcomes (see :mod:`.colocated`)."""
    inputs, kept, lost = [], [], {}
    for index, (ref, data, meta, seq, ts, *_) in enumerate(items):
        try:
            image = reader.array(ref)
        except FileNotFoundError:
            lost[index] = "its frame was released before the model read it (its pipeline stopped)"
            continue
        except (OSError, ValueError, TypeError) as exc:
            lost[index] = f"its frame could not be read: {type(exc).__name__}: {exc}"
            continue
        inputs.append(input_type(image, data, meta, seq, ts))
        kept.append(index)
    results: list[Any] = [None] * len(items)
    if inputs:
        answers = list(plugin.post_process(plugin.predict(plugin.pre_process(inputs)), inputs))
        cascaded = [(i, inp.image, items[i][5]) for i, inp in zip(kept, inputs, strict=True) if len(items[i]) > 5]
        del inputs  # release the shared-memory views before the slots are reused
        if len(answers) != len(kept):
            raise ValueError(f"post_process returned {len(answers)} results for {len(kept)} inputs")
        for index, answer in zip(kept, answers, strict=True):
            results[index] = answer
        # a frame without detections has nothing to crop: its plain answer says so (the node aligns [] with it)
        frames = [
            (i, results[i], image, cascades) for i, image, cascades in cascaded if cascades and _boxes(results[i])
        ]
        del cascaded
        if frames and seconds is not None:  # co-located cascades: the second model on these frames' boxes
            from edge_engine.serving.colocated import Cascaded

            try:
                outcomes = seconds.run(frames, input_type)
            except Exception as exc:  # the cascades' own failure marks their boxes, never the frames
                outcomes = seconds.failed(frames, f"{type(exc).__name__}: {exc}")
            del frames
            for index, found in outcomes.items():
                results[index] = Cascaded(results[index], found)
    return results, lost


def _boxes(answer: Any) -> bool:
    """Whether a first stage's answer may hold boxes to crop (anything but an empty list)."""
    return not (type(answer) is list and not answer)


def _send(conn: Any, message: FromWorker) -> bool:
    # plain pickle, not Connection.send's ForkingPickler (a Python subclass: 12 against 20 us for a frame's answer
    # with its crops' results); the node's recv() reads either
    try:
        conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
        return True
    except Exception:  # the pipe is closed (the node is gone), or the results do not pickle
        return False
