"""One business plugin instance: its thread, its mailbox, its config, and the payloads it emits.

Every method of the plugin object is called from this thread. Inputs wait in a bounded mailbox (files:
the dispatcher waits for room; live sources and instances with a PROCESS_DELAY keep only the newest).
Config updates, commands and safe-mode changes arrive as control messages and are applied between two
``process()`` calls. An exception in ``process()`` is logged with pipeline and instance, counted, and the next
input goes on; from the second exception in a row the instance waits the supervisor's backoff first (its
inputs meanwhile are dropped and counted), and a run of failures long enough to reach the flapping limit
(see :mod:`edge_engine.runtime.supervisor`) stops the instance as *flapping*. Failing ``on_init()`` calls count the
same way. A config update of the instance or its pipeline starts a flapping instance again. A payload is checked
before it leaves: ``process()`` must return a dict or None, and every value must be JSON (numpy arrays and
scalars are converted); anything else is the instance's error, with a message naming the key.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, cast

from edge_engine.config.pipelines import InstanceSpec
from edge_engine.messages import Payload, PayloadIntent
from edge_engine.plugin.kinds import BusinessPlugin, Input
from edge_engine.runtime.environment import ErrorLogLimiter, RuntimeEnv, call_safe_mode
from edge_engine.runtime.mailbox import BLOCK, CONTROL, DROP_OLDEST, Closed, Mailbox
from edge_engine.runtime.stage_stats import StageStats
from edge_engine.runtime.status import Status
from edge_engine.serving.cascade import ModelCaller

JPEG_QUALITY = 85


# --- control messages into an instance's mailbox (applied between two process() calls) ---------------------------
@dataclass(frozen=True)
class ConfigUpdate:
    """Apply these changed keys (and, from a pipeline update, the instance's new spec)."""

    changes: dict[str, Any]
    spec: InstanceSpec | None = None


@dataclass(frozen=True)
class Command:
    """Call ``on_command(command, **params)``; the future (when given) gets its result or exception."""

    command: Any
    params: dict[str, Any] = field(default_factory=dict)
    future: Future[Any] | None = None


@dataclass(frozen=True)
class Resume:
    """Start a flapping instance again."""


@dataclass(frozen=True)
class SafeMode:
    """Enter the plugin's safe mode for ``reason``, or leave it (None)."""

    reason: str | None


Control = ConfigUpdate | Command | Resume | SafeMode


def encode_jpeg(image: Any) -> bytes:
    """Encode a numpy BGR image as JPEG bytes (OpenCV is imported only when an image is emitted)."""
    import cv2

    ok, buffer = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY])
    if not ok:
        raise ValueError("the witness image could not be encoded as JPEG")
    return buffer.tobytes()


def _json_value(value: Any) -> Any:
    """``json.dumps`` default for payloads: numpy arrays and scalars, sets and bytes; anything else is refused."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"a value of type {type(value).__name__} is not JSON")


def payload_from_result(result: Any) -> dict[str, Any] | None:
    """What ``process()`` returned, as the payload to emit: None, or a dict (TypeError for anything else)."""
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise TypeError(f"process() must return a dict or None (got {type(result).__name__})")
    return dict(result)


def check_payload(data: Any, what: str = "payload") -> None:
    """Raise TypeError naming the first key whose value cannot be sent as JSON (a payload must never carry
    ``"<object object at 0x...>"`` in place of a value). ``what`` names the value in the message."""
    try:
        json.dumps(data, default=_json_value)
    except (TypeError, ValueError, RecursionError) as exc:
        try:
            where = _first_bad_key(data)
        except RecursionError:  # a value that contains itself
            where = ""
        raise TypeError(f"{what}{where} is not JSON: {exc}; send numbers, text, lists or dicts") from None


def _first_bad_key(value: Any, where: str = "") -> str:
    """Where in ``value`` the first non-JSON value or key sits (``['BOXES'][0]``), or ``""``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f"{where} key {key!r}"
            found = _first_bad_key(item, f"{where}[{key!r}]")
            if found:
                return found
        return ""
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _first_bad_key(item, f"{where}[{index}]")
            if found:
                return found
        return ""
    try:
        json.dumps(value, default=_json_value)
    except (TypeError, ValueError):
        return where
    return ""


