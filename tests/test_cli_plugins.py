"""``edge-node plugins``: every plugin with its kind, source, version, config, methods and hooks; every failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, write_plugin

from edge_engine.cli import plugins

WITH_HOOK = """
    from edge_engine.api import BusinessPlugin, Key, hookimpl

    class Greeter(BusinessPlugin):
        SIGNATURE = "GREETER"
        VERSION = "2.1.0"
        DESCRIPTION = "says hi"
        CONFIG = {"WHO": Key("world", type=str, doc="who to greet"), "TIMES": Key(required=True, type=int, min=1)}

        def on_init(self):
            self.n = 0

        def process(self, inp):
            return {"HI": self.config["WHO"]}

    @hookimpl
    def edge_payload(payload):
        pass
"""
HOOKS_ONLY = """
    from edge_engine.api import hookimpl

    @hookimpl
    def edge_node_started(node_info):
        pass
"""
NO_SIGNATURE = """
    from edge_engine.api import BusinessPlugin

    class Nameless(BusinessPlugin):
        def process(self, inp):
            return None
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    write_plugin(folder, "business/greeter.py", WITH_HOOK)
    write_plugin(folder, "business/hooks_only.py", HOOKS_ONLY)
    return folder


def run(folder: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = plugins.main([*args, "--plugin-folder", str(REPO / "extensions"), "--plugin-folder", str(folder),
                         "--no-entry-points", "--cache-dir", str(folder.parent / "cache")])  # fmt: skip
    return code, capsys.readouterr().out


def test_listing_shows_config_methods_hooks_and_sources(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(project, capsys=capsys)
    assert code == 0, out
    assert "; 0 failed to load" in out.splitlines()[0]
    block = out.split("business GREETER")[1].split("\n\n")[0]
    assert block.splitlines()[0].endswith("v2.1.0  " + str(project / "business" / "greeter.py") + " › Greeter")
    assert "    says hi" in block
    assert "config: WHO = 'world' (str): who to greet" in block
    assert "TIMES required (int, >= 1)" in block
    assert "+ " in block and "base key(s): PROCESS_DELAY" in block
    assert "implements: on_init, process" in block
    assert "hooks: edge_payload" in block
    assert "data     VIDEO_FILE (alias VideoFile)  v1.0.0  " in out
    assert "hooks    " in out and "hooks_only.py" in out and "hooks: edge_node_started" in out


def test_failures_are_listed_with_reasons_and_exit_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_plugin(project, "business/broken.py", "raise RuntimeError('boom at import')\n")
    write_plugin(project, "business/zz_duplicate.py", WITH_HOOK.replace("class Greeter", "class Greeter2"))
    write_plugin(project, "business/nameless.py", NO_SIGNATURE)
    code, out = run(project, capsys=capsys)
    assert code == 1
    failed = out.split("failed to load:\n")[1]
    assert "broken.py › broken.py: import failed: RuntimeError: boom at import (line 1)" in failed
    assert "zz_duplicate.py › Greeter2: duplicate signature 'GREETER': already registered by" in failed
    assert "nameless.py › Nameless: class has no SIGNATURE" in failed
    assert "3 failed to load" in out.splitlines()[0]


def test_json_and_filters(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(project, "greeter", "videostream", "--json", capsys=capsys)
    listing = json.loads(out)
    assert code == 0
    assert [p["signature"] for p in listing["plugins"]] == ["VIDEO_STREAM", "GREETER"]
    greeter = listing["plugins"][1]
    assert greeter["kind"] == "business" and greeter["version"] == "2.1.0" and greeter["class"] == "Greeter"
    keys = {k["key"]: k for k in greeter["config"]}
    assert keys["WHO"] == {"key": "WHO", "type": "str", "required": False, "default": "world", "doc": "who to greet",
                           "inherited": False}  # fmt: skip
    assert keys["TIMES"]["required"] is True and keys["TIMES"]["min"] == 1 and "default" not in keys["TIMES"]
    assert keys["PROCESS_DELAY"]["inherited"] is True
    assert greeter["methods"] == ["on_init", "process"] and greeter["hooks"] == ["edge_payload"]
    _, out = run(project, "--kind", "data", "--json", capsys=capsys)
    assert {p["kind"] for p in json.loads(out)["plugins"]} == {"data"}


def test_all_shows_inherited_keys(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(project, "GREETER", "--all", capsys=capsys)
    assert "PROCESS_DELAY = 0.0 (number, >= 0): minimum seconds between two process() calls" in out
    assert "base key(s)" not in out
