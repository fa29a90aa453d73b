"""Communication settings: broker address, credentials, TLS, topics, from ``.config_app.json`` and ``EE_*``.

``.config_app.json`` follows Ratio1's shape (``COMMUNICATION.PARAMS`` with ``HOST``, ``PORT``, ``USER``,
``PASS``, ``CERT_PATH``...), and ``$EE_*`` references inside it are replaced from the environment. Environment
variables win over the file. With no broker configured the node uses one already answering on
127.0.0.1:1883, else starts its embedded broker there.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_engine import constants as C
from edge_engine.errors import ConfigIssue
from edge_engine.settings import network_name

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
    netmon_max_nodes: int = 1000
    netmon_verify_seconds: float = 30.0
    netmon_only_online: bool = False

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


def _bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _supervisor(text: str, hostname: str | None = None) -> bool:
    """``EE_SUPERVISOR``: a boolean, or ``ordinal-0``: true only on a StatefulSet's first pod (host name ``*-0``),
    so one manifest gives a Kubernetes deployment exactly one supervisor."""
    if text.strip().lower() != "ordinal-0":
        return _bool(text)
    return (hostname if hostname is not None else socket.gethostname()).rsplit("-", 1)[-1] == "0"


ENV_FIELDS: dict[str, tuple[str, str]] = {
    "EE_MQTT_HOST": ("host", "str"),
    "EE_MQTT_PORT": ("port", "int"),
    "EE_MQTT_USER": ("user", "str"),
    "EE_MQTT": ("password", "str"),
    "EE_MQTT_TLS": ("tls", "bool"),
    "EE_MQTT_CERT": ("ca_file", "str"),
    "EE_MQTT_CLIENT_CERT": ("client_cert", "str"),
    "EE_MQTT_CLIENT_KEY": ("client_key", "str"),
    "EE_ROOT_TOPIC": ("root_topic", "str"),
    "EE_MQTT_SUBTOPIC": ("subtopic", "str"),
    "EE_EMBEDDED_BROKER": ("embedded_broker", "str"),
    "EE_COMMS": ("enabled", "bool"),
    "EE_MAX_MESSAGE_BYTES": ("max_message_bytes", "int"),
    "EE_COMMAND_WINDOW_SECONDS": ("command_window_seconds", "float"),
    "EE_HB_CONTAINS_PIPELINES": ("hb_contains_pipelines", "bool"),
    "EE_OUTBOX_MAX_MB": ("outbox_max_mb", "float"),
    "EE_OUTBOX_FSYNC_SECONDS": ("outbox_fsync_seconds", "float"),
    "EE_SUPERVISOR": ("supervisor", "supervisor"),
    "EE_NETMON_SEND_SECONDS": ("netmon_send_seconds", "float"),
    "EE_NETMON_OFFLINE_SECONDS": ("netmon_offline_seconds", "float"),
    "EE_NETMON_MAX_NODES": ("netmon_max_nodes", "int"),
    "EE_NETMON_VERIFY_SECONDS": ("netmon_verify_seconds", "float"),
    "EE_NETMON_SEND_ONLY_ONLINE": ("netmon_only_online", "bool"),
}


def load_comms_settings(
    app: Mapping[str, Any], startup: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> tuple[CommsSettings, list[ConfigIssue]]:
    """Build comms settings from the app config, the startup config and the environment."""
    env = os.environ if env is None else env
    settings = CommsSettings(heartbeat_seconds=float(startup.get("SECONDS_HEARTBEAT", 10.0)))
    settings.root_topic = C.NETWORKS[network_name(env)]["root_topic"]  # the profile's default
    issues: list[ConfigIssue] = []
    comm = app.get("COMMUNICATION") or {}
    params = comm.get("PARAMS") or {} if isinstance(comm, dict) else {}
    file_fields = {
        "HOST": "host", "PORT": "port", "USER": "user", "PASS": "password", "CERT_PATH": "ca_file",
        "CLIENT_CERT_PATH": "client_cert", "CLIENT_KEY_PATH": "client_key", "ROOT_TOPIC": "root_topic",
        "SUBTOPIC": "subtopic",
    }  # fmt: skip
    for key, attr in file_fields.items():
        value = resolve_env_ref(params.get(key), env)
        if value not in (None, ""):
            setattr(settings, attr, int(value) if attr == "port" else str(value))
    secured = resolve_env_ref(params.get("SECURED"), env)
    if secured not in (None, ""):
        settings.tls = str(secured).strip().lower() in ("1", "true", "yes")
    for name, (attr, kind) in ENV_FIELDS.items():
        text = env.get(name)
        if text is None or text == "":
            continue
        try:
            value: Any = {"int": int, "float": float, "bool": _bool, "str": str, "supervisor": _supervisor}[kind](text)
        except ValueError:
            issues.append(ConfigIssue(f"expected {kind}", file="environment", key=name, got=text, has_got=True))
            continue
        setattr(settings, attr, value)
    if settings.embedded_broker not in ("auto", "always", "never"):
        issues.append(ConfigIssue("expected auto, always or never", file="environment", key="EE_EMBEDDED_BROKER",
                                  got=settings.embedded_broker, has_got=True))  # fmt: skip
    if settings.subtopic not in ("address", "alias"):
        issues.append(ConfigIssue("expected address or alias", file="environment", key="EE_MQTT_SUBTOPIC",
                                  got=settings.subtopic, has_got=True))  # fmt: skip
    if (settings.client_cert is None) != (settings.client_key is None):
        issues.append(ConfigIssue("mTLS needs both a client certificate and its key", file="environment",
                                  key="EE_MQTT_CLIENT_CERT"))  # fmt: skip
    return settings, issues
