"""Plugin classes are checked when they load (decision 33): a malformed declaration fails that class alone.

A class whose ``CONFIG`` is not a mapping, whose keys are not UPPER_SNAKE, whose ``type=`` is not a type, or whose
default does not fit its own declaration is listed in ``plugins.failed`` with the reason; every other plugin and
pipeline runs, ``edge-node plugins``/``validate`` answer without a traceback, and a pipeline naming the failed
plugin is refused with that reason. The last test does it with ``python device.py`` and SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, EmitTap, wait_for, write_plugin
from node_runner import NodeRunner, base_env
from plugins_src import synthetic_pipeline

from edge_engine.api import BusinessPlugin, Key
from edge_engine.cli import plugins as plugins_cli
from edge_engine.cli import validate as validate_cli
from edge_engine.errors import PluginLoadError
from edge_engine.plugin.config_keys import check_value
from edge_engine.plugin.discovery import PluginLoader
from edge_engine.plugin.hooks import get_plugin_manager
from edge_engine.plugin.registry import PluginRegistry

BAD_TYPE = """
from edge_engine.api import BusinessPlugin, Key


class HookCheckBadConfig(BusinessPlugin):
    SIGNATURE = "HOOKCHECK_BAD_CONFIG"
    CONFIG = {"LEVEL": Key(5, type="float")}

    def process(self, inp):
        return {"LEVEL": self.config["LEVEL"]}
"""
LIST_CONFIG = """
from edge_engine.api import BusinessPlugin


class ListConfig(BusinessPlugin):
    SIGNATURE = "LIST_CONFIG"
    CONFIG = [("A", 1)]

    def process(self, inp):
        return None
"""
GOOD = """
from edge_engine.api import BusinessPlugin


class Counter(BusinessPlugin):
    SIGNATURE = "COUNTER"
    CONFIG = {"DARK_LEVEL": 0.5}

    def process(self, inp):
        return {"INDEX": inp.data["index"]} if inp is not None and inp.data else None
