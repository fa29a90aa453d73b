"""One settings schema (issue 15 item 4): every ``EE_*`` setting is declared once, every bad value is reported in one
form, booleans read one way, and ``.env.template`` and ``docs/settings.md`` are generated from the declarations."""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import pytest

from edge_engine import constants as C
from edge_engine.cli import gen_reference
from edge_engine.comms.comms_settings import ATTRIBUTES as COMMS_ATTRIBUTES
from edge_engine.comms.comms_settings import CommsSettings, load_comms_settings
from edge_engine.config.node_settings import STARTUP_SCHEMA, load_settings, read_settings
from edge_engine.config.settings_schema import (
    ENVIRONMENT,
    FALSE_WORDS,
    GROUPS,
    SETTINGS,
    TRUE_WORDS,
    Setting,
    by_file_key,
    group,
)
from edge_engine.errors import ConfigError, ConfigIssue
from edge_engine.node.disk_bounds import DEFAULTS_MB
from edge_engine.observe.observe_settings import ObserveSettings
from edge_engine.plugin.hooks import get_plugin_manager
from edge_engine.storage.storage_settings import ATTRIBUTES as STORAGE_ATTRIBUTES
from edge_engine.storage.storage_settings import StorageSettings, load_storage_settings

REPO = Path(__file__).resolve().parent.parent
CROSS_RULES = {"EE_STATUS_BIND": "0.0.0.0"}  # bad only with another variable's value (no EE_STATUS_TOKEN)


def bad_values(setting: Setting) -> list[str]:
    """Values each setting must refuse: a wrong type, each bound crossed, a word not among the choices, and the
    declared example of what its own rule refuses."""
    values: list[str] = []
    if setting.kind == "bool":
        values.append("maybe")
    if setting.kind in ("int", "float"):
        values.append("lots")
        if setting.low is not None:
            values.append(f"{setting.low - 1:g}")
        if setting.high is not None:
            values.append(f"{setting.high + 1:g}")
    if setting.kind == "int":
        values.append("1.5")
    if setting.kind == "float":
        values.extend(["nan", "inf"])
    if setting.kind == "choice":
        values.append("nonsense")
    if setting.bad_example is not None:
        values.append(setting.bad_example)
    return values


CASES = [(name, value) for name, s in SETTINGS.items() for value in bad_values(s)]
FREE_TEXT = sorted(name for name, s in SETTINGS.items() if not bad_values(s))


