"""One rule for every ``EE_*`` variable: a value that cannot be used refuses the start, named the same way
(``environment › key 'EE_X': what is wrong (got 'value')``), whichever part of the node reads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from node_runner import REPO, base_env

from edge_engine.comms.comms_settings import ENV_FIELDS as COMMS_FIELDS
from edge_engine.config.node_settings import ENV_OVERRIDES, load_settings, read_settings
from edge_engine.errors import ConfigError
from edge_engine.node.disk_bounds import DEFAULTS_MB
from edge_engine.storage.storage_settings import ENV_FIELDS as STORAGE_FIELDS

STORAGE = {"EE_MINIO_ENDPOINT": "127.0.0.1:9000", "EE_MINIO_UPLOAD_BUCKET": "frames"}
# variable -> (bad value, other variables it needs to be read)
BAD_VALUES: dict[str, tuple[str, dict[str, str]]] = {
    # the node's own settings
    "EE_DEMO": ("maybe", {}),
    "EE_LOG_LEVEL": ("LOUD", {}),
    "EE_SECONDS_LOCAL_INFO": ("0", {}),
    "EE_SHUTDOWN_SECONDS": ("soon", {}),
    "EE_RESTART_BACKOFF_MAX": ("nan", {}),
    "EE_FLAP_MAX_FAILURES": ("-1", {}),
    "EE_FLAP_WINDOW_SECONDS": ("inf", {}),
    "EE_DEV": ("perhaps", {}),
    "EE_LOAD_ENTRY_POINTS": ("maybe", {}),
    "EE_EVM_NET": ("moonnet", {}),
    "EE_PLUGIN_FOLDERS": ("extensions:/no/such/plugins", {}),
    "EE_ID": ("my node/1", {}),
    # status page and metrics
    "EE_STATUS_PORT": ("99999", {}),
    "EE_METRICS_PORT": ("http", {}),
    "EE_STATUS_BIND": ("0.0.0.0", {}),  # beyond loopback without EE_STATUS_TOKEN
    # comms
    "EE_MQTT_PORT": ("70000", {}),
    "EE_MQTT_TLS": ("sure", {}),
    "EE_COMMS": ("maybe", {}),
    "EE_MAX_MESSAGE_BYTES": ("-5", {}),
    "EE_COMMAND_WINDOW_SECONDS": ("nan", {}),
    "EE_HB_CONTAINS_PIPELINES": ("2", {}),
    "EE_OUTBOX_MAX_MB": ("-1", {}),
    "EE_OUTBOX_FSYNC_SECONDS": ("fast", {}),
    "EE_SUPERVISOR": ("ordinal-1", {}),
    "EE_NETMON_SEND_SECONDS": ("0", {}),
    "EE_NETMON_OFFLINE_SECONDS": ("-3", {}),
    "EE_NETMON_MAX_NODES": ("0", {}),
    "EE_NETMON_VERIFY_SECONDS": ("x", {}),
    "EE_NETMON_SEND_ONLY_ONLINE": ("yes please", {}),
    "EE_ROOT_TOPIC": ("naeural/#", {}),
    "EE_MQTT_SUBTOPIC": ("hostname", {}),
    "EE_EMBEDDED_BROKER": ("sometimes", {}),
    "EE_NETMON_VERSION": ("v3", {}),
    # object storage
    "EE_MINIO_SECURE": ("maybe", STORAGE),
    "EE_MINIO_CREATE_BUCKET": ("2", STORAGE),
    "EE_MINIO_URL_EXPIRY": ("0", STORAGE),
    "EE_MINIO_URL_MODE": ("public", STORAGE),
    "EE_MINIO_UPLOAD_BUCKET": ("Frames!", {"EE_MINIO_ENDPOINT": "127.0.0.1:9000"}),
    "EE_UPLOAD_QUEUE_MAX_MB": ("lots", STORAGE),
    # disk bounds
    "EE_OUTPUT_MAX_MB": ("lots", {}),
    "EE_LOGS_MAX_MB": ("-1", {}),
    "EE_DISK_MIN_FREE_MB": ("inf", {}),
}


def test_every_typed_variable_has_a_bad_value_case() -> None:
    """The audit's list: every variable parsed as a number, a boolean or a choice is refused when bad."""
    typed = {name for name, (_attr, kind, *_rest) in COMMS_FIELDS.items() if kind != "str"}
    typed |= {"EE_ROOT_TOPIC", "EE_MQTT_SUBTOPIC", "EE_EMBEDDED_BROKER"}
    typed |= {name for name, (_attr, kind) in STORAGE_FIELDS.items() if kind != "str"}
    typed |= set(ENV_OVERRIDES)
    typed |= set(DEFAULTS_MB) | {"EE_STATUS_PORT", "EE_METRICS_PORT", "EE_STATUS_BIND"}
    assert typed <= set(BAD_VALUES), sorted(typed - set(BAD_VALUES))


def _base(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    base.mkdir(parents=True)
    (base / ".config_startup.json").write_text('{"DEMO_PIPELINE": false, "PLUGIN_FOLDERS": []}', encoding="utf-8")
    return base


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_a_bad_value_refuses_the_start_naming_variable_and_value(tmp_path: Path, name: str) -> None:
    value, needs = BAD_VALUES[name]
    env = {"EE_COMMS": "0", "EE_STATUS_PORT": "0", **needs, name: value}
    with pytest.raises(ConfigError) as caught:
        load_settings(_base(tmp_path), tmp_path / "cache", env)
    lines = [str(issue) for issue in caught.value.issues]
    assert any(line.startswith(f"environment › key '{name}': ") and f"(got {value!r})" in line for line in lines), lines
    _, issues = read_settings(_base(tmp_path / "v"), tmp_path / "cache2", env)  # edge-node validate says the same
    assert [str(i) for i in issues] == lines


def test_every_bad_value_is_reported_at_once(tmp_path: Path) -> None:
    env = {"EE_STATUS_PORT": "99999", "EE_MQTT_PORT": "x", "EE_OUTPUT_MAX_MB": "lots", "EE_DEMO": "maybe",
           "EE_MINIO_SECURE": "maybe", **STORAGE}  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_settings(_base(tmp_path), tmp_path / "cache", env)
    keys = {issue.key for issue in caught.value.issues}
    assert keys == {"EE_STATUS_PORT", "EE_MQTT_PORT", "EE_OUTPUT_MAX_MB", "EE_DEMO", "EE_MINIO_SECURE"}


def test_good_values_start(tmp_path: Path) -> None:
    env = {"EE_STATUS_PORT": "0", "EE_METRICS_PORT": "9100", "EE_MQTT_PORT": "8883", "EE_COMMS": "off",
           "EE_SUPERVISOR": "ordinal-0", "EE_OUTPUT_MAX_MB": "0.5", "EE_ID": "gate-1", "EE_LOAD_ENTRY_POINTS": "0",
           "EE_STATUS_BIND": "0.0.0.0", "EE_STATUS_TOKEN": "t0k3n", **STORAGE}  # fmt: skip
    settings = load_settings(_base(tmp_path), tmp_path / "cache", env)
    assert settings.load_entry_points is False


def test_the_node_process_refuses_ee_status_port_99999(tmp_path: Path) -> None:
    """The issue's case: the node used to log the bad port and run without its status page."""
    work = _base(tmp_path)
    env = base_env(tmp_path / "cache", EE_STATUS_PORT="99999")
    done = subprocess.run([sys.executable, str(REPO / "device.py")], cwd=work, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "environment › key 'EE_STATUS_PORT': expected a whole number from 0 to 65535 (got '99999')" in output
    assert "the node cannot start" in output
