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
# name -> one-line description. `.env.template` lists exactly these (a test keeps them in step).
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

ENV_VARS: Final[dict[str, str]] = {
    ENV_CACHE_DIR: "folder of the local cache (default ./_local_cache; /edge_node/_local_cache in the image)",
    ENV_CONFIG: "startup config that seeds the cache at first start (default ./.config_startup.json)",
    ENV_APP_CONFIG: "app (communication/upload) config file (default ./.config_app.json)",
    ENV_ID: "node alias used at first start only; later the cached alias wins (change_alias)",
    ENV_DEMO: "1 seeds the demo pipeline at first start, 0 does not (overrides DEMO_PIPELINE)",
    ENV_LOG_LEVEL: "log level: DEBUG, INFO, WARNING or ERROR (overrides LOG_LEVEL)",
    ENV_PLUGIN_FOLDERS: "plugin folders separated by ':' (overrides PLUGIN_FOLDERS)",
    ENV_LOAD_ENTRY_POINTS: "0 skips plugins from installed packages' entry points",
    ENV_DISABLED_PLUGINS: "comma-separated plugin signatures or module names not to load",
    ENV_SECONDS_LOCAL_INFO: "seconds between local_info.json refreshes (overrides SECONDS_LOCAL_INFO)",
    ENV_SHUTDOWN_SECONDS: "deadline in seconds for a clean stop on SIGTERM/SIGINT (overrides SHUTDOWN_SECONDS)",
    ENV_RESTART_BACKOFF_MAX: "cap in seconds of the restart backoff for failed sources and instances",
    ENV_FLAP_MAX_FAILURES: "a part (instance, capture source, model server) failing this many times within the "
    "window is stopped as flapping (4; 0 = never; overrides FLAP_MAX_FAILURES)",
    ENV_FLAP_WINDOW_SECONDS: "window of the flapping policy in seconds (60; overrides FLAP_WINDOW_SECONDS)",
    ENV_TRACE_HOOKS: "1 logs every node-level hook call at DEBUG level (for plugin authors)",
    ENV_DEV: "1 turns on development mode: plugin files are reloaded when they change (overrides DEV_MODE)",
    ENV_EVM_NET: "network profile: mainnet (default), testnet or devnet (set by the image's NETWORK build argument)",
}

# comms (read by edge_engine.comms.comms_settings; .config_app.json COMMUNICATION.PARAMS may set the same)
COMMS_ENV_VARS: Final[dict[str, str]] = {
    "EE_COMMS": "0 turns MQTT comms off (payloads stay in _local_cache/_output)",
    "EE_MQTT_HOST": "MQTT broker host; unset = a broker on 127.0.0.1:1883, else the embedded one",
    "EE_MQTT_PORT": "MQTT broker port (1883; 8883 is usual with TLS)",
    "EE_MQTT_USER": "MQTT user name",
    "EE_MQTT": "MQTT password (never logged)",
    "EE_MQTT_TLS": "1 connects with TLS",
    "EE_MQTT_CERT": "CA certificate file for TLS",
    "EE_MQTT_CLIENT_CERT": "client certificate file for mutual TLS",
    "EE_MQTT_CLIENT_KEY": "client key file for mutual TLS",
    "EE_ROOT_TOPIC": "root of the MQTT topics (Ratio1: naeural)",
    "EE_MQTT_SUBTOPIC": "command topic suffix: address (default) or alias",
    "EE_EMBEDDED_BROKER": "auto (default), always or never start the embedded broker when no broker is configured",
    "EE_MAX_MESSAGE_BYTES": "largest message sent or accepted, in bytes (1000000)",
    "EE_COMMAND_WINDOW_SECONDS": "commands whose TIME is further than this from now are refused (86400)",
    "EE_HB_CONTAINS_PIPELINES": "0 leaves pipeline configs out of heartbeats (CONFIG_STREAMS)",
    "EE_OUTBOX_MAX_MB": "MQTT outbox bound in MB (256); when full the oldest payloads go first; 0 = in memory",
    "EE_OUTBOX_FSYNC_SECONDS": "outbox group commit: fsync at most every N s (1.0); a power loss may lose that much",
    "EE_SUPERVISOR": "1 makes the node a supervisor: it publishes NET_MON_01 (the network view) for SDK sessions; "
    "ordinal-0: only a StatefulSet's first pod",
    "EE_NETMON_SEND_SECONDS": "seconds between NET_MON_01 payloads of a supervisor (default: admin pipeline's, 3)",
    "EE_NETMON_OFFLINE_SECONDS": "a node not heard from for this many seconds is shown offline (60)",
    "EE_NETMON_MAX_NODES": "most nodes kept in the network view (10000; when full, a new node replaces an offline one "
    "or is refused)",
    "EE_NETMON_VERIFY_SECONDS": "seconds between two signature checks of the same node's unchanged heartbeats (30)",
    "EE_NETMON_SEND_ONLY_ONLINE": "1 leaves offline nodes out of NET_MON_01's CURRENT_NETWORK",
    "EE_NETMON_VERSION": "v2 (default) sends NET_MON_01 compressed (ENCODED_DATA), v1 plain for older SDKs",
}
ENV_VARS.update(COMMS_ENV_VARS)

