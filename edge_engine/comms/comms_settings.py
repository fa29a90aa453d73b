"""Communication settings: broker address, credentials, TLS, topics, from ``.config_app.json`` and ``EE_*``.

``.config_app.json`` follows Ratio1's shape (``COMMUNICATION.PARAMS`` with ``HOST``, ``PORT``, ``USER``,
``PASS``, ``CERT_PATH``...), and ``$EE_*`` references inside it are replaced from the environment. Environment
variables win over the file. With no broker configured the node uses one already answering on
127.0.0.1:1883, else starts its embedded broker there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_engine import constants as C
from edge_engine.config.node_settings import network_name
from edge_engine.config.settings_schema import ENVIRONMENT, Setting, by_file_key, group, parse_supervisor
from edge_engine.errors import ConfigIssue

DEFAULT_ROOT_TOPIC = "naeural"
DEFAULT_PORT = 1883
LOCAL_HOST = "127.0.0.1"
_ENV_REF = re.compile(r"^\$(EE_[A-Z0-9_]+)$")


@dataclass
class CommsSettings:
    """Where and how the node talks MQTT."""

    enabled: bool = True
    host: str | None = None
    port: int = DEFAULT_PORT
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    root_topic: str = DEFAULT_ROOT_TOPIC
    subtopic: str = "address"
    embedded_broker: str = "auto"  # auto | always | never
    heartbeat_seconds: float = 10.0
    payload_qos: int = 1
    command_qos: int = 1
    heartbeat_qos: int = 1
    max_message_bytes: int = 1_000_000
    command_window_seconds: float = 24 * 3600.0
    hb_contains_pipelines: bool = True
    outbox_max_mb: float = 256.0
    outbox_fsync_seconds: float = 1.0
    supervisor: bool = False  # publish NET_MON_01 (CURRENT_NETWORK) for SDK sessions
    netmon_send_seconds: float | None = None  # None: the admin pipeline's NET_MON_01 PROCESS_DELAY
    netmon_offline_seconds: float = 60.0
    netmon_max_nodes: int = 10_000
    netmon_verify_seconds: float = 30.0
    netmon_only_online: bool = False
    netmon_version: str = "v2"  # v2: CURRENT_NETWORK compressed in ENCODED_DATA (Ratio1 NETMON v2); v1: plain

    @property
    def configured(self) -> bool:
        """Whether a broker was configured (else the local one is used or started)."""
        return bool(self.host)

    def topic(self, channel: str, address: str | None = None) -> str:
        """Ratio1's topics: ``{root}/ctrl``, ``{root}/payloads``, ``{root}/notif``; with ``address`` (an address, or
        an alias with ``EE_MQTT_SUBTOPIC=alias``) a node's own: ``{root}/{addr}/config``, ``{root}/{addr}/payloads``."""
        if channel == "config" or address is not None:
            return f"{self.root_topic}/{address}/{channel}"
        return f"{self.root_topic}/{channel}"


def resolve_env_ref(value: Any, env: Mapping[str, str]) -> Any:
    """``"$EE_X"`` in a config file becomes the value of ``EE_X`` (None when unset); anything else is kept."""
    if isinstance(value, str):
        match = _ENV_REF.match(value.strip())
        if match:
            return env.get(match.group(1)) or None
    return value


def set_from_file(
    settings: Any, attribute: str, setting: Setting, raw: Any, env: Mapping[str, str], issues: list[ConfigIssue]
) -> None:
    """Set ``settings.<attribute>`` from a config file's ``raw`` value of ``setting``, with ``"$EE_X"`` resolved.

    An unset, empty or unresolved value leaves the attribute as it is, and so does a reference to the setting's own
    variable (``"$EE_MQTT_PORT"``): the environment is read after the file and reports that variable itself. A bad
    value becomes an issue in the schema's form (:meth:`Setting.file_issue`).
    """
    if isinstance(raw, str) and raw.strip() == f"${setting.name}":
        return
    value = resolve_env_ref(raw, env)
    if value is None or value == "":
        return
    try:
        setattr(settings, attribute, setting.parse_file_value(value))
    except ValueError as exc:
        issues.append(setting.file_issue(value, str(exc)))


