"""One declaration per ``EE_*`` setting: name, file key, type, default, bounds and doc, in one table.

:data:`SETTINGS` feeds everything that reads or shows a setting: the node's settings (:mod:`.node_settings`), comms
(:mod:`edge_engine.comms.comms_settings`), object storage (:mod:`edge_engine.storage.storage_settings`), the status
page (:mod:`edge_engine.observe.observe_settings`), the disk bounds (:mod:`edge_engine.node.disk_bounds`), the hook
tracer, ``edge-node validate``, ``.env.template`` and ``docs/settings.md`` (both generated from it by
``python -m edge_engine.cli.gen_reference``).

One rule for every value (from the environment or from a config file):

* empty or unset: the default;
* booleans read one way everywhere (:func:`parse_bool`): ``1 true yes on`` / ``0 false no off``, any case;
* a value that cannot be used is one :class:`~edge_engine.errors.ConfigIssue` naming the variable (or the file and
  key), what is wrong, the value and the default: ``environment › key 'EE_X': what is wrong (got 'value'); default: D``
  (:meth:`Setting.issue`); a secret's value is shown as ``***``;
* the node collects every such issue before anything starts and refuses to start on any (``edge-node validate`` lists
  the same issues and goes on with the defaults).
"""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge_engine import constants as C
from edge_engine.errors import ConfigIssue

ENVIRONMENT = "environment"  # the ``file`` of every issue about an EE_* variable
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
BOOL_PROBLEM = f"expected true or false ({', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)})"
KINDS = ("bool", "int", "float", "str", "choice", "list", "csv")
ALIAS_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the S3 limit of a presigned URL's lifetime
MAX_PREFIX_CHARS = 60  # the quoted key names a file: at most 255 bytes
MAX_PORT = 65535

STARTUP = C.STARTUP_CONFIG_FILE
COMMS_PARAMS = f"{C.APP_CONFIG_FILE} › COMMUNICATION › PARAMS"
UPLOADER = f"{C.APP_CONFIG_FILE} › FILE_UPLOAD › CONFIG_UPLOADER"

# group -> (title in .env.template and the reference, where its file keys live)
GROUPS: dict[str, tuple[str, str | None]] = {
    "node": ("the node", STARTUP),
    "comms": ("MQTT comms", COMMS_PARAMS),
    "observe": ("status page and metrics", None),
    "disk": ("disk bounds", None),
    "storage": ("object storage (S3: MinIO, SeaweedFS, AWS; see docs/storage.md)", UPLOADER),
}


def parse_bool(text: str) -> bool:
    """The one boolean reader of the node: ``1 true yes on`` / ``0 false no off`` (any case, spaces ignored);
    anything else raises ValueError(:data:`BOOL_PROBLEM`)."""
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise ValueError(BOOL_PROBLEM)


def number_text(value: float) -> str:
    """``5`` for 5.0, ``0.5`` for 0.5, ``1000000`` for 1e6: how a number is written in a bound or a default."""
    if isinstance(value, bool):
        return str(int(value))
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def choices_text(choices: tuple[str, ...]) -> str:
    """``a or b``, ``a, b or c``."""
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