# status page and metrics (read by edge_engine.observe.observe_settings; DECISIONS 24)
OBSERVE_ENV_VARS: Final[dict[str, str]] = {
    "EE_STATUS_PORT": "port of the local status page (8089; 0 turns it off)",
    "EE_STATUS_BIND": "address the status page binds to; other than loopback only with EE_STATUS_TOKEN",
    "EE_STATUS_TOKEN": "token (Bearer or ?token=) required from non-loopback clients of the status page",
    "EE_METRICS_PORT": "port of a separate /metrics listener (unset or 0 = off; /metrics is also on the status page)",
    "EE_METRICS_BIND": "address of the /metrics listener (127.0.0.1; 0.0.0.0 exposes it, it holds no secrets)",
}
ENV_VARS.update(OBSERVE_ENV_VARS)

# disk bounds of the local cache (read by edge_engine.node.disk_bounds; DECISIONS 25)
DISK_ENV_VARS: Final[dict[str, str]] = {
    "EE_OUTPUT_MAX_MB": "size bound of _local_cache/_output in MB; the oldest files go first (1024)",
    "EE_LOGS_MAX_MB": "size bound of _local_cache/_logs in MB; the oldest files go first (50)",
    "EE_DISK_MIN_FREE_MB": "below this free space (MB) outputs pause, the node alerts once and keeps running (50)",
}
ENV_VARS.update(DISK_ENV_VARS)

# object storage (read by edge_engine.storage.storage_settings;
# .config_app.json FILE_UPLOAD.CONFIG_UPLOADER may set the same)
STORAGE_ENV_VARS: Final[dict[str, str]] = {
    "EE_MINIO_ENDPOINT": "S3 endpoint host:port (or URL) for witness images and plugin files; unset = no uploads",
    "EE_MINIO_ACCESS_KEY": "S3 access key",
    "EE_MINIO_SECRET_KEY": "S3 secret key (never logged)",
    "EE_MINIO_UPLOAD_BUCKET": "S3 bucket the node uploads to",
    "EE_MINIO_SECURE": "1 (default) uses HTTPS to the S3 endpoint, 0 plain HTTP",
    "EE_MINIO_REGION": "S3 region (us-east-1); object URLs are made locally with it",
    "EE_MINIO_PREFIX": "prefix of the object keys, e.g. node-1/ (keys are {prefix}{sha256}.{ext})",
    "EE_MINIO_URL_MODE": "URL in payloads: presigned (default; works on private buckets) or plain",
    "EE_MINIO_URL_EXPIRY": "lifetime of presigned URLs in seconds (604800 = 7 days, the S3 maximum)",
    "EE_MINIO_CREATE_BUCKET": "1 (default) creates the bucket when it is missing",
    "EE_MINIO_PUBLIC_ENDPOINT": "host:port (or URL) consumers fetch objects from, when not EE_MINIO_ENDPOINT",
    "EE_UPLOAD_QUEUE_MAX_MB": "size bound of the on-disk upload queue in MB; beyond it images go inline (1024)",
}
ENV_VARS.update(STORAGE_ENV_VARS)
