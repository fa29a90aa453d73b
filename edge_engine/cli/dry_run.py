"""``edge-node dry-run``: run one pipeline, or one plugin, on a local source, with no broker and no node identity.

    edge-node dry-run pipelines/demo.json --inputs 100
    edge-node dry-run --plugin TUTORIAL_HELLO --config '{"EVERY": 5}' --source samples/demo.mp4 --seconds 3
    edge-node dry-run --plugin TUTORIAL_COUNTER --config '{"RATE": 50}' --inputs 10   # a capture plugin

Payloads and notifications go to stdout as JSON lines (``{"type": "payload", ...}``), witness images to a
folder (``--images DIR``, else a temporary one, kept only when an image was written), logs to stderr. The
last line is the summary (``{"type": "summary", ...}``: inputs, payloads, errors, per-stage timings, the
effective rate, and ``first_payload_s``: seconds from the command's entry, before the engine is imported, to
the first payload; budget 1 s without a model), also printed readably on stderr. Exit code 0, 1 when the
plugin or the source raised, 2 for bad arguments.

It runs the node's own runtime (the same capture loop, dispatcher and instance threads) in a temporary cache
folder, so plugins behave as in the node; nothing is written to the local cache and no key is created.
``--source`` is ``synthetic`` (or ``synthetic:MODE``), ``void``, a video file, an image file, a folder of
images, or an ``rtsp://``/``http://`` URL. A capture plugin given to ``--plugin`` gets an input echo
instance, so its inputs are printed. In a dry run a source failure ends the run (no reconnect).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO

from edge_engine.cli._common import add_node_args, dump_json, load_plugins, settings_from
from edge_engine.constants import KIND_BUSINESS, KIND_CAPTURE
from edge_engine.errors import CacheError, ConfigError, EndOfStream
from edge_engine.messages import Notification, Payload, utc_iso
from edge_engine.plugin.kinds import BusinessPlugin, Input
from edge_engine.plugin.registry import PluginRegistry
from edge_engine.runtime.pipeline import PipelineRunner
from edge_engine.runtime.sandbox import Sandbox, same_name, with_classes
from edge_engine.runtime.stage_stats import StageStats

FIRST_PAYLOAD_BUDGET_S = 1.0
DEFAULT_INPUTS = 100
PIPELINE_NAME = "dry-run"
INSTANCE_ID = "dry-run"
ECHO_SIGNATURE = "DRY_RUN_INPUTS"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class InputEcho(BusinessPlugin):
    """Dry-run helper: a payload describing each input, so a capture plugin's output can be seen."""

    SIGNATURE = ECHO_SIGNATURE
    DESCRIPTION = "dry run: one payload per input (seq, metadata, data, image shape)"
    CONFIG: ClassVar[dict[str, Any]] = {}

    def process(self, inp: Input | None) -> dict[str, Any] | None:
        if inp is None:
            return None
        image = inp.image
        return {
            "SEQ": inp.seq,
            "METADATA": inp.metadata,
            "DATA": inp.data,
            "IMAGE": list(image.shape) if image is not None and hasattr(image, "shape") else None,
        }


