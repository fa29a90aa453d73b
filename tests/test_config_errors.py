"""Configuration errors: every bad pipeline or startup config is refused with the exact line an owner reads.

Pipelines are validated against a registry loaded from the repository's ``extensions/``, as the node does. Each
row of the table gives a bad config and the exact rendered issue
(``file › pipeline 'x' › plugin 'SIG' › instance 'id' › key 'K': message (got V); hint``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from plugins_src import synthetic_pipeline

from edge_engine.config.node_settings import load_settings
from edge_engine.config.pipelines import validate_pipeline
from edge_engine.errors import CacheError, ConfigError
from edge_engine.local.cache import CacheLayout
from edge_engine.plugin.discovery import PluginLoader
from edge_engine.plugin.hooks import get_plugin_manager
from edge_engine.plugin.registry import PluginRegistry

REPO = Path(__file__).resolve().parent.parent
FILE = "pipes/x.json"
LOC = "pipes/x.json › pipeline 'x'"
QUOTES = "remove the quotes: JSON numbers and booleans are written without them"
NAME_HINT = "use 1-64 letters, digits, '_', '-' or '.'"


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    reg = PluginRegistry()
    PluginLoader(reg, get_plugin_manager()).load_folder(REPO / "extensions")
    assert reg.failures == []
    return reg


def synthetic(**extra: Any) -> dict[str, Any]:
    return {"NAME": "x", "TYPE": "SYNTHETIC", **extra}


def stats(*instances: dict[str, Any]) -> dict[str, Any]:
    return synthetic(PLUGINS=[{"SIGNATURE": "FRAME_STATS", "INSTANCES": list(instances)}])


BAD_PIPELINES: list[tuple[str, Any, str]] = [
    (
        "unknown top-level key",
        synthetic(PLUGIN=[]),
        f"{LOC} › plugin 'SYNTHETIC' › key 'PLUGIN': unknown key; did you mean 'PLUGINS'?",
    ),
    (
        "unknown capture TYPE",
        {"NAME": "x", "TYPE": "VIDEO_FIL", "URL": "a.mp4"},
        f"{LOC} › key 'TYPE': unknown capture plugin (got 'VIDEO_FIL'); did you mean 'VIDEO_FILE'?",
    ),
    (
        "capture TYPE nobody has",
        {"NAME": "x", "TYPE": "ZZZQQQ"},
        f"{LOC} › key 'TYPE': unknown capture plugin (got 'ZZZQQQ'); "
        "no capture plugin has this signature; is it installed?",
    ),
    (
        "missing TYPE",
        {"NAME": "x", "PLUGINS": []},
        f"{LOC} › key 'TYPE': missing required key (the capture plugin's signature)",
    ),
    (
        "missing NAME",
        {"TYPE": "SYNTHETIC"},
        "pipes/x.json › key 'NAME': missing required key (string)",
    ),
    (
        "invalid NAME",
        {"NAME": "bad name!", "TYPE": "SYNTHETIC"},
        f"pipes/x.json › key 'NAME': invalid pipeline name (got 'bad name!'); {NAME_HINT}",
    ),
    (
        "not an object",
        ["NAME", "x"],
        "pipes/x.json: a pipeline must be a JSON object (got 'list')",
    ),
    (
        "capture key wrong type",
        {"NAME": "x", "TYPE": "VIDEO_FILE", "URL": "a.mp4", "LOOP": "true"},
        f"{LOC} › plugin 'VIDEO_FILE' › key 'LOOP': expected bool (got 'true'); {QUOTES}",
    ),
    (
        "required capture key missing",
        {"NAME": "x", "TYPE": "VIDEO_FILE"},
        f"{LOC} › plugin 'VIDEO_FILE' › key 'URL': missing required key (str); "
        "path to the video file; relative paths resolve against the current dir",
    ),
    (
        "PLUGINS not a list",
        synthetic(PLUGINS={"SIGNATURE": "FRAME_STATS"}),
        f"{LOC} › key 'PLUGINS': expected a list of plugins (got {{'SIGNATURE': 'FRAME_STATS'}})",
    ),
    (
        "unknown business SIGNATURE",
        synthetic(PLUGINS=[{"SIGNATURE": "MOTION_DETECTR", "INSTANCES": [{"INSTANCE_ID": "a"}]}]),
        f"{LOC} › plugin 'MOTION_DETECTR' › key 'SIGNATURE': unknown business plugin (got 'MOTION_DETECTR'); "
        "did you mean 'MOTION_DETECTOR'?",
    ),
    (
        "plugin entry without SIGNATURE",
        synthetic(PLUGINS=[{"INSTANCES": [{"INSTANCE_ID": "a"}]}]),
        f"{LOC} › plugin '#0' › key 'SIGNATURE': missing or invalid SIGNATURE",
    ),
    (
        "plugin entry with unknown key",
        synthetic(PLUGINS=[{"SIGNATURE": "FRAME_STATS", "INSTANCES": [{"INSTANCE_ID": "a"}], "INSTANCE": []}]),
        f"{LOC} › plugin 'FRAME_STATS' › key 'INSTANCE': unknown key; did you mean 'INSTANCES'?",
    ),
    (
        "plugin listed twice",
        synthetic(
            PLUGINS=[
                {"SIGNATURE": "FRAME_STATS", "INSTANCES": [{"INSTANCE_ID": "a"}]},
                {"SIGNATURE": "frame_stats", "INSTANCES": [{"INSTANCE_ID": "b"}]},
            ]
        ),
        f"{LOC} › plugin 'frame_stats' › key 'SIGNATURE': plugin listed twice; put all its instances in one "
        "INSTANCES list",
    ),
    (
        "INSTANCES missing",
        synthetic(PLUGINS=[{"SIGNATURE": "FRAME_STATS"}]),
        f"{LOC} › plugin 'FRAME_STATS' › key 'INSTANCES': expected a non-empty list of instances",
    ),
    (
        "INSTANCES empty",
        synthetic(PLUGINS=[{"SIGNATURE": "FRAME_STATS", "INSTANCES": []}]),
        f"{LOC} › plugin 'FRAME_STATS' › key 'INSTANCES': expected a non-empty list of instances (got [])",
    ),
    (
        "INSTANCE_ID missing",
        stats({"REPORT_EVERY": 3}),
        f"{LOC} › plugin 'FRAME_STATS' › instance '#0' › key 'INSTANCE_ID': missing or invalid INSTANCE_ID; "
        f"{NAME_HINT}",
    ),
    (
        "INSTANCE_ID invalid",
        stats({"INSTANCE_ID": "a b"}),
        f"{LOC} › plugin 'FRAME_STATS' › instance '#0' › key 'INSTANCE_ID': missing or invalid INSTANCE_ID "
        f"(got 'a b'); {NAME_HINT}",
    ),
    (
        "duplicate INSTANCE_ID",
        stats({"INSTANCE_ID": "a"}, {"INSTANCE_ID": "a"}),
        f"{LOC} › plugin 'FRAME_STATS' › instance 'a' › key 'INSTANCE_ID': duplicate INSTANCE_ID",
    ),
    (
        "instance unknown key",
        stats({"INSTANCE_ID": "a", "PROCES_DELAY": 1}),
        f"{LOC} › plugin 'FRAME_STATS' › instance 'a' › key 'PROCES_DELAY': unknown key; did you mean 'PROCESS_DELAY'?",
    ),
    (
        "instance wrong type",
        stats({"INSTANCE_ID": "a", "PROCESS_DELAY": "5"}),
        f"{LOC} › plugin 'FRAME_STATS' › instance 'a' › key 'PROCESS_DELAY': expected number (got '5'); {QUOTES}",
    ),
    (
        "instance bool for an int",
        stats({"INSTANCE_ID": "a", "REPORT_EVERY": True}),
        f"{LOC} › plugin 'FRAME_STATS' › instance 'a' › key 'REPORT_EVERY': expected int (got True)",
    ),
    (
        "instance value below min",
        stats({"INSTANCE_ID": "a", "PROCESS_DELAY": -1}),
        f"{LOC} › plugin 'FRAME_STATS' › instance 'a' › key 'PROCESS_DELAY': must be >= 0 (got -1)",
    ),
    (
        "capture value above max",
        synthetic(WIDTH=10_000),
        f"{LOC} › plugin 'SYNTHETIC' › key 'WIDTH': must be <= 8192 (got 10000)",
    ),
    (
        "choices violation",
        synthetic(MODE="circles"),
        f"{LOC} › plugin 'SYNTHETIC' › key 'MODE': must be one of 'moving_box', 'static', 'noise', 'messages' "
        "(got 'circles')",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), [row[1:] for row in BAD_PIPELINES], ids=[r[0] for r in BAD_PIPELINES])
def test_bad_pipeline_reports_exact_line(registry: PluginRegistry, raw: Any, expected: str) -> None:
    spec, issues = validate_pipeline(copy.deepcopy(raw), registry, FILE)
    assert spec is None
    assert [str(i) for i in issues] == [expected]
    error = ConfigError(issues)
    assert str(error) == expected
    assert issues[0].to_dict()["text"] == expected


def test_several_errors_are_reported_at_once(registry: PluginRegistry) -> None:
    raw = {
        "NAME": "x",
        "TYPE": "VIDEO_FILE",
        "LOOP": "true",
        "SESION_ID": "s",
        "PLUGINS": [
            {"SIGNATURE": "FRAME_STATS", "INSTANCES": [{"INSTANCE_ID": "a", "PROCESS_DELAY": -1}, {"X": 1}]},
            {"SIGNATURE": "TEXT_DETECTER", "INSTANCES": [{"INSTANCE_ID": "b"}]},
            {"SIGNATURE": "MOTION_DETECTOR", "INSTANCES": [{"INSTANCE_ID": "c", "ON_FRAMES": 0}]},
        ],
    }
    spec, issues = validate_pipeline(raw, registry, FILE)
    assert spec is None
    lines = [str(i) for i in issues]
    assert lines == [
        f"{LOC} › plugin 'VIDEO_FILE' › key 'LOOP': expected bool (got 'true'); {QUOTES}",
        f"{LOC} › plugin 'VIDEO_FILE' › key 'SESION_ID': unknown key; did you mean 'SESSION_ID'?",
        f"{LOC} › plugin 'VIDEO_FILE' › key 'URL': missing required key (str); "
        "path to the video file; relative paths resolve against the current dir",
        f"{LOC} › plugin 'FRAME_STATS' › instance 'a' › key 'PROCESS_DELAY': must be >= 0 (got -1)",
        f"{LOC} › plugin 'FRAME_STATS' › instance '#1' › key 'INSTANCE_ID': missing or invalid INSTANCE_ID; "
        f"{NAME_HINT}",
        f"{LOC} › plugin 'TEXT_DETECTER' › key 'SIGNATURE': unknown business plugin (got 'TEXT_DETECTER'); "
        "did you mean 'TEXT_DETECTOR'?",
        f"{LOC} › plugin 'MOTION_DETECTOR' › instance 'c' › key 'ON_FRAMES': must be >= 1 (got 0)",
    ]
    # the issues carry their location as fields too (for the status page and the API)
    assert issues[3].to_dict() == {
        "file": FILE,
        "pipeline": "x",
        "plugin": "FRAME_STATS",
        "instance": "a",
        "key": "PROCESS_DELAY",
        "message": "must be >= 0",
        "hint": None,
        "text": lines[3],
    }


@pytest.mark.parametrize("type_name", ["VideoFile", "videofile", "VIDEOFILE", "video_file"])
def test_migrated_ratio1_pipeline_is_accepted_and_kept_untouched(registry: PluginRegistry, type_name: str) -> None:
    raw = {
        "NAME": "cam-1",
        "TYPE": type_name,
        "URL": "samples/demo.mp4",
        "LIVE_FEED": False,
        "RECONNECTABLE": "YES",
        "CAP_RESOLUTION": 5,
        "SESSION_ID": "sess-42",
        "INITIATOR_ADDR": "0xai_AkabcdEF",
        "INITIATOR_ID": "owner-box",
        "LAST_UPDATE_TIME": "2026-11-23 14:00:00.000000",
        "STREAM_CONFIG_METADATA": {"camera": {"vendor": "acme"}},
        "PLUGINS": [
            {
                "SIGNATURE": "motion_detector",
                "INSTANCES": [
                    {
                        "INSTANCE_ID": "DEFAULT",
                        "AI_ENGINE": "lowres_general_detector",
                        "WORKING_HOURS": [["08:00", "18:00"]],
                        "ALERT_MODE": "mean",
                        "ON_THRESHOLD": 0.05,
                    }
                ],
            }
        ],
    }
    original = copy.deepcopy(raw)
    spec, issues = validate_pipeline(raw, registry, FILE)
    assert issues == []
    assert spec is not None
    assert spec.capture.signature == "VIDEO_FILE"
    assert spec.raw == original  # every key kept as given, including the ones this node does not use
    assert spec.raw is not raw
    assert spec.capture_config["RECONNECTABLE"] == "YES"
    assert spec.capture_config["CAP_RESOLUTION"] == 5
    assert "SESSION_ID" not in spec.capture_config  # kept in raw, not handed to the plugin
    (instance,) = spec.instances
    assert instance.signature == "MOTION_DETECTOR"
    assert instance.config["AI_ENGINE"] == "lowres_general_detector"
    assert instance.config["ON_THRESHOLD"] == 0.05
    assert instance.overrides["WORKING_HOURS"] == [["08:00", "18:00"]]
    assert instance.overrides["ALERT_MODE"] == "mean"


# --- startup config -----------------------------------------------------------------------------------------
def _settings_error(tmp_path: Path, environ: dict[str, str], startup: Any = None) -> str:
    if startup is not None:
        text = startup if isinstance(startup, str) else json.dumps(startup)
        (tmp_path / ".config_startup.json").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, tmp_path / "cache", environ)
    return str(info.value)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"EE_DEMO": "maybe"},
            "environment › key 'EE_DEMO': expected true or false (1, true, yes, on or 0, false, no, off) "
            "(got 'maybe'); default: 1",
        ),
        ({"EE_SHUTDOWN_SECONDS": "abc"}, "environment › key 'EE_SHUTDOWN_SECONDS': expected a number (got 'abc'); "
         "default: 5"),
        ({"EE_SHUTDOWN_SECONDS": "0.1"}, "environment › key 'EE_SHUTDOWN_SECONDS': expected a number >= 0.5 "
         "(got '0.1'); default: 5"),
        ({"EE_LOG_LEVEL": "LOUD"}, "environment › key 'EE_LOG_LEVEL': expected DEBUG, INFO, WARNING or ERROR "
         "(got 'LOUD'); default: INFO"),
    ],
)  # fmt: skip
def test_invalid_environment_value_names_the_variable(tmp_path: Path, environ: dict[str, str], expected: str) -> None:
    assert _settings_error(tmp_path, environ) == expected


def test_startup_file_errors_are_all_reported_with_file_and_key(tmp_path: Path) -> None:
    text = _settings_error(tmp_path, {}, {"SHUTDOWN_SECOND": 5, "DEMO_PIPELINE": "false", "LOG_BACKUPS": -1})
    file = tmp_path / ".config_startup.json"
    assert text.splitlines() == [
        f"{file} › key 'SHUTDOWN_SECOND': unknown key; did you mean 'SHUTDOWN_SECONDS'?",
        f"{file} › key 'DEMO_PIPELINE': expected bool (got 'false'); {QUOTES}",
        f"{file} › key 'LOG_BACKUPS': must be >= 0 (got -1)",
    ]


def test_invalid_json_in_startup_file_names_the_file(tmp_path: Path) -> None:
    text = _settings_error(tmp_path, {}, '{"DEMO_PIPELINE": false,')
    assert text.startswith(f"{tmp_path / '.config_startup.json'}: is not valid JSON: ")
    assert "line 1" in text


def test_rejected_first_start_seeds_nothing_so_the_corrected_file_is_used(tmp_path: Path) -> None:
    _settings_error(tmp_path, {}, {"DEMO_PIPELINE": "no"})
    layout = CacheLayout(tmp_path / "cache")
    assert not layout.startup_config.exists()
    assert not layout.cache_version.exists()
    (tmp_path / ".config_startup.json").write_text('{"DEMO_PIPELINE": false}', encoding="utf-8")
    settings = load_settings(tmp_path, tmp_path / "cache", {})
    assert settings.first_start
    assert settings.startup["DEMO_PIPELINE"] is False
    assert json.loads(layout.startup_config.read_text(encoding="utf-8")) == {"DEMO_PIPELINE": False}


def test_environment_overrides_the_cached_startup_config(tmp_path: Path) -> None:
    (tmp_path / ".config_startup.json").write_text('{"SHUTDOWN_SECONDS": 7}', encoding="utf-8")
    settings = load_settings(tmp_path, tmp_path / "cache", {"EE_SHUTDOWN_SECONDS": "3", "EE_DEMO": "off"})
    assert settings.startup["SHUTDOWN_SECONDS"] == 3.0
    assert settings.startup["DEMO_PIPELINE"] is False
    # the environment is not written into the cache: the seed is the file as given
    assert json.loads(settings.layout.startup_config.read_text(encoding="utf-8")) == {"SHUTDOWN_SECONDS": 7}


def test_cache_of_a_newer_node_is_refused(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    layout.data.mkdir(parents=True)
    layout.cache_version.write_text("99\n", encoding="utf-8")
    with pytest.raises(CacheError) as info:
        load_settings(tmp_path, layout.root, {})
    message = str(info.value)
    assert "newer node" in message
    assert "cache format 99" in message
    assert str(layout.root) in message
    assert not layout.startup_config.exists()  # nothing was written into the refused cache


def test_unreadable_cache_version_is_refused(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    layout.data.mkdir(parents=True)
    layout.cache_version.write_text("v2\n", encoding="utf-8")
    with pytest.raises(CacheError, match="not a cache format number"):
        load_settings(tmp_path, layout.root, {})


# --- the node with one valid and one invalid pipeline -----------------------------------------------------------
def test_node_starts_valid_pipelines_and_reports_invalid_ones(node_factory: Any) -> None:
    good = synthetic_pipeline("good", "FRAME_STATS", {"INSTANCE_ID": "s", "REPORT_EVERY": 5}, CAP_RESOLUTION=50)
    bad = {
        "NAME": "bad",
        "TYPE": "SYNTHETIC",
        "PLUGINS": [{"SIGNATURE": "FRAME_STATS", "INSTANCES": [{"INSTANCE_ID": "s", "PROCES_DELAY": 1}]}],
    }
    node = node_factory(pipelines=[good, bad])
    assert set(node.pipelines) == {"good"}
    runner = node.pipelines["good"]
    wait_for(lambda: runner.instance("FRAME_STATS", "s").stats.outputs >= 2)

    snapshot = node.snapshot()
    assert [p["name"] for p in snapshot["pipelines"]] == ["good"]
    (invalid,) = snapshot["invalid_pipelines"]
    stream_file = node.layout.stream_file("bad")
    assert invalid["name"] == "bad"
    assert invalid["file"] == str(stream_file)
    assert invalid["errors"] == [
        f"{stream_file} › pipeline 'bad' › plugin 'FRAME_STATS' › instance 's' › key 'PROCES_DELAY': unknown key; "
        "did you mean 'PROCESS_DELAY'?"
    ]
    # kept on disk, untouched, so it starts once fixed (or once its plugin is installed)
    assert stream_file.parent == node.layout.root / "_data" / "box_configuration" / "streams"
    kept = json.loads(stream_file.read_text(encoding="utf-8"))
    assert kept["PLUGINS"] == bad["PLUGINS"]
    # the same refusal through the API changes nothing
    with pytest.raises(ConfigError, match="did you mean 'PROCESS_DELAY'"):
        node.add_pipeline(bad)
    assert "bad" not in node.pipelines
    assert node.snapshot()["invalid_pipelines"][0]["name"] == "bad"
