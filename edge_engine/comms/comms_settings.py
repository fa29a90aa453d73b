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
from edge_engine.config.node_settings import env_issue, env_value, network_name
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


def _bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")  # only for EE_SUPERVISOR's boolean form, checked first


def _supervisor(text: str, hostname: str | None = None) -> bool:
    """``EE_SUPERVISOR``: a boolean, or ``ordinal-0``: true only on a StatefulSet's first pod (host name ``*-0``),
    so one manifest gives a Kubernetes deployment exactly one supervisor."""
    if text.strip().lower() != "ordinal-0":
        return _bool(text)
    return (hostname if hostname is not None else socket.gethostname()).rsplit("-", 1)[-1] == "0"


# environment variable -> (attribute, kind, lowest, highest): a value outside refuses the start
ENV_FIELDS: dict[str, tuple[str, str, float | None, float | None]] = {
    "EE_MQTT_HOST": ("host", "str", None, None),
    "EE_MQTT_PORT": ("port", "int", 1, 65535),
    "EE_MQTT_USER": ("user", "str", None, None),
    "EE_MQTT": ("password", "str", None, None),
    "EE_MQTT_TLS": ("tls", "bool", None, None),
    "EE_MQTT_CERT": ("ca_file", "str", None, None),
    "EE_MQTT_CLIENT_CERT": ("client_cert", "str", None, None),
    "EE_MQTT_CLIENT_KEY": ("client_key", "str", None, None),
    "EE_ROOT_TOPIC": ("root_topic", "str", None, None),
    "EE_MQTT_SUBTOPIC": ("subtopic", "str", None, None),
    "EE_EMBEDDED_BROKER": ("embedded_broker", "str", None, None),
    "EE_COMMS": ("enabled", "bool", None, None),
    "EE_MAX_MESSAGE_BYTES": ("max_message_bytes", "int", 1024, None),
    "EE_COMMAND_WINDOW_SECONDS": ("command_window_seconds", "float", 1, None),
    "EE_HB_CONTAINS_PIPELINES": ("hb_contains_pipelines", "bool", None, None),
    "EE_OUTBOX_MAX_MB": ("outbox_max_mb", "float", 0, None),
    "EE_OUTBOX_FSYNC_SECONDS": ("outbox_fsync_seconds", "float", 0, None),
    "EE_SUPERVISOR": ("supervisor", "supervisor", None, None),
    "EE_NETMON_SEND_SECONDS": ("netmon_send_seconds", "float", 0.1, None),
    "EE_NETMON_OFFLINE_SECONDS": ("netmon_offline_seconds", "float", 1, None),
    "EE_NETMON_MAX_NODES": ("netmon_max_nodes", "int", 1, None),
    "EE_NETMON_VERIFY_SECONDS": ("netmon_verify_seconds", "float", 0, None),
    "EE_NETMON_SEND_ONLY_ONLINE": ("netmon_only_online", "bool", None, None),
    "EE_NETMON_VERSION": ("netmon_version", "str", None, None),
}
FILE_FIELDS = {
    "HOST": "host", "PORT": "port", "USER": "user", "PASS": "password", "CERT_PATH": "ca_file",
    "CLIENT_CERT_PATH": "client_cert", "CLIENT_KEY_PATH": "client_key", "ROOT_TOPIC": "root_topic",
    "SUBTOPIC": "subtopic",
}  # fmt: skip
APP_WHERE = ".config_app.json › COMMUNICATION › PARAMS"


def load_comms_settings(
    app: Mapping[str, Any], startup: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> tuple[CommsSettings, list[ConfigIssue]]:
    """Build comms settings from the app config, the startup config and the environment; every problem is
    returned (a bad ``EE_*`` value in the form of :func:`edge_engine.config.node_settings.env_issue`)."""
    env = os.environ if env is None else env
    settings = CommsSettings(heartbeat_seconds=float(startup.get("SECONDS_HEARTBEAT", 10.0)))
    settings.root_topic = C.NETWORKS[network_name(env)]["root_topic"]  # the profile's default
    issues: list[ConfigIssue] = []
    comm = app.get("COMMUNICATION") or {}
    params = comm.get("PARAMS") or {} if isinstance(comm, dict) else {}
    for key, attr in FILE_FIELDS.items():
        value = resolve_env_ref(params.get(key), env)
        if value in (None, ""):
            continue
        if attr != "port":
            setattr(settings, attr, str(value))
        elif _port(value) is None:
            issues.append(ConfigIssue("expected a port number from 1 to 65535", file=APP_WHERE, key=key, got=value,
                                      has_got=True))  # fmt: skip
        else:
            settings.port = _port(value)  # type: ignore[assignment]
    secured = resolve_env_ref(params.get("SECURED"), env)
    if secured not in (None, ""):
        settings.tls = str(secured).strip().lower() in ("1", "true", "yes")
    for name, (attr, kind, low, high) in ENV_FIELDS.items():
        value = _env_field(env, name, kind, low, high, issues)
        if value is not None:
            setattr(settings, attr, value)
    issues.extend(_choices(settings))
    return settings, issues


def _port(value: Any) -> int | None:
    try:
        port = int(str(value).strip())
    except ValueError:
        return None
    return port if 1 <= port <= 65535 else None


def _env_field(env: Mapping[str, str], name: str, kind: str, low: float | None, high: float | None,
               issues: list[ConfigIssue]) -> Any:  # fmt: skip
    text = env.get(name)
    if text is None or text == "":
        return None
    if kind == "supervisor":
        if text.strip().lower() == "ordinal-0":
            return _supervisor(text)
        kind = "bool"
    if kind == "str":  # strings (the password among them) are used as given: never quoted in an issue
        return text
    return env_value(env, name, kind, issues, low, high)


def _choices(settings: CommsSettings) -> list[ConfigIssue]:
    issues = []
    if settings.embedded_broker not in ("auto", "always", "never"):
        issues.append(env_issue("EE_EMBEDDED_BROKER", settings.embedded_broker, "expected auto, always or never"))
    if settings.netmon_version not in ("v1", "v2"):
        issues.append(env_issue("EE_NETMON_VERSION", settings.netmon_version, "expected v1 or v2"))
    if settings.subtopic not in ("address", "alias"):
        issues.append(env_issue("EE_MQTT_SUBTOPIC", settings.subtopic, "expected address or alias"))
    topic = settings.root_topic
    if not topic or any(c in topic for c in "+#\x00") or topic.startswith("/") or topic.endswith("/"):
        issues.append(env_issue("EE_ROOT_TOPIC", topic, "expected an MQTT topic without '+', '#', or a leading or "
                                "trailing '/' (Ratio1: naeural)"))  # fmt: skip
    if (settings.client_cert is None) != (settings.client_key is None):
        missing = "EE_MQTT_CLIENT_KEY" if settings.client_key is None else "EE_MQTT_CLIENT_CERT"
        issues.append(ConfigIssue(f"mTLS needs both a client certificate and its key: {missing} is not set",
                                  file="environment", key="EE_MQTT_CLIENT_CERT"))  # fmt: skip
    return issues