# --- building the pipeline ---------------------------------------------------------------------------------
def source_config(source: str) -> dict[str, Any]:
    """The capture part of a pipeline for ``--source`` (see the module docstring)."""
    lowered = source.strip().lower()
    if lowered.startswith("synthetic"):
        _, _, mode = source.partition(":")
        return {"TYPE": "SYNTHETIC", **({"MODE": mode.strip()} if mode.strip() else {})}
    if lowered == "void":
        return {"TYPE": "VOID"}
    if lowered.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return {"TYPE": "VIDEO_STREAM", "URL": source}
    path = Path(source).expanduser()
    if path.is_dir():
        return {"TYPE": "IMAGE_FOLDER", "PATH": str(path.absolute())}
    if not path.is_file():
        raise ValueError(f"--source {source!r}: no such file or folder (or use synthetic, void, rtsp://...)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return {"TYPE": "IMAGE_FOLDER", "PATH": str(path.absolute().parent), "PATTERN": path.name}
    return {"TYPE": "VIDEO_FILE", "URL": str(path.absolute())}


def plugin_pipeline(registry: PluginRegistry, signature: str, config: dict[str, Any], source: str) -> dict[str, Any]:
    """A one-plugin pipeline: a business plugin on ``source``, or a capture plugin with an input echo."""
    capture = registry.get(KIND_CAPTURE, signature)
    business = registry.get(KIND_BUSINESS, signature)
    if business is not None:
        instance = {"INSTANCE_ID": INSTANCE_ID, **config}
        return {
            "NAME": PIPELINE_NAME,
            **source_config(source),
            "PLUGINS": [{"SIGNATURE": business.signature, "INSTANCES": [instance]}],
        }
    if capture is not None:
        return {
            "NAME": PIPELINE_NAME,
            "TYPE": capture.signature,
            **config,
            "PLUGINS": [{"SIGNATURE": ECHO_SIGNATURE, "INSTANCES": [{"INSTANCE_ID": "inputs"}]}],
        }
    near = registry.suggest(KIND_BUSINESS, signature) or registry.suggest(KIND_CAPTURE, signature)
    hint = f"; did you mean {near!r}?" if near else "; `edge-node plugins` lists them"
    raise ValueError(f"--plugin {signature!r}: no business or capture plugin has this signature{hint}")


def read_pipeline(path: Path, name: str | None) -> dict[str, Any]:
    from edge_engine.local.cache import read_json

    data = read_json(path)
    items = data if isinstance(data, list) else [data]
    if name is not None:
        items = [p for p in items if isinstance(p, dict) and p.get("NAME") == name]
        if not items:
            raise ValueError(f"{path}: no pipeline named {name!r}")
    if len(items) != 1:
        raise ValueError(f"{path} holds {len(items)} pipelines; choose one with --name")
    raw = items[0]
    if isinstance(raw, dict) and not raw.get("PLUGINS"):
        raw = {**raw, "PLUGINS": [{"SIGNATURE": ECHO_SIGNATURE, "INSTANCES": [{"INSTANCE_ID": "inputs"}]}]}
    return raw


def limited_capture(cls: type, limit: int) -> type:
    """A subclass of the capture class whose stream ends after ``limit`` inputs."""

    class Limited(cls):
        _dry_run_read = 0

        def read(self) -> Any:
            if self._dry_run_read >= limit:
                raise EndOfStream(f"dry run: {limit} inputs read")
            item = super().read()
            if item is not None:
                self._dry_run_read += 1
            return item

    return same_name(Limited, cls)


# --- output --------------------------------------------------------------------------------------------------
@dataclass
class Sink:
    """Prints payloads and notifications as JSON lines and writes witness images."""

    out: TextIO
    images_dir: Path | None  # None: a temporary folder, made when the first image arrives
    started: float
    payloads: int = 0
    notifications: int = 0
    error_notifications: int = 0
    images: int = 0
    first_payload: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, record: dict[str, Any]) -> None:
        line = dump_json(record, indent=None)
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def payload(self, payload: Payload) -> None:
        with self._lock:
            if self.first_payload is None:
                self.first_payload = time.perf_counter() - self.started
            self.payloads += 1
        image = None
        if payload.image_jpeg is not None:
            _, _, signature, instance = payload.path
            with self._lock:
                if self.images_dir is None:
                    self.images_dir = Path(tempfile.mkdtemp(prefix="edge-dry-run-images-"))
            image_path = self.images_dir / f"{signature}_{instance}_{payload.seq:06d}.jpg"
            image_path.parent.mkdir(parents=True, exist_ok=True)
            image_path.write_bytes(payload.image_jpeg)
            image = str(image_path)
            self.images += 1
        self.write(
            {
                "type": "payload",
                "time": utc_iso(payload.created),
                "path": payload.path,
                "seq": payload.seq,
                "input_seq": payload.input_seq,
                "image": image,
                "data": payload.data,
            }
        )

    def notification(self, notification: Notification) -> None:
        self.notifications += 1
        if notification.level == "error":
            self.error_notifications += 1
        self.write({"type": "notification", **notification.to_dict()})


# --- running ---------------------------------------------------------------------------------------------------
def _timing(stats: StageStats) -> dict[str, Any]:
    count = stats.busy_count
    return {
        "count": count,
        "avg_ms": round(1000 * stats.busy_seconds / count, 3) if count else None,
        "max_ms": round(1000 * stats.busy_max, 3) if count else None,
        "total_ms": round(1000 * stats.busy_seconds, 1),
    }


