"""Settings of the status page and the metrics listener, read from the node's environment.

The status page binds to loopback unless ``EE_STATUS_TOKEN`` is set (DECISIONS 24); ``/metrics`` may
have its own listener (``EE_METRICS_PORT``) bound to ``EE_METRICS_BIND`` because it holds no secrets. A bad value
(``EE_STATUS_PORT=99999``, a public ``EE_STATUS_BIND`` without a token) refuses the start, as every bad ``EE_*``
(:mod:`edge_engine.config.settings_schema`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge_engine.config.settings_schema import SETTINGS, read_group
from edge_engine.errors import ConfigIssue, valid_or_raise

DEFAULT_STATUS_PORT: int = SETTINGS["EE_STATUS_PORT"].default
LOOPBACK = "127.0.0.1"
LOOPBACK_NAMES = (LOOPBACK, "localhost", "::1")


@dataclass(frozen=True)
class ObserveSettings:
    """Where the status page and the metrics listener bind (port 0 = off)."""

    status_port: int = DEFAULT_STATUS_PORT
    status_bind: str = LOOPBACK
    token: str = ""
    metrics_port: int = 0
    metrics_bind: str = LOOPBACK


def read_observe_settings(env: Mapping[str, str]) -> tuple[ObserveSettings, list[ConfigIssue]]:
    """``EE_STATUS_PORT/BIND/TOKEN`` and ``EE_METRICS_PORT/BIND`` (declared in
    :mod:`edge_engine.config.settings_schema`), and every problem (a port that is not one, a page bound beyond
    loopback without a token) in the schema's one form; the defaults stand in for bad values."""
    values, issues = read_group("observe", env)
    token = values.get("EE_STATUS_TOKEN") or ""
    bind = values.get("EE_STATUS_BIND") or LOOPBACK
    if bind not in LOOPBACK_NAMES and not token:
        issues.append(
            SETTINGS["EE_STATUS_BIND"].issue(
                bind, "a status page beyond loopback needs EE_STATUS_TOKEN; set it, or bind to 127.0.0.1"
            )
        )
        bind = LOOPBACK
    settings = ObserveSettings(
        status_port=values.get("EE_STATUS_PORT", DEFAULT_STATUS_PORT),
        status_bind=bind,
        token=token,
        metrics_port=values.get("EE_METRICS_PORT", 0),
        metrics_bind=values.get("EE_METRICS_BIND") or LOOPBACK,
    )
    return settings, issues


def load_observe_settings(env: Mapping[str, str]) -> ObserveSettings:
    """:func:`read_observe_settings`, raising :class:`ConfigError` on any problem (the node does not start)."""
    return valid_or_raise(read_observe_settings(env))
