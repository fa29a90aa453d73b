"""The states a pipeline, its capture and its instances report, as one string-valued enum.

A :class:`Status` member *is* its string (``Status.RUNNING == "running"``, ``json.dumps`` writes ``"running"``,
``str()`` and f-strings give ``running``), so ``local_info.json``, heartbeats, ``/metrics`` and the status page
read exactly what they read when these were plain strings, and readers that compare with strings keep working.
Inside the engine, compare with the members: a typo is then an ``AttributeError``, not a silent mismatch.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """What a part of a pipeline is doing now (which parts use which member: see each one)."""

    STARTING = "starting"  # capture, instance: not yet connected / initialised
    RUNNING = "running"  # capture: inputs flow; instance: plugin ready; pipeline
    AWAY = "away"  # capture: the source cannot be reached or gives nothing (decision 32)
    RECONNECTING = "reconnecting"  # capture: failed, waiting for the supervisor's backoff
    FAILED = "failed"  # capture: not reconnectable and failed; instance: gave up
    FLAPPING = "flapping"  # capture, instance: failed too often, stopped until an update
    ERROR = "error"  # instance: on_init() failed, retrying with backoff
    DISABLED = "disabled"  # instance: DISABLED in its config
    FINISHED = "finished"  # capture: the file source ended; instance: drained after that; pipeline
    DRAINING = "draining"  # pipeline: the source ended, instances still process what is queued
    STOPPED = "stopped"  # every part: stopped by the node

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __repr__(self) -> str:
        return repr(self.value)

    def __hash__(self) -> int:  # as the string's: ``"running" in {Status.RUNNING}`` holds
        return str.__hash__(self)


CONNECTED = frozenset({Status.RUNNING, Status.AWAY})  # capture: the plugin is connected (away: no input yet)
LIVE_UPDATABLE = frozenset({Status.STARTING, Status.RUNNING, Status.RECONNECTING, Status.AWAY})  # capture
CAPTURE_SHOWN = frozenset({Status.FAILED, Status.FLAPPING, Status.RECONNECTING, Status.AWAY, Status.STARTING})
NOT_OFFERED = frozenset({Status.DISABLED, Status.FLAPPING})  # instance: inputs are not handed to it
CAPTURE_ENDED = frozenset({Status.FINISHED, Status.FAILED, Status.FLAPPING})  # capture: keeps its status at exit