@dataclass(frozen=True)
class Setting:
    """One ``EE_*`` setting.

    :param name: the environment variable.
    :param group: which part reads it (a key of :data:`GROUPS`).
    :param kind: bool, int, float, str, choice, list (``:``-separated) or csv (``,``-separated).
    :param default: the value when unset or empty (None: unset means off, or decided elsewhere; see the doc).
    :param doc: one line for ``.env.template`` and the reference.
    :param file_key: the key that sets the same value in the group's config file, when there is one.
    :param low, high: inclusive bounds of a number.
    :param choices: the accepted words of a choice (matched in any case).
    :param secret: the value is never shown (``***``).
    :param check: a further rule on the parsed value: returns what is wrong, or None.
    :param parser: reads the text instead of ``kind`` (raises ValueError saying what is expected).
    :param example: the value ``.env.template`` shows when the default is not one (None default).
    :param bad_example: a value ``check`` refuses (the schema tests feed it; typed kinds have their own).
    """

    name: str
    group: str
    kind: str
    default: Any
    doc: str
    file_key: str | None = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    check: Callable[[Any], str | None] | None = None
    parser: Callable[[str], Any] | None = None
    example: str | None = None
    bad_example: str | None = None

    # --- reading -------------------------------------------------------------------------------------------
    def parse(self, text: str) -> Any:
        """The value of ``text`` (from the environment); raises ValueError saying what is expected."""
        if self.parser is not None:
            value = self.parser(text)
        elif self.kind == "bool":
            value = parse_bool(text)
        elif self.kind == "int":
            try:
                value = int(text.strip())
            except ValueError:
                raise ValueError("expected a whole number") from None
        elif self.kind == "float":
            try:
                value = float(text.strip())
            except ValueError:
                raise ValueError("expected a number") from None
            if not math.isfinite(value):
                raise ValueError("expected a finite number")
        elif self.kind == "choice":
            value = self._choice(text.strip())
        elif self.kind == "list":
            value = [part for part in text.split(":") if part.strip()]
        elif self.kind == "csv":
            value = [part.strip() for part in text.split(",") if part.strip()]
        else:
            value = text if self.secret else text.strip()
        return self.checked(value)

    def parse_file_value(self, value: Any) -> Any:
        """A config file's value (JSON: a number, a boolean or text) read as this setting; raises ValueError.
        Text reads as in the environment; JSON ``1``/``0`` are booleans too, a number is text where text is expected."""
        if isinstance(value, str):
            return self.parse(value)
        if isinstance(value, bool) and self.kind == "bool":
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.kind == "float":
                return self.checked(float(value))
            if self.kind in ("bool", "int", "str", "choice"):
                return self.parse(str(value))
        raise ValueError(f"expected {self.expected()}")

    def checked(self, value: Any) -> Any:
        """``value`` when within the bounds and accepted by ``check``; else ValueError."""
        outside = (self.low is not None and value < self.low) or (self.high is not None and value > self.high)
        if self.kind in ("int", "float") and outside:
            raise ValueError(self._number_problem("a whole number" if self.kind == "int" else "a number"))
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValueError(problem)
        return value

    def read(self, env: Mapping[str, str], issues: list[ConfigIssue]) -> Any:
        """The parsed value of the variable in ``env``; None when it is unset or empty, or bad (then its
        :meth:`issue` is appended to ``issues``)."""
        text = env.get(self.name)
        if text is None or text.strip() == "":
            return None
        try:
            return self.parse(text)
        except ValueError as exc:
            issues.append(self.issue(text, str(exc)))
            return None

    def value(self, env: Mapping[str, str]) -> Any:
        """The variable's value, or the default when it is unset, empty or bad (for readers outside the node's
        start, which has already refused a bad value)."""
        value = self.read(env, [])
        return self.default if value is None else value

    # --- reporting -----------------------------------------------------------------------------------------
    def issue(self, text: Any, problem: str) -> ConfigIssue:
        """The one form of a bad value of this variable: ``environment › key 'EE_X': <problem> (got '<text>');
        default: <default>``."""
        got = "***" if self.secret else text
        return ConfigIssue(problem, file=ENVIRONMENT, key=self.name, got=got, hint=self.default_hint())

    def file_issue(self, value: Any, problem: str, where: str | None = None) -> ConfigIssue:
        """A bad value of this setting's file key, in the same form: ``<file> › key 'K': <problem> (got V);
        default: <default>``."""
        got = "***" if self.secret else value
        return ConfigIssue(
            problem, file=where or self.file_where(), key=self.file_key, got=got, hint=self.default_hint()
        )

    def default_hint(self) -> str:
        return f"default: {self.default_text() or 'unset'}"

    def file_where(self) -> str | None:
        return GROUPS[self.group][1]

    def default_text(self) -> str:
        """The default as it is written in ``.env.template`` (empty for None)."""
        return value_text(self.default)

    def expected(self) -> str:
        """What a valid value looks like, in words (the reference's type column)."""
        if self.kind == "bool":
            return "true or false"
        if self.kind in ("int", "float"):
            return self._number_problem("a whole number" if self.kind == "int" else "a number")[len("expected ") :]
        if self.kind == "choice":
            return choices_text(self.choices)
        if self.kind == "list":
            return "folders separated by ':'"
        if self.kind == "csv":
            return "names separated by ','"
        return "text"

    def _number_problem(self, what: str) -> str:
        low, high = self.low, self.high
        if low is not None and high is not None:
            return f"expected {what} from {number_text(low)} to {number_text(high)}"
        if low is not None:
            return f"expected {what} >= {number_text(low)}"
        if high is not None:
            return f"expected {what} <= {number_text(high)}"
        return f"expected {what}"

    def _choice(self, text: str) -> str:
        for choice in self.choices:
            if choice.lower() == text.lower():
                return choice
        raise ValueError(f"expected {choices_text(self.choices)}")


