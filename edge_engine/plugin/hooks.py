"""The plugin manager factory and a typed facade over the node-level hooks.

Runtime code calls hooks only through :class:`Hooks`, never ``pm.hook.<name>`` by string; a hook
implementation that raises is logged with its plugin's name and does not stop the caller. A node gives the
facade its own sinks (:class:`EngineSinks`: storage, the outbox, local output, in an order the node fixes);
they see every payload and notification before any plugin's hook, so hook order never matters.
Set ``EE_TRACE_HOOKS=1`` to log every hook call.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from edge_engine.config.settings_schema import SETTINGS
from edge_engine.constants import ENGINE_NAME, ENV_TRACE_HOOKS
from edge_engine.plugin import hookspecs

if TYPE_CHECKING:
    from edge_engine.messages import Delivery, Notification, Payload

log = logging.getLogger(__name__)


def get_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with the engine's hookspecs (no module-level singleton)."""
    pm = pluggy.PluginManager(ENGINE_NAME)
    pm.add_hookspecs(hookspecs)
    if SETTINGS[ENV_TRACE_HOOKS].value(os.environ):  # the one boolean reader: 1, true, yes, on
        pm.trace.root.setwriter(lambda text: log.debug("hook: %s", text.rstrip()))
        pm.enable_tracing()
    return pm


class EngineSinks(Protocol):
    """The engine's own receivers of messages (see :class:`edge_engine.node.message_flow.MessageFlow`)."""

    def payload(self, payload: Payload) -> Delivery: ...
    def notification(self, notification: Notification) -> None: ...


class Hooks:
    """One method per node-level hook; failures in implementations are isolated and logged.

    ``sinks`` (a node's): called first with every payload and notification; plugins' hooks get the payload as
    the sinks completed it.
    """

    def __init__(self, pm: pluggy.PluginManager, sinks: EngineSinks | None = None):
        self.pm = pm
        self.sinks = sinks

    def _call(self, hook_name: str, /, **kwargs: Any) -> Any:
        caller = getattr(self.pm.hook, hook_name)
        try:
            return caller(**kwargs)
        except Exception:  # a hook implementation must not break the node
            log.exception("hook %s raised (plugins: %s)", hook_name, [i.plugin_name for i in caller.get_hookimpls()])
            return None

    def node_started(self, node_info: dict[str, Any]) -> None:
        try:
            self.pm.hook.edge_node_started.call_historic(kwargs={"node_info": node_info})
        except Exception:
            log.exception("hook edge_node_started raised")

    def node_stopping(self, reason: str) -> None:
        self._call("edge_node_stopping", reason=reason)

    def pipeline_started(self, name: str, config: dict[str, Any]) -> None:
        self._call("edge_pipeline_started", name=name, config=config)

    def pipeline_stopped(self, name: str, reason: str) -> None:
        self._call("edge_pipeline_stopped", name=name, reason=reason)

    def payload(self, payload: Payload) -> str | None:
        """Hand ``payload`` to the node's sinks, then to plugins' ``edge_payload``; why the outbox refused it, if it
        did (the emitting instance's error), else None."""
        refused = None
        if self.sinks is not None:
            try:
                delivery = self.sinks.payload(payload)
                payload, refused = delivery.payload, delivery.refused
            except Exception:  # the plugins' hooks still get it
                log.exception("the node's payload sinks raised for %s", payload.path)
        self._call("edge_payload", payload=payload)
        return refused

    def notification(self, notification: Notification) -> None:
        if self.sinks is not None:
            try:
                self.sinks.notification(notification)
            except Exception:
                log.exception("the node's notification sinks raised for %s", notification.path)
        self._call("edge_notification", notification=notification)

    def command_received(self, action: str, payload: Any, sender: str | None) -> Any:
        return self._call("edge_command_received", action=action, payload=payload, sender=sender)