def _base(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    base.mkdir(parents=True)
    (base / ".config_startup.json").write_text('{"DEMO_PIPELINE": false, "PLUGIN_FOLDERS": []}', encoding="utf-8")
    return base


def assert_uniform(issue: ConfigIssue, setting: Setting, value: str) -> None:
    got = "***" if setting.secret else value
    default = setting.default_text() or "unset"
    assert (issue.file, issue.key, issue.got, issue.hint) == (ENVIRONMENT, setting.name, got, f"default: {default}")
    assert str(issue) == f"environment › key '{setting.name}': {issue.message} (got {got!r}); default: {default}"
    assert issue.message.strip()


def test_every_setting_that_can_be_bad_has_bad_values_and_the_others_take_any_text() -> None:
    assert 0 < len(FREE_TEXT) < len(SETTINGS) / 2
    for name in FREE_TEXT:  # paths, hosts, names, secrets: any text is a value
        setting = SETTINGS[name]
        assert setting.kind in ("str", "csv") and setting.check is None and setting.parser is None, name
        assert setting.parse(" some text ") is not None


@pytest.mark.parametrize(("name", "value"), CASES)
def test_every_declared_setting_reports_a_bad_value_in_one_form(tmp_path: Path, name: str, value: str) -> None:
    """Whichever part reads it: one issue naming the variable, what is wrong, the value and the default; the node
    refuses to start and ``edge-node validate`` lists the same issue."""
    env = {"EE_COMMS": "0", "EE_STATUS_PORT": "0", name: value}
    with pytest.raises(ConfigError) as caught:
        load_settings(_base(tmp_path), tmp_path / "cache", env)
    (issue,) = caught.value.issues
    assert_uniform(issue, SETTINGS[name], value)
    _, issues = read_settings(_base(tmp_path / "v"), tmp_path / "cache2", env)
    assert issues == [issue]


@pytest.mark.parametrize("name", sorted(CROSS_RULES))
def test_a_value_bad_with_another_is_reported_in_the_same_form(tmp_path: Path, name: str) -> None:
    env = {"EE_COMMS": "0", name: CROSS_RULES[name]}
    with pytest.raises(ConfigError) as caught:
        load_settings(_base(tmp_path), tmp_path / "cache", env)
    (issue,) = caught.value.issues
    assert_uniform(issue, SETTINGS[name], CROSS_RULES[name])


FILE_CASES = [
    (group_name, key, value)
    for group_name in ("comms", "storage")
    for key, setting in by_file_key(group_name).items()
    for value in bad_values(setting)
]


@pytest.mark.parametrize(("group_name", "key", "value"), FILE_CASES)
def test_a_bad_file_value_is_reported_in_the_same_form(group_name: str, key: str, value: str) -> None:
    setting = by_file_key(group_name)[key]
    if group_name == "comms":
        _, issues = load_comms_settings({"COMMUNICATION": {"PARAMS": {key: value}}}, {}, {})
    else:
        _, issues = load_storage_settings({"FILE_UPLOAD": {"CONFIG_UPLOADER": {key: value}}}, {})
    issues = [i for i in issues if "half configured" not in i.message]  # a bucket alone is half a configuration
    (issue,) = issues
    where = GROUPS[group_name][1]
    default = setting.default_text() or "unset"
    assert (issue.file, issue.key, issue.got, issue.hint) == (where, key, value, f"default: {default}")


def test_the_reference_examples_are_what_the_node_says(tmp_path: Path) -> None:
    text = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    env_issue = read_settings(_base(tmp_path), tmp_path / "cache", {"EE_STATUS_PORT": "99999"})[1][0]
    _, (file_issue,) = load_comms_settings({"COMMUNICATION": {"PARAMS": {"PORT": 70000}}}, {}, {})
    assert str(env_issue) in text and str(file_issue) in text


# --- one boolean reader ---------------------------------------------------------------------------------------------
BOOLS = sorted(name for name, s in SETTINGS.items() if s.kind == "bool")


@pytest.mark.parametrize("name", BOOLS)
def test_every_boolean_reads_the_same_words(name: str) -> None:
    setting = SETTINGS[name]
    for word in TRUE_WORDS:
        assert setting.parse(word) is True and setting.parse(f" {word.upper()} ") is True, word
    for word in FALSE_WORDS:
        assert setting.parse(word) is False and setting.parse(word.capitalize()) is False, word
    assert setting.read({name: ""}, []) is None  # empty: unset, the default


def test_ee_trace_hooks_reads_on_like_every_boolean(monkeypatch: pytest.MonkeyPatch) -> None:
    def traced() -> bool:
        logger = logging.getLogger("edge_engine.plugin.hooks")
        pm = get_plugin_manager()
        before = logger.level
        logger.setLevel(logging.DEBUG)
        try:
            seen: list[str] = []
            handler = logging.Handler()
            handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
            logger.addHandler(handler)
            pm.hook.edge_node_stopping(reason="test")
            logger.removeHandler(handler)
        finally:
            logger.setLevel(before)
        return any(line.startswith("hook: ") for line in seen)

    for word in ("1", "on", "TRUE", "yes"):
        monkeypatch.setenv("EE_TRACE_HOOKS", word)
        assert traced(), word
    for word in ("0", "off", ""):
        monkeypatch.setenv("EE_TRACE_HOOKS", word)
        assert not traced(), word


def test_file_booleans_read_the_same_words() -> None:
    cases = (("on", True), ("Yes", True), ("off", False), (True, True), (False, False), (1, True), (0, False))
    for word, expected in cases:
        settings, issues = load_comms_settings({"COMMUNICATION": {"PARAMS": {"SECURED": word}}}, {}, {})
        assert (settings.tls, issues) == (expected, []), word
        storage, issues = load_storage_settings({"FILE_UPLOAD": {"CONFIG_UPLOADER": {"SECURE": word}}}, {})
        assert (storage.secure, issues) == (expected, []), word


# --- the declarations are what the code uses -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_default_and_an_example_read_back_as_themselves(name: str) -> None:
    setting = SETTINGS[name]
    if setting.default is not None and setting.default_text():
        assert setting.parse(setting.default_text()) == setting.default
    if setting.example is not None:
        assert setting.parse(setting.example) is not None


def test_the_settings_objects_default_to_the_declared_defaults() -> None:
    def attribute_defaults(obj: Any, attributes: dict[str, str], by: str) -> None:
        for key, setting in group(by).items() if by != "storage" else by_file_key(by).items():
            if by == "comms" and key == "EE_ROOT_TOPIC":
                assert C.NETWORKS[C.DEFAULT_NETWORK]["root_topic"] == setting.default
            assert getattr(obj, attributes[key]) == setting.default, key

    attribute_defaults(CommsSettings(), COMMS_ATTRIBUTES, "comms")
    attribute_defaults(StorageSettings(), STORAGE_ATTRIBUTES, "storage")
    observe = ObserveSettings()
    assert (observe.status_port, observe.status_bind, observe.metrics_port, observe.metrics_bind) == tuple(
        SETTINGS[n].default for n in ("EE_STATUS_PORT", "EE_STATUS_BIND", "EE_METRICS_PORT", "EE_METRICS_BIND")
    )
    assert {name: s.default for name, s in group("disk").items()} == DEFAULTS_MB
    for name, setting in group("node").items():
        if setting.file_key:
            key = STARTUP_SCHEMA[setting.file_key]
            assert (key.default, key.min, key.max) == (setting.default, setting.low, setting.high), name
    assert set(C.ENV_VARS) == set(SETTINGS)


def test_env_template_and_settings_reference_are_generated_from_the_schema() -> None:
    for relative, content in gen_reference.settings_files().items():
        assert (REPO / relative).read_text(encoding="utf-8") == content, (
            f"{relative} is out of date: run python -m edge_engine.cli.gen_reference"
        )
    reference = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    template = (REPO / ".env.template").read_text(encoding="utf-8")
    for name in SETTINGS:
        assert f"| `{name}` |" in reference and f"\n# {name}=" in template, name


# --- every EE_* the engine reads is declared --------------------------------------------------------------------
def _names(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "EE_..."`` assignments of a file."""
    found: dict[str, str] = {}
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        value = getattr(node, "value", None)
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            found.update({t.id: value.value for t in targets if isinstance(t, ast.Name)})
    return found


def _variable(node: ast.AST, local: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(getattr(C, node.attr, None), str):
        return str(getattr(C, node.attr))
    if isinstance(node, ast.Name):
        return local.get(node.id) or (getattr(C, node.id) if isinstance(getattr(C, node.id, None), str) else None)
    return None


def _is_environment(node: ast.AST) -> bool:
    """``os.environ``, ``env``, ``environ``, ``self.settings.env``..."""
    text = ast.unparse(node).lower()
    return "env" in text.rsplit(".", 1)[-1] or text.endswith("environ")


def environment_reads(source: str) -> set[str]:
    """The ``EE_*`` names a module reads from an environment mapping: ``env.get(X)``, ``env[X]``, ``X in env``,
    ``os.getenv(X)``, ``os.environ.get(X)``, with X a literal or a constant naming one."""
    tree = ast.parse(source)
    local = _names(tree)
    read: set[str] = set()
    for node in ast.walk(tree):
        key: ast.AST | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr == "getenv" or (node.func.attr in ("get", "pop") and _is_environment(node.func.value)):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and _is_environment(node.value):
            key = node.slice
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            key = node.left if any(_is_environment(c) for c in node.comparators) else None
        name = _variable(key, local) if key is not None else None
        if name and name.startswith("EE_"):
            read.add(name)
    return read


def test_the_environment_scan_finds_reads() -> None:
    source = 'import os\nfrom edge_engine import constants as C\nX = "EE_LOCAL"\nos.environ.get("EE_A")\n' \
             'os.getenv("EE_B")\nenv[C.ENV_ID]\nself.settings.env.get(X)\nif "EE_C" in environ: pass\n' \
             'message.get("EE_HASH")\n'  # fmt: skip
    assert environment_reads(source) == {"EE_A", "EE_B", "EE_ID", "EE_LOCAL", "EE_C"}


def test_every_ee_variable_read_in_the_engine_is_declared() -> None:
    read: dict[str, set[str]] = {}
    for path in sorted((REPO / "edge_engine").rglob("*.py")):
        for name in environment_reads(path.read_text(encoding="utf-8")):
            read.setdefault(name, set()).add(str(path.relative_to(REPO)))
    assert {"EE_CACHE_DIR", "EE_ID", "EE_MQTT_HOST", "EE_APP_CONFIG"} <= set(read), read  # the scan sees reads
    undeclared = {name: sorted(paths) for name, paths in read.items() if name not in SETTINGS}
    assert not undeclared, f"declare these in edge_engine/config/settings_schema.py: {undeclared}"