def value_text(value: Any) -> str:
    """A value as written in an ``EE_*`` variable: ``1``/``0``, ``5``, ``a:b``; empty for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return number_text(value)
    if isinstance(value, (list, tuple)):
        return ":".join(str(v) for v in value)
    return str(value)


# --- the rules some settings add ------------------------------------------------------------------------------
def _alias_problem(value: str) -> str | None:
    """``EE_ID`` must be usable in topics and file names, or one of Ratio1's placeholders (the node keeps its first
    ``ALIAS_MAX_LEN`` characters, like Ratio1's commands)."""
    if value.upper() in C.ALIAS_PLACEHOLDERS or ALIAS_CHARS.fullmatch(value):
        return None
    return "expected letters, digits, '-', '_' or '.' only"


def _topic_problem(topic: str) -> str | None:
    if not topic or any(c in topic for c in "+#\x00") or topic.startswith("/") or topic.endswith("/"):
        return "expected an MQTT topic without '+', '#', or a leading or trailing '/' (Ratio1: naeural)"
    return None


def _bucket_problem(bucket: str) -> str | None:
    return None if BUCKET_NAME.match(bucket) else "not a valid S3 bucket name (3-63 of a-z 0-9 . -)"


def _prefix_problem(prefix: str) -> str | None:
    if len(prefix) > MAX_PREFIX_CHARS or prefix.startswith("/"):
        return f"at most {MAX_PREFIX_CHARS} characters, not starting with /"
    return None


def parse_supervisor(text: str, hostname: str | None = None) -> bool:
    """``EE_SUPERVISOR``: a boolean, or ``ordinal-0``: true only on a StatefulSet's first pod (host name ``*-0``),
    so one manifest gives a Kubernetes deployment exactly one supervisor."""
    if text.strip().lower() != "ordinal-0":
        try:
            return parse_bool(text)
        except ValueError:
            raise ValueError(f"{BOOL_PROBLEM}, or ordinal-0") from None
    return (hostname if hostname is not None else socket.gethostname()).rsplit("-", 1)[-1] == "0"


# --- the declarations -----------------------------------------------------------------------------------------
def _declare(*settings: Setting) -> dict[str, Setting]:
    table: dict[str, Setting] = {}
    for setting in settings:
        assert setting.name.startswith("EE_") and setting.name not in table, setting.name
        assert setting.kind in KINDS and setting.group in GROUPS, setting.name
        table[setting.name] = setting
    return table


