"""The engine's import directions, as docs/architecture.md draws them, checked on the syntax tree of every module.

Packages sit in layers; a module imports its own layer and the layers below it. The few imports that go up a layer
are listed in ``UPWARD`` with the reason they exist, so a new one fails here until it is either removed or named
(and drawn). Imports under ``if TYPE_CHECKING:`` are annotations, not dependencies, and are not checked.

``python tests/test_layering.py`` prints the current package graph (the basis of the drawing).
"""

from __future__ import annotations

import ast
import collections
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "edge_engine"
TOP_LEVEL = ("edge_engine.constants", "edge_engine.errors", "edge_engine.messages", "edge_engine.redact")

# Lowest first. A module belongs to the longest prefix that names it; the package itself (``edge_engine``, its
# ``__version__``) and the top-level modules are layer 0.
LAYERS = {
    "edge_engine": 0,
    **dict.fromkeys(TOP_LEVEL, 0),
    "edge_engine.local": 1,
    "edge_engine.node.snapshot": 1,  # the typed local_info.json: read by services and commands
    "edge_engine.plugin": 2,
    "edge_engine.config": 2,
    "edge_engine.vision": 2,
    "edge_engine.api": 2,
    "edge_engine.runtime": 3,
    "edge_engine.serving": 3,
    "edge_engine.comms": 4,
    "edge_engine.storage": 4,
    "edge_engine.observe": 4,
    "edge_engine.node": 5,
    "edge_engine.cli": 6,
    "edge_engine.testing": 6,
    "edge_engine.remote": 6,
}