"""


def messages(name: str, signature: str, **instance: Any) -> dict[str, Any]:
    return synthetic_pipeline(name, signature, {"INSTANCE_ID": "i", **instance}, CAP_RESOLUTION=50)


def plugin_class(config: Any, **attrs: Any) -> type:
    return type("Declared", (BusinessPlugin,), {"SIGNATURE": "DECLARED", "CONFIG": config, **attrs})


@pytest.mark.parametrize(
    ("config", "attrs", "reason"),
    [
        ({"LEVEL": Key(5, type="float")}, {}, "type= must be a type or a tuple of types"),
        ({"LEVEL": Key(5, type=(int, "str"))}, {}, "type= must be a type or a tuple of types"),
        ([("A", 1)], {}, "CONFIG must be a dict"),
        ({"dark_level": 1}, {}, "key 'dark_level' is not UPPER_SNAKE"),
        ({1: 1}, {}, "key 1 is not UPPER_SNAKE"),
        ({"LEVEL": Key("high", type=int)}, {}, "default 'high' does not fit its own declaration: expected int"),
        ({"LEVEL": Key(5, type=int, min=10)}, {}, "default 5 does not fit its own declaration: must be >= 10"),
        ({"LEVEL": Key(5, max="9")}, {}, "max= must be a number"),
        ({"LEVEL": Key(5, min=9, max=1)}, {}, "min= 9 is above max= 1"),
        ({"MODE": Key("a", choices=5)}, {}, "choices= must be a tuple"),
        ({"MODE": Key("c", choices=("a", "b"))}, {}, "must be one of 'a', 'b'"),
        ({"LEVEL": 1}, {"ALIASES": "Declared"}, "ALIASES must be a tuple of names"),
    ],
)
def test_malformed_declarations_are_refused_with_the_reason(config: Any, attrs: dict[str, Any], reason: str) -> None:
    with pytest.raises(PluginLoadError) as caught:
        PluginRegistry().add(plugin_class(config, **attrs), "business/declared.py")
    assert reason in caught.value.reason and "DECLARED" in caught.value.reason


def test_well_formed_declarations_load() -> None:
    config = {
        "RATE": Key(80.0, type=float, min=0, max=100),
        "NAMES": Key(("a", "b"), doc="a tuple default is a list in the config"),
        "MODE": Key("a", choices=("a", "b")),
        "TOKEN": Key(type=str, required=True),
        "ANY": None,
        "PLAIN": 3,
    }
    assert PluginRegistry().add(plugin_class(config), "x").signature == "DECLARED"


def test_an_integer_is_a_valid_float() -> None:
    key = Key(80.0, type=float, min=0)
    assert check_value(key, 79) is None
    assert check_value(key, 79.5) is None
    assert check_value(key, True) == ("expected number", None)  # a boolean is not a number here
    assert check_value(key, "79")[0] == "expected number"
    assert check_value(Key(0, type=(float, str)), 3) is None


def test_the_node_runs_everything_else_and_lists_the_failure(node_factory: Any) -> None:
    node = node_factory(
        plugins={"business/hookcheck_bad_config.py": BAD_TYPE, "business/list_config.py": LIST_CONFIG,
                 "business/counter.py": GOOD},
        pipelines=[messages("bad", "HOOKCHECK_BAD_CONFIG", LEVEL=7.5), messages("good", "COUNTER", DARK_LEVEL=1)],
    )  # fmt: skip
    assert node.status == "running" and list(node.pipelines) == ["good"]
    wait_for(lambda: node.pipelines["good"].instances[("COUNTER", "i")].stats.outputs > 3)
    failed = node.snapshot()["plugins"]["failed"]
    bad = [f for f in failed if "hookcheck_bad_config" in json.dumps(f).lower()]
    assert len(bad) == 1 and "type= must be a type" in bad[0]["reason"], failed
    assert any("LIST_CONFIG" in f["reason"] and "CONFIG must be a dict" in f["reason"] for f in failed), failed
    [error] = node.invalid["bad"]["errors"]
    assert "unknown business plugin" in error and "the plugin failed to load" in error and "type=" in error


def test_plugins_listing_and_validate_answer_without_a_traceback(tmp_path: Path, capsys: Any) -> None:
    folder = tmp_path / "plugins"
    write_plugin(folder, "business/hookcheck_bad_config.py", BAD_TYPE)
    write_plugin(folder, "business/list_config.py", LIST_CONFIG)
    common = ["--plugin-folder", str(REPO / "extensions"), "--plugin-folder", str(folder), "--no-entry-points",
              "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert plugins_cli.main(common) == 1
    out = capsys.readouterr().out
    assert "failed to load" in out and "HOOKCHECK_BAD_CONFIG" in out and "LIST_CONFIG" in out
    pipeline = tmp_path / "bad.json"
    pipeline.write_text(json.dumps(messages("bad", "HOOKCHECK_BAD_CONFIG", LEVEL=7.5)), encoding="utf-8")
    assert validate_cli.main([str(pipeline), *common]) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text and "the plugin failed to load" in text, text


def test_a_node_process_keeps_running_and_stops_on_sigterm(tmp_path: Path) -> None:
    folder = tmp_path / "more_plugins"
    write_plugin(folder, "business/hookcheck_bad_config.py", BAD_TYPE)
    config = {"PLUGIN_FOLDERS": ["extensions", "plugins", str(folder)], "DEMO_PIPELINE": False,
              "SECONDS_LOCAL_INFO": 0.5, "PIPELINES": [messages("bad", "HOOKCHECK_BAD_CONFIG", LEVEL=1)]}  # fmt: skip
    runner = NodeRunner(tmp_path / "work", base_env(tmp_path / "cache"), config)
    try:
        runner.start()
        info = runner.wait_running(lambda i: bool(i["plugins"]["failed"]), timeout=30)
        assert "hookcheck_bad_config" in json.dumps(info["plugins"]["failed"]).lower()
        assert "bad" in {p["name"] for p in info["invalid_pipelines"]}
        code, seconds = runner.stop(signal.SIGTERM)
        assert code == 0 and seconds < 5.0, (code, seconds, runner.output()[-3000:])
    finally:
        runner.cleanup()


def test_a_bad_declaration_in_development_reload_keeps_the_old_version(node_factory: Any) -> None:
    good = GOOD.replace("COUNTER", "HOOKCHECK_BAD_CONFIG").replace("DARK_LEVEL", "LEVEL")
    pipelines = [messages("p", "HOOKCHECK_BAD_CONFIG", LEVEL=2)]
    node = node_factory(
        plugins={"business/hookcheck_bad_config.py": good}, pipelines=pipelines, environ={"EE_DEV": "1"}
    )
    node.reloader.stop()  # polled by hand below
    tap = EmitTap()
    node.pm.register(tap, name="test-tap")
    path = Path(node.settings.plugin_folders()[-1]) / "business" / "hookcheck_bad_config.py"
    path.write_text(BAD_TYPE, encoding="utf-8")
    stamp = path.stat().st_mtime_ns + 10_000_000
    os.utime(path, ns=(stamp, stamp))
    [report] = node.reloader.poll_once()
    assert not report.ok and "type= must be a type" in (report.error or "")
    failed = node.snapshot()["plugins"]["failed"]
    assert [f["name"] for f in failed] == ["hookcheck_bad_config.py"] and "keeps running" in failed[0]["reason"]
    [notice] = [n for n in tap.notifications if n.message.startswith("plugin reload failed")]
    assert notice.fields["file"] == "plugins/business/hookcheck_bad_config.py"  # no path of the node on the wire
    outputs = node.pipelines["p"].instances[("HOOKCHECK_BAD_CONFIG", "i")].stats.outputs
    wait_for(lambda: node.pipelines["p"].instances[("HOOKCHECK_BAD_CONFIG", "i")].stats.outputs > outputs + 2)


def test_misplaced_plugin_files_are_logged_with_why(tmp_path: Path, caplog: Any, capsys: Any) -> None:
    folder = tmp_path / "plugins"
    source = GOOD
    for relative in ("plugins/business/nested.py", "top.py", "buisness/typo.py", "lib/helper.py",
                     "business/group/sub/deep_ok.py", "lib/_private.py"):  # fmt: skip
        write_plugin(folder, relative, source.replace("COUNTER", Path(relative).stem.upper()))
    registry = PluginRegistry()
    with caplog.at_level(logging.INFO, logger="edge_engine.plugin.discovery"):
        PluginLoader(registry, get_plugin_manager()).load_folder(folder)
    assert [r.signature for r in registry.records()] == ["DEEP_OK"]  # any depth inside a kind folder loads
    lines = {r.getMessage() for r in caplog.records if "skipped" in r.getMessage()}
    assert lines == {
        "plugin file plugins/plugins/business/nested.py skipped: mounted too deep: expected at "
        "plugins/business/nested.py (plugin files go in data/, serving/, business/ of the plugin folder)",
        "plugin file plugins/top.py skipped: not inside a kind folder: move it to plugins/business/ (or data/, "
        "serving/)",
        "plugin file plugins/buisness/typo.py skipped: buisness/ is not a kind folder (data/, serving/, business/); "
        "did you mean business/?",
        "plugin file plugins/lib/helper.py skipped: lib/ is not a kind folder (data/, serving/, business/)",
    }
    assert not any(str(tmp_path) in line for line in lines)
    assert len(registry.skipped) == 4
    assert plugins_cli.main(["--plugin-folder", str(folder), "--no-entry-points", "--cache-dir",
                             str(tmp_path / "cache")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "not loaded (outside the kind folders):" in out and "plugins/buisness/typo.py: buisness/" in out


def test_a_kind_folder_given_as_the_plugin_folder_is_explained(tmp_path: Path, caplog: Any) -> None:
    write_plugin(tmp_path / "business", "counter.py", GOOD)
    with caplog.at_level(logging.INFO, logger="edge_engine.plugin.discovery"):
        PluginLoader(PluginRegistry(), get_plugin_manager()).load_folder(tmp_path / "business")
    assert "plugin file business/counter.py skipped: business/ is itself a kind folder: list its parent folder as " \
           "the plugin folder" in caplog.text  # fmt: skip


def test_a_misspelt_hook_fails_its_module_not_the_node(node_factory: Any) -> None:
    typo = """