SETTINGS: dict[str, Setting] = _declare(
    # the node (the startup config's keys where they have one)
    Setting(C.ENV_CACHE_DIR, "node", "str", None, "folder of the local cache (default ./_local_cache; "
            "/edge_node/_local_cache in the image)", example="./_local_cache"),
    Setting(C.ENV_CONFIG, "node", "str", None, "startup config that seeds the cache at first start "
            "(default ./.config_startup.json)", example=C.STARTUP_CONFIG_FILE),
    Setting(C.ENV_APP_CONFIG, "node", "str", None, "app (communication/upload) config file "
            "(default ./.config_app.json)", example=C.APP_CONFIG_FILE),
    Setting(C.ENV_ID, "node", "str", None, "node alias used at first start only; later the cached alias wins "
            "(change_alias)", check=_alias_problem, bad_example="my node/1"),
    Setting(C.ENV_DEMO, "node", "bool", True, "1 seeds the demo pipeline at first start, 0 does not",
            file_key="DEMO_PIPELINE"),
    Setting(C.ENV_LOG_LEVEL, "node", "choice", "INFO", "log level", file_key="LOG_LEVEL",
            choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Setting(C.ENV_PLUGIN_FOLDERS, "node", "list", list(C.DEFAULT_PLUGIN_FOLDERS), "plugin folders separated by ':' "
            "(each must exist)", file_key="PLUGIN_FOLDERS", bad_example="extensions:/no/such/plugins"),
    Setting(C.ENV_LOAD_ENTRY_POINTS, "node", "bool", True, "0 skips plugins from installed packages' entry points"),
    Setting(C.ENV_DISABLED_PLUGINS, "node", "csv", None, "comma-separated plugin signatures or module names not to "
            "load"),
    Setting(C.ENV_SECONDS_LOCAL_INFO, "node", "float", C.DEFAULT_LOCAL_INFO_SECONDS, "seconds between "
            "local_info.json refreshes", file_key="SECONDS_LOCAL_INFO", low=0.2),
    Setting(C.ENV_SHUTDOWN_SECONDS, "node", "float", C.DEFAULT_SHUTDOWN_SECONDS, "deadline in seconds for a clean "
            "stop on SIGTERM/SIGINT", file_key="SHUTDOWN_SECONDS", low=0.5),
    Setting(C.ENV_RESTART_BACKOFF_MAX, "node", "float", 30.0, "cap in seconds of the restart backoff for failed "
            "sources and instances", file_key="RESTART_BACKOFF_MAX", low=0.1),
    Setting(C.ENV_FLAP_MAX_FAILURES, "node", "int", C.DEFAULT_FLAP_MAX_FAILURES, "a part (instance, capture "
            "source, model server) failing this many times within the window is stopped as flapping (0 = never)",
            file_key="FLAP_MAX_FAILURES", low=0),
    Setting(C.ENV_FLAP_WINDOW_SECONDS, "node", "float", C.DEFAULT_FLAP_WINDOW_SECONDS, "window of the flapping "
            "policy in seconds", file_key="FLAP_WINDOW_SECONDS", low=0.1),
    Setting(C.ENV_TRACE_HOOKS, "node", "bool", False, "1 logs every node-level hook call at DEBUG level (for "
            "plugin authors)"),
    Setting(C.ENV_DEV, "node", "bool", False, "1 turns on development mode: plugin files are reloaded when they "
            "change", file_key="DEV_MODE"),
    Setting(C.ENV_EVM_NET, "node", "choice", C.DEFAULT_NETWORK, "network profile (set by the image's NETWORK build "
            "argument)", choices=tuple(C.NETWORKS)),
    # MQTT comms (.config_app.json COMMUNICATION.PARAMS)
    Setting("EE_COMMS", "comms", "bool", True, "0 turns MQTT comms off (payloads stay in _local_cache/_output)"),
    Setting("EE_MQTT_HOST", "comms", "str", None, "MQTT broker host; unset = a broker on 127.0.0.1:1883, else the "
            "embedded one", file_key="HOST"),
    Setting("EE_MQTT_PORT", "comms", "int", 1883, "MQTT broker port (8883 is usual with TLS)", file_key="PORT",
            low=1, high=MAX_PORT),
    Setting("EE_MQTT_USER", "comms", "str", None, "MQTT user name", file_key="USER"),
    Setting("EE_MQTT", "comms", "str", None, "MQTT password (never logged)", file_key="PASS", secret=True),
    Setting("EE_MQTT_TLS", "comms", "bool", False, "1 connects with TLS", file_key="SECURED"),
    Setting("EE_MQTT_CERT", "comms", "str", None, "CA certificate file for TLS", file_key="CERT_PATH"),
    Setting("EE_MQTT_CLIENT_CERT", "comms", "str", None, "client certificate file for mutual TLS",
            file_key="CLIENT_CERT_PATH"),
    Setting("EE_MQTT_CLIENT_KEY", "comms", "str", None, "client key file for mutual TLS",
            file_key="CLIENT_KEY_PATH"),
    Setting("EE_ROOT_TOPIC", "comms", "str", "naeural", "root of the MQTT topics (Ratio1: naeural)",
            file_key="ROOT_TOPIC", check=_topic_problem, bad_example="naeural/#"),
    Setting("EE_MQTT_SUBTOPIC", "comms", "choice", "address", "command topic suffix: the node's address or its "
            "alias", file_key="SUBTOPIC", choices=("address", "alias")),
    Setting("EE_EMBEDDED_BROKER", "comms", "choice", "auto", "start the embedded broker when no broker is "
            "configured and none answers on 127.0.0.1:1883 (auto), always, or never",
            choices=("auto", "always", "never")),
    Setting("EE_MAX_MESSAGE_BYTES", "comms", "int", 1_000_000, "largest message sent or accepted, in bytes",
            low=1024),
    Setting("EE_COMMAND_WINDOW_SECONDS", "comms", "float", 24 * 3600.0, "commands whose TIME is further than this "
            "from now are refused", low=1),
    Setting("EE_HB_CONTAINS_PIPELINES", "comms", "bool", True, "0 leaves pipeline configs out of heartbeats "
            "(CONFIG_STREAMS)"),
    Setting("EE_OUTBOX_MAX_MB", "comms", "float", 256.0, "MQTT outbox bound in MB; when full the oldest payloads go "
            "first; 0 = in memory", low=0),
    Setting("EE_OUTBOX_FSYNC_SECONDS", "comms", "float", 1.0, "outbox group commit: fsync at most every N s; a "
            "power loss may lose that much", low=0),
    Setting("EE_SUPERVISOR", "comms", "bool", False, "1 makes the node a supervisor: it publishes NET_MON_01 (the "
            "network view) for SDK sessions; ordinal-0: only a StatefulSet's first pod", parser=parse_supervisor,
            bad_example="ordinal-1"),
    Setting("EE_NETMON_SEND_SECONDS", "comms", "float", None, "seconds between NET_MON_01 payloads of a supervisor "
            "(unset: the admin pipeline's, 3)", low=0.1, example="3"),
    Setting("EE_NETMON_OFFLINE_SECONDS", "comms", "float", 60.0, "a node not heard from for this many seconds is "
            "shown offline", low=1),
    Setting("EE_NETMON_MAX_NODES", "comms", "int", 10_000, "most nodes kept in the network view (when full, a new "
            "node replaces an offline one or is refused)", low=1),
    Setting("EE_NETMON_VERIFY_SECONDS", "comms", "float", 30.0, "seconds between two signature checks of the same "
            "node's unchanged heartbeats", low=0),
    Setting("EE_NETMON_SEND_ONLY_ONLINE", "comms", "bool", False, "1 leaves offline nodes out of NET_MON_01's "
            "CURRENT_NETWORK"),
    Setting("EE_NETMON_VERSION", "comms", "choice", "v2", "v2 sends NET_MON_01 compressed (ENCODED_DATA), v1 plain "
            "for older SDKs", choices=("v1", "v2")),
    # status page and metrics (DECISIONS 24)
    Setting("EE_STATUS_PORT", "observe", "int", 8089, "port of the local status page (0 turns it off)", low=0,
            high=MAX_PORT),
    Setting("EE_STATUS_BIND", "observe", "str", "127.0.0.1", "address the status page binds to; other than loopback "
            "only with EE_STATUS_TOKEN", bad_example="0.0.0.0"),
    Setting("EE_STATUS_TOKEN", "observe", "str", None, "token (Bearer or ?token=) required from non-loopback clients "
            "of the status page", secret=True),
    Setting("EE_METRICS_PORT", "observe", "int", 0, "port of a separate /metrics listener (0 = off; /metrics is "
            "also on the status page)", low=0, high=MAX_PORT),
    Setting("EE_METRICS_BIND", "observe", "str", "127.0.0.1", "address of the /metrics listener (0.0.0.0 exposes "
            "it, it holds no secrets)"),
    # disk bounds of the local cache (DECISIONS 25)
    Setting("EE_OUTPUT_MAX_MB", "disk", "float", 1024.0, "size bound of _local_cache/_output in MB; the oldest "
            "files go first", low=0),
    Setting("EE_LOGS_MAX_MB", "disk", "float", 50.0, "size bound of _local_cache/_logs in MB; the oldest files go "
            "first", low=0),
    Setting("EE_DISK_MIN_FREE_MB", "disk", "float", 50.0, "below this free space (MB) outputs pause, the node "
            "alerts once and keeps running", low=0),
    # object storage (.config_app.json FILE_UPLOAD.CONFIG_UPLOADER)
    Setting("EE_MINIO_ENDPOINT", "storage", "str", None, "S3 endpoint host:port (or URL; http:// also sets SECURE "
            "off) for witness images and plugin files; unset = no uploads", file_key="ENDPOINT"),
    Setting("EE_MINIO_ACCESS_KEY", "storage", "str", None, "S3 access key", file_key="ACCESS_KEY", secret=True),
    Setting("EE_MINIO_SECRET_KEY", "storage", "str", None, "S3 secret key (never logged)", file_key="SECRET_KEY",
            secret=True),
    Setting("EE_MINIO_UPLOAD_BUCKET", "storage", "str", None, "S3 bucket the node uploads to",
            file_key="BUCKET_NAME", check=_bucket_problem, bad_example="Frames!"),
    Setting("EE_MINIO_SECURE", "storage", "bool", True, "1 uses HTTPS to the S3 endpoint, 0 plain HTTP",
            file_key="SECURE"),
    Setting("EE_MINIO_REGION", "storage", "str", "us-east-1", "S3 region; object URLs are made locally with it",
            file_key="REGION"),
    Setting("EE_MINIO_PREFIX", "storage", "str", "", "prefix of the object keys, e.g. node-1/ (keys are "
            "{prefix}{sha256}.{ext})", file_key="PREFIX", check=_prefix_problem, bad_example="/frames/"),
    Setting("EE_MINIO_URL_MODE", "storage", "choice", "presigned", "URL in payloads: presigned (works on private "
            "buckets) or plain", file_key="URL_MODE", choices=("presigned", "plain")),
    Setting("EE_MINIO_URL_EXPIRY", "storage", "int", MAX_PRESIGN_SECONDS, "lifetime of presigned URLs in seconds "
            "(7 days is the S3 maximum)", file_key="URL_EXPIRY_SECONDS", low=1, high=MAX_PRESIGN_SECONDS),
    Setting("EE_MINIO_CREATE_BUCKET", "storage", "bool", True, "1 creates the bucket when it is missing",
            file_key="CREATE_BUCKET"),
    Setting("EE_MINIO_PUBLIC_ENDPOINT", "storage", "str", None, "host:port (or URL) consumers fetch objects from, "
            "when not EE_MINIO_ENDPOINT", file_key="PUBLIC_ENDPOINT"),
    Setting("EE_UPLOAD_QUEUE_MAX_MB", "storage", "int", 1024, "size bound of the on-disk upload queue in MB; beyond "
            "it images go inline", file_key="MAX_QUEUE_MB", low=1),
)  # fmt: skip


def group(name: str) -> dict[str, Setting]:
    """The settings one part reads, in declaration order."""
    return {key: setting for key, setting in SETTINGS.items() if setting.group == name}


def by_file_key(name: str) -> dict[str, Setting]:
    """``{file key: setting}`` of a group (the keys its config file may set)."""
    return {s.file_key: s for s in group(name).values() if s.file_key is not None}


def read_group(name: str, env: Mapping[str, str]) -> tuple[dict[str, Any], list[ConfigIssue]]:
    """``{variable: value}`` of the group's variables that are set (empty ones are unset) and valid, and one
    issue per bad value."""
    issues: list[ConfigIssue] = []
    values: dict[str, Any] = {}
    for key, setting in group(name).items():
        value = setting.read(env, issues)
        if value is not None:
            values[key] = value
    return values, issues


def env_docs() -> dict[str, str]:
    """``{variable: one-line doc}`` of every setting (``constants.ENV_VARS``)."""
    return {name: setting.doc for name, setting in SETTINGS.items()}