# (importing module, imported module or package): why it goes up a layer.
UPWARD = {
    (
        "edge_engine.constants",
        "edge_engine.config.settings_schema",
    ): "the EE_* docs come from the schema (in a function)",
    ("edge_engine.api", "edge_engine.serving.cascade"): "crop helpers are part of the plugin API",
    ("edge_engine.api", "edge_engine.serving.onnx_info"): "ONNX helpers are part of the plugin API",
    ("edge_engine.api", "edge_engine.serving.onnx_plugin"): "OnnxServingPlugin is part of the plugin API",
    ("edge_engine.plugin.kinds", "edge_engine.storage.names"): "plugins save files under safe names (in a method)",
    ("edge_engine.config.pipelines", "edge_engine.serving.cascade"): "a pipeline's cascades are checked when built",
    ("edge_engine.config.pipelines", "edge_engine.serving.instance_models"): "so are the models its instances name",
    ("edge_engine.config.node_settings", "edge_engine.comms.comms_settings"): "settings gather each service's own",
    ("edge_engine.config.node_settings", "edge_engine.storage.storage_settings"): "settings gather each service's own",
    ("edge_engine.config.node_settings", "edge_engine.observe.observe_settings"): "settings gather each service's own",
    ("edge_engine.config.node_settings", "edge_engine.node.disk_bounds"): "settings gather the disk bounds' own",
    ("edge_engine.serving.model_fetch", "edge_engine.storage.uploader"): "MODEL_URL may name an S3 key (decision 36)",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports: a module, or module.name for ``from module import name``
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                inside.update(id(n) for n in ast.walk(statement))
    return inside


def imports_of(path: Path) -> list[Import]:
    """Every run-time import in a module, relative ones resolved, with ``from m import n`` giving ``m.n``."""
    module = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    annotations_only = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found += [Import(module, f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


@functools.cache
def engine_imports() -> tuple[Import, ...]:
    return tuple(imp for path in sorted(ENGINE.rglob("*.py")) for imp in imports_of(path))


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> tuple[str, int]:
    """The layer key naming ``name`` (longest prefix) and its layer."""
    key = max((k for k in LAYERS if _within(name, k)), key=len)
    return key, LAYERS[key]


def _engine_target(target: str) -> bool:
    return _within(target, "edge_engine")


def test_every_package_has_a_layer_and_a_line_in_the_docs() -> None:
    packages = {p.parent.name for p in ENGINE.glob("*/__init__.py")}
    layered = {k.split(".")[1] for k in LAYERS if k.count(".") == 1 and k not in TOP_LEVEL and k != "edge_engine.api"}
    assert packages == layered, "a package without a layer (add it to LAYERS and to docs/architecture.md)"
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [name for name in sorted(packages) if f"| `{name}/` |" not in doc]
    assert not missing, f"docs/architecture.md has no line for {missing}"


def test_no_import_goes_up_a_layer_unless_named() -> None:
    wrong = []
    for imp in engine_imports():
        if not _engine_target(imp.target):
            continue
        (_, here), (there_key, there) = layer_of(imp.module), layer_of(imp.target)
        if there <= here:
            continue
        if not any(imp.module == m and _within(imp.target, t) for m, t in UPWARD):
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target} (layer {here} → {there}, {there_key})")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_the_upward_exceptions_are_real_modules() -> None:
    names = {module_name(p) for p in ENGINE.rglob("*.py")}
    unknown = [pair for pair in UPWARD if not {pair[0], pair[1]} <= names]
    assert not unknown, f"UPWARD names modules that do not exist: {unknown}"


def test_the_engine_never_imports_plugin_folders() -> None:
    wrong = [imp for imp in engine_imports() if imp.target.split(".")[0] in ("extensions", "plugins")]
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("package", "never"),
    [
        ("edge_engine.plugin", "edge_engine.node"),
        ("edge_engine.local", "edge_engine.node"),
        ("edge_engine.config", "edge_engine.node.core"),
        ("edge_engine.config", "edge_engine.node.state"),
        ("edge_engine.config", "edge_engine.node.pipeline_control"),
        ("edge_engine.config", "edge_engine.node.reporting"),
        ("edge_engine.config", "edge_engine.node.services"),
        ("edge_engine.runtime", "edge_engine.comms"),
        ("edge_engine.runtime", "edge_engine.node"),
        ("edge_engine.serving", "edge_engine.node"),
        ("edge_engine.vision", "edge_engine.runtime"),
    ],
)
def test_named_directions(package: str, never: str) -> None:
    wrong = [i for i in engine_imports() if _within(i.module, package) and _within(i.target, never)]
    assert not wrong, wrong


def test_api_imports_only_the_contract() -> None:
    allowed = (
        *TOP_LEVEL,
        "edge_engine.plugin.kinds",
        "edge_engine.plugin.config_keys",
        "edge_engine.plugin.hookspecs",
        "edge_engine.vision",
        "edge_engine.serving.cascade",
        "edge_engine.serving.onnx_info",
        "edge_engine.serving.onnx_plugin",
    )
    targets = [i.target for i in imports_of(ENGINE / "api.py") if _engine_target(i.target)]
    wrong = [t for t in targets if not any(_within(t, a) for a in allowed)]
    assert not wrong, wrong


def test_imports_are_read_as_drawn(tmp_path: Path) -> None:
    """The walker itself: relative imports resolve, TYPE_CHECKING imports are skipped."""
    pkg = tmp_path / "edge_engine" / "runtime"
    pkg.mkdir(parents=True)
    source = pkg / "x.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nfrom . import mailbox\nfrom ..comms import service\n"
        "if TYPE_CHECKING:\n    from edge_engine.node.core import Node\n",
        encoding="utf-8",
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        targets = [i.target for i in imports_of(source)]
    finally:
        ROOT = saved
    assert targets == ["typing.TYPE_CHECKING", "edge_engine.runtime.mailbox", "edge_engine.comms.service"]


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for imp in engine_imports():
        if _engine_target(imp.target):
            source, target = layer_of(imp.module)[0], layer_of(imp.target)[0]
            if source != target:
                graph[source].add(target)
    return graph


if __name__ == "__main__":
    for source, targets in sorted(package_graph().items(), key=lambda item: (-layer_of(item[0])[1], item[0])):
        print(f"{source} (layer {layer_of(source)[1]}) -> {', '.join(sorted(targets))}", file=sys.stdout)
