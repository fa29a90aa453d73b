"""Generate the reference parts of the docs from the code, so they cannot drift from it.

    python -m edge_engine.cli.gen_reference           # rewrite the generated sections and files in place
    python -m edge_engine.cli.gen_reference --check   # exit 1 (and say which) when they are out of date

``.env.template`` and ``docs/settings.md`` are generated whole from the settings schema
(:data:`edge_engine.config.settings_schema.SETTINGS`). In ``docs/plugins.md`` only the text between
``<!-- BEGIN GENERATED: NAME -->`` and ``<!-- END GENERATED: NAME -->`` is replaced:

* ``hooks``: one ``### edge_name(args)`` heading per hookspec, from its docstring, grouped as in
  ``hookspecs.py``, with its flags (historic, first result);
* ``lifecycle``: the methods of each plugin base class (:mod:`edge_engine.plugin.kinds`), from their docstrings;
* ``base-config``: the config keys each base class declares, with default, type and doc;
* ``builtins``: each built-in plugin of ``extensions/`` with its description and config table.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_engine.config.settings_schema import GROUPS, SETTINGS, Setting, group
from edge_engine.constants import ENGINE_NAME, KIND_BUSINESS, KIND_CAPTURE, KIND_SERVING
from edge_engine.plugin import hookspecs
from edge_engine.plugin.config_keys import Key
from edge_engine.plugin.kinds import PLUGIN_BASES, BusinessPlugin, CapturePlugin, PluginBase, ServingPlugin

DOC = Path("docs") / "plugins.md"
ENV_TEMPLATE = Path(".env.template")
SETTINGS_DOC = Path("docs") / "settings.md"
BLOCK = re.compile(
    r"(<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)", re.DOTALL
)
KIND_TITLES = {KIND_CAPTURE: "capture", KIND_SERVING: "serving", KIND_BUSINESS: "business"}
METHODS: list[tuple[type[PluginBase], tuple[str, ...]]] = [
    (PluginBase, ("on_init", "on_config", "on_command", "on_close", "on_safe_mode", "on_resume")),
    (CapturePlugin, ("connect", "read", "release", "is_live")),
    (ServingPlugin, ("pre_process", "predict", "post_process")),
    (BusinessPlugin, ("process", "emit", "infer", "cascades", "notify", "save_file", "publish_live")),
]


# --- docstrings to markdown -----------------------------------------------------------------------------------
def rst_to_md(text: str) -> str:
    """Inline reST used in our docstrings to Markdown: ``x`` and :role:`~a.b.C` to `x` and `C`."""
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"`\1`", text)
    return text.replace("``", "`")


def docstring_markdown(doc: str | None) -> str:
    """A hookspec docstring as Markdown: prose paragraphs, then parameters as a list, then the return value."""
    text = inspect.cleandoc(doc or "")
    prose: list[str] = []
    fields: list[list[str]] = []
    for line in text.splitlines():
        match = re.match(r"^:(param (\w+)|return):\s*(.*)$", line)
        if match:
            name = match.group(2)
            fields.append([f"- `{name}`: {match.group(3)}" if name else f"**Returns:** {match.group(3)}"])
        elif fields and line.startswith(" "):
            fields[-1].append(line.strip())
        elif fields and not line.strip():
            continue
        else:
            prose.append(line)
    paragraphs = [" ".join(p.split("\n")) for p in "\n".join(prose).strip().split("\n\n") if p.strip()]
    params = [" ".join(f) for f in fields if f[0].startswith("- ")]
    returns = [" ".join(f) for f in fields if not f[0].startswith("- ")]
    parts = [*paragraphs]
    if params:
        parts.append("\n".join(params))
    parts.extend(returns)
    return rst_to_md("\n\n".join(parts))


def first_paragraph(doc: str | None) -> str:
    return rst_to_md(" ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split()))


# --- sections -------------------------------------------------------------------------------------------------
def hookspec_functions() -> list[Callable[..., Any]]:
    """The hookspecs in definition order."""
    return [f for name, f in vars(hookspecs).items() if name.startswith("edge_") and callable(f)]


def hook_groups() -> dict[str, str]:
    """``{hook name: group title}`` from the banner comments of ``hookspecs.py``."""
    groups: dict[str, str] = {}
    title = ""
    lines = inspect.getsource(hookspecs).splitlines()
    for index, line in enumerate(lines):
        is_title = (
            line.startswith("# ") and not line.startswith("# --") and index > 0 and lines[index - 1].startswith("# ---")
        )
        if is_title:
            title = line[2:].strip()
        match = re.match(r"^def (edge_\w+)\(", line)
        if match:
            groups[match.group(1)] = title
    return groups


def hooks_section() -> str:
    groups = hook_groups()
    out: list[str] = []
    current = None
    for func in hookspec_functions():
        name = func.__name__
        if groups.get(name) and groups[name] != current:
            current = groups[name]
            out.append(f"*{current}*\n")
        params = ", ".join(inspect.signature(func).parameters)
        out.append(f"### {name}({params})\n")
        opts = getattr(func, f"{ENGINE_NAME}_spec", {}) or {}
        flags = [
            label for key, label in (("historic", "historic"), ("firstresult", "first result wins")) if opts.get(key)
        ]
        if flags:
            out.append(f"Flags: {', '.join(flags)}.\n")
        out.append(docstring_markdown(func.__doc__) + "\n")
    return "\n".join(out)


def _signature(cls: type, name: str) -> str:
    bound = isinstance(inspect.getattr_static(cls, name), classmethod)  # its cls is already bound: keep all
    params = list(inspect.signature(getattr(cls, name)).parameters.values())[0 if bound else 1 :]
    text = ", ".join(str(p).split(":")[0].split("=")[0].strip() for p in params)
    return f"{name}({text})"


def lifecycle_section() -> str:
    out = ["| class | method | what it does |", "|---|---|---|"]
    for cls, names in METHODS:
        label = "every plugin" if cls is PluginBase else f"`{cls.__name__}`"
        for name in names:
            doc = first_paragraph(getattr(cls, name).__doc__).replace("|", "\\|")
            out.append(f"| {label} | `{_signature(cls, name)}` | {doc} |")
    return "\n".join(out) + "\n"


def _value(value: Any) -> str:
    try:
        return f"`{json.dumps(value)}`"
    except (TypeError, ValueError):
        return f"`{value!r}`"


def key_table(schema: dict[str, Key]) -> str:
    out = ["| key | default | type | meaning |", "|---|---|---|---|"]
    for name, key in schema.items():
        default = "*required*" if key.required else _value(key.default)
        limits = []
        if key.min is not None:
            limits.append(f"≥ {key.min:g}")
        if key.max is not None:
            limits.append(f"≤ {key.max:g}")
        if key.choices is not None:
            limits.append("one of " + ", ".join(_value(c) for c in key.choices))
        kind = ", ".join([key.type_name(), *limits])
        doc = key.doc.replace("|", "\\|") or "—"
        out.append(f"| `{name}` | {default} | {kind} | {doc} |")
    return "\n".join(out) + "\n"


def base_config_section() -> str:
    out = []
    for kind, cls in PLUGIN_BASES.items():
        out.append(f"**`{cls.__name__}`** ({KIND_TITLES[kind]}), inherited by every {KIND_TITLES[kind]} plugin:\n")
        out.append(key_table(cls.config_schema()))
    return "\n".join(out)


def builtins_section(extensions: Path) -> str:
    from edge_engine.runtime.sandbox import load_catalog

    catalog = load_catalog([extensions])
    if catalog.registry.failures:
        raise RuntimeError("built-in plugins failed to load: " + "; ".join(map(str, catalog.registry.failures)))
    out = []
    records = sorted(catalog.registry.records(), key=lambda r: (list(KIND_TITLES).index(r.kind), r.signature))
    for record in records:
        cls = record.cls
        aliases = f" (also `{'`, `'.join(cls.ALIASES)}`)" if cls.ALIASES else ""
        source = Path(record.source).resolve().relative_to(extensions.resolve().parent)
        out.append(f"### {record.signature}{aliases}\n")
        out.append(
            f"{KIND_TITLES[record.kind].capitalize()} plugin, `{source}`, version {record.version}. "
            f"{rst_to_md(cls.DESCRIPTION)}\n"
        )
        base = PLUGIN_BASES[record.kind].config_schema()
        own = {k: v for k, v in cls.config_schema().items() if k not in base or base[k] != v}
        out.append(key_table(own) if own else "No keys of its own.\n")
        out.append(f"Plus the {KIND_TITLES[record.kind]} base keys above.\n")
    return "\n".join(out)


def sections(repo: Path) -> dict[str, str]:
    return {
        "hooks": hooks_section(),
        "lifecycle": lifecycle_section(),
        "base-config": base_config_section(),
        "builtins": builtins_section(repo / "extensions"),
    }


# --- settings: .env.template and docs/settings.md -------------------------------------------------------------
TEMPLATE_HEAD = """\
# Environment variables of the edge node. Copy to .env (loaded by device.py; real environment wins).
# Every variable is optional; the value shown is the default or an example. An empty variable is unset (its
# default); a value the node cannot use refuses the start, naming the variable (docs/settings.md).
# Generated from edge_engine/config/settings_schema.py by `python -m edge_engine.cli.gen_reference`: edit there.
"""

SETTINGS_HEAD = """\
# Settings reference

