"""Settings of the status page and the metrics listener, read from the node's environment.

The status page binds to loopback unless ``EE_STATUS_TOKEN`` is set (DECISIONS 24); ``/metrics`` may
have its own listener (``EE_METRICS_PORT``) bound to ``EE_METRICS_BIND`` because it holds no secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_STATUS_PORT = 8089
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ObserveSettings:
    """Where the status page and the metrics listener bind (port 0 = off)."""

    status_port: int = DEFAULT_STATUS_PORT
    status_bind: str = LOOPBACK
    token: str = ""
    metrics_port: int = 0
    metrics_bind: str = LOOPBACK


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        port = int(text)
    except ValueError:
        log.error("%s=%r is not a port number; using %d", name, text, default)
        return default
    if not 0 <= port <= 65535:
        log.error("%s=%d is out of range; using %d", name, port, default)
        return default
    return port


def load_observe_settings(env: Mapping[str, str]) -> ObserveSettings:
    """Read ``EE_STATUS_PORT/BIND/TOKEN`` and ``EE_METRICS_PORT/BIND``; refuse a public page without a token."""
    token = (env.get("EE_STATUS_TOKEN") or "").strip()
    bind = (env.get("EE_STATUS_BIND") or "").strip() or LOOPBACK
    if bind not in (LOOPBACK, "localhost", "::1") and not token:
        log.error("EE_STATUS_BIND=%s needs EE_STATUS_TOKEN; the status page stays on %s", bind, LOOPBACK)
        bind = LOOPBACK
    return ObserveSettings(
        status_port=_port(env, "EE_STATUS_PORT", DEFAULT_STATUS_PORT),
        status_bind=bind,
        token=token,
        metrics_port=_port(env, "EE_METRICS_PORT", 0),
        metrics_bind=(env.get("EE_METRICS_BIND") or "").strip() or LOOPBACK,
    )
