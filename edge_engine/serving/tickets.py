"""The pipeline side of serving: tickets (one input on its way through one or more models) and requests.

A :class:`Ticket` belongs to one pipeline's serving stage: it holds the input, the frame slot it was
copied to, and the results as each model answers. The slot goes back to the pipeline when both the pipeline
is done with the input and every server has answered the request naming it: a pipeline that stops, or gives
up waiting, never has its frame reused or unlinked under a batch still in flight. A :class:`Request` is the
ticket's entry in one model server's queue. A :class:`ModelClient` is one pipeline's connection to one model
server: it carries the pipeline's in-flight limit (``MAX_IN_FLIGHT``), which the server's batching policy
reads, and counts what the pipeline has outstanding there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_engine.errors import ServingError
from edge_engine.serving.colocated import Cascaded

if TYPE_CHECKING:
    from edge_engine.plugin.kinds import Input
    from edge_engine.serving.instance_models import ModelKey
    from edge_engine.serving.model_server import ModelServer
    from edge_engine.serving.worker import FrameItem


class Ticket:
    """One input waiting for its inferences; completed by the server threads, awaited by the pipeline."""

    __slots__ = (
        "cascaded",
        "cond",
        "done",
        "held",
        "inp",
        "on_done",
        "on_free",
        "plan",
        "remaining",
        "results",
        "slot",
        "started",
    )

    def __init__(
        self,
        inp: Input,
        expected: int,
        cond: threading.Condition,
        slot: int | None,
        plan: Any = None,
        on_done: Callable[[Ticket], None] | None = None,
    ):
        self.inp = inp
        self.plan = plan
        self.on_done = on_done
        self.cond = cond
        self.slot = slot
        self.held = expected  # requests a server has not answered yet: they name the slot
        self.on_free: Callable[[int], None] | None = None  # set by hand_back while servers still hold the slot
        self.remaining = expected
        self.results: dict[ModelKey, Any] = {}
        self.cascaded: dict[ModelKey, dict[str, Any]] = {}  # co-located cascades' outcomes, by first-stage model
        self.done = expected == 0
        self.started = time.perf_counter()

    def resolve(self, key: ModelKey, value: Any, served: bool = False) -> None:
        """Record one model's answer (a result or a ServingError); wakes the pipeline when all are in.
        ``served``: the answer is the server's own (it no longer reads the frame: see :meth:`hand_back`). A
        :class:`~edge_engine.serving.colocated.Cascaded` answer is taken apart: the first stage's result goes to
        ``results``, its co-located cascades' outcomes to ``cascaded``."""
        outcomes = None
        if type(value) is Cascaded:
            outcomes, value = value.outcomes, value.first
        release = None
        with self.cond:
            if served:
                self.held -= 1
                if self.held <= 0 and self.on_free is not None and self.slot is not None:
                    release, slot = self.on_free, self.slot
                    self.on_free = self.slot = None
            if key in self.results:
                finished = False
            else:
                self.results[key] = value
                if outcomes is not None:
                    self.cascaded[key] = outcomes
                self.remaining -= 1
                finished = self.remaining <= 0 and not self.done
                if finished:
                    self.done = True
                    self.cond.notify()  # only the pipeline's dispatcher waits
        if release is not None:
            release(slot)
        if finished and self.on_done is not None:
            self.on_done(self)

    def hand_back(self, release: Callable[[int], None]) -> None:
        """The pipeline is done with the input: ``release(slot)`` now, or when the last server lets go."""
        slot = self.slot
        if slot is None:
            return
        if self.held <= 0:  # every server answered (it stays so): no race with resolve, no lock needed
            self.slot = None
            release(slot)
            return
        with self.cond:
            if self.held > 0:
                self.on_free = release
                return
            self.slot = None
        release(slot)


class Request:
    """A ticket's place in one model server's queue."""

    __slots__ = ("answered", "client", "item", "submitted", "ticket")

    def __init__(self, client: ModelClient, ticket: Ticket, item: FrameItem):
        self.client = client
        self.ticket = ticket
        self.item = item
        self.submitted = time.monotonic()
        self.answered = False

    def resolve(self, value: Any) -> None:
        """The server's answer (once per request, from any thread)."""
        if self.answered:
            return
        self.answered = True
        self.ticket.resolve(self.client.key, value, served=True)


class ModelClient:
    """One pipeline's use of one model server."""

    def __init__(self, server: ModelServer, pipeline: str, window: int):
        self.server = server
        self.key = server.key
        self.pipeline = pipeline
        self.window = window
        self.outstanding = 0  # requests queued or running; written under the server's lock
        self.last_submit = 0.0
        self.closed = False

    def submit(self, ticket: Ticket, item: FrameItem) -> None:
        """Queue the ticket's input on the server (never blocks: the pipeline bounds what is in flight)."""
        self.server.submit(Request(self, ticket, item))

    def submit_many(self, entries: list[tuple[Any, FrameItem]]) -> None:
        """Queue several ``(ticket, item)`` at once (a frame's cascade crops; never blocks)."""
        self.server.submit_many([Request(self, ticket, item) for ticket, item in entries])

    def close(self) -> None:
        """The pipeline is done with this model: drop its queued requests."""
        if not self.closed:
            self.closed = True
            self.server.remove_client(self)

    def error(self, kind: str, message: str) -> ServingError:
        return self.server.error(kind, message)
