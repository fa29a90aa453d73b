"""The plugin authors' pytest plugin (``edge_engine.testing``) and its harness (``edge_engine.testing.harness``).

Most tests use the ``plugin_harness`` fixture directly, as a plugin author's test would; one runs pytest in a
fresh project to show the fixtures arrive through the ``pytest11`` entry point with nothing else configured,
and one checks that the plugin module costs pytest's start-up nothing (no engine import, no numpy).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edge_engine.api import BusinessPlugin, CapturePlugin, Input, Key
from edge_engine.errors import ConfigError
from edge_engine.testing.harness import PluginFailed, PluginHarness


class Painter(BusinessPlugin):
    """Emits a witness image for bright inputs, notifies on dark ones, refuses a negative LEVEL."""

    SIGNATURE = "TEST_PAINTER"
    CONFIG: ClassVar[dict[str, Any]] = {"LEVEL": Key(100, type=int, doc="brightness threshold")}

    def on_init(self) -> None:
        if self.config.get("LEVEL") == 999:
            raise RuntimeError("cannot start with LEVEL 999")
        self.count = 0

    def process(self, inp: Input | None) -> dict[str, Any] | None:
        self.count += 1
        if inp is None:
            return {"TICK": True}
        if inp.data is not None:
            return {"DATA": inp.data, "META": inp.metadata}
        if inp.image.mean() == 13:
            raise ValueError("unlucky frame")
        if inp.image.mean() >= self.config["LEVEL"]:
            self.emit({"BRIGHT": True}, image=inp.image)
        else:
            self.notify("dark input", level="warning", seq=inp.seq)
        return None

    def on_config(self, changed: dict[str, Any]) -> None:
        if changed.get("LEVEL", 0) < 0:
            raise ValueError("LEVEL must not be negative")

    def on_command(self, command: Any, **params: Any) -> Any:
        if command == "FAIL":
            raise KeyError("no such thing")
        return {"count": self.count, **params}


class Broken(CapturePlugin):
    SIGNATURE = "TEST_BROKEN_SOURCE"

    def read(self) -> Any:
        raise OSError("device unplugged")


def frame(value: int) -> np.ndarray:
    return np.full((32, 48, 3), value, np.uint8)


def test_payloads_images_notifications_and_metadata(plugin_harness: PluginHarness) -> None:
    meta = Input(data={"k": 1}, metadata={"file": "x.json"})
    result = plugin_harness.run(Painter, {"LEVEL": 100}, [frame(200), frame(10), meta])
    assert result.inputs == 3 and result.errors == []
    assert result.data == [{"BRIGHT": True}, {"DATA": {"k": 1}, "META": {"file": "x.json"}}]
    bright = result.payloads[0]
    assert bright.input_seq == 1 and "BRIGHT" in bright and bright.get("NOPE") is None
    assert bright.image.shape == (32, 48, 3) and abs(float(bright.image.mean()) - 200) < 2
    warning = next(n for n in result.notifications if n.message == "dark input")
    assert warning.level == "warning" and warning.fields == {"seq": 2}
    assert warning.path == ["harness", "harness", "TEST_PAINTER", "test"]


def test_an_exception_in_process_fails_the_test_with_the_plugin_traceback(plugin_harness: PluginHarness) -> None:
    with pytest.raises(PluginFailed, match=r"process raised ValueError: unlucky frame \(input #2\)") as info:
        plugin_harness.run(Painter, {}, [frame(200), frame(13), frame(200)])
    assert isinstance(info.value.__cause__, ValueError)
    assert 'raise ValueError("unlucky frame")' in info.value.error.traceback
    result = plugin_harness.run(Painter, {}, [frame(200), frame(13), frame(200)], raise_errors=False)
    assert [str(e) for e in result.errors] == ["process raised ValueError: unlucky frame (input #2)"]
    assert len(result.payloads) == 2, "the instance goes on with the next input, as in the node"


class ListReturner(BusinessPlugin):
    """Returns a list from process(): the harness reports it as the node does."""

    SIGNATURE = "TEST_LIST_RETURNER"

    def process(self, inp: Input | None) -> Any:
        return [("COUNT", 1)]


def test_a_process_result_that_is_not_a_dict_fails_as_in_the_node(plugin_harness: PluginHarness) -> None:
    with pytest.raises(PluginFailed, match=r"process\(\) must return a dict or None \(got list\)"):
        plugin_harness.run(ListReturner, inputs=[np.zeros((4, 4, 3), np.uint8)])


def test_on_init_failure_is_reported_without_waiting_for_retries(plugin_harness: PluginHarness) -> None:
    with pytest.raises(PluginFailed, match="on_init raised RuntimeError: cannot start with LEVEL 999"):
        plugin_harness.run(Painter, {"LEVEL": 999}, [frame(1)], timeout=5)


def test_config_is_validated_as_the_node_validates_it(plugin_harness: PluginHarness) -> None:
    with pytest.raises(ConfigError) as info:
        plugin_harness.run(Painter, {"LEVL": 3, "PROCESS_DELAY": "1"})
    text = str(info.value)
    assert "test › pipeline 'harness' › plugin 'TEST_PAINTER' › instance 'test' › key 'LEVL': unknown key; " \
        "did you mean 'LEVEL'?" in text  # fmt: skip
    assert "key 'PROCESS_DELAY': expected number (got '1'); remove the quotes" in text
    with pytest.raises(LookupError, match="no business plugin 'TUTORIAL_HELO'; did you mean 'TUTORIAL_HELLO'"):
        plugin_harness.run("TUTORIAL_HELO")


def test_session_live_updates_and_commands(plugin_harness: PluginHarness) -> None:
    with plugin_harness.start(Painter, {"LEVEL": 100}) as session:
        assert session.feed(frame(50)) == []
        session.update_config(LEVEL=40)
        assert session.config["LEVEL"] == 40
        assert [p.data for p in session.feed(frame(50))] == [{"BRIGHT": True}]
        assert session.command("COUNT", extra=1) == {"count": 2, "extra": 1}
        with pytest.raises(KeyError):
            session.command("FAIL")
        with pytest.raises(PluginFailed, match="on_config raised ValueError: LEVEL must not be negative"):
            session.update_config({"LEVEL": -1})
        assert session.config["LEVEL"] == 40, "a refused update is rolled back"
        with pytest.raises(ConfigError, match="key 'LEVEL': expected int"):
            session.update_config(LEVEL="high")
        result = session.finish()
    assert result.inputs == 2 and len(result.payloads) == 1


def test_timers_run_in_a_session(plugin_harness: PluginHarness) -> None:
    with plugin_harness.start(Painter, {"ALLOW_EMPTY_INPUTS": True, "PROCESS_DELAY": 0.02}) as session:
        session.wait(0.3)
        ticks = [p for p in session.result.payloads if p.get("TICK")]
    assert len(ticks) >= 3


def test_run_capture_records_a_failing_source(plugin_harness: PluginHarness) -> None:
    with pytest.raises(PluginFailed, match="read raised OSError: device unplugged"):
        plugin_harness.run_capture(Broken)
    result = plugin_harness.run_capture(Broken, raise_errors=False)
    assert result.inputs == [] and not result.finished
    assert any(n.message.startswith("capture failed: OSError") for n in result.notifications)
    frames = plugin_harness.run_capture("SYNTHETIC", {"WIDTH": 16, "HEIGHT": 8, "COUNT": 2})
    assert [i.image.shape for i in frames.inputs] == [(8, 16, 3), (8, 16, 3)] and frames.finished


def test_the_fixture_module_imports_nothing_heavy() -> None:
    code = "import sys, edge_engine.testing; print(sorted(m for m in sys.modules if m.startswith(('edge_engine', " \
           "'numpy', 'cv2'))))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.strip() == "['edge_engine', 'edge_engine.testing']"


def test_a_plugin_authors_project_gets_the_fixtures_from_the_entry_point(tmp_path: Path) -> None:
    (tmp_path / "plugins" / "business").mkdir(parents=True)
    (tmp_path / "plugins" / "business" / "shout.py").write_text(textwrap.dedent("""
        from edge_engine.api import BusinessPlugin

        class Shout(BusinessPlugin):
            SIGNATURE = "SHOUT"
            CONFIG = {"WORD": "hey"}

            def process(self, inp):
                return {"SAID": self.config["WORD"].upper(), "N": inp.data["n"]}
    """))  # fmt: skip
    (tmp_path / "plugins" / "business" / "test_shout.py").write_text(textwrap.dedent("""
        def test_shout(plugin_harness, edge_plugin_registry, edge_pm):
            result = plugin_harness.run("SHOUT", config={"WORD": "yo"}, inputs=[{"n": 1}, {"n": 2}])
            assert result.data == [{"SAID": "YO", "N": 1}, {"SAID": "YO", "N": 2}]
            assert edge_plugin_registry.get("business", "shout") is not None
            assert edge_pm.hook.edge_payload.get_hookimpls() == []
    """))  # fmt: skip
    (tmp_path / "pytest.ini").write_text("[pytest]\nedge_plugin_folders = plugins\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_examples_in_docs_testing_plugins_pass(plugin_harness: PluginHarness) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "testing-plugins.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "docs/testing-plugins.md", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 3
    for test in tests:
        test(plugin_harness)
