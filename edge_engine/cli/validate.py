"""``edge-node validate``: check the startup config, the app config, the ``EE_*`` variables and pipeline JSON without
starting anything.

    edge-node validate                     # the node's configs, the cache's pipelines, pipelines/*.json
    edge-node validate gate.json door.json # only these pipeline files (and the configs)
    edge-node validate --json              # one JSON object for machines

Every problem is reported at once, each as ``file › pipeline › plugin › instance › key: what is wrong
(got X); hint``, with "did you mean" for unknown signatures and keys. Plugins that fail to load are problems
too (a pipeline using them would be refused). A bad ``EE_*`` value (or app config value) is reported as the node
reports it, with the default the setting has (:mod:`edge_engine.config.settings_schema`); the node would refuse to
start on it. Nothing is written: not the cache, not a key file. Exit code 0 when everything is valid, 1 when
anything is not, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_engine import constants as C
from edge_engine.cli._common import add_node_args, display_path, load_plugins, print_json, settings_from
from edge_engine.config.node_settings import NodeSettings
from edge_engine.config.pipelines import CACHE_FILE, SEED_FILE, PipelineSpec, read_pipeline_file, validate_pipeline
from edge_engine.errors import ConfigIssue
from edge_engine.plugin.registry import PluginRegistry

REPO_PIPELINES = "pipelines"


@dataclass
class PipelineCheck:
    """The result of one pipeline file or object."""

    file: str
    names: list[str] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)
    issues: list[ConfigIssue] = field(default_factory=list)


@dataclass
class Report:
    """Everything ``validate`` found."""

    startup: str
    app: str
    issues: list[ConfigIssue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pipelines: list[PipelineCheck] = field(default_factory=list)
    plugins_loaded: int = 0

    @property
    def ok(self) -> bool:
        return not self.issues and all(not p.issues for p in self.pipelines)

    def all_issues(self) -> list[ConfigIssue]:
        return [*self.issues, *(i for p in self.pipelines for i in p.issues)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "issues": [i.to_dict() for i in self.all_issues()],
            "warnings": self.warnings,
            "checked": {
                "startup": self.startup,
                "app": self.app,
                "pipelines": [{"file": p.file, "names": p.names, "ok": not p.issues} for p in self.pipelines],
                "plugins_loaded": self.plugins_loaded,
            },
        }


def plan(spec: PipelineSpec) -> str:
    """One line saying what a valid pipeline would run."""
    instances = ", ".join(f"{i.signature}[{i.instance_id}]" for i in spec.instances) or "no instances"
    return f"{spec.name!r}: {spec.capture.signature} → {instances}"


def check_pipeline_data(data: Any, label: str, registry: PluginRegistry) -> PipelineCheck:
    """Validate one pipeline object written in the startup config's PIPELINES (the node seeds it as one pipeline:
    a list there is refused, as by the node)."""
    return _check_items(PipelineCheck(label), [data], registry)


def _check_items(check: PipelineCheck, items: list[Any], registry: PluginRegistry) -> PipelineCheck:
    label = check.file
    for raw in items:
        spec, issues = validate_pipeline(raw, registry, label)
        check.issues.extend(issues)
        name = raw.get("NAME") if isinstance(raw, dict) else None
        if isinstance(name, str):
            check.names.append(name)
        if spec is not None:
            check.plans.append(plan(spec))
    return check


def check_pipeline_file(path: Path, registry: PluginRegistry, role: str = SEED_FILE) -> PipelineCheck:
    """Check a pipeline file as the node reads it (:func:`edge_engine.config.pipelines.read_pipeline_file`): a cache
    file (``role`` :data:`CACHE_FILE`) must hold one object; a seed file may hold a list."""
    label = display_path(path)
    items, issues = read_pipeline_file(path, role)
    if issues:
        return PipelineCheck(label, issues=[dataclasses.replace(i, file=label) for i in issues])
    return _check_items(PipelineCheck(label), items, registry)


def file_role(path: Path, settings: NodeSettings) -> str:
    """How the node reads ``path``: as a cache file when it is in the cache's streams folder, else as a seed."""
    try:
        Path(path).resolve().relative_to(settings.layout.streams.resolve())
    except ValueError:
        return SEED_FILE
    return CACHE_FILE


