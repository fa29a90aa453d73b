"""Names shared across the node: environment variables, cache layout, defaults.

No logic lives here. The repository's top-level ``constants.py`` re-exports this module so that
``device.py``, ``cmds/`` and operators' scripts can use the same names.
"""

from __future__ import annotations

from typing import Final

ENGINE_NAME: Final = "edge_engine"
ENTRY_POINT_GROUP: Final = "edge_engine.plugins"

# --- plugin kinds and folders -------------------------------------------------------------------
KIND_CAPTURE: Final = "data"
KIND_SERVING: Final = "serving"
KIND_BUSINESS: Final = "business"
PLUGIN_KINDS: Final = (KIND_CAPTURE, KIND_SERVING, KIND_BUSINESS)
DEFAULT_PLUGIN_FOLDERS: Final = ("extensions", "plugins")

# --- configuration files --------------------------------------------------------------------------
STARTUP_CONFIG_FILE: Final = ".config_startup.json"
APP_CONFIG_FILE: Final = ".config_app.json"
DOTENV_FILE: Final = ".env"
DEMO_PIPELINE_FILE: Final = "pipelines/demo.json"

# --- local cache layout (Ratio1-compatible names) -------------------------------------------------
DEFAULT_CACHE_DIR: Final = "_local_cache"
IMAGE_CACHE_DIR: Final = "/edge_node/_local_cache"
CACHE_DATA: Final = "_data"
CACHE_LOGS: Final = "_logs"
CACHE_OUTPUT: Final = "_output"
CACHE_MODELS: Final = "_models"
CACHED_STARTUP_CONFIG: Final = "config_startup.json"
LOCAL_INFO_FILE: Final = "local_info.json"
LOCAL_HISTORY_FILE: Final = "local_history.json"
KEY_FILE: Final = "e2.pem"
AUTHORIZED_ADDRS_FILE: Final = "authorized_addrs"
CACHE_VERSION_FILE: Final = "cache_version"
FIRST_START_MARKER: Final = "first_start_pending"  # in _data/ until the first start has seeded the pipelines
BOX_CONFIGURATION: Final = "box_configuration"
STREAMS_DIR: Final = "streams"
CACHED_APP_CONFIG: Final = "config_app.txt"
UPLOADS_DIR: Final = "uploads"  # _data/uploads/pending/: objects waiting for S3 (edge_engine.storage)
OUTBOX_DIR: Final = "outbox"  # _data/outbox/: MQTT messages waiting for the broker (edge_engine.comms.disk_outbox)
CACHE_FORMAT_VERSION: Final = 1

# --- identity -------------------------------------------------------------------------------------
ADDRESS_PREFIX: Final = "0xai_"
ALIAS_MAX_LEN: Final = 15
ALIAS_PLACEHOLDERS: Final = ("", "XXXXXXXXXX", "HOSTNAME", "E2DKR")
ADMIN_PIPELINE_NAME: Final = "admin_pipeline"  # built from the startup config; commands cannot change it

# --- defaults -------------------------------------------------------------------------------------
DEFAULT_LOCAL_INFO_SECONDS: Final = 5.0
DEFAULT_HISTORY_SAMPLE_SECONDS: Final = 10.0
DEFAULT_HISTORY_SAVE_SECONDS: Final = 60.0
DEFAULT_SHUTDOWN_SECONDS: Final = 5.0
DEFAULT_LOG_MAX_BYTES: Final = 5 * 1024 * 1024
DEFAULT_LOG_BACKUPS: Final = 5
HISTORY_FINE_SPAN_SECONDS: Final = 3600
HISTORY_COARSE_STEP_SECONDS: Final = 300
HISTORY_COARSE_SPAN_SECONDS: Final = 86400

# --- network profiles (EE_EVM_NET, Ratio1's names) --------------------------------------------------------
# What each profile sets by default; an explicit setting (EE_ROOT_TOPIC, COMMUNICATION.PARAMS.ROOT_TOPIC) wins.
# The root topic is Ratio1's on every network (Ratio1 separates its networks by broker, not by topic), so
# Ratio1 SDK clients reach our nodes unchanged; the node has no other network-specific endpoint yet.
DEFAULT_NETWORK: Final = "mainnet"
NETWORKS: Final[dict[str, dict[str, str]]] = {
    "mainnet": {"root_topic": "naeural"},
    "testnet": {"root_topic": "naeural"},
    "devnet": {"root_topic": "naeural"},
}

# --- environment variables ------------------------------------------------------------------------
# The names the engine's own code uses; every EE_* setting (these and the others) is declared once, with its type,
# default, bounds and doc, in edge_engine.config.settings_schema.SETTINGS.
ENV_CACHE_DIR: Final = "EE_CACHE_DIR"
ENV_CONFIG: Final = "EE_CONFIG"
ENV_APP_CONFIG: Final = "EE_APP_CONFIG"
ENV_ID: Final = "EE_ID"
ENV_DEMO: Final = "EE_DEMO"
ENV_LOG_LEVEL: Final = "EE_LOG_LEVEL"
ENV_PLUGIN_FOLDERS: Final = "EE_PLUGIN_FOLDERS"
ENV_LOAD_ENTRY_POINTS: Final = "EE_LOAD_ENTRY_POINTS"
ENV_DISABLED_PLUGINS: Final = "EE_DISABLED_PLUGINS"
ENV_SECONDS_LOCAL_INFO: Final = "EE_SECONDS_LOCAL_INFO"
ENV_SHUTDOWN_SECONDS: Final = "EE_SHUTDOWN_SECONDS"
ENV_RESTART_BACKOFF_MAX: Final = "EE_RESTART_BACKOFF_MAX"
ENV_FLAP_MAX_FAILURES: Final = "EE_FLAP_MAX_FAILURES"
ENV_FLAP_WINDOW_SECONDS: Final = "EE_FLAP_WINDOW_SECONDS"
DEFAULT_FLAP_MAX_FAILURES: Final = 4
DEFAULT_FLAP_WINDOW_SECONDS: Final = 60.0
ENV_TRACE_HOOKS: Final = "EE_TRACE_HOOKS"
ENV_DEV: Final = "EE_DEV"
ENV_EVM_NET: Final = "EE_EVM_NET"


def __getattr__(name: str) -> dict[str, str]:
    """``ENV_VARS``: every ``EE_*`` variable -> its one-line doc, from the one declaration
    (:data:`edge_engine.config.settings_schema.SETTINGS`), which ``.env.template`` and ``docs/settings.md`` are
    generated from."""
    if name == "ENV_VARS":
        from edge_engine.config.settings_schema import env_docs

        return env_docs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
