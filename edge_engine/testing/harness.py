"""The plugin author's test harness: one plugin in a real pipeline, fed the inputs a test gives.

Used through the ``plugin_harness`` pytest fixture (:mod:`edge_engine.testing`)::

    def test_hello(plugin_harness):
        result = plugin_harness.run("TUTORIAL_HELLO", config={"EVERY": 2}, inputs=[frame] * 4)
        assert [p["SEEN"] for p in result.payloads] == [2, 4]

A business plugin runs in the node's own runtime (instance thread, mailbox, config validation, live
updates, commands) behind a feeder capture that hands it the test's inputs (numpy frames, dicts or
:class:`~edge_engine.api.Input` objects) with no input lost. ``run()`` returns what the plugin emitted;
``start()`` gives a :class:`Session` for live config updates and commands between inputs.
``run_capture()`` runs a capture plugin and returns the inputs it produced.

An exception raised by the plugin is recorded with its stage (``on_init``, ``process``, ``on_config``) and,
unless ``raise_errors=False``, raised again in the test as :class:`PluginFailed` (from the original, so the
traceback shows the plugin's line). A config the plugin does not declare raises
:class:`~edge_engine.errors.ConfigError`, as the node would refuse it.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edge_engine.config.pipelines import check_instance_update
from edge_engine.constants import KIND_BUSINESS, KIND_CAPTURE
from edge_engine.errors import ConfigError, EndOfStream
from edge_engine.messages import Notification, Payload
from edge_engine.plugin.kinds import BusinessPlugin, CapturePlugin, Input, PluginBase
from edge_engine.plugin.registry import PluginRegistry
from edge_engine.runtime.instance import InstanceRunner, payload_from_result
from edge_engine.runtime.pipeline import PipelineRunner
from edge_engine.runtime.sandbox import Sandbox, same_name, with_classes

DEFAULT_TIMEOUT = 10.0
PIPELINE = "harness"
INSTANCE_ID = "test"
FEED_SIGNATURE = "HARNESS_FEED"
COLLECT_SIGNATURE = "HARNESS_COLLECT"
_END = object()


# --- what a run returns ----------------------------------------------------------------------------------
@dataclass
class RecordedError:
    """An exception raised by the plugin, with the stage and input it happened in."""

    stage: str
    exception: BaseException
    input_seq: int | None = None
    traceback: str = ""

    def __str__(self) -> str:
        where = f" (input #{self.input_seq})" if self.input_seq is not None else ""
        return f"{self.stage} raised {type(self.exception).__name__}: {self.exception}{where}"


class PluginFailed(AssertionError):
    """The plugin raised; ``.error`` is the :class:`RecordedError`, the original exception is the cause."""

    def __init__(self, error: RecordedError):
        self.error = error
        super().__init__(str(error))


@dataclass
class EmittedPayload:
    """A payload the plugin emitted: ``data`` (also reachable as ``payload["KEY"]``) and an optional image."""

    data: dict[str, Any]
    seq: int
    input_seq: int | None
    path: list[str | None]
    image_jpeg: bytes | None = None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def image(self) -> Any:
        """The witness image decoded from its JPEG (numpy BGR; JPEG is lossy), or None."""
        if self.image_jpeg is None:
            return None
        import cv2
        import numpy as np

        return cv2.imdecode(np.frombuffer(self.image_jpeg, np.uint8), cv2.IMREAD_COLOR)


@dataclass
class HarnessResult:
    """What a business plugin did: its payloads, notifications and errors, and the inputs it processed."""

    payloads: list[EmittedPayload] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    errors: list[RecordedError] = field(default_factory=list)
    inputs: int = 0
    dropped: int = 0

    @property
    def data(self) -> list[dict[str, Any]]:
        """The payloads' dicts, in order."""
        return [p.data for p in self.payloads]


@dataclass
class CaptureResult:
    """What a capture plugin produced, whether its stream ended, and what it raised."""

    inputs: list[Input] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    errors: list[RecordedError] = field(default_factory=list)
    finished: bool = False

    @property
    def data(self) -> list[dict[str, Any] | None]:
        return [i.data for i in self.inputs]

    @property
    def images(self) -> list[Any]:
        return [i.image for i in self.inputs]