<!-- Generated from edge_engine/config/settings_schema.py by `python -m edge_engine.cli.gen_reference`; edit there.
     tests/test_reference_docs.py fails when this file is out of date. -->

Every `EE_*` variable the node reads is declared once, in `edge_engine/config/settings_schema.py`: its name, the
config file key that sets the same value (where it has one), its type, default, bounds and doc. That one declaration
is what the node loads and checks, what `edge-node validate` reports, and what `.env.template` and this page are
generated from.

**Where a value comes from.** Declared default ← the config file (`.config_startup.json`, seeded into the cache
at first start; `.config_app.json`, where `"$EE_X"` stands for the variable's value) ← the `EE_*` variable
(the environment, and `.env`, which the real environment overrides). An empty variable is unset: its default
applies.

**Booleans** read the same everywhere (variables and file values): `1`, `true`, `yes`, `on` or `0`, `false`, `no`,
`off`, in any case. JSON `true`/`false` work in the files.

**A bad value.** A value that cannot be used (not a number, out of bounds, not one of the choices, a folder that
does not exist, a status page beyond loopback without a token) is reported one way, whichever part of the node
reads it:

```
{examples}
```

The node collects every such problem before anything starts and **refuses to start** on any (exit code 2, every
problem listed), for every group below alike: a node never runs on a value it silently replaced.
`edge-node validate` lists the same problems without starting (exit code 1) and reads on with the defaults.
Secrets ({secrets}) are shown as `***`.
"""


def _bad_value_examples() -> str:
    """What the node says about ``EE_STATUS_PORT=99999`` and a ``PORT`` of 70000 in the app config."""
    lines = []
    for name, value, in_file in (("EE_STATUS_PORT", "99999", False), ("EE_MQTT_PORT", 70000, True)):
        setting = SETTINGS[name]
        try:
            setting.parse_file_value(value)
        except ValueError as exc:
            lines.append(str(setting.file_issue(value, str(exc)) if in_file else setting.issue(value, str(exc))))
    return "\n".join(lines)


def _template_comment(setting: Setting) -> str:
    parts = [setting.doc]
    if setting.kind == "choice" or setting.low is not None or setting.high is not None:
        parts.append(setting.expected())
    if setting.file_key:
        parts.append(f"overrides {setting.file_key}")
    return "; ".join(parts)


def env_template() -> str:
    """``.env.template``: each setting's doc, then the variable, commented out, with its default (or example)."""
    out = [TEMPLATE_HEAD]
    for name, (title, _where) in GROUPS.items():
        out.append(f"# --- {title} ---")
        for setting in group(name).values():
            value = "" if setting.secret else setting.default_text() or (setting.example or "")
            out.append(f"# {_template_comment(setting)}")
            out.append(f"# {setting.name}={value}")
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_reference() -> str:
    """``docs/settings.md``: the rules, then one table per group."""
    secrets = ", ".join(f"`{name}`" for name, setting in SETTINGS.items() if setting.secret)
    out = [SETTINGS_HEAD.replace("{examples}", _bad_value_examples()).replace("{secrets}", secrets)]
    for name, (title, where) in GROUPS.items():
        settings = group(name).values()
        out.append(f"## {title[0].upper()}{title[1:]}\n")
        if where:
            out.append(f"File keys are in `{where}`.\n")
        out.append("| variable | file key | type | default | meaning |")
        out.append("|---|---|---|---|---|")
        for s in settings:
            key = f"`{s.file_key}`" if s.file_key else "—"
            default = "`***`" if s.secret and s.default else f"`{s.default_text()}`" if s.default_text() else "unset"
            kind = s.expected() + (" (secret)" if s.secret else "")
            out.append(f"| `{s.name}` | {key} | {_cell(kind)} | {default} | {_cell(s.doc)} |")
        out.append("")
    return "\n".join(out)


def settings_files() -> dict[Path, str]:
    """The files generated whole from the settings schema, by path relative to the repository."""
    assert SETTINGS, "no settings declared"
    return {ENV_TEMPLATE: env_template(), SETTINGS_DOC: settings_reference()}


def render(text: str, generated: dict[str, str]) -> tuple[str, list[str]]:
    """Replace each generated block's body; returns the new text and the names of blocks it changed."""
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in generated:
            return match.group(0)
        body = "\n" + generated[name].strip("\n") + "\n\n"
        if body != match.group("body"):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text), changed