from edge_engine.api import hookimpl


@hookimpl
def edge_paylod(payload):
    pass
"""
    node = node_factory(plugins={"business/typo_hook.py": typo, "business/counter.py": GOOD},
                        pipelines=[messages("good", "COUNTER")])  # fmt: skip
    assert node.status == "running" and list(node.pipelines) == ["good"]
    [failure] = node.snapshot()["plugins"]["failed"]
    assert failure["reason"] == "unknown hook 'edge_paylod'; did you mean 'edge_payload'?", failure
    assert "typo_hook" in failure["source"]


def test_a_class_that_breaks_the_checks_is_refused_with_the_reason(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "business/odd.py", """
from edge_engine.api import BusinessPlugin


class Odd(BusinessPlugin):
    SIGNATURE = "ODD"
    ALIASES = (1, 2)
""")  # fmt: skip
    registry = PluginRegistry()
    PluginLoader(registry, get_plugin_manager()).load_folder(tmp_path / "plugins")
    [failure] = registry.failures
    assert failure.signature == "ODD" and "ALIASES must be a tuple of names (got (1, 2))" in failure.reason


def test_a_declaration_that_raises_while_checked_fails_its_class_only(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "business/raising.py", """
from collections.abc import Mapping

from edge_engine.api import BusinessPlugin


class Exploding(Mapping):
    def __getitem__(self, key):
        raise KeyError(key)

    def __iter__(self):
        raise RuntimeError("no keys today")

    def __len__(self):
        return 1


class Raising(BusinessPlugin):
    SIGNATURE = "RAISING"
    CONFIG = Exploding()
""")  # fmt: skip
    registry = PluginRegistry()
    PluginLoader(registry, get_plugin_manager()).load_folder(tmp_path / "plugins")
    [failure] = registry.failures
    assert failure.reason == "class cannot be checked: RuntimeError: no keys today", failure
