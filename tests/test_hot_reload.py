"""Hot reload in development mode: an edited plugin file changes its instances only; a broken edit keeps the old.

A node runs with ``EE_DEV=1`` and three pipelines on synthetic messages: ``p1`` uses plugins A and B, ``p2`` uses
B only, ``p4`` has a capture plugin from a plugin file. Edits are picked up by ``reloader.poll_once()`` (the
same call the watcher thread makes every second), except in the last test, which lets the thread find them.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import EmitTap, wait_for

from edge_engine.node.core import Node

PLUGIN = """
    from edge_engine.api import BusinessPlugin

    class Plugin{sig}(BusinessPlugin):
        SIGNATURE = "{sig}"

        def process(self, inp):
            return {{"V": "{value}"}}
"""
SOURCE = """
    from edge_engine.api import CapturePlugin

    class Source(CapturePlugin):
        SIGNATURE = "RELOAD_SRC"
        CONFIG = {{"RATE_HINT": 1}}

        def read(self):
            self.context.stop_event.wait(0.01)
            return {{"SRC": "{value}"}}
"""


def messages(name: str, *signatures: str, capture: str = "SYNTHETIC") -> dict[str, Any]:
    extra = {"MODE": "messages", "CAP_RESOLUTION": 100} if capture == "SYNTHETIC" else {}
    return {"NAME": name, "TYPE": capture, **extra,
            "PLUGINS": [{"SIGNATURE": s, "INSTANCES": [{"INSTANCE_ID": "i"}]} for s in signatures]}  # fmt: skip


class Collector(EmitTap):
    """The node's payloads and notifications, and the latest value a plugin reported."""

    def latest(self, pipeline: str, signature: str) -> Any:
        for payload in reversed(self.payloads):
            if payload.path[1] == pipeline and payload.path[2] == signature:
                return payload.data.get("V", payload.data.get("SRC"))
        return None


