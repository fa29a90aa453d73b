"""``edge-node validate``: every problem of a project at once, in the located form, exit 0/1, ``--json``, no writes.

A project is built in ``tmp_path``: a startup config, an app config, a plugin folder, pipeline files in
``pipelines/`` and in the cache's ``streams/``. One broken project holds one error of every class the
validator reports (from the startup and app configs, the environment, JSON syntax, pipeline structure,
capture and instance keys, plugin loading, the cache) and the test checks each rendered line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, write_plugin

from edge_engine.cli import main as edge_node
from edge_engine.cli import validate

HELLO = """
    from edge_engine.api import BusinessPlugin, Key

    class Hello(BusinessPlugin):
        SIGNATURE = "HELLO"
        CONFIG = {"EVERY": Key(2, type=int, min=1, doc="every"), "NEEDED": Key(required=True, type=str)}

        def process(self, inp):
            return {"OK": True}
"""
GOOD_PIPELINE = {
    "NAME": "good", "TYPE": "SYNTHETIC", "COUNT": 3,
    "PLUGINS": [{"SIGNATURE": "HELLO", "INSTANCES": [{"INSTANCE_ID": "h1", "NEEDED": "x"}]}],
}  # fmt: skip


def make_project(tmp_path: Path, startup: dict[str, Any] | None = None, app: dict[str, Any] | None = None) -> Path:
    base = tmp_path / "project"
    write_plugin(base / "plugins", "business/hello.py", HELLO)
    config = {"PLUGIN_FOLDERS": [str(REPO / "extensions"), "plugins"], "DEMO_PIPELINE": False, **(startup or {})}
    (base / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
    (base / ".config_app.json").write_text(json.dumps(app or {}), encoding="utf-8")
    (base / "pipelines").mkdir()
    return base


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def run(base: Path, *args: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        env: dict[str, str] | None = None) -> tuple[int, str]:  # fmt: skip
    monkeypatch.chdir(base)
    for name in ("EE_CONFIG", "EE_APP_CONFIG", "EE_CACHE_DIR", "EE_DISABLED_PLUGINS", "EE_DEV"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    code = validate.main([*args, "--cache-dir", str(base / "cache"), "--no-entry-points"])
    return code, capsys.readouterr().out


def test_a_valid_project_passes_with_its_plan_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_project(tmp_path)
    write_json(base / "pipelines" / "good.json", GOOD_PIPELINE)
    before = sorted(p.relative_to(base) for p in base.rglob("*") if "__pycache__" not in p.parts)
    code, out = run(base, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, out
    assert "ok: pipelines/good.json › 'good': SYNTHETIC → HELLO[h1]" in out
    assert out.strip().splitlines()[-1].startswith("OK: checked startup config (.config_startup.json)")
    after = sorted(p.relative_to(base) for p in base.rglob("*") if "__pycache__" not in p.parts)
    assert after == before, "validate must not create the cache, a key or any file"


BROKEN_LINES = [
    # startup config, app config, environment
    ".config_startup.json › key 'SECONDS_HEARTBEAT': expected number (got '10'); remove the quotes: JSON numbers "
    "and booleans are written without them",
    ".config_startup.json › key 'LOG_LEVL': unknown key; did you mean 'LOG_LEVEL'?",
    ".config_app.json › key 'COMUNICATION': unknown key; did you mean 'COMMUNICATION'?",
    "environment › key 'EE_SHUTDOWN_SECONDS': expected a number (got 'soon')",
    # plugin loading
    "plugins/business/broken.py › plugin 'broken.py': plugin failed to load: import failed: ModuleNotFoundError: "
    "No module named 'not_installed_anywhere' (line 1)",
    "plugins/business/zdup.py › plugin 'Dup': plugin failed to load: duplicate signature 'HELLO': already "
    "registered by",
    # JSON syntax and structure
    "pipelines/syntax.json: is not valid JSON: Expecting ',' delimiter: line 1 column 14 (char 13)",
    "pipelines/list.json: a pipeline must be a JSON object (got 'int')",
    "pipelines/structure.json › key 'NAME': invalid pipeline name (got 'bad name!'); use 1-64 letters",
    "pipelines/structure.json › pipeline 'bad name!' › key 'TYPE': unknown capture plugin (got 'SYNTHETC'); "
    "did you mean 'SYNTHETIC'?",
    "pipelines/structure.json › pipeline 'bad name!' › key 'PLUGINS': expected a list of plugins (got {})",
    # capture keys
    "pipelines/keys.json › pipeline 'keys' › plugin 'SYNTHETIC' › key 'PLUGIN': unknown key; did you mean 'PLUGINS'?",
    "pipelines/keys.json › pipeline 'keys' › plugin 'SYNTHETIC' › key 'WIDTH': must be >= 8 (got 2)",
    "pipelines/keys.json › pipeline 'keys' › plugin 'SYNTHETIC' › key 'MODE': must be one of",
    # plugins and instances
    "pipelines/instances.json › pipeline 'inst' › plugin 'HELO' › key 'SIGNATURE': unknown business plugin "
    "(got 'HELO'); did you mean 'HELLO'?",
    "pipelines/instances.json › pipeline 'inst' › plugin '#1' › key 'SIGNATURE': missing or invalid SIGNATURE",
    "pipelines/instances.json › pipeline 'inst' › plugin 'HELLO' › instance 'a' › key 'EVRY': unknown key; "
    "did you mean 'EVERY'?",
    "pipelines/instances.json › pipeline 'inst' › plugin 'HELLO' › instance 'a' › key 'NEEDED': missing required key",
    "pipelines/instances.json › pipeline 'inst' › plugin 'HELLO' › instance 'a' › key 'INSTANCE_ID': duplicate "
    "INSTANCE_ID",
    "pipelines/instances.json › pipeline 'inst' › plugin 'HELLO' › instance '#2' › key 'INSTANCE_ID': missing or "
    "invalid INSTANCE_ID",
    "pipelines/instances.json › pipeline 'inst' › plugin 'FRAME_STATS' › key 'INSTANCES': expected a non-empty list",
    # the cache
    "cache/_data/box_configuration/streams/good.json › pipeline 'good' › key 'NAME': duplicate pipeline NAME "
    "(also defined in cache/_data/box_configuration/streams/copy.json)",
]


def broken_project(tmp_path: Path) -> Path:
    base = make_project(tmp_path, startup={"SECONDS_HEARTBEAT": "10", "LOG_LEVL": "INFO"},
                        app={"COMUNICATION": {}})  # fmt: skip
    write_plugin(base / "plugins", "business/broken.py", "import not_installed_anywhere\n")
    write_plugin(base / "plugins", "business/zdup.py", HELLO.replace("class Hello", "class Dup"))
    pipes = base / "pipelines"
    write_json(pipes / "syntax.json", '{"NAME": "x" "TYPE": 1}')
    write_json(pipes / "list.json", [GOOD_PIPELINE | {"NAME": "in-list"}, 5])
    write_json(pipes / "structure.json", {"NAME": "bad name!", "TYPE": "SYNTHETC", "PLUGINS": {}})
    write_json(pipes / "keys.json", {"NAME": "keys", "TYPE": "SYNTHETIC", "PLUGIN": [], "WIDTH": 2, "MODE": "dots",
                                     "PLUGINS": []})  # fmt: skip
    hello_instances = [{"INSTANCE_ID": "a", "EVRY": 2}, {"INSTANCE_ID": "a", "NEEDED": "x"}, {"INSTANCE_ID": ""}]
    write_json(pipes / "instances.json", {"NAME": "inst", "TYPE": "SYNTHETIC", "PLUGINS": [
        {"SIGNATURE": "HELO", "INSTANCES": [{"INSTANCE_ID": "x"}]},
        {"INSTANCES": []},
        {"SIGNATURE": "HELLO", "INSTANCES": hello_instances},
        {"SIGNATURE": "FRAME_STATS", "INSTANCES": []},
    ]})  # fmt: skip
    streams = base / "cache" / "_data" / "box_configuration" / "streams"
    write_json(streams / "good.json", GOOD_PIPELINE)
    write_json(streams / "copy.json", GOOD_PIPELINE)
    return base


def test_every_error_class_is_reported_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = broken_project(tmp_path)
    code, out = run(base, monkeypatch=monkeypatch, capsys=capsys, env={"EE_SHUTDOWN_SECONDS": "soon"})
    assert code == 1
    lines = out.splitlines()
    missing = [expected for expected in BROKEN_LINES if not any(line.startswith(expected) for line in lines)]
    assert not missing, "\n".join(["missing:", *missing, "output:", out])
    assert "warning: cache/_data/box_configuration/streams/copy.json holds pipeline 'good'" in out
    assert "ok: pipelines/list.json › 'in-list': SYNTHETIC → HELLO[h1]" in out
    problems = [line for line in lines[:-1] if not line.startswith(("ok: ", "warning: "))]
    assert lines[-1].startswith(
        f"{len(problems)} problem(s): checked startup config (.config_startup.json), "
        "app config (.config_app.json), 7 pipeline source(s)"
    )


def test_json_output_lists_every_issue_with_its_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = broken_project(tmp_path)
    code, out = run(base, "--json", monkeypatch=monkeypatch, capsys=capsys)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    unknown = next(i for i in report["issues"] if i["key"] == "EVRY")
    assert unknown == {
        "file": "pipelines/instances.json", "pipeline": "inst", "plugin": "HELLO", "instance": "a", "key": "EVRY",
        "message": "unknown key", "hint": "did you mean 'EVERY'?", "text": unknown["text"],
    }  # fmt: skip
    checked = {p["file"]: p["ok"] for p in report["checked"]["pipelines"]}
    assert checked["cache/_data/box_configuration/streams/good.json"] is True
    assert checked["pipelines/keys.json"] is False
    assert report["checked"]["plugins_loaded"] >= 6


def test_files_given_are_the_only_pipelines_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_project(tmp_path)
    write_json(base / "pipelines" / "bad.json", {"NAME": "bad", "TYPE": "NOPE", "PLUGINS": []})
    good = write_json(tmp_path / "elsewhere" / "good.json", GOOD_PIPELINE)
    code, out = run(base, str(good), monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, out
    assert "1 pipeline source(s)" in out and "NOPE" not in out


def test_startup_pipelines_and_a_newer_cache_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_project(tmp_path, startup={"PIPELINES": ["missing.json", {"NAME": "inline", "TYPE": "VOID",
                                                                          "PLUGINS": [], "FPS": 3}]})  # fmt: skip
    write_json(base / "cache" / "_data" / "cache_version", "99\n")
    code, out = run(base, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1
    assert "missing.json: does not exist" in out
    assert "startup config › PIPELINES[1] › pipeline 'inline' › plugin 'VOID' › key 'FPS': unknown key" in out
    assert "was written by a newer node (cache format 99" in out


def test_console_script_and_cmds_executable(tmp_path: Path) -> None:
    base = make_project(tmp_path)
    write_json(base / "pipelines" / "good.json", GOOD_PIPELINE)
    args = ["--cache-dir", str(base / "cache"), "--no-entry-points"]
    done = subprocess.run([sys.executable, str(REPO / "cmds" / "validate"), *args], cwd=base, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: checked" in done.stdout
    assert edge_node(["nonsense"]) == 2


def test_bad_settings_are_listed_as_the_node_says_them_with_their_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every group of ``EE_*`` settings (node, comms, status page, disk, storage) and a bad app config value, in the
    schema's one form; validate goes on with the defaults and says which."""
    base = make_project(tmp_path, app={"COMMUNICATION": {"PARAMS": {"PORT": 70000}}})
    env = {"EE_DEMO": "maybe", "EE_MQTT_TLS": "sure", "EE_STATUS_PORT": "99999", "EE_OUTPUT_MAX_MB": "lots",
           "EE_MINIO_URL_EXPIRY": "0"}  # fmt: skip
    code, out = run(base, "--json", monkeypatch=monkeypatch, capsys=capsys, env=env)
    assert code == 1
    issues = {i["key"]: i for i in json.loads(out)["issues"] if i["file"] != "pipelines/good.json"}
    assert {key: issue["hint"] for key, issue in issues.items()} == {
        "EE_DEMO": "default: 1", "EE_MQTT_TLS": "default: 0", "EE_STATUS_PORT": "default: 8089",
        "EE_OUTPUT_MAX_MB": "default: 1024", "EE_MINIO_URL_EXPIRY": "default: 604800", "PORT": "default: 1883",
    }  # fmt: skip
    assert issues["PORT"]["text"] == (".config_app.json › COMMUNICATION › PARAMS › key 'PORT': expected a whole "
                                      "number from 1 to 65535 (got 70000); default: 1883")  # fmt: skip
    assert {issue["file"] for key, issue in issues.items() if key.startswith("EE_")} == {"environment"}
