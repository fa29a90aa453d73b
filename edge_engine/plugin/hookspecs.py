"""The plugin author's reference for node-level hooks.

Plugin *classes* (capture, serving, business) are described in :mod:`edge_engine.plugin.kinds`: they
subclass a base, set ``SIGNATURE`` and ``CONFIG``, and override lifecycle methods. A plugin *module*
needs nothing else: the engine imports every ``*.py`` under ``extensions/`` and ``plugins/`` and
registers the plugin classes it defines.

A module (or an installed package, through the ``edge_engine.plugins`` entry-point group) may also
implement the hooks below, marked with ``@hookimpl`` from :mod:`edge_engine.api`. Implementations may
take fewer arguments than the spec lists (pluggy passes only those they name). A hook that raises is
logged with its plugin's name and does not stop the node.

Hooks are grouped by when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from edge_engine.constants import ENGINE_NAME

if TYPE_CHECKING:
    from collections.abc import Callable

    from edge_engine.messages import Notification, Payload

hookspec = pluggy.HookspecMarker(ENGINE_NAME)
hookimpl = pluggy.HookimplMarker(ENGINE_NAME)


# --------------------------------------------------------------------------------------------------
# Registration: called while plugins are loaded, before any pipeline starts.
# --------------------------------------------------------------------------------------------------
@hookspec
def edge_register_plugins(register: Callable[[type], None]) -> None:
    """Register plugin classes explicitly.

    Called once per module or package at load time. Call ``register(cls)`` for each plugin class.
    Folder modules do not need this hook (their classes are found by scanning); installed packages
    use it. A duplicate or invalid class is reported by source and name and the rest still loads.

    :param register: validates and records one plugin class.
    :return: nothing.
    """


# --------------------------------------------------------------------------------------------------
# Node lifecycle.
# --------------------------------------------------------------------------------------------------
@hookspec(historic=True)
def edge_node_started(node_info: dict[str, Any]) -> None:
    """The node is up: plugins loaded, cache ready, pipelines starting.

    Historic: a hook implementation registered later still receives this call.

    :param node_info: ``{"address", "alias", "version", "cache_dir", "started_at"}``.
    """


@hookspec
def edge_node_stopping(reason: str) -> None:
    """The node is about to stop every pipeline (SIGTERM, SIGINT or an API call).

    Runs before pipelines stop; keep it short: the whole stop has a deadline (5 s by default).

    :param reason: why the node stops.
    """


# --------------------------------------------------------------------------------------------------
# Pipelines.
# --------------------------------------------------------------------------------------------------
@hookspec
def edge_pipeline_started(name: str, config: dict[str, Any]) -> None:
    """A pipeline was added or updated and its capture and instances are starting.

    :param name: the pipeline ``NAME``.
    :param config: the validated pipeline config as persisted (a copy: changes have no effect).
    """


@hookspec
def edge_pipeline_stopped(name: str, reason: str) -> None:
    """A pipeline stopped: removed, replaced by an update, restarted, or the node is stopping.

    :param name: the pipeline ``NAME``.
    :param reason: ``"removed"``, ``"updated"``, ``"restarting"``, ``"reloaded"`` (its capture plugin's file
        changed in development mode) or ``"node stopping"``.
    """


# --------------------------------------------------------------------------------------------------
# Messages leaving an instance.
# --------------------------------------------------------------------------------------------------
@hookspec
def edge_payload(payload: Payload) -> None:
    """A business instance emitted a payload.

    Called in the emitting instance's thread, so keep it fast (queue work elsewhere). The node's own
    sinks are not implementations of this hook: before any implementation is called, the payload's
    witness image is placed (``image_path``, and ``image_url`` with object storage), comms has stored
    it in the outbox and the local output writer has written it to ``_output/``. So ``tryfirst`` and
    ``trylast`` order plugins among themselves only. The payload is frozen; ``payload.intent`` holds
    what its instance decided for it (routing fields, encryption target, image name).

    :param payload: the payload with its path ``(alias, pipeline, signature, instance)``, data,
        optional witness image (JPEG bytes) and where it is kept.
    """


@hookspec
def edge_notification(notification: Notification) -> None:
    """A notification was raised (pipeline started/failed, instance error, plugin message).

    Called after the node's own sinks: comms has stored it in the outbox and the local output writer
    has logged it and written it to ``_output/notifications.jsonl``.

    :param notification: level, message, path and extra fields.
    """


# --------------------------------------------------------------------------------------------------
# Commands.
# --------------------------------------------------------------------------------------------------
@hookspec(firstresult=True)
def edge_command_received(action: str, payload: Any, sender: str | None) -> Any:
    """An owner's command passed every check (signature, allowlist, time window, replay) and was applied.

    Called by comms in its command thread, after the node applied the command (a refused command is not
    passed on), so keep it short. For an ``ACTION`` the node does not know, it is called instead of refusing
    the command: return a JSON-able value to say you handled it; the sender gets it as ``RESULT`` in an info
    notification (code 1). When every implementation returns None, the command is refused as unknown. For the
    node's own actions the result is ignored: return None, so that other implementations are called too.

    :param action: the command ``ACTION`` in upper case (``UPDATE_CONFIG``, ``DELETE_CONFIG``, ...).
    :param payload: the command ``PAYLOAD`` (decrypted when it came encrypted).
    :param sender: the verified sender's address.
    :return: a result for the sender of an ``ACTION`` you handle, else None.
    """