# --- instrumentation ----------------------------------------------------------------------------------------
class Probe:
    """Counts what the plugin's thread did and records its exceptions; tests wait on it."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.processed = 0
        self.configured = 0
        self.errors: list[RecordedError] = []

    def bump(self, attr: str) -> None:
        with self.cond:
            setattr(self, attr, getattr(self, attr) + 1)
            self.cond.notify_all()

    def error(self, stage: str, exc: BaseException, inp: Input | None = None) -> None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with self.cond:
            self.errors.append(RecordedError(stage, exc, inp.seq if inp is not None else None, text))
            self.cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)


def instrumented(cls: type[BusinessPlugin], probe: Probe) -> type:
    """A subclass that reports to ``probe``; behaviour is unchanged (a returned payload is emitted as before)."""

    class Instrumented(cls):  # type: ignore[misc, valid-type]  # a subclass of a class known only at run time
        def on_init(self) -> None:
            try:
                super().on_init()
            except Exception as exc:
                probe.error("on_init", exc)
                raise

        def process(self, inp: Input | None) -> None:
            try:
                payload = payload_from_result(super().process(inp))
                if payload is not None:  # emitted here, as the runtime would, so it is counted with the input
                    self.context.emit(payload)
            except Exception as exc:
                probe.error("process", exc, inp)
                raise
            finally:
                if inp is not None:
                    probe.bump("processed")
            return None

        def on_config(self, changed: dict[str, Any]) -> None:
            try:
                super().on_config(changed)
            except Exception as exc:
                probe.error("on_config", exc)
                raise
            finally:
                probe.bump("configured")

    return same_name(Instrumented, cls)


def feeder(items: queue.Queue[Any]) -> type[CapturePlugin]:
    """A capture plugin class that returns what the test puts in ``items`` (``_END`` ends the stream)."""

    class Feed(CapturePlugin):
        SIGNATURE = FEED_SIGNATURE
        DESCRIPTION = "test harness: inputs given by the test"

        def read(self) -> Any:
            try:
                item = items.get(timeout=0.05)
            except queue.Empty:
                return None
            if item is _END:
                raise EndOfStream("the test gave no more inputs")
            return item

    return Feed


def collector(sink: list[Input], cond: threading.Condition) -> type[BusinessPlugin]:
    """A business plugin class that keeps every input it receives (to test a capture plugin)."""

    class Collect(BusinessPlugin):
        SIGNATURE = COLLECT_SIGNATURE
        CONFIG: ClassVar[dict[str, Any]] = {}

        def process(self, inp: Input | None) -> None:
            if inp is not None:
                with cond:
                    sink.append(inp)
                    cond.notify_all()

    return Collect


# --- sessions ---------------------------------------------------------------------------------------------
class Session:
    """One business plugin instance running in a harness pipeline; feed it, update it, command it."""

    def __init__(
        self,
        sandbox: Sandbox,
        runner: PipelineRunner,
        items: queue.Queue[Any],
        probe: Probe,
        result: HarnessResult,
        signature: str,
        raise_errors: bool,
        timeout: float,
    ):
        self.sandbox = sandbox
        self.runner = runner
        self.items = items
        self.probe = probe
        self.result = result
        self.signature = signature
        self.raise_errors = raise_errors
        self.timeout = timeout
        self.fed = 0
        self._raised = 0
        self.closed = False

    @property
    def instance(self) -> InstanceRunner:
        runner = self.runner.instance(self.signature, INSTANCE_ID)
        assert runner is not None
        return runner

    @property
    def config(self) -> dict[str, Any]:
        """The instance's effective config (defaults ← test config ← live updates)."""
        return dict(self.instance.config)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def feed(self, inputs: Iterable[Any] | Any, wait: bool = True) -> list[EmittedPayload]:
        """Give inputs (a frame, a dict, an Input, or an iterable of them); returns the payloads they caused."""
        items = [inputs] if _single(inputs) else list(inputs)
        before = len(self.result.payloads)
        for item in items:
            self.items.put(_as_item(item))
        self.fed += len(items)
        if wait:
            self.wait_processed()
        return self.result.payloads[before:]

    def wait_processed(self, timeout: float | None = None) -> None:
        """Wait until every input fed so far was processed (or dropped by the instance's own policy)."""
        instance = self.instance
        limit = self.timeout if timeout is None else timeout

        def done() -> bool:
            return (
                self.probe.processed + instance.stats.dropped >= self.fed
                or instance.status == "disabled"
                or any(e.stage == "on_init" for e in self.probe.errors)
            )

        if not self.probe.wait_for(done, limit) and not done():
            raise TimeoutError(
                f"{self.signature} processed {self.probe.processed} of {self.fed} inputs in {limit} s "
                f"(instance status {instance.status!r})"
            )
        self._check()

    def wait(self, seconds: float) -> None:
        """Let the instance run for a while (timers: ``ALLOW_EMPTY_INPUTS``, ``PROCESS_DELAY``)."""
        time.sleep(seconds)
        self._check()

    def update_config(self, changes: Mapping[str, Any] | None = None, **keys: Any) -> None:
        """Apply a live config update, validated as the node validates it; returns once ``on_config`` ran."""
        changes = {**(changes or {}), **keys}
        instance = self.instance
        where = {"file": "test", "pipeline": PIPELINE, "plugin": self.signature, "instance": INSTANCE_ID}
        issues = check_instance_update(instance.spec.record, changes, where)
        if issues:
            raise ConfigError(issues)
        changed = {k: v for k, v in changes.items() if instance.config.get(k) != v}
        target = self.probe.configured + 1
        instance.update_config(changes)
        waits = bool(changed) and "DISABLED" not in changed and instance.status == "running"
        if waits and not self.probe.wait_for(lambda: self.probe.configured >= target, self.timeout):
            raise TimeoutError(f"{self.signature}: the config update was not applied in {self.timeout} s")
        self._check()

    def command(self, command: Any, **params: Any) -> Any:
        """Send an instance command; returns what ``on_command`` returned (or raises what it raised)."""
        return self.instance.command(command, params).result(self.timeout)

    def finish(self) -> HarnessResult:
        """End the input stream, let the instance process what is queued, stop, and return the result."""
        if not self.closed:
            self.items.put(_END)
            instance = self.instance
            instance.thread.join(self.timeout)
            self.close()
        self._check()
        return self.result

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.result.inputs = self.probe.processed
        self.result.dropped = self.instance.stats.dropped
        self.sandbox.close()

    def _check(self) -> None:
        with self.probe.cond:
            self.result.errors = list(self.probe.errors)
        if self.raise_errors and len(self.result.errors) > self._raised:
            error = self.result.errors[self._raised]
            self._raised = len(self.result.errors)
            raise PluginFailed(error) from error.exception


