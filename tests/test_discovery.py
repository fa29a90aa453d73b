"""Plugin discovery: folders, entry points, and every way a plugin module can be wrong.

A plugin is a file dropped under ``plugins/<kind>/`` (any depth); a broken file is recorded with its name and
line while everything else loads. The engine package itself never imports ``extensions/`` or ``plugins/``, and
plugin modules import only :mod:`edge_engine.api` from the engine.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import write_plugin

from edge_engine.config.pipelines import validate_pipeline
from edge_engine.constants import KIND_BUSINESS, KIND_CAPTURE, KIND_SERVING
from edge_engine.plugin.discovery import PluginLoader
from edge_engine.plugin.hooks import get_plugin_manager
from edge_engine.plugin.registry import PluginRegistry

REPO = Path(__file__).resolve().parent.parent
BUILTINS = {
    KIND_CAPTURE: {"HTTP_POLL", "IMAGE_FOLDER", "MQTT_TOPIC", "SYNTHETIC", "VIDEO_FILE", "VIDEO_STREAM", "VOID"},
    KIND_BUSINESS: {
        "FRAME_STATS",
        "MOTION_DETECTOR",
        "OBJECT_COUNTER",
        "OBJECT_DETECTOR",
        "TEXT_DETECTOR",
        "TEXT_READER",
        "ZONE_ALERT",
    },
    KIND_SERVING: {"ONNX", "PP_OCR_DETECTOR", "PP_OCR_DIRECTION", "PP_OCR_LINES", "PP_OCR_RECOGNIZER", "YOLO"},
}


def business(signature: str, class_name: str = "Plugin", extra: str = "") -> str:
    return f"""
        from edge_engine.api import BusinessPlugin

        class {class_name}(BusinessPlugin):
            SIGNATURE = {signature!r}
            {extra}
            def process(self, inp):
                return None
        """


def load(folder: Path, disabled: tuple[str, ...] = ()) -> tuple[PluginRegistry, PluginLoader]:
    registry = PluginRegistry()
    loader = PluginLoader(registry, get_plugin_manager(), disabled)
    loader.load_folder(folder)
    return registry, loader


def signatures(registry: PluginRegistry, kind: str) -> set[str]:
    return {r.signature for r in registry.records(kind)}


def test_builtin_plugins_are_found_in_extensions() -> None:
    registry, _ = load(REPO / "extensions")
    assert registry.failures == []
    for kind, expected in BUILTINS.items():
        assert signatures(registry, kind) == expected
    record = registry.get(KIND_CAPTURE, "VIDEO_FILE")
    assert record is not None
    assert record.source == str(REPO / "extensions" / "data" / "video_file.py")
    assert record.version


def test_dropping_a_file_is_all_it_takes(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    registry, _ = load(folder)
    assert registry.records() == []

    shallow = write_plugin(folder, "business/tutorials/my_hello.py", business("MY_HELLO"))
    deep = write_plugin(folder, "business/a/b/c/deep_thing.py", business("DEEP_THING", "Deep"))
    source = write_plugin(
        folder,
        "data/tutorials/ticks.py",
        """
        from edge_engine.api import CapturePlugin

        class Ticks(CapturePlugin):
            SIGNATURE = "TICKS"
            def read(self):
                return {"tick": 1}
        """,
    )
    registry, loader = load(folder)
    assert registry.failures == []
    assert registry.get(KIND_BUSINESS, "MY_HELLO").source == str(shallow)
    assert registry.get(KIND_BUSINESS, "DEEP_THING").source == str(deep)
    assert registry.get(KIND_CAPTURE, "TICKS").source == str(source)
    assert registry.get(KIND_BUSINESS, "TICKS") is None  # kinds do not mix
    assert loader.modules[str(deep)].__name__ == "edge_plugins.plugins.business.a.b.c.deep_thing"

    # and a pipeline can use them at once
    raw = {"NAME": "p", "TYPE": "ticks", "PLUGINS": [{"SIGNATURE": "my_hello", "INSTANCES": [{"INSTANCE_ID": "i"}]}]}
    spec, issues = validate_pipeline(raw, registry)
    assert issues == []
    assert spec is not None and spec.capture.signature == "TICKS"


def test_broken_modules_are_recorded_and_the_rest_loads(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    good = write_plugin(folder, "business/good.py", business("GOOD"))
    syntax = write_plugin(folder, "business/broken_syntax.py", "x = 1\n\ndef oops(:\n    pass\n")
    raising = write_plugin(folder, "business/raises.py", "import os\n\nraise RuntimeError('no GPU here')\n")
    exiting = write_plugin(folder, "data/exits.py", "import sys\nsys.exit(3)\n")
    missing = write_plugin(folder, "business/needs_lib.py", "import not_an_installed_lib_xyz\n")
    after = write_plugin(folder, "business/zz_after.py", business("AFTER"))

    registry, _ = load(folder)
    assert signatures(registry, KIND_BUSINESS) == {"GOOD", "AFTER"}
    assert registry.get(KIND_BUSINESS, "GOOD").source == str(good)
    assert registry.get(KIND_BUSINESS, "AFTER").source == str(after)
    failures = {f.source: f for f in registry.failures}
    assert set(failures) == {str(syntax), str(raising), str(exiting), str(missing)}

    assert failures[str(syntax)].name == "broken_syntax.py"
    assert failures[str(syntax)].reason.startswith("import failed: SyntaxError: ")
    assert failures[str(syntax)].reason.endswith("(line 3)")
    assert failures[str(raising)].reason == "import failed: RuntimeError: no GPU here (line 3)"
    assert failures[str(exiting)].reason == "import failed: SystemExit: 3 (line 2)"
    assert "ModuleNotFoundError" in failures[str(missing)].reason
    assert "not_an_installed_lib_xyz" in failures[str(missing)].reason
    # rendered as "file › name: reason"
    assert str(failures[str(raising)]) == f"{raising} › raises.py: import failed: RuntimeError: no GPU here (line 3)"
    # a failed module leaves nothing half-imported behind
    assert "edge_plugins.plugins.business.raises" not in sys.modules


def test_class_without_signature_is_recorded_by_file_and_class(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    path = write_plugin(
        folder,
        "business/forgot.py",
        """
        from edge_engine.api import BusinessPlugin

        class Forgot(BusinessPlugin):
            def process(self, inp):
                return None

        class BadName(BusinessPlugin):
            SIGNATURE = "has space"
            def process(self, inp):
                return None

        class Fine(BusinessPlugin):
            SIGNATURE = "FINE"
            def process(self, inp):
                return None
        """,
    )
    registry, _ = load(folder)
    assert signatures(registry, KIND_BUSINESS) == {"FINE"}
    by_name = {f.name: f for f in registry.failures}
    assert set(by_name) == {"Forgot", "BadName"}
    assert by_name["Forgot"].source == str(path)
    assert "no SIGNATURE" in by_name["Forgot"].reason
    assert "ABSTRACT = True" in by_name["Forgot"].reason
    assert "invalid SIGNATURE 'has space'" in by_name["BadName"].reason


def test_duplicate_signature_names_both_files_and_keeps_the_first(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    first = write_plugin(folder, "business/a_echo.py", business("echo", "EchoOne"))
    second = write_plugin(folder, "business/b_echo.py", business("ECHO", "EchoTwo"))
    alias = write_plugin(folder, "business/c_alias.py", business("OTHER", "Other", extra="ALIASES = ('Echo',)"))
    registry, _ = load(folder)

    record = registry.get(KIND_BUSINESS, "Echo")
    assert record.source == str(first)
    assert record.cls.__name__ == "EchoOne"
    assert registry.get(KIND_BUSINESS, "OTHER") is None  # its alias clashes: the whole class is skipped
    failures = {f.source: f for f in registry.failures}
    assert set(failures) == {str(second), str(alias)}
    dup = failures[str(second)]
    assert dup.name == "EchoTwo"
    assert dup.reason == (f"duplicate signature 'ECHO': already registered by {first} › EchoOne; this class is skipped")
    assert str(first) in str(dup) and str(second) in str(dup)
    assert f"already registered by {first}" in failures[str(alias)].reason


def test_abstract_intermediate_base_is_neither_registered_nor_reported(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    write_plugin(
        folder,
        "business/family.py",
        """
        from edge_engine.api import BusinessPlugin

        class CountingBase(BusinessPlugin):
            ABSTRACT = True
            CONFIG = {"STEP": 2}
            def process(self, inp):
                return None

        class Counter(CountingBase):
            SIGNATURE = "COUNTER"
            CONFIG = {"LIMIT": 10}
        """,
    )
    registry, _ = load(folder)
    assert registry.failures == []
    assert signatures(registry, KIND_BUSINESS) == {"COUNTER"}
    counter = registry.get(KIND_BUSINESS, "COUNTER").cls
    assert counter.ABSTRACT is False
    schema = counter.config_schema()
    assert schema["STEP"].default == 2 and schema["LIMIT"].default == 10
    assert "PROCESS_DELAY" in schema  # the engine's keys come with the base class


def test_test_and_private_files_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    boom = "raise RuntimeError('must not be imported')\n"
    for name in ("test_thing.py", "_private.py", "__init__.py", "conftest.py", "thing_test.py"):
        write_plugin(folder, f"business/{name}", boom)
    write_plugin(folder, "business/__pycache__/cached.py", boom)
    write_plugin(folder, "business/notes.txt", boom)
    write_plugin(folder, "elsewhere/outside_kind_folders.py", boom)
    write_plugin(folder, "business/real.py", business("REAL"))
    registry, loader = load(folder)
    assert registry.failures == []
    assert signatures(registry, KIND_BUSINESS) == {"REAL"}
    assert list(loader.modules) == [str(folder / "business" / "real.py")]


def test_aliases_and_signatures_are_case_insensitive() -> None:
    registry, _ = load(REPO / "extensions")
    for name in ("VideoFile", "videofile", "VIDEOFILE", "video_file", "Video_File"):
        assert registry.get(KIND_CAPTURE, name).signature == "VIDEO_FILE", name
    for name in ("VideoStream", "videostream"):
        assert registry.get(KIND_CAPTURE, name).signature == "VIDEO_STREAM"
    assert registry.get(KIND_CAPTURE, "void").signature == "VOID"
    assert registry.get(KIND_BUSINESS, "motion_DETECTOR").signature == "MOTION_DETECTOR"
    assert registry.get(KIND_CAPTURE, "VideoFil") is None
    assert registry.get(KIND_CAPTURE, 5) is None  # type: ignore[arg-type]
    assert registry.suggest(KIND_CAPTURE, "VideoFil") == "VideoFile"
    assert registry.suggest(KIND_BUSINESS, "FRAME_STAT") == "FRAME_STATS"


def test_disabled_plugins_are_not_loaded(tmp_path: Path) -> None:
    registry, _ = load(REPO / "extensions", disabled=("motion_detector", " VOID ", ""))
    assert registry.failures == []
    assert signatures(registry, KIND_BUSINESS) == BUILTINS[KIND_BUSINESS] - {"MOTION_DETECTOR"}
    assert signatures(registry, KIND_CAPTURE) == BUILTINS[KIND_CAPTURE] - {"VOID"}
    # a module name works too (the whole file is skipped, before it is imported)
    folder = tmp_path / "plugins"
    write_plugin(folder, "business/heavy.py", "raise RuntimeError('imported although disabled')\n")
    registry, loader = load(folder, disabled=("heavy",))
    assert registry.failures == [] and loader.modules == {}


def test_disabled_plugin_through_the_environment(node_factory: Any) -> None:
    pipeline = {
        "NAME": "p",
        "TYPE": "VOID",
        "PLUGINS": [{"SIGNATURE": "FRAME_STATS", "INSTANCES": [{"INSTANCE_ID": "a"}]}],
    }
    node = node_factory(pipelines=[pipeline], environ={"EE_DISABLED_PLUGINS": "frame_stats,IMAGE_FOLDER"})
    assert node.registry.get(KIND_BUSINESS, "FRAME_STATS") is None
    assert node.registry.get(KIND_CAPTURE, "IMAGE_FOLDER") is None
    assert node.registry.get(KIND_BUSINESS, "MOTION_DETECTOR") is not None
    assert node.pipelines == {}
    (errors,) = [p["errors"] for p in node.snapshot()["invalid_pipelines"]]
    assert "unknown business plugin (got 'FRAME_STATS')" in errors[0]


def test_register_hook_registers_a_class_defined_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "vendor_plugins_abc.py").write_text(
        textwrap.dedent(business("VENDOR_THING", "VendorThing")), encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.delitem(sys.modules, "vendor_plugins_abc", raising=False)
    folder = tmp_path / "plugins"
    path = write_plugin(
        folder,
        "business/vendor.py",
        """
        from edge_engine.api import hookimpl
        from vendor_plugins_abc import VendorThing

        @hookimpl
        def edge_register_plugins(register):
            register(VendorThing)
            register(object)
        """,
    )
    registry, loader = load(folder)
    record = registry.get(KIND_BUSINESS, "VENDOR_THING")
    assert record is not None
    assert record.source == str(path)
    assert record.cls.__module__ == "vendor_plugins_abc"
    (failure,) = registry.failures
    assert failure.source == str(path)
    assert failure.name == "object" and "not a subclass" in failure.reason
    assert loader.pm.get_plugin("edge_plugins.plugins.business.vendor") is not None


def test_entry_point_plugins_are_loaded_and_broken_ones_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "edge_ep_sample_pkg.py").write_text(
        textwrap.dedent(
            """
            from edge_engine.api import BusinessPlugin, CapturePlugin

            class EpBusiness(BusinessPlugin):
                SIGNATURE = "EP_BUSINESS"
                def process(self, inp):
                    return None

            class EpSource(CapturePlugin):
                SIGNATURE = "EP_SOURCE"
                def read(self):
                    return None
            """
        ),
        encoding="utf-8",
    )
    (site / "edge_ep_sample_cls.py").write_text(textwrap.dedent(business("EP_DIRECT", "EpDirect")), encoding="utf-8")
    dist = site / "edge_ep_sample-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: edge-ep-sample\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(
        "[edge_engine.plugins]\n"
        "sample = edge_ep_sample_pkg\n"
        "direct = edge_ep_sample_cls:EpDirect\n"
        "broken = edge_ep_sample_missing_module\n"
        "[other.group]\n"
        "ignored = edge_ep_sample_missing_module\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(site))
    for name in ("edge_ep_sample_pkg", "edge_ep_sample_cls"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    registry = PluginRegistry()
    loader = PluginLoader(registry, get_plugin_manager())
    count = loader.load_entry_points()
    assert count >= 3
    assert registry.get(KIND_BUSINESS, "EP_BUSINESS").source == "entry point sample (edge_ep_sample_pkg)"
    assert registry.get(KIND_CAPTURE, "EP_SOURCE") is not None
    assert registry.get(KIND_BUSINESS, "EP_DIRECT").source == "entry point direct (edge_ep_sample_cls:EpDirect)"
    broken = [f for f in registry.failures if f.name == "broken"]
    assert len(broken) == 1
    assert broken[0].source == "entry point broken (edge_ep_sample_missing_module)"
    assert broken[0].reason.startswith("import failed: ModuleNotFoundError")
    assert not [f for f in registry.failures if f.name == "ignored"]

    # disabled by entry point name
    registry = PluginRegistry()
    PluginLoader(registry, get_plugin_manager(), disabled=("sample", "broken")).load_entry_points()
    assert registry.get(KIND_BUSINESS, "EP_BUSINESS") is None
    assert registry.get(KIND_BUSINESS, "EP_DIRECT") is not None
    assert not [f for f in registry.failures if f.name == "broken"]


# --- layering ------------------------------------------------------------------------------------------------
def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in a file (relative imports resolved only by their dots)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if module == "edge_engine":  # from edge_engine import x  ->  edge_engine.x
                found.extend((node.lineno, f"edge_engine.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_engine_never_imports_extensions_or_plugins() -> None:
    files = sorted((REPO / "edge_engine").rglob("*.py"))
    assert len(files) > 10
    bad = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in files
        for line, module in _imports(path)
        if module.split(".")[0] in ("extensions", "plugins")
    ]
    assert bad == []


def test_plugin_modules_import_only_the_public_api() -> None:
    files = [
        p
        for folder in ("extensions", "plugins")
        for p in sorted((REPO / folder).rglob("*.py"))
        if "__pycache__" not in p.parts
    ]
    assert any(p.name == "video_file.py" for p in files)
    bad = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in files
        for line, module in _imports(path)
        if module.split(".")[0] == "edge_engine" and module != "edge_engine.api"
    ]
    assert bad == []