def _supervisor(text: str, hostname: str | None = None) -> bool:
    """``EE_SUPERVISOR``: a boolean, or ``ordinal-0``: true only on a StatefulSet's first pod (host name ``*-0``)."""
    return parse_supervisor(text, hostname)


# setting name -> settings attribute (the declarations are in edge_engine.config.settings_schema)
ATTRIBUTES: dict[str, str] = {
    "EE_COMMS": "enabled", "EE_MQTT_HOST": "host", "EE_MQTT_PORT": "port", "EE_MQTT_USER": "user",
    "EE_MQTT": "password", "EE_MQTT_TLS": "tls", "EE_MQTT_CERT": "ca_file", "EE_MQTT_CLIENT_CERT": "client_cert",
    "EE_MQTT_CLIENT_KEY": "client_key", "EE_ROOT_TOPIC": "root_topic", "EE_MQTT_SUBTOPIC": "subtopic",
    "EE_EMBEDDED_BROKER": "embedded_broker", "EE_MAX_MESSAGE_BYTES": "max_message_bytes",
    "EE_COMMAND_WINDOW_SECONDS": "command_window_seconds", "EE_HB_CONTAINS_PIPELINES": "hb_contains_pipelines",
    "EE_OUTBOX_MAX_MB": "outbox_max_mb", "EE_OUTBOX_FSYNC_SECONDS": "outbox_fsync_seconds",
    "EE_SUPERVISOR": "supervisor", "EE_NETMON_SEND_SECONDS": "netmon_send_seconds",
    "EE_NETMON_OFFLINE_SECONDS": "netmon_offline_seconds", "EE_NETMON_MAX_NODES": "netmon_max_nodes",
    "EE_NETMON_VERIFY_SECONDS": "netmon_verify_seconds", "EE_NETMON_SEND_ONLY_ONLINE": "netmon_only_online",
    "EE_NETMON_VERSION": "netmon_version",
}  # fmt: skip
SCHEMA = group("comms")
# environment variable -> (attribute, kind, lowest, highest), as declared in the schema
ENV_FIELDS: dict[str, tuple[str, str, float | None, float | None]] = {
    name: (ATTRIBUTES[name], setting.kind, setting.low, setting.high) for name, setting in SCHEMA.items()
}


def load_comms_settings(
    app: Mapping[str, Any], startup: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> tuple[CommsSettings, list[ConfigIssue]]:
    """Build comms settings from the app config, the startup config and the environment; every problem is
    returned, a bad value in the schema's one form (:meth:`edge_engine.config.settings_schema.Setting.issue`)."""
    env = os.environ if env is None else env
    settings = CommsSettings(heartbeat_seconds=float(startup.get("SECONDS_HEARTBEAT", 10.0)))
    settings.root_topic = C.NETWORKS[network_name(env)]["root_topic"]  # the profile's default
    issues: list[ConfigIssue] = []
    comm = app.get("COMMUNICATION") or {}
    params = comm.get("PARAMS") or {} if isinstance(comm, dict) else {}
    for key, setting in by_file_key("comms").items():
        set_from_file(settings, ATTRIBUTES[setting.name], setting, params.get(key), env, issues)
    for name, setting in SCHEMA.items():
        value = setting.read(env, issues)
        if value is not None:
            setattr(settings, ATTRIBUTES[name], value)
    issues.extend(_pairs(settings))
    return settings, issues


def _pairs(settings: CommsSettings) -> list[ConfigIssue]:
    """Values that only work together."""
    issues = []
    if (settings.client_cert is None) != (settings.client_key is None):
        missing = "EE_MQTT_CLIENT_KEY" if settings.client_key is None else "EE_MQTT_CLIENT_CERT"
        issues.append(
            ConfigIssue(
                f"mTLS needs both a client certificate and its key: {missing} is not set",
                file=ENVIRONMENT,
                key="EE_MQTT_CLIENT_CERT",
            )
        )
    return issues
