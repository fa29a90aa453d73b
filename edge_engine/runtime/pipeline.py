"""One running pipeline: its capture loop, serving stage, dispatcher thread and business instances.

Updates keep what they can: a change limited to instances (added, removed, or reconfigured) is applied
live without restarting the capture; a change to the capture restarts the whole pipeline. Any update starts
a flapping part again. With ``KEEP_ALIVE_SECONDS`` set, the owner must send a keep-alive at least that often
(:meth:`PipelineRunner.keep_alive`); when it lapses, every plugin of the pipeline is told to enter its safe
mode (``on_safe_mode``) and, when the keep-alive returns, to leave it (``on_resume``). A stopped pipeline leaves
nothing behind: its threads end, and its plugins' loggers leave :mod:`logging`'s registry (which never forgets a
name), so deploying and deleting pipelines with generated names for months does not grow the node.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from edge_engine.config.pipelines import InstanceSpec, PipelineSpec
from edge_engine.messages import utc_iso
from edge_engine.plugin.kinds import Input
from edge_engine.runtime.allocator import limit_arenas, request_release
from edge_engine.runtime.capture import CaptureRunner
from edge_engine.runtime.environment import PLUGIN_LOG_PREFIX, RuntimeEnv
from edge_engine.runtime.instance import InstanceRunner
from edge_engine.runtime.mailbox import BLOCK, DROP_OLDEST, Closed, Mailbox
from edge_engine.runtime.serving_stage import ServingStage
from edge_engine.runtime.status import CAPTURE_SHOWN, LIVE_UPDATABLE, NOT_OFFERED, Status


class PipelineRunner:
    """Starts, updates and stops the threads of one pipeline."""

    def __init__(self, env: RuntimeEnv, spec: PipelineSpec):
        limit_arenas()  # once per process, before the first pipeline's threads start
        self.env = env
        self.spec = spec
        self.started_at = time.time()
        env.supervisor.forget_prefix(f"{spec.name}/")  # started afresh: flapping parts may run again
        self.keep_alive_seconds = float(spec.capture_config.get("KEEP_ALIVE_SECONDS") or 0.0)
        self.last_keep_alive: float | None = None  # wall-clock time of the last keep-alive received
        self._keep_alive_due = time.monotonic() + self.keep_alive_seconds
        self.safe_mode: str | None = None  # the reason, while the keep-alive has lapsed
        live = bool(spec.capture_config.get("LIVE_FEED", False))
        size = int(spec.capture_config.get("MAX_INPUTS_QUEUE_SIZE") or 4)
        self.inbox = Mailbox(size, DROP_OLDEST if live else BLOCK)
        self.inlet = Inlet(self)
        self.capture = CaptureRunner(env, spec.name, spec.capture, spec.capture_config, self.inlet)
        self.serving = ServingStage(env.serving, spec.name, spec.instances, wake=self.inbox.wake)
        self.instances: dict[tuple[str, str], InstanceRunner] = {
            i.key: InstanceRunner(env, spec.name, i, live) for i in spec.instances
        }
        self._live = live
        self._logger_names = {_logger_name(spec.name, spec.capture.signature, None)}
        self._logger_names.update(_logger_name(spec.name, i.signature, i.instance_id) for i in spec.instances)
        self._lock = threading.Lock()
        self.dispatcher = threading.Thread(target=self._dispatch, name=f"dispatch:{spec.name}", daemon=True)
        self.stopping = False

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self) -> None:
        for runner in self.instances.values():
            runner.start()
        if self.serving.active:
            self.inlet.route_through_dispatcher()
        self.capture.start()

    def _start_dispatcher(self) -> bool:
        """Start the dispatcher thread (once, under the pipeline's lock); False when the pipeline is stopping."""
        with self._lock:
            if self.stopping:
                return False
            if self.dispatcher.ident is None:
                self.dispatcher.start()
            return True

    def _source_ended(self) -> None:
        """The capture closed the inlet while inputs went straight to the instances (no dispatcher to do this)."""
        with self._lock:
            if self.dispatcher.ident is not None:
                return  # the dispatcher drains the inbox and finishes the instances
            self.serving.close()
            if self.stopping:
                return
            runners = tuple(self.instances.values())
        for runner in runners:
            runner.finish()

    def _dispatch(self) -> None:
        """Take inputs from the capture, get their inferences (up to the stage's window in flight, handed on in
        order), and offer them to the instances. Without models an input goes straight to the instances."""
        serving = self.serving
        pending: deque[Any] = deque()
        try:
            while not self.stopping:
                while pending and pending[0].done:
                    self._offer(*serving.complete(pending.popleft()))
                if len(pending) >= serving.window:
                    serving.wait(pending[0])  # the window is full: only a result can help
                    continue
                # wait for a new input; the results of the oldest input in flight end this wait too (inbox.wake())
                if pending and not serving.watch(pending[0]):
                    continue  # they are in already
                message = self.inbox.get()
                serving.unwatch()
                if message is None or message[0] != "input":
                    continue
                if pending or serving.active:
                    pending.append(serving.submit(message[1]))
                else:
                    self._offer(serving.run(message[1]), None)  # no model: run() passes the input through
                message = None  # the next wait must not keep this frame alive
        except Closed:
            while pending and not self.stopping:
                self._offer(*serving.complete(pending.popleft()))
        finally:
            serving.close()
            if not self.stopping:
                for runner in tuple(self.instances.values()):
                    runner.finish()

    def _offer(self, inp: Any, views: dict[tuple[str, str], Any] | None) -> None:
        for key, runner in tuple(self.instances.items()):
            if runner.status not in NOT_OFFERED:
                runner.offer(inp if views is None else views.get(key, inp))

    # --- updates -----------------------------------------------------------------------------------------
    def can_update_live(self, new: PipelineSpec) -> bool:
        """Whether ``new`` differs from the running spec only in its instances."""
        return new.capture_identity() == self.spec.capture_identity() and self.capture.status in LIVE_UPDATABLE

    def update_live(self, new: PipelineSpec) -> dict[str, list[str]]:
        """Apply an instance-only change; returns which instances were added, removed, updated."""
        report: dict[str, list[str]] = {"added": [], "removed": [], "updated": []}
        wanted = {i.key: i for i in new.instances}
        with self._lock:
            current = dict(self.instances)
            for key, runner in current.items():
                if key not in wanted:
                    runner.stop()
                    del self.instances[key]
                    self.env.supervisor.forget(runner.part)
                    report["removed"].append("/".join(key))
            for key, spec in wanted.items():
                if key not in current:
                    runner = self._new_instance(new.name, spec)
                    self.instances[key] = runner
                    runner.start()
                    report["added"].append("/".join(key))
                elif spec.config != current[key].config:
                    current[key].update_config(_changed(current[key].config, spec), spec)
                    report["updated"].append("/".join(key))
                elif current[key].status == Status.FLAPPING:
                    current[key].resume()
                    report["updated"].append("/".join(key))
            self.serving.update(new.instances)
            self.spec = new
        return report

    def _new_instance(self, pipeline: str, spec: InstanceSpec) -> InstanceRunner:
        runner = InstanceRunner(self.env, pipeline, spec, self._live)
        self._logger_names.add(_logger_name(pipeline, spec.signature, spec.instance_id))
        if self.safe_mode is not None:
            runner.set_safe_mode(self.safe_mode)
        return runner

    # --- keep-alive and watchdog -------------------------------------------------------------------------
    def keep_alive(self) -> bool:
        """The owner's keep-alive arrived; leaves safe mode if the pipeline was in it. Returns whether it was."""
        self.last_keep_alive = time.time()
        self._keep_alive_due = time.monotonic() + self.keep_alive_seconds
        with self._lock:
            reason, self.safe_mode = self.safe_mode, None
            if reason is None:
                return False
            self._tell_safe_mode(None)
        self.env.log.info("pipeline %r: keep-alive received; plugins resume", self.name)
        text = f"pipeline {self.name!r}: keep-alive received again; its plugins resumed their normal mode"
        self.env.notify(
            "info", text, [self.env.alias, self.name, None, None], NOTIFICATION_TYPE="NORMAL", SAFE_MODE=False
        )
        return True

    def _tell_safe_mode(self, reason: str | None) -> None:
        self.capture.set_safe_mode(reason)
        for runner in self.instances.values():
            runner.set_safe_mode(reason)

    def watch(self, now: float) -> float | None:
        """Called by the node's watchdog: check the keep-alive and a blocked source; the next time to look."""
        if self.stopping:
            return None
        due = [self.capture.watch(now)]
        if self.keep_alive_seconds > 0:
            if self.safe_mode is None and now >= self._keep_alive_due:
                self._enter_safe_mode()
            due.append(self._keep_alive_due if self.safe_mode is None else None)
        times = [t for t in due if t is not None]
        return min(times) if times else None

    def _enter_safe_mode(self) -> None:
        seconds = self.keep_alive_seconds
        reason = f"no keep-alive from the owner for {seconds:g} s (KEEP_ALIVE_SECONDS)"
        with self._lock:
            if self.safe_mode is not None or self.stopping:
                return
            self.safe_mode = reason
            self._tell_safe_mode(reason)
        self.env.log.warning("pipeline %r: %s; plugins enter safe mode", self.name, reason)
        self.env.notify(
            "warning",
            f"pipeline {self.name!r}: {reason}; its plugins entered their safe mode",
            [self.env.alias, self.name, None, None],
            NOTIFICATION_TYPE="ABNORMAL FUNCTIONING",
            SAFE_MODE=True,
            REASON=reason,
        )

    def instance(self, signature: str, instance_id: str) -> InstanceRunner | None:
        return self.instances.get((signature.upper(), instance_id))

    def restart_instances(self, new: PipelineSpec, signatures: set[str]) -> list[str]:
        """Restart the instances of the given plugin signatures (upper case) with ``new``'s specs.

        Used when a plugin's class was reloaded: each instance's old object is closed and a new one is
        made from ``new`` (same config, new class). Other instances and the capture keep running.
        """
        restarted: list[str] = []
        wanted = {i.key: i for i in new.instances}
        with self._lock:
            for key, runner in list(self.instances.items()):
                if key[0] not in signatures or key not in wanted:
                    continue
                runner.stop()
                self.env.supervisor.forget(runner.part)
                replacement = self._new_instance(new.name, wanted[key])
                self.instances[key] = replacement
                replacement.start()
                restarted.append("/".join(key))
            self.spec = new
        return restarted

    # --- stop --------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask every thread to stop (returns at once; see :meth:`join`)."""
        with self._lock:
            self.stopping = True
        self.capture.stop()
        self.inbox.close()
        self.serving.stop()
        for runner in tuple(self.instances.values()):
            runner.stop()

    def join(self, deadline: float) -> list[str]:
        """Wait for the threads until ``deadline`` (monotonic); returns the names still running."""
        threads = [self.capture.thread, self.dispatcher, *(r.thread for r in self.instances.values())]
        for thread in threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        forget_loggers(self._logger_names)  # a plugin still finishing keeps its logger object; only the name goes
        request_release()  # its decoder and frames went back to the allocator: the watchdog returns them to the system
        if self.env.wake_watchdog is not None:
            self.env.wake_watchdog()
        return [t.name for t in threads if t.is_alive()]

    # --- reporting ---------------------------------------------------------------------------------------
    def status(self) -> Status:
        capture = self.capture.status
        if self.stopping:
            return Status.STOPPED
        if capture in CAPTURE_SHOWN:
            return capture
        if capture == Status.FINISHED:
            alive = any(r.thread.is_alive() for r in self.instances.values())
            return Status.DRAINING if alive else Status.FINISHED
        return Status.RUNNING

    def snapshot(self) -> dict[str, Any]:
        self.capture.stats.update_rate()
        instances = []
        for runner in tuple(self.instances.values()):
            runner.stats.update_rate()
            instances.append(runner.snapshot())
        return {
            "name": self.spec.name,
            "type": self.spec.capture.signature,
            "status": self.status(),
            "started_at": utc_iso(self.started_at),
            "capture": self._capture_snapshot(),
            **({"serving": self.serving.snapshot()} if self.serving.active else {}),
            "instances": instances,
            **({"keep_alive": self._keep_alive_snapshot()} if self.keep_alive_seconds > 0 else {}),
        }

    def _capture_snapshot(self) -> dict[str, Any]:
        capture = self.capture
        snap = {"status": capture.status, "queue": len(self.inbox), **capture.stats.snapshot()}
        if capture.silent_seconds > 0:
            snap["silent_source_seconds"] = capture.silent_seconds
            snap["silent_failures"] = capture.silent_failures
        if capture.flapping is not None:
            snap["flapping"] = dict(capture.flapping)
        snap["stream"] = capture.presence.snapshot()
        return snap

    def _keep_alive_snapshot(self) -> dict[str, Any]:
        last = self.last_keep_alive
        return {
            "seconds": self.keep_alive_seconds,
            "last": utc_iso(last) if last else None,
            "safe_mode": self.safe_mode is not None,
            **({"reason": self.safe_mode} if self.safe_mode else {}),
        }


class Inlet:
    """Where the capture hands its inputs (:class:`~edge_engine.runtime.capture.InputSink`).

    While the pipeline needs no model, an input goes from the capture thread straight into the instances'
    mailboxes: one thread hand-off per input instead of two (the dispatcher's hop cost 15-25 µs a frame, which
    showed on small frames). Once a model is needed (at start, or added by a live update), inputs go through the
    inbox to the dispatcher thread, which gets their inferences; the switch happens once and only one way, between
    two inputs of the capture thread, so the order of inputs is kept. The pipeline's lock orders the switch
    against stopping.
    """

    def __init__(self, pipeline: PipelineRunner):
        self._pipeline = pipeline
        self._inbox = pipeline.inbox
        self._direct = True
        self._closed = False

    @property
    def direct(self) -> bool:
        """Whether inputs skip the dispatcher (the pipeline has needed no model so far)."""
        return self._direct

    @property
    def dropped(self) -> int:
        """Inputs dropped before the instances (by the inbox's policy; an instance counts its own drops)."""
        return self._inbox.dropped

    def __len__(self) -> int:
        return len(self._inbox)

    def route_through_dispatcher(self) -> bool:
        """Send inputs through the dispatcher from now on (starts it); False when the pipeline is stopping."""
        if self._direct:
            if not self._pipeline._start_dispatcher():
                return False
            self._direct = False
        return True

    def put(self, inp: Input) -> bool:
        """Hand one input on (may wait for room, for file sources). False once the pipeline no longer takes any."""
        pipeline = self._pipeline
        if self._direct:
            if self._closed or pipeline.stopping:
                return False
            serving = pipeline.serving
            if not serving.active:
                pipeline._offer(serving.run(inp), None)  # run() passes it through (a model added this instant: runs it)
                return not pipeline.stopping
            if not self.route_through_dispatcher():
                return False
        return self._inbox.put(inp)

    def close(self) -> None:
        """No more inputs: the dispatcher (or, without one, this inlet) finishes the instances once drained."""
        self._inbox.close()
        if self._closed:
            return
        self._closed = True
        if self._direct:
            self._pipeline._source_ended()


def _logger_name(pipeline: str, signature: str, instance_id: str | None) -> str:
    """The name :meth:`RuntimeEnv.plugin_logger` gives a plugin's logger."""
    return f"{PLUGIN_LOG_PREFIX}.{pipeline}.{signature}" + (f".{instance_id}" if instance_id else "")


def forget_loggers(names: Iterable[str]) -> None:
    """Remove loggers, and the placeholders that only they needed, from :mod:`logging`'s registry.

    ``logging.getLogger`` keeps every name for the life of the process; a pipeline's loggers would stay after
    it is deleted. A placeholder another logger still needs (a longer name under it) is kept.
    """
    registry = logging.Logger.manager.loggerDict
    for name in names:
        logger = registry.pop(name, None)
        if not isinstance(logger, logging.Logger):
            continue
        parent = name.rpartition(".")[0]
        while parent:  # every placeholder up to the first real logger holds a reference to it
            holder = registry.get(parent)
            if not isinstance(holder, logging.PlaceHolder):
                break
            holder.loggerMap.pop(logger, None)
            if not holder.loggerMap:
                registry.pop(parent, None)
            parent = parent.rpartition(".")[0]


def _changed(old: dict[str, Any], spec: InstanceSpec) -> dict[str, Any]:
    """Keys whose value differs, including keys that went back to their default."""
    return {k: v for k, v in spec.config.items() if old.get(k) != v}
