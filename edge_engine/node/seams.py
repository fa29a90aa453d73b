"""The node's seams: what the node asks of its services, and what each service may ask of the node.

:class:`Service` is what the node starts in order and stops in reverse order within one shutdown deadline
(:meth:`edge_engine.node.core.Node.start`, :meth:`~edge_engine.node.core.Node.stop`); a part whose own methods
differ is wrapped in a :class:`PartService`. The other protocols are the node seen from one service: comms
(:class:`CommsHost`), the development-mode reloader (:class:`PipelineHost`) and the status page
(:class:`ObservedNode`). A service is typed with its protocol, never with the node's class, so what it may
touch is written down here and a test can hand it a small fake.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from concurrent.futures import Future

    import pluggy

    from edge_engine.config.node_settings import NodeSettings
    from edge_engine.config.pipelines import PipelineSpec
    from edge_engine.local.cache import CacheLayout
    from edge_engine.local.identity import Identity
    from edge_engine.node.history import NodeHistory
    from edge_engine.node.snapshot import NodeSnapshot
    from edge_engine.plugin.hooks import Hooks
    from edge_engine.plugin.registry import PluginRegistry
    from edge_engine.runtime.pipeline import PipelineRunner
    from edge_engine.runtime.supervisor import Supervisor

log = logging.getLogger(__name__)


class Service(Protocol):
    """A part of the node with a lifetime: started in the node's order, stopped in the reverse order.

    ``stop(deadline)`` gets the node's one shutdown deadline (``time.monotonic()`` seconds; None: the service's
    own budget) and returns the names of threads still running when it gave up on them. ``snapshot()`` is what
    the service reports (None: nothing).
    """

    name: str

    def start(self) -> None: ...
    def stop(self, deadline: float | None = None) -> list[str]: ...
    def snapshot(self) -> Any: ...


class PartService:
    """A part whose methods have other names or shapes, seen as a :class:`Service`."""

    def __init__(
        self,
        name: str,
        start: Callable[[], None] | None = None,
        stop: Callable[[float], list[str] | None] | None = None,
        snapshot: Callable[[], Any] | None = None,
    ):
        self.name = name
        self._start = start
        self._stop = stop
        self._snapshot = snapshot

    def start(self) -> None:
        if self._start is not None:
            self._start()

    def stop(self, deadline: float | None = None) -> list[str]:
        if self._stop is None:
            return []
        return list(self._stop(time.monotonic() if deadline is None else deadline) or [])

    def snapshot(self) -> Any:
        return self._snapshot() if self._snapshot is not None else None

    def __repr__(self) -> str:
        return f"PartService({self.name!r})"


def start_in_order(services: Iterable[Service], started: list[Service], stop_deadline: Callable[[], float]) -> None:
    """Start ``services`` one after the other, appending each to ``started`` once it is up. When one fails to be
    made (``services`` may be a generator that makes each when the ones before it run) or to start, those already
    started are stopped (reverse order, ``stop_deadline()``) and the error is raised; the failing one cleans up
    after itself."""
    try:
        for service in services:
            service.start()
            started.append(service)
    except BaseException:
        stop_in_reverse(started, stop_deadline())
        raise


def stop_in_reverse(started: list[Service], deadline: float) -> list[str]:
    """Stop ``started`` last first, each with the same ``deadline``; empties the list. A service that raises is
    logged and the others still stop. Returns the threads still running."""
    left: list[str] = []
    while started:
        service = started.pop()
        try:
            left.extend(service.stop(deadline))
        except Exception:
            log.exception("service %s failed to stop", service.name)
    return left


class CommsHost(Protocol):
    """What comms (and its command processor and admin pipeline) may ask of the node."""

    alias: str
    identity: Identity | None
    layout: CacheLayout
    settings: NodeSettings
    hooks: Hooks

    @property
    def supervisor(self) -> Supervisor: ...

    def notify(self, level: str, message: str, path: list[Any], **fields: Any) -> None: ...
    def snapshot(self) -> NodeSnapshot: ...
    def pipeline_configs(self) -> list[dict[str, Any]]: ...
    def pipeline_names(self) -> list[str]: ...
    def add_pipeline(self, raw: dict[str, Any], source: str = ...) -> Any: ...
    def remove_pipeline(self, name: str) -> bool: ...
    def update_instance(self, pipeline: str, signature: str, instance_id: str, changes: dict[str, Any]) -> None: ...
    def instance_command(
        self, pipeline: str, signature: str, instance_id: str, command: Any, **params: Any
    ) -> Future[Any]: ...
    def keep_alive(self, pipeline: str) -> bool: ...
    def request_stop(self, reason: str = ...) -> None: ...
    def request_restart(self, reason: str = ...) -> None: ...


class PipelineHost(Protocol):
    """What the development-mode reloader may ask of the node (:mod:`edge_engine.plugin.reload`)."""

    alias: str
    settings: NodeSettings
    layout: CacheLayout
    registry: PluginRegistry
    pm: pluggy.PluginManager

    def pipelines_locked(self) -> AbstractContextManager[Any]: ...
    def running_pipelines(self) -> list[PipelineRunner]: ...
    def replace_pipeline(self, runner: PipelineRunner, spec: PipelineSpec, reason: str) -> None: ...
    def start_now_valid(self) -> list[str]: ...
    def notify(self, level: str, message: str, path: list[Any], **fields: Any) -> None: ...


class LocalRequestHost(Protocol):
    """What ``edge-node deploy`` / ``delete`` requests need (:mod:`edge_engine.node.local_deploy`)."""

    layout: CacheLayout

    def pipeline_names(self) -> list[str]: ...
    def add_pipeline(self, raw: dict[str, Any], source: str = ...) -> Any: ...
    def remove_pipeline(self, name: str) -> bool: ...


class ObservedNode(Protocol):
    """What the status page and ``/metrics`` read (:mod:`edge_engine.observe`)."""

    layout: CacheLayout
    settings: NodeSettings
    history: NodeHistory | None

    def snapshot(self) -> NodeSnapshot: ...