def default_repo() -> Path:
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / DOC).exists() else Path.cwd()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_engine.cli.gen_reference", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when the document is out of date")
    parser.add_argument("--repo", type=Path, default=None, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    repo = args.repo or default_repo()
    path = repo / DOC
    text = path.read_text(encoding="utf-8")
    generated = sections(repo)
    missing = [name for name in generated if f"<!-- BEGIN GENERATED: {name} -->" not in text]
    if missing:
        print(f"{path}: no markers for {', '.join(missing)}", file=sys.stderr)
        return 1
    new, changed = render(text, generated)
    stale = [relative for relative, content in settings_files().items() if _read(repo / relative) != content]
    if args.check:
        if changed:
            print(
                f"{path} is out of date ({', '.join(changed)}); run python -m edge_engine.cli.gen_reference",
                file=sys.stderr,
            )
        for relative in stale:
            print(
                f"{repo / relative} is out of date (settings); run python -m edge_engine.cli.gen_reference",
                file=sys.stderr,
            )
        return 1 if changed or stale else 0
    if changed:
        path.write_text(new, encoding="utf-8")
    print(f"{path}: {'updated ' + ', '.join(changed) if changed else 'up to date'}")
    for relative, content in settings_files().items():
        if relative in stale:
            (repo / relative).parent.mkdir(parents=True, exist_ok=True)
            (repo / relative).write_text(content, encoding="utf-8")
        print(f"{repo / relative}: {'updated' if relative in stale else 'up to date'}")
    return 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
