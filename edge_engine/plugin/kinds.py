"""Base classes of the three plugin kinds, the input they exchange, and the context the engine hands them.

A plugin is a class with a ``SIGNATURE`` (unique, case-insensitive), a declared default ``CONFIG`` and
lifecycle methods. The engine creates one object per pipeline (capture) or per instance (business),
calls every method of that object from one thread, and never shares it between pipelines.
Plugin authors import these names from :mod:`edge_engine.api`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from edge_engine.constants import KIND_BUSINESS, KIND_CAPTURE, KIND_SERVING
from edge_engine.plugin.config_keys import Key, merged_schema


@dataclass(slots=True)
class Input:
    """One unit of data on its way through a pipeline.

    ``image`` is a numpy array (H×W×3, BGR, as OpenCV decodes) or None; ``data`` a structured
    message (dict) or None; ``metadata`` what the source knows about it (frame index, fps, file...).
    ``seq`` counts inputs of the pipeline from 1; ``timestamp`` is wall-clock seconds (``time.time()``)
    at capture. ``inferences`` maps a serving plugin's signature to its result for this input.
    """

    image: Any = None
    data: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    timestamp: float = 0.0
    inferences: dict[str, Any] = field(default_factory=dict)


@dataclass
class PluginContext:
    """What the engine hands a plugin: who it is, where it may write, and how it reports.

    Plugins use only these helpers; they never reach into the engine.
    """

    node_alias: str
    pipeline: str
    signature: str
    instance_id: str | None
    log: logging.Logger
    output_dir: Path
    models_dir: Path
    stop_event: threading.Event
    emit_fn: Callable[..., None] = field(repr=False, default=lambda *a, **k: None)
    notify_fn: Callable[..., None] = field(repr=False, default=lambda *a, **k: None)
    save_file_fn: Callable[[str, bytes | str], str] | None = field(repr=False, default=None)
    infer_fn: Callable[..., list[Any]] | None = field(repr=False, default=None)

    def emit(self, payload: Mapping[str, Any], image: Any = None) -> None:
        """Send a payload (a JSON-able mapping), optionally with a witness image (numpy BGR array).

        The image is written to ``_output/`` and the payload carries ``IMG_PATH``; with object storage
        configured it also carries ``IMG_URL`` (uploaded in the background), else the image inline (``IMG``).
        """
        if not isinstance(payload, Mapping):
            raise TypeError(f"emit() needs a dict payload (got {type(payload).__name__})")
        self.emit_fn(dict(payload), image)

    def notify(self, message: str, level: str = "info", **fields: Any) -> None:
        """Send a notification (``level``: info, warning, error) about this plugin."""
        self.notify_fn(message, level, fields)

    def infer(
        self, signature: str, crops: Any, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> list[Any]:
        """Run the serving plugin ``signature`` (configured with ``params``, the keys ``STARTUP_AI_ENGINE_PARAMS``
        would give it) on each image of ``crops`` (numpy arrays, at most 1,024), in the node's shared model
        servers, batched with other pipelines' inputs. Blocks until every crop is answered or ``timeout`` seconds
        passed; returns the results aligned with ``crops``, a :class:`~edge_engine.errors.ServingError` for each
        crop that got none. A wrong signature or config raises ``ValueError``. For business plugins in a node;
        see :mod:`edge_engine.serving.cascade` and ``crop_detection`` to cut crops from detections."""
        if self.infer_fn is None:
            raise RuntimeError("infer() is available to business plugins running in a node")
        return self.infer_fn(signature, crops, params, timeout)

    def save_file(self, name: str, data: bytes | str) -> str:
        """Keep a file this plugin produced (a clip, a report...) and return where consumers find it.

        The file is written to ``output_dir/files/<name>`` (``name`` is reduced to a plain file name; text is
        saved as UTF-8). With object storage configured it is also queued for upload and the object's URL is
        returned at once (the upload runs in the background and survives restarts; the key is the content's
        SHA-256 plus the name's extension); otherwise the file's path, relative to the local cache in a node.
        Put the returned text in a payload field.
        """
        if self.save_file_fn is not None:
            return self.save_file_fn(name, data)
        from edge_engine.local.cache import atomic_write_bytes
        from edge_engine.storage.names import safe_file_name

        path = self.output_dir / "files" / safe_file_name(name)
        atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else bytes(data))
        return str(path)

    def publish_live(self, image: Any, quality: int = 70) -> bool:
        """Show ``image`` (numpy BGR) as this instance's live view on the status page, replacing the last one.

        It is kept as one JPEG in ``output_dir`` (replaced atomically, not synced: a view, not a record) and
        sent nowhere. Returns False when it could not be written (disk full...); that loses only the view.
        """
        import os

        import cv2

        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            return False
        path = self.output_dir / LIVE_IMAGE
        temp = path.with_name(f".{LIVE_IMAGE}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(encoded.tobytes())
            os.replace(temp, path)
        except OSError:
            return False
        return True


LIVE_IMAGE = "live.jpg"  # an instance's live view, in its output folder (shown by the status page)


class PluginBase:
    """Common part of every plugin class.

    Class attributes a plugin sets:

    * ``SIGNATURE`` – unique name, matched case-insensitively (``"MOTION_DETECTOR"``).
    * ``ALIASES`` – other names it answers to (Ratio1 ``TYPE`` names such as ``"VideoStream"``).
    * ``CONFIG`` – ``{"KEY": default or Key(...)}``; merged with the base class's keys.
    * ``VERSION``, ``DESCRIPTION`` – shown by the ``plugins`` listing.
    * ``ABSTRACT = True`` – for intermediate base classes that must not be registered.
    """

    KIND: ClassVar[str] = ""
    SIGNATURE: ClassVar[str] = ""
    ALIASES: ClassVar[tuple[str, ...]] = ()
    VERSION: ClassVar[str] = "0.1.0"
    DESCRIPTION: ClassVar[str] = ""
    ABSTRACT: ClassVar[bool] = True
    CONFIG: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "ABSTRACT" not in vars(cls):
            cls.ABSTRACT = False

    def __init__(self, config: Mapping[str, Any], context: PluginContext):
        self._config: dict[str, Any] = dict(config)
        self.context = context
        self.log = context.log

    @classmethod
    def config_schema(cls) -> dict[str, Key]:
        """All declared keys of this class and its bases."""
        return merged_schema([c for c in reversed(cls.__mro__) if issubclass(c, PluginBase)])

    @property
    def config(self) -> Mapping[str, Any]:
        """The effective config: defaults ← pipeline overrides ← live updates (read-only)."""
        return MappingProxyType(self._config)

    def _apply_config(self, changed: Mapping[str, Any]) -> None:
        self._config.update(changed)

    # --- lifecycle (override what you need) ---------------------------------------------------------
    def on_init(self) -> None:
        """Called once, in the plugin's own thread, before the first input. Raise to fail the start (retried)."""

    def on_config(self, changed: dict[str, Any]) -> None:
        """After a live config update; ``changed`` holds the keys whose values changed. Raise to refuse it."""

    def on_command(self, command: Any, **params: Any) -> Any:
        """Called with an instance command sent by an owner; the return value is reported back."""
        return None

    def on_close(self) -> None:
        """Called once when the plugin stops (pipeline removed or updated, node stopping)."""

    def on_safe_mode(self, reason: str) -> None:
        """The pipeline's keep-alive lapsed (``KEEP_ALIVE_SECONDS`` without one from the owner): enter your safe
        default mode (e.g. stop actuating, close a gate, keep only observing). ``reason`` says why. Called in the
        plugin's own thread between two inputs; also right after ``on_init`` when the plugin starts while the
        pipeline is in safe mode. An exception is logged and counted."""

    def on_resume(self) -> None:
        """The owner's keep-alive came back after :meth:`on_safe_mode`: leave the safe mode."""


class CapturePlugin(PluginBase):
    """A data-capture plugin: one per pipeline, it produces the pipeline's inputs.

    The engine calls ``connect()``, then ``read()`` in a loop on the pipeline's capture thread, and
    ``release()`` at the end. ``read()`` returns an :class:`Input`, a numpy image, a dict (structured
    message) or None (nothing now: the engine waits briefly and calls again). It raises
    :class:`~edge_engine.errors.EndOfStream` when a finite source is exhausted. Raise ``ConnectionError``
    (or ``TimeoutError``) when the source cannot be reached or read: the source is then *away*, probed again
    at most ``AWAY_PROBE_MAX_SECONDS`` apart for as long as it takes, and reported lost after
    ``STREAM_LOST_SECONDS`` and back with its next input. Any other exception counts as the plugin's failure:
    the engine releases, waits with backoff and connects again, and stops a source that keeps failing that
    way (flapping).
    """

    KIND = KIND_CAPTURE
    ABSTRACT = True
    CONFIG: ClassVar[dict[str, Any]] = {
        "LIVE_FEED": Key(False, type=bool, doc="live source: drop the oldest input when consumers lag"),
        "CAP_RESOLUTION": Key(0.0, min=0, doc="max inputs per second; 0 = as fast as the source gives"),
        "RECONNECTABLE": Key(True, type=(bool, str), doc="reconnect after a failure (Ratio1: YES/NO/KEEPALIVE)"),
        "MAX_INPUTS_QUEUE_SIZE": Key(4, type=int, min=1, doc="inputs buffered between capture and plugins"),
        "SILENT_SOURCE_SECONDS": Key(
            0.0, min=0, doc="a connected source giving no input for this long is away (reconnect); 0 = off"
        ),
        "KEEP_ALIVE_SECONDS": Key(
            0.0, min=0, doc="without an owner's keep-alive for this long, the plugins enter safe mode; 0 = off"
        ),
        "STREAM_LOST_SECONDS": Key(
            10.0, min=0, doc="a source away (unreachable) this long is reported lost, then back; 0 = no notices"
        ),
        "AWAY_PROBE_MAX_SECONDS": Key(
            1.0, min=0.05, max=60, doc="longest wait between two attempts to reach an away source"
        ),
        "PROCESS": Key(
            "node", choices=("node", "worker"), doc="node: run in the node's process; worker: in a process of its own"
        ),
    }

    def connect(self) -> None:
        """Open the source. Raise to have the engine retry with backoff."""

    def read(self) -> Any:
        """Return the next input, or None when nothing is ready yet."""
        raise NotImplementedError

    def release(self) -> None:
        """Close the source. Called after a failure, at end of stream, and at stop."""

    def is_live(self) -> bool:
        """Whether slow consumers make the engine drop old inputs (True) or wait (False)."""
        return bool(self.config.get("LIVE_FEED", False))


class ServingPlugin(PluginBase):
    """A model-serving plugin: load a model, then pre-process a batch, predict, post-process.

    Business instances name the serving plugins they need in ``AI_ENGINE`` (and override their config in
    ``STARTUP_AI_ENGINE_PARAMS``); each input then gets ``Input.inferences[SIGNATURE]``: this plugin's result
    for it, or a :class:`~edge_engine.errors.ServingError`. The object lives in a model-server process, one
    per (plugin, config) and worker, shared by every pipeline that uses that config: ``on_init()`` loads the
    model there, and the three methods below run there on batches gathered from all those pipelines.
    ``Input.image`` is then a read-only view of shared memory, valid only during the call: copy what you keep.
    """

    KIND = KIND_SERVING
    ABSTRACT = True
    CONFIG: ClassVar[dict[str, Any]] = {
        "MAX_BATCH_SIZE": Key(8, type=int, min=1, doc="largest batch the server runs"),
        "MAX_WAIT_MS": Key(5.0, min=0, doc="longest wait to fill a batch"),
        "WORKERS": Key(0, type=int, min=0, max=256, doc="server processes (one model copy each); 0 = one per core"),
        "MAX_IN_FLIGHT": Key(8, type=int, min=1, max=64, doc="inputs of one pipeline in the model servers at once"),
        "INFERENCE_TIMEOUT": Key(30.0, min=0.1, doc="seconds a batch may run before its process is restarted"),
        "IDLE_STOP_SECONDS": Key(
            60.0, min=0, doc="stop the server processes after this long without inputs; 0 = never"
        ),
        "PROCESS_NICE": Key(5, type=int, min=0, max=19, doc="run the server processes this much below the node (nice)"),
    }

    @classmethod
    def check_config(cls, config: Mapping[str, Any], models_dir: Path | None) -> list[str]:
        """Problems with ``config`` found without loading the model (runs in the node process: no heavy imports).

        Each problem is one sentence naming the model and, for shapes, what the model expects and what the
        config gives. ``models_dir`` is the cache's ``_models/`` folder (None when unknown).
        """
        return []

    @classmethod
    def model_name(cls, config: Mapping[str, Any]) -> str:
        """A short name of the model this config serves, for logs, errors and ``local_info.json``."""
        return cls.SIGNATURE

    @classmethod
    def default_workers(cls, config: Mapping[str, Any], cores: int) -> int:
        """How many server processes ``WORKERS: 0`` means (one per core; GPU plugins return 1)."""
        return max(1, cores)

    def model_info(self) -> dict[str, Any]:
        """What ``local_info.json`` shows about the loaded model (called after ``on_init``)."""
        return {}

    def pre_process(self, inputs: list[Input]) -> Any:
        """Turn a list of inputs into the model's batch."""
        return inputs

    def predict(self, batch: Any) -> Any:
        """Run the model on a batch."""
        return batch

    def post_process(self, predictions: Any, inputs: list[Input]) -> list[Any]:
        """Return one result per input, in order (picklable, ideally plain lists, dicts and numbers)."""
        return [None for _ in inputs]


class BusinessPlugin(PluginBase):
    """A business plugin: one object per instance, it turns inputs into payloads.

    ``process(inp)`` is called for each input (or with None every ``PROCESS_DELAY`` seconds when
    ``ALLOW_EMPTY_INPUTS`` is true). It may return a payload dict (sent as is), or call
    ``self.emit(payload, image=...)`` any number of times and return None. An exception is logged
    with pipeline and instance, counted, and the instance goes on with the next input.
    """

    KIND = KIND_BUSINESS
    ABSTRACT = True
    CONFIG: ClassVar[dict[str, Any]] = {
        "PROCESS_DELAY": Key(0.0, min=0, doc="minimum seconds between two process() calls"),
        "ALLOW_EMPTY_INPUTS": Key(False, type=bool, doc="call process(None) when no input arrives"),
        "MAX_INPUTS_QUEUE_SIZE": Key(2, type=int, min=1, doc="inputs waiting for this instance"),
        "DISABLED": Key(False, type=bool, doc="keep the instance configured but do not run it"),
        "AI_ENGINE": Key([], type=(list, str), doc="serving plugin signature(s) this instance needs"),
        "STARTUP_AI_ENGINE_PARAMS": Key(
            {}, type=dict, doc="serving config overrides: {KEY: value} for all engines, {SIGNATURE: {...}} for one"
        ),
        "CASCADE": Key(
            [], type=list, doc="second models on the first's boxes: [{SIGNATURE, ON, CLASSES, MIN_SCORE, PADDING, ...}]"
        ),
        "INSTANCE_COMMAND": Key({}, type=(dict, str, list), doc="set to send a command to the instance"),
        "ENCRYPT_PAYLOAD": Key(False, type=bool, doc="send payloads encrypted to the initiator"),
    }

    @classmethod
    def cascades(cls, config: Mapping[str, Any]) -> Any:
        """The cascades an instance with this config runs (entries as ``CASCADE`` takes them): its ``CASCADE``.
        A plugin whose own work is a cascade adds its entries here (``TEXT_READER``: its text lines); they are
        validated with the pipeline and run like declared ones (anything but a list is reported as an error)."""
        return config.get("CASCADE") or []

    def process(self, inp: Input | None) -> Mapping[str, Any] | None:
        """Handle one input; return a payload dict or None."""
        raise NotImplementedError

    def emit(self, payload: Mapping[str, Any], image: Any = None) -> None:
        """Send a payload, optionally with a witness image."""
        self.context.emit(payload, image)

    def infer(
        self, signature: str, crops: Any, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> list[Any]:
        """Run a serving plugin on images (crops) in the shared model servers; results aligned with them, a
        ServingError for each that got none (see PluginContext)."""
        return self.context.infer(signature, crops, params, timeout)

    def notify(self, message: str, level: str = "info", **fields: Any) -> None:
        """Send a notification about this instance."""
        self.context.notify(message, level, **fields)

    def save_file(self, name: str, data: bytes | str) -> str:
        """Keep a produced file; returns its object URL (S3 configured) or local path (see PluginContext)."""
        return self.context.save_file(name, data)

    def publish_live(self, image: Any) -> bool:
        """Show an image (numpy BGR) as this instance's live view on the status page (see PluginContext)."""
        return self.context.publish_live(image)


PLUGIN_BASES: dict[str, type[PluginBase]] = {
    KIND_CAPTURE: CapturePlugin,
    KIND_SERVING: ServingPlugin,
    KIND_BUSINESS: BusinessPlugin,
}