def default_pipeline_sources(settings: NodeSettings) -> list[tuple[str, Any]]:
    """What the node would read: the startup config's PIPELINES, the cache's streams, the repo's pipelines/."""
    sources: list[tuple[str, Any]] = []
    for index, item in enumerate(settings.startup.get("PIPELINES") or []):
        if isinstance(item, str):
            path = Path(item).expanduser()
            sources.append(("file", path if path.is_absolute() else settings.base_dir / path))
        else:
            sources.append((f"startup config › PIPELINES[{index}]", item))
    demo = settings.base_dir / C.DEMO_PIPELINE_FILE
    if settings.startup.get("DEMO_PIPELINE") and settings.first_start and settings.new_cache and demo.is_file():
        sources.append(("file", demo))
    if settings.layout.streams.is_dir():
        sources.extend(
            ("file", p)
            for p in sorted(settings.layout.streams.glob("*.json"))
            if p.stem.lower() != C.ADMIN_PIPELINE_NAME
        )  # the node ignores it too
    repo = settings.base_dir / REPO_PIPELINES
    if repo.is_dir():
        sources.extend(("file", p) for p in sorted(repo.glob("*.json")))
    unique: list[tuple[str, Any]] = []
    seen: set[Path] = set()
    for kind, item in sources:
        if kind == "file":
            resolved = Path(item).resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
        unique.append((kind, item))
    return unique


def duplicate_names(checks: list[PipelineCheck], streams: Path) -> list[ConfigIssue]:
    """Two cache files defining the same pipeline NAME: the node would start only one."""
    issues: list[ConfigIssue] = []
    owner: dict[str, str] = {}
    streams_label = display_path(streams)
    for check in checks:
        if not check.file.startswith(streams_label):
            continue
        for name in check.names:
            if name in owner:
                issues.append(
                    ConfigIssue(
                        f"duplicate pipeline NAME (also defined in {owner[name]})",
                        file=check.file,
                        pipeline=name,
                        key="NAME",
                    )
                )
            else:
                owner[name] = check.file
    return issues


def cache_name_warnings(checks: list[PipelineCheck], streams: Path) -> list[str]:
    streams_label = display_path(streams)
    warnings = []
    for check in checks:
        if check.file.startswith(streams_label) and check.names and Path(check.file).stem not in check.names:
            warnings.append(f"{check.file} holds pipeline {check.names[0]!r}: it is kept under that name")
    return warnings


def app_config_label(settings: NodeSettings) -> str:
    """Which app config the node would read: the cached one, else ``$EE_APP_CONFIG``, else ``.config_app.json``."""
    if settings.layout.app_config.exists():
        return display_path(settings.layout.app_config)
    spec = settings.env.get(C.ENV_APP_CONFIG)
    if spec:
        return "inline JSON" if spec.lstrip().startswith("{") else display_path(spec)
    local = settings.base_dir / C.APP_CONFIG_FILE
    return display_path(local) if local.exists() else "defaults"


def _relative(issue: ConfigIssue) -> ConfigIssue:
    if issue.file and Path(issue.file).is_absolute():
        return dataclasses.replace(issue, file=display_path(issue.file))
    return issue


def validate(args: argparse.Namespace) -> Report:
    """Run every check; see the module docstring."""
    settings, issues = settings_from(args)
    startup = settings.seed_file if settings.seed_file else str(settings.layout.startup_config)
    report = Report(startup=display_path(startup), app=app_config_label(settings))
    report.issues.extend(_relative(i) for i in issues)  # comms, storage, status page and disk settings included
    catalog = load_plugins(args, settings)
    registry = catalog.registry
    report.plugins_loaded = len(registry.records())
    for failure in registry.failures:
        report.issues.append(
            ConfigIssue(
                f"plugin failed to load: {failure.reason}", file=display_path(failure.source), plugin=failure.name
            )
        )
    if args.files:
        for path in args.files:
            report.pipelines.append(check_pipeline_file(path, registry, file_role(path, settings)))
    else:
        for kind, item in default_pipeline_sources(settings):
            if kind == "file":
                report.pipelines.append(check_pipeline_file(Path(item), registry, file_role(Path(item), settings)))
            else:
                report.pipelines.append(check_pipeline_data(item, kind, registry))
        report.issues.extend(duplicate_names(report.pipelines, settings.layout.streams))
        report.warnings.extend(cache_name_warnings(report.pipelines, settings.layout.streams))
    return report


def render(report: Report, seconds: float) -> str:
    lines = [str(issue) for issue in report.all_issues()]
    lines += [f"warning: {w}" for w in report.warnings]
    for check in report.pipelines:
        lines += [f"ok: {check.file} › {p}" for p in check.plans]
    problems = len(report.all_issues())
    files = len(report.pipelines)
    summary = (
        f"checked startup config ({report.startup}), app config ({report.app}), {files} pipeline "
        f"source(s), {report.plugins_loaded} plugin(s) in {seconds:.2f} s"
    )
    lines.append(f"{'OK' if report.ok else f'{problems} problem(s)'}: {summary}")
    return "\n".join(lines)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check the startup config, the app config and pipeline JSON without starting anything. "
        "Exit code 0 when valid, 1 when not.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="pipeline JSON files (default: the startup config's PIPELINES, the cache's streams and pipelines/*.json)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_node_args(parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "validate", started: float | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    started = time.perf_counter() if started is None else started
    report = validate(args)
    if args.json:
        print_json(report.to_dict())
    else:
        print(render(report, time.perf_counter() - started))
    return 0 if report.ok else 1