# --- the harness ------------------------------------------------------------------------------------------
class PluginHarness:
    """Builds a pipeline around one plugin (by signature or class) and runs it; see the module docstring."""

    def __init__(self, registry: PluginRegistry, workdir: Path | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.registry = registry
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="edge-harness-"))
        self.timeout = timeout
        self._sessions: list[Session] = []
        self._count = 0

    def _registry_with(self, plugin: str | type[PluginBase], kind: str) -> tuple[PluginRegistry, str]:
        registry = self.registry.copy()
        if isinstance(plugin, str):
            record = registry.get(kind, plugin)
            if record is None:
                near = registry.suggest(kind, plugin)
                known = f"did you mean {near!r}?" if near else "is its file under a plugin folder?"
                raise LookupError(f"no {kind} plugin {plugin!r}; {known}")
            return registry, record.signature
        existing = registry.get(kind, plugin.SIGNATURE)
        if existing is None or existing.cls is not plugin:
            for old in [r for r in registry.records() if r.signature.lower() == plugin.SIGNATURE.lower()]:
                registry.remove_source(old.source)
            registry.add(plugin, f"test class {plugin.__module__}.{plugin.__qualname__}")
        return registry, plugin.SIGNATURE

    def _sandbox(self, registry: PluginRegistry, result: Any) -> Sandbox:
        self._count += 1

        def on_payload(p: Payload) -> None:
            result.payloads.append(EmittedPayload(p.data, p.seq, p.input_seq, p.path, p.image_jpeg))

        return Sandbox(
            registry,
            self.workdir / f"run{self._count}",
            on_payload=on_payload,
            on_notification=result.notifications.append,
            alias="harness",
            restart_cap=0.5,
        )

    def start(
        self,
        plugin: str | type[BusinessPlugin],
        config: Mapping[str, Any] | None = None,
        *,
        live: bool = False,
        raise_errors: bool = True,
        timeout: float | None = None,
    ) -> Session:
        """Start a business plugin instance with ``config``; returns a :class:`Session` (a context manager)."""
        registry, signature = self._registry_with(plugin, KIND_BUSINESS)
        items: queue.Queue[Any] = queue.Queue()
        registry.add(feeder(items), "edge_engine.testing.harness")
        result = HarnessResult()
        sandbox = self._sandbox(registry, result)
        instance = {"INSTANCE_ID": INSTANCE_ID, **(config or {})}
        raw = {
            "NAME": PIPELINE,
            "TYPE": FEED_SIGNATURE,
            "LIVE_FEED": live,
            "PLUGINS": [{"SIGNATURE": signature, "INSTANCES": [instance]}],
        }
        try:
            spec = sandbox.build(raw, "test")
        except ConfigError:
            sandbox.close()
            raise
        probe = Probe()
        record = spec.instances[0].record
        assert issubclass(record.cls, BusinessPlugin), "the sandbox built a business instance"
        spec = with_classes(spec, business={record.signature.upper(): instrumented(record.cls, probe)})
        runner = sandbox.start(spec)
        session = Session(
            sandbox,
            runner,
            items,
            probe,
            result,
            record.signature,
            raise_errors,
            self.timeout if timeout is None else timeout,
        )
        self._sessions.append(session)
        return session

    def run(
        self,
        plugin: str | type[BusinessPlugin],
        config: Mapping[str, Any] | None = None,
        inputs: Iterable[Any] = (),
        *,
        live: bool = False,
        raise_errors: bool = True,
        timeout: float | None = None,
    ) -> HarnessResult:
        """Run a business plugin on ``inputs`` and return what it emitted (after ``on_close``)."""
        session = self.start(plugin, config, live=live, raise_errors=raise_errors, timeout=timeout)
        try:
            session.feed(inputs)
            return session.finish()
        finally:
            session.close()

    def run_capture(
        self,
        plugin: str | type[CapturePlugin],
        config: Mapping[str, Any] | None = None,
        *,
        max_inputs: int = 10,
        timeout: float | None = None,
        raise_errors: bool = True,
    ) -> CaptureResult:
        """Run a capture plugin until ``max_inputs`` inputs, the end of its stream, or a failure."""
        registry, signature = self._registry_with(plugin, KIND_CAPTURE)
        result = CaptureResult()
        cond = threading.Condition()
        registry.add(collector(result.inputs, cond), "edge_engine.testing.harness")
        sandbox = self._sandbox(registry, result)
        raw = {
            "NAME": PIPELINE,
            "TYPE": signature,
            **(config or {}),
            "PLUGINS": [{"SIGNATURE": COLLECT_SIGNATURE, "INSTANCES": [{"INSTANCE_ID": INSTANCE_ID}]}],
        }
        spec = sandbox.build(raw, "test")
        probe = Probe()
        spec = with_classes(
            spec,
            capture=_recording_capture(spec.capture.cls, probe),
            capture_config={**spec.capture_config, "RECONNECTABLE": False},
        )
        runner = sandbox.start(spec)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        collect = next(iter(runner.instances.values()))
        try:
            with cond:  # the stream's end is seen when the collecting instance has processed everything
                while len(result.inputs) < max_inputs and collect.thread.is_alive() and time.monotonic() < deadline:
                    cond.wait(0.02)
        finally:
            result.finished = runner.capture.status == "finished"
            sandbox.close()
        del result.inputs[max_inputs:]
        result.errors = list(probe.errors)
        if raise_errors and result.errors:
            raise PluginFailed(result.errors[0]) from result.errors[0].exception
        return result

    def close(self) -> None:
        for session in self._sessions:
            session.close()
        self._sessions.clear()


def _recording_capture(cls: type, probe: Probe) -> type:
    class Recording(cls):
        def connect(self) -> None:
            try:
                super().connect()
            except Exception as exc:
                probe.error("connect", exc)
                raise

        def read(self) -> Any:
            try:
                return super().read()
            except EndOfStream:
                raise
            except Exception as exc:
                probe.error("read", exc)
                raise

    return same_name(Recording, cls)


def _single(value: Any) -> bool:
    """Whether ``value`` is one input (not an iterable of inputs)."""
    return isinstance(value, (dict, Input)) or hasattr(value, "shape")


def _as_item(value: Any) -> Any:
    if isinstance(value, (dict, Input)) or hasattr(value, "shape"):
        return value
    raise TypeError(f"an input must be a numpy image, a dict or an Input, not {type(value).__name__}")