def timed_serving(runner: PipelineRunner) -> StageStats:
    """Measure the serving stage of ``runner`` per input (call before ``start``).

    Without models the stage's ``run`` passes inputs through (its cost is measured); with models the time
    from ``submit`` to ``complete`` is each input's serving latency (inputs overlap up to the stage's window).
    """
    stats = StageStats()
    stage: Any = runner.serving
    perf = time.perf_counter
    inner_run = stage.run

    def run(inp: Input) -> Input:
        if getattr(stage, "active", False):  # timed by submit/complete below
            return inner_run(inp)
        begun = perf()
        try:
            return inner_run(inp)
        finally:
            stats.timed(perf() - begun)

    stage.run = run
    if hasattr(stage, "submit") and hasattr(stage, "complete"):
        inner_submit, inner_complete = stage.submit, stage.complete
        begun_at: dict[int, float] = {}

        def submit(inp: Input) -> Any:
            begun = perf()
            ticket = inner_submit(inp)
            begun_at[id(ticket)] = begun
            return ticket

        def complete(ticket: Any) -> Any:
            try:
                return inner_complete(ticket)
            finally:
                begun = begun_at.pop(id(ticket), None)
                if begun is not None:
                    stats.timed(perf() - begun)

        stage.submit, stage.complete = submit, complete
    return stats