class InstanceRunner:
    """Runs one business plugin instance on its own thread."""

    def __init__(self, env: RuntimeEnv, pipeline: str, spec: InstanceSpec, live_source: bool):
        self.env = env
        self.pipeline = pipeline
        self.spec = spec
        self.config = dict(spec.config)
        self.live_source = live_source
        self.stats = StageStats()
        self.status = Status.STARTING
        self.stop_event = threading.Event()
        self.part = f"{pipeline}/{spec.signature}/{spec.instance_id}"
        self.mailbox = Mailbox(*self._mailbox_policy())
        self._errors = ErrorLogLimiter()
        self._payload_seq = 0
        self._current_seq: int | None = None
        self._plugin: BusinessPlugin | None = None
        self._models = ModelCaller(env.serving, pipeline, self.stop_event)  # the plugin's context.infer()
        self._failure_run = 0  # process() exceptions in a row
        self.flapping: dict[str, Any] | None = None  # reason, failures, window_seconds, since
        self.safe_mode: str | None = None  # the reason, while the pipeline's keep-alive has lapsed
        self.thread = threading.Thread(target=self._run, name=f"instance:{self.part}", daemon=True)

    # --- control from other threads ---------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop soon: the current process() call finishes, queued inputs are discarded."""
        self.stop_event.set()
        self.mailbox.close()

    def finish(self) -> None:
        """The source ended: process what is queued, then stop."""
        self.mailbox.close()

    def offer(self, inp: Input) -> bool:
        """Hand an input to the instance (may wait for room, for file sources)."""
        before = self.mailbox.dropped
        accepted = self.mailbox.put(inp)
        if self.mailbox.dropped != before:
            self.stats.dropped += self.mailbox.dropped - before
        return accepted

    def update_config(self, changes: dict[str, Any], spec: InstanceSpec | None = None) -> None:
        """Apply a live config update between two process() calls."""
        self.mailbox.put_control(ConfigUpdate(dict(changes), spec))

    def resume(self) -> None:
        """Start a flapping instance again (its pipeline was updated without changing its config)."""
        self.mailbox.put_control(Resume())

    def set_safe_mode(self, reason: str | None) -> None:
        """Tell the plugin to enter its safe mode (``reason``) or to leave it (None), between two inputs."""
        self.mailbox.put_control(SafeMode(reason))

    def command(self, command: Any, params: dict[str, Any] | None = None) -> Future[Any]:
        """Deliver a command to ``on_command``; the future holds its return value or exception."""
        future: Future[Any] = Future()
        self.mailbox.put_control(Command(command, params or {}, future))
        return future

    # --- the instance thread ------------------------------------------------------------------------------
    def _mailbox_policy(self) -> tuple[int, str]:
        delay = float(self.config.get("PROCESS_DELAY") or 0)
        if delay > 0:
            return 1, DROP_OLDEST
        size = int(self.config.get("MAX_INPUTS_QUEUE_SIZE") or 1)
        return size, (DROP_OLDEST if self.live_source else BLOCK)

    def _context_emit(self, payload: dict[str, Any], image: Any) -> None:
        self._emit(payload, image, self._current_seq)

    def _emit(self, payload: dict[str, Any], image: Any = None, input_seq: int | None = None) -> None:
        check_payload(payload)
        jpeg = encode_jpeg(image) if image is not None else None
        self._payload_seq += 1
        path: list[str | None] = [self.env.alias, self.pipeline, self.spec.signature, self.spec.instance_id]
        created = time.time()
        # decided once, here: routing fields, encryption target, image name (the sinks look nothing up again)
        intent = PayloadIntent.decide(
            path, created, self._payload_seq, jpeg is not None, self.config, self.env.pipeline_config(self.pipeline)
        )
        message = Payload(
            path=path,
            data=payload,
            seq=self._payload_seq,
            created=created,
            image_jpeg=jpeg,
            input_seq=input_seq,
            intent=intent,
        )
        self.stats.outputs += 1
        refused = self.env.hooks.payload(message)
        if refused is not None:  # the outbox would not take it (ENCRYPT_PAYLOAD with nobody to encrypt to)
            self.stats.error(refused)

    def _start_plugin(self) -> BusinessPlugin | None:
        """Create and initialise the plugin, retrying with backoff; None when stopping or disabled."""
        context = self.env.make_context(
            self.pipeline, self.spec.record, self.spec.instance_id, self.stop_event, self._context_emit
        )
        context.infer_fn = self._models.infer
        while not self.stop_event.is_set():
            if self.config.get("DISABLED"):
                return None
            try:
                plugin = cast(BusinessPlugin, self.env.create(self.spec.record, self.config, context))
                plugin.on_init()
            except (Exception, SystemExit) as exc:  # sys.exit() in plugin code ends nothing but the call
                text = f"{type(exc).__name__}: {exc}"
                self.stats.error(text)
                self.status = Status.ERROR
                # meanwhile its inputs are dropped and counted: the pipeline's other instances must not wait for it
                self.mailbox.set_policy(DROP_OLDEST)
                self.env.log.error("%s: start failed: %s\n%s", self.part, text, traceback.format_exc())
                self.env.notify("error", f"instance start failed: {text}", self._path())
                verdict = self.env.supervisor.record(self.part, exc)
                if verdict.flapping:
                    self._flap()
                    return None
                if self.stop_event.wait(verdict.delay):
                    return None
                self.stats.restarts += 1
                continue
            self.env.supervisor.recovered(self.part)
            size, policy = self._mailbox_policy()
            self.mailbox.set_policy(policy, size)
            if self.safe_mode is not None:
                self._call_safe_mode(plugin, self.safe_mode)
            return plugin
        return None

    def _flap(self) -> None:
        """The supervisor says this instance flaps: close it, report it, and wait for a config update."""
        self._close_plugin()
        self.status = Status.FLAPPING
        self.mailbox.set_policy(DROP_OLDEST)
        self.mailbox.clear()
        what = f"instance {self.spec.signature}/{self.spec.instance_id} of pipeline {self.pipeline!r}"
        self.flapping = self.env.report_flapping(self.part, what, self._path())

    def _unflap(self) -> None:
        if self.status != Status.FLAPPING:
            return
        self.env.supervisor.forget(self.part)
        self.env.log.info("%s: started again after flapping", self.part)
        self.flapping = None
        self._failure_run = 0
        self.status = Status.STARTING

    def _backoff(self, delay: float) -> None:
        """Wait ``delay`` seconds before the next input (control messages are still handled; inputs dropped)."""
        self.mailbox.set_policy(DROP_OLDEST)  # the pipeline's other instances must not wait for this one
        deadline = time.monotonic() + delay
        while not self.stop_event.is_set() and self._plugin is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            message = self.mailbox.get(timeout=left, inputs=False)
            if message is not None:
                self._handle_control(message[1])
        size, policy = self._mailbox_policy()
        self.mailbox.set_policy(policy, size)

    def _path(self) -> list[str | None]:
        return [self.env.alias, self.pipeline, self.spec.signature, self.spec.instance_id]

    def _run(self) -> None:
        try:
            self._loop()
        except Closed:
            pass
        finally:
            self._close_plugin()
            self._models.close()
            if self.status != Status.FAILED:
                self.status = Status.FINISHED if not self.stop_event.is_set() else Status.STOPPED

    def _close_plugin(self) -> None:
        plugin, self._plugin = self._plugin, None
        if plugin is None:
            return
        try:
            plugin.on_close()
        except Exception:
            self.env.log.exception("%s: on_close raised", self.part)

    def _loop(self) -> None:
        next_due = 0.0
        while not self.stop_event.is_set():
            if self._plugin is None:
                if self.status == Status.FLAPPING:
                    self._discard_until_control()
                    continue
                if self.config.get("DISABLED"):
                    self.status = Status.DISABLED
                    self._discard_until_control()
                    continue
                self._plugin = self._start_plugin()
                if self._plugin is None:
                    continue
                self.status = Status.RUNNING
            delay = float(self.config.get("PROCESS_DELAY") or 0)
            now = time.monotonic()
            if delay > 0 and now < next_due:
                message = self.mailbox.get(timeout=next_due - now, inputs=False)
                if message is not None:
                    self._handle_control(message[1])
                continue
            message = self.mailbox.get(timeout=self._empty_wait(delay))
            if message is None:
                inp = None  # ALLOW_EMPTY_INPUTS and nothing arrived in time
            elif message[0] == CONTROL:
                self._handle_control(message[1])
                continue
            else:
                inp = message[1]
                self.stats.inputs += 1
            if delay > 0:
                next_due = time.monotonic() + delay
            self._process(inp)
            message = inp = None  # waiting for the next input must not keep this frame alive (0.9 MB at 640x480)

    def _empty_wait(self, delay: float) -> float | None:
        if not self.config.get("ALLOW_EMPTY_INPUTS"):
            return None
        if delay > 0:
            return 0.0  # the PROCESS_DELAY was already waited for: take an input if one is there, else None
        resolution = float(self.config.get("PLUGIN_LOOP_RESOLUTION") or 20.0)
        return 1.0 / resolution

    def _discard_until_control(self) -> None:
        message = self.mailbox.get()
        if message is not None and message[0] == CONTROL:
            self._handle_control(message[1])

    def _process(self, inp: Input | None) -> None:
        plugin = self._plugin
        assert plugin is not None
        started = time.perf_counter()
        self._current_seq = inp.seq if inp is not None else None
        try:
            payload = payload_from_result(plugin.process(inp))
            if payload is not None:
                self._emit(payload, None, inp.seq if inp is not None else None)
        except (Exception, SystemExit) as exc:  # sys.exit() in plugin code ends nothing but the call
            self.stats.timed(time.perf_counter() - started)
            self._process_failed(exc)
            return
        self.stats.timed(time.perf_counter() - started)
        if self._failure_run:
            self._failure_run = 0
            self.env.supervisor.recovered(self.part, clear_window=True)

    def _process_failed(self, exc: BaseException) -> None:
        """Count and log a process() exception; back off from the second in a row; flapping stops the instance."""
        text = f"{type(exc).__name__}: {exc}"
        self.stats.error(text)
        if self._errors.should_log(text):
            self.env.log.error(
                "pipeline %r instance %s/%s: process() raised %s\n%s",
                self.pipeline,
                self.spec.signature,
                self.spec.instance_id,
                text,
                traceback.format_exc(),
            )
        self._failure_run += 1
        verdict = self.env.supervisor.record(self.part, exc)
        if verdict.flapping:
            self._flap()
        elif self._failure_run > 1:
            self.stats.restarts += 1
            self._backoff(verdict.delay)

    def _handle_control(self, message: Control) -> None:
        if isinstance(message, ConfigUpdate):
            self._apply_config(message.changes, message.spec)
        elif isinstance(message, Command):
            self._run_command(message.command, message.params, message.future)
        elif isinstance(message, Resume):
            self._unflap()
        elif isinstance(message, SafeMode):
            self._change_safe_mode(message.reason)

    def _change_safe_mode(self, reason: str | None) -> None:
        if (reason is None) == (self.safe_mode is None):
            return
        self.safe_mode = reason
        if self._plugin is not None:
            self._call_safe_mode(self._plugin, reason)

    def _call_safe_mode(self, plugin: BusinessPlugin, reason: str | None) -> None:
        call_safe_mode(plugin, reason, self.stats, self.env.log, self.part)

    def _apply_config(self, changes: dict[str, Any], spec: InstanceSpec | None) -> None:
        changed = {k: v for k, v in changes.items() if self.config.get(k) != v}
        if spec is not None:
            self.spec = spec
        self.config.update(changes)
        self._unflap()  # a config update starts a flapping instance again
        size, policy = self._mailbox_policy()
        self.mailbox.set_policy(policy, size)
        if self._plugin is None or not changed:
            return
        if changed.get("DISABLED"):
            self._close_plugin()
            return
        previous = {k: self._plugin.config.get(k) for k in changed}
        self._plugin._apply_config(changed)
        try:
            self._plugin.on_config(changed)
        except (Exception, SystemExit) as exc:  # sys.exit() in plugin code ends nothing but the call
            # the plugin refused the update: keep running with the values it accepted before
            self._plugin._apply_config(previous)
            self.config.update(previous)
            text = f"config update refused: {type(exc).__name__}: {exc}"
            self.stats.error(text)
            self.env.log.error("%s: %s", self.part, text)
            self.env.notify("error", text, self._path())
            return
        if changed.get("INSTANCE_COMMAND"):
            self._run_command(changed["INSTANCE_COMMAND"], {}, None)

    def _run_command(self, command: Any, params: dict[str, Any], future: Future[Any] | None) -> None:
        if self._plugin is None:
            error = RuntimeError(f"instance {self.part} is not running (status {self.status})")
            if future is not None:
                future.set_exception(error)
            return
        try:
            result = self._plugin.on_command(command, **params)
            check_payload(result, "on_command() result")  # it goes back to the sender as RESULT
        except (Exception, SystemExit) as exc:  # sys.exit() in plugin code ends nothing but the call
            self.stats.error(f"{type(exc).__name__}: {exc}")
            self.env.log.exception("%s: on_command raised", self.part)
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)

    def snapshot(self) -> dict[str, Any]:
        return {
            "signature": self.spec.signature,
            "instance_id": self.spec.instance_id,
            "status": self.status,
            "queue": len(self.mailbox),
            **self.stats.snapshot(),
            "payloads": self.stats.outputs,
            **({"flapping": dict(self.flapping)} if self.flapping is not None else {}),
            **({"safe_mode": True} if self.safe_mode is not None else {}),
        }