def edit(path: Path, source: str) -> None:
    """Rewrite a plugin file; its mtime always moves forward (as an editor's save does)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    stamp = max(before + 10_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def dev_node(node_factory: Any) -> tuple[Node, Collector, Path]:
    plugins = {
        "business/a.py": PLUGIN.format(sig="RELOAD_A", value="a1"),
        "business/b.py": PLUGIN.format(sig="RELOAD_B", value="b1"),
        "data/source.py": SOURCE.format(value="s1"),
    }
    pipelines = [messages("p1", "RELOAD_A", "RELOAD_B"), messages("p2", "RELOAD_B"), messages("p3", "RELOAD_C"),
                 messages("p4", "RELOAD_B", capture="RELOAD_SRC")]  # fmt: skip
    node = node_factory(plugins=plugins, pipelines=pipelines, environ={"EE_DEV": "1"})
    collector = Collector()
    node.pm.register(collector, name="test-collector")
    folder = Path(node.settings.plugin_folders()[-1])
    node.reloader.stop()  # the tests poll themselves (the last one restarts the thread)
    wait_for(lambda: collector.latest("p1", "RELOAD_A") == "a1" and collector.latest("p4", "RELOAD_B"))
    return node, collector, folder


def test_an_edit_restarts_only_the_instances_using_the_plugin(dev_node: tuple[Node, Collector, Path]) -> None:
    node, collector, folder = dev_node
    assert node.reloader is not None and set(node.pipelines) == {"p1", "p2", "p4"} and "p3" in node.invalid
    p1, p2 = node.pipelines["p1"], node.pipelines["p2"]
    a_before, b_before, capture_before = p1.instance("RELOAD_A", "i"), p1.instance("RELOAD_B", "i"), p1.capture
    edit(folder / "business" / "a.py", PLUGIN.format(sig="RELOAD_A", value="a2"))
    [report] = node.reloader.poll_once()
    assert report.ok and report.reloaded == ["business:RELOAD_A"] and report.restarted == ["p1/RELOAD_A/i"]
    wait_for(lambda: collector.latest("p1", "RELOAD_A") == "a2")
    assert p1.instance("RELOAD_A", "i") is not a_before, "the instance runs a new object of the new class"
    assert p1.instance("RELOAD_B", "i") is b_before and p1.capture is capture_before, "the rest of p1 is untouched"
    assert node.pipelines["p1"] is p1 and node.pipelines["p2"] is p2 and p2.capture.stats.restarts == 0
    assert collector.latest("p2", "RELOAD_B") == "b1"
    assert any(n.message == "plugin file reloaded: a.py" for n in collector.notifications)
    assert node.reloader.poll_once() == [], "nothing changed since"


def test_a_broken_edit_keeps_the_old_version_and_reports_why(dev_node: tuple[Node, Collector, Path]) -> None:
    node, collector, folder = dev_node
    path = folder / "business" / "a.py"
    instance = node.pipelines["p1"].instance("RELOAD_A", "i")
    edit(path, PLUGIN.format(sig="RELOAD_A", value="a2").replace("def process(self, inp):", "def process(self, inp)"))
    [report] = node.reloader.poll_once()
    assert not report.ok and "SyntaxError" in (report.error or "") and "previous version keeps running" in report.error
    assert node.pipelines["p1"].instance("RELOAD_A", "i") is instance, "nothing was restarted"
    seen = len(collector.payloads)
    wait_for(lambda: len(collector.payloads) > seen + 5)
    assert collector.latest("p1", "RELOAD_A") == "a1", "the old version keeps running"
    note = next(n for n in collector.notifications if n.level == "error")
    assert note.message.startswith("plugin reload failed: a.py: import failed: SyntaxError")
    failed = node.snapshot()["plugins"]["failed"]
    assert [f["source"] for f in failed] == [str(path)] and "keeps running" in failed[0]["reason"]
    assert node.registry.get("business", "RELOAD_A") is not None

    # a second broken edit: a duplicate signature; the registry keeps the old class, nothing restarts
    edit(path, PLUGIN.format(sig="RELOAD_B", value="dup"))
    [report] = node.reloader.poll_once()
    assert not report.ok and "duplicate signature 'RELOAD_B'" in (report.error or "")
    assert node.registry.get("business", "RELOAD_A").source == str(path)
    assert node.pipelines["p1"].instance("RELOAD_A", "i") is instance

    # the fix: reloaded, restarted, failure cleared
    edit(path, PLUGIN.format(sig="RELOAD_A", value="a3"))
    [report] = node.reloader.poll_once()
    assert report.ok and report.restarted == ["p1/RELOAD_A/i"]
    wait_for(lambda: collector.latest("p1", "RELOAD_A") == "a3")
    assert node.snapshot()["plugins"]["failed"] == []


def test_a_pipeline_that_no_longer_validates_keeps_the_old_instance(dev_node: tuple[Node, Collector, Path]) -> None:
    node, collector, folder = dev_node
    instance = node.pipelines["p1"].instance("RELOAD_A", "i")
    source = PLUGIN.format(sig="RELOAD_A", value="a2").replace(
        'SIGNATURE = "RELOAD_A"', 'SIGNATURE = "RELOAD_A"\n        CONFIG = {"TOKEN": Key(required=True, type=str)}'
    )
    edit(folder / "business" / "a.py", "from edge_engine.api import Key\n" + textwrap.dedent(source))
    [report] = node.reloader.poll_once()
    assert report.ok and report.restarted == []
    assert node.pipelines["p1"].instance("RELOAD_A", "i") is instance
    note = next(n for n in collector.notifications if n.level == "error")
    assert note.path[1] == "p1" and "does not validate with the reloaded plugin" in note.message
    assert "key 'TOKEN': missing required key" in note.message


def test_a_new_file_starts_the_pipelines_that_waited_for_it(dev_node: tuple[Node, Collector, Path]) -> None:
    node, collector, folder = dev_node
    edit(folder / "business" / "c.py", PLUGIN.format(sig="RELOAD_C", value="c1"))
    [report] = node.reloader.poll_once()
    assert report.ok and report.started == ["p3"] and "p3" not in node.invalid
    wait_for(lambda: collector.latest("p3", "RELOAD_C") == "c1")
    (folder / "business" / "c.py").unlink()
    [report] = node.reloader.poll_once()
    assert node.registry.get("business", "RELOAD_C") is None
    assert "p3" in node.pipelines, "running users keep the old code until they restart"


def test_a_capture_plugin_edit_restarts_its_pipeline_only(dev_node: tuple[Node, Collector, Path]) -> None:
    node, collector, folder = dev_node
    p1, p4 = node.pipelines["p1"], node.pipelines["p4"]
    edit(folder / "data" / "source.py", SOURCE.format(value="s2"))
    [report] = node.reloader.poll_once()
    assert report.ok and report.restarted == ["p4"]
    assert node.pipelines["p4"] is not p4 and node.pipelines["p1"] is p1
    assert node.pipelines["p4"].spec.capture.cls is not p4.spec.capture.cls
    seen = len(collector.payloads)
    wait_for(lambda: any(p.path[1] == "p4" for p in collector.payloads[seen:]))
    assert p4.status() == "stopped" and node.pipelines["p4"].status() == "running"


def test_the_watcher_thread_finds_edits_by_itself(dev_node: tuple[Node, Collector, Path]) -> None:
    node, collector, folder = dev_node
    assert node.reloader is not None
    node.reloader.interval = 0.1
    node.reloader.start()
    edit(folder / "business" / "b.py", PLUGIN.format(sig="RELOAD_B", value="b2"))
    wait_for(lambda: collector.latest("p2", "RELOAD_B") == "b2", timeout=5)
    wait_for(lambda: collector.latest("p1", "RELOAD_B") == "b2", timeout=5)


def test_no_watcher_outside_development_mode(node_factory: Any) -> None:
    node = node_factory()
    assert node.reloader is None and node.settings.dev_mode is False