def wait_until_done(runner: PipelineRunner, seconds: float | None, interrupted: threading.Event) -> str:
    """Block until the source ended and instances finished, the time is up, or Ctrl-C; returns why."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        if interrupted.wait(0.01):
            return "interrupted"
        capture = runner.capture.status
        if capture == "failed":
            return "source failed"
        instances = list(runner.instances.values())
        if capture == "finished":
            if all(not r.thread.is_alive() for r in instances):
                return "end of stream"
            if all(r.status in ("error", "finished", "stopped", "disabled") for r in instances):
                return "end of stream (instances failing to start)"
        if deadline is not None and time.monotonic() >= deadline:
            return f"{seconds:g} s elapsed"


def summary(runner: PipelineRunner, sink: Sink, serving: StageStats, started_run: float, reason: str) -> dict[str, Any]:
    elapsed = time.perf_counter() - started_run
    capture = runner.capture.stats
    instances = {"/".join(k): r for k, r in runner.instances.items()}
    errors = capture.errors + sum(r.stats.errors for r in instances.values())
    first = sink.first_payload
    return {
        "type": "summary",
        "pipeline": runner.name,
        "stopped_by": reason,
        "inputs": capture.inputs,
        "payloads": sink.payloads,
        "notifications": sink.notifications,
        "errors": errors,
        "dropped": capture.dropped + sum(r.stats.dropped for r in instances.values()),
        "elapsed_s": round(elapsed, 3),
        "effective_rate": round(capture.inputs / elapsed, 2) if elapsed > 0 else None,
        "first_payload_s": None if first is None else round(first, 3),
        "first_payload_budget_s": FIRST_PAYLOAD_BUDGET_S,
        "timings": {
            "capture": _timing(capture),
            "serving": _timing(serving),
            "business": {name: _timing(r.stats) for name, r in instances.items()},
        },
        "last_errors": {name: r.stats.last_error for name, r in instances.items() if r.stats.last_error}
        | ({"capture": capture.last_error} if capture.last_error else {}),
        "images_dir": str(sink.images_dir) if sink.images else None,
    }


def render_summary(data: dict[str, Any]) -> str:
    def ms(t: dict[str, Any]) -> str:
        return "-" if t["avg_ms"] is None else f"{t['avg_ms']:.2f}/{t['max_ms']:.2f}"

    first = data["first_payload_s"]
    budget = data["first_payload_budget_s"]
    within = "within" if first is not None and first <= budget else "OVER"
    verdict = "no payload" if first is None else f"{first:.3f} s ({within} the {budget:g} s budget)"
    business = " · ".join(f"{name} {ms(t)}" for name, t in data["timings"]["business"].items())
    lines = [
        f"dry run {data['pipeline']!r}: {data['inputs']} inputs, {data['payloads']} payloads, {data['errors']} "
        f"errors, {data['notifications']} notifications in {data['elapsed_s']:.2f} s "
        f"({data['effective_rate'] or 0:.1f} inputs/s); stopped: {data['stopped_by']}",
        f"first payload after {verdict}",
        f"timings ms avg/max: capture {ms(data['timings']['capture'])} · serving {ms(data['timings']['serving'])} · "
        f"business {business or '-'}",
    ]
    lines += [f"last error {name}: {text}" for name, text in data["last_errors"].items()]
    if data["images_dir"]:
        lines.append(f"witness images: {data['images_dir']}")
    return "\n".join(lines)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run one pipeline JSON, or one plugin with an inline config, on a local source with no broker "
        "and no node identity. Payloads and notifications go to stdout as JSON lines, then a summary.",
    )
    parser.add_argument("pipeline", nargs="?", type=Path, help="pipeline JSON file (or use --plugin)")
    parser.add_argument("--name", help="the pipeline to run when the file holds several")
    parser.add_argument("--plugin", metavar="SIG", help="run this plugin alone (business or capture)")
    parser.add_argument("--config", default="{}", metavar="JSON", help="the plugin's config (with --plugin)")
    parser.add_argument(
        "--source",
        default="synthetic",
        metavar="SRC",
        help="with --plugin: synthetic[:MODE], void, a video, an image, a folder, or a URL (default: synthetic)",
    )
    limits = parser.add_mutually_exclusive_group()
    limits.add_argument(
        "--inputs",
        type=int,
        default=None,
        metavar="N",
        help=f"stop after N inputs (default {DEFAULT_INPUTS}; 0 = until the source ends)",
    )
    limits.add_argument("--seconds", type=float, default=None, metavar="T", help="stop after T seconds")
    parser.add_argument("--images", type=Path, default=None, metavar="DIR", help="folder for witness images")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines on stderr (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no human summary on stderr")
    add_node_args(parser)
    return parser


def _configure_logging(verbose: int) -> None:
    import logging

    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)-7s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.getLogger("edge.plugin").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def prepare(args: argparse.Namespace, registry: PluginRegistry) -> dict[str, Any]:
    """The pipeline dict to run, from the file or from --plugin/--config/--source."""
    if args.plugin:
        config = json.loads(args.config)
        if not isinstance(config, dict):
            raise ValueError("--config must be a JSON object")
        return plugin_pipeline(registry, args.plugin, config, args.source)
    if args.pipeline is None:
        raise ValueError("give a pipeline JSON file or --plugin SIG")
    return read_pipeline(args.pipeline, args.name)


def run(args: argparse.Namespace, started: float, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the dry run described by ``args``; returns the exit code (0 ok, 1 errors, 2 bad arguments)."""
    out = out or sys.stdout
    err = err or sys.stderr
    settings, _ = settings_from(args)  # dry runs do not need a valid node config: only its plugin folders
    catalog = load_plugins(args, settings)
    registry = catalog.registry.copy()
    registry.add(InputEcho, __name__)
    for failure in catalog.registry.failures:
        err.write(f"warning: plugin failed to load: {failure}\n")
    try:
        raw = prepare(args, registry)
    except (ValueError, CacheError) as exc:  # json.JSONDecodeError is a ValueError
        err.write(f"dry-run: {exc}\n")
        return 2
    limit = DEFAULT_INPUTS if args.inputs is None and args.seconds is None else (args.inputs or 0)
    with tempfile.TemporaryDirectory(prefix="edge-dry-run-") as tmp:
        sink = Sink(out, args.images, started)
        models = settings.layout.models if settings.layout.models.is_dir() else None  # the node's models, read only
        sandbox = Sandbox(
            registry,
            Path(tmp) / "cache",
            on_payload=sink.payload,
            on_notification=sink.notification,
            pm=catalog.pm,
            alias="dry-run",
            models_dir=models,
        )
        try:
            spec = sandbox.build(raw, str(args.pipeline) if args.pipeline else "--plugin")
        except ConfigError as exc:
            for issue in exc.issues:
                err.write(f"{issue}\n")
            sandbox.close()
            return 1
        capture_cls = limited_capture(spec.capture.cls, limit) if limit else None
        spec = with_classes(spec, capture=capture_cls, capture_config={**spec.capture_config, "RECONNECTABLE": False})
        interrupted = threading.Event()
        previous = _on_sigint(interrupted)
        started_run = time.perf_counter()
        runner = PipelineRunner(sandbox.env, spec)
        sandbox.runners.append(runner)
        serving = timed_serving(runner)
        try:
            runner.start()
            reason = wait_until_done(runner, args.seconds, interrupted)
            if reason.startswith("end of stream") and limit and runner.capture.stats.inputs >= limit:
                reason = f"{limit} inputs read"
        finally:
            sandbox.close()
            _restore_sigint(previous)
        data = summary(runner, sink, serving, started_run, reason)
        sink.write(data)
        if not args.quiet:
            err.write(render_summary(data) + "\n")
    return 0 if data["errors"] == 0 and sink.error_notifications == 0 else 1


def _on_sigint(event: threading.Event) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, lambda *_: event.set())


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None, prog: str = "dry-run", started: float | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    _configure_logging(args.verbose)
    return run(args, time.perf_counter() if started is None else started)
