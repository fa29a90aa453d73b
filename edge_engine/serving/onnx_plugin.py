"""A base class for serving plugins that run an ONNX model with onnxruntime.

A subclass says where its model file is (:meth:`OnnxServingPlugin.model_file`), what input tensor its
``pre_process`` makes (:meth:`~OnnxServingPlugin.expected_input`, for the shape check) and how it turns inputs
into a batch and outputs into results. This class builds the session with the configured threads and
execution providers, checks the model's input against the config (in the node process when the pipeline
is added, reading the file's header only; again in the server once the model is loaded), and runs it.
With ``MODEL_URL`` and ``MODEL_SHA256`` in the config the model is fetched by the node
(:mod:`edge_engine.serving.model_fetch`) and read from ``_models/fetched/<sha256>.onnx`` instead of
``model_file``. Once loaded, a model whose input size is fixed runs once on zeros (a warm-up: the first run
allocates), so a server reports ready only when it answers at full speed.

onnxruntime is imported in :meth:`~OnnxServingPlugin.on_init`, which runs in the model-server process only:
the node process never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edge_engine.plugin.config_keys import Key
from edge_engine.plugin.kinds import ServingPlugin
from edge_engine.serving import providers as execution
from edge_engine.serving.model_fetch import ModelSource, fetched_path, source_of
from edge_engine.serving.onnx_info import Dim, OnnxFormatError, OnnxIO, TensorInfo, read_onnx_io

CPU = "CPUExecutionProvider"
AUTO_BATCH_MAX = 8  # the largest batch ``MAX_BATCH_SIZE: 0`` chooses (for the smallest inputs)
BATCH_PIXELS = 96 * 96 * 8  # ``MAX_BATCH_SIZE: 0``: batches of about this many input pixels (bench_serving_batch)
GPU_PROVIDERS = (
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)


class OnnxServingPlugin(ServingPlugin):
    """Serve an ONNX model: subclass it, set ``SIGNATURE``, implement ``model_file``, ``pre_process`` and
    ``post_process``; ``predict`` runs the session on the batch (an array for the first input, or a dict of
    input name → array)."""

    ABSTRACT = True
    CONFIG: ClassVar[dict[str, Any]] = {
        "INTRA_OP_THREADS": Key(1, type=int, min=0, max=256, doc="onnxruntime threads per op; 0 = one per core"),
        "INTER_OP_THREADS": Key(1, type=int, min=0, max=256, doc="onnxruntime threads across ops; 0 = default"),
        "MEMORY_ARENA": Key(
            True, type=bool, doc="keep onnxruntime's memory arena (faster; holds the largest batch's memory)"
        ),
        "ARENA_SHRINK": Key(
            False,
            type=bool,
            doc="give the arena's memory back after each batch (less steady memory for big inputs; slower)",
        ),
        "EXECUTION_PROVIDER": Key(
            "auto",
            type=str,
            choices=execution.CHOICES,
            doc="auto, cpu, openvino, cuda or tensorrt; one the installed onnxruntime lacks is an error (auto: cuda "
            "if there, else cpu)",
        ),
        "EXECUTION_PROVIDERS": Key(
            [], type=list, doc="onnxruntime provider names instead of EXECUTION_PROVIDER (all must be installed)"
        ),
        "MODEL_URL": Key("", type=str, doc="fetch the model from http(s)://... or s3://BUCKET/KEY (or s3:KEY)"),
        "MODEL_SHA256": Key("", type=str, doc="SHA-256 of the file MODEL_URL names (required with it)"),
        "MODEL_MAX_MB": Key(2048, type=int, min=1, doc="largest model MODEL_URL may deliver, in MB"),
    }

    def __init__(self, config: Mapping[str, Any], context: Any):
        super().__init__(config, context)
        self.session: Any = None
        self.model_path: Path | None = None
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.input_name = ""
        self.output_names: list[str] = []
        self.fixed_batch: int | None = None
        self.execution_provider = ""
        self.metadata: dict[str, str] = {}

    # --- where the model is and what it takes (class level: also used in the node process) -------------------
    @classmethod
    def model_file(cls, config: Mapping[str, Any], models_dir: Path | None) -> Path:
        """The ``.onnx`` file this config serves."""
        raise NotImplementedError

    @classmethod
    def expected_input(cls, config: Mapping[str, Any]) -> tuple[Dim, ...] | None:
        """The shape ``pre_process`` feeds the first input (``None`` for the batch or any free dimension),
        and :meth:`describe_input` says which config keys made it. None: no check."""
        return None

    @classmethod
    def describe_input(cls, config: Mapping[str, Any]) -> str:
        return "the plugin's pre-processing"

    @classmethod
    def input_element_type(cls, config: Mapping[str, Any]) -> str | None:
        """The element type ``pre_process`` produces (``"float32"``...), or None: no check."""
        return "float32"

    @classmethod
    def model_source(cls, config: Mapping[str, Any]) -> ModelSource | None:
        """Where the node fetches the model from (``MODEL_URL``), or None; ValueError when the keys are wrong."""
        return source_of(config)

    @classmethod
    def model_location(cls, config: Mapping[str, Any], models_dir: Path | None) -> Path:
        """The file the server loads: the fetched one with ``MODEL_URL``, else :meth:`model_file`."""
        source = source_of(config)
        if source is None:
            return cls.model_file(config, models_dir)
        if models_dir is None:
            raise ValueError("a model fetched from MODEL_URL lives in the cache's _models/")
        return fetched_path(models_dir, source)

    @classmethod
    def model_name(cls, config: Mapping[str, Any]) -> str:
        try:
            source = source_of(config)
            return source.name if source is not None else cls.model_file(config, None).name
        except (NotImplementedError, ValueError, OSError, TypeError):
            return cls.SIGNATURE

    @classmethod
    def default_workers(cls, config: Mapping[str, Any], cores: int) -> int:
        listed = config.get("EXECUTION_PROVIDERS") or []
        if any(p in GPU_PROVIDERS for p in listed) or execution.uses_gpu(config, execution.installed_build()):
            return 1  # one process feeds the accelerator
        return max(1, cores)

    @classmethod
    def model_input_size(cls, config: Mapping[str, Any], models_dir: Path | None) -> tuple[int, int] | None:
        """``(height, width)`` of one input as the model gets it, when known without loading the model (None:
        unknown, e.g. a detector that keeps the frame's size). Read by :meth:`default_max_batch`."""
        return None

    @classmethod
    def default_max_batch(cls, config: Mapping[str, Any], models_dir: Path | None) -> int:
        """What ``MAX_BATCH_SIZE: 0`` means: a batch size from the input size (:func:`batch_for_input`)."""
        return batch_for_input(cls.model_input_size(config, models_dir))

    @classmethod
    def fixed_input_dims(cls, config: Mapping[str, Any], models_dir: Path | None) -> tuple[Dim, ...] | None:
        """The model file's first input shape, read from its header (None when the file is not here yet)."""
        try:
            path = cls.model_location(config, models_dir)
            if not path.is_absolute() and models_dir is None:
                return None
            return read_onnx_io(path).inputs[0].shape if path.is_file() else None
        except (OnnxFormatError, OSError, ValueError, IndexError, NotImplementedError):
            return None

    @classmethod
    def check_config(cls, config: Mapping[str, Any], models_dir: Path | None) -> list[str]:
        """The model file exists, is ONNX, and takes what ``pre_process`` gives it."""
        name = cls.model_name(config)
        unavailable = execution.node_problems(config, name, execution.installed_build())
        if unavailable:
            return unavailable
        try:
            source = source_of(config)
            if source is not None and (models_dir is None or not fetched_path(models_dir, source).is_file()):
                return []  # fetched when a pipeline needs it, and checked once loaded
            path = cls.model_location(config, models_dir)
        except (ValueError, OSError) as exc:
            return [f"model {name!r}: {exc}"]
        if not path.is_absolute() and models_dir is None:
            return []  # resolved against the cache's _models/ when the node checks it
        if not path.is_file():
            return [f"model {name!r}: file not found ({path})"]
        try:
            io = read_onnx_io(path)
        except (OnnxFormatError, OSError) as exc:
            return [f"model {name!r}: not a readable ONNX model ({exc})"]
        return cls.check_io(config, io)

    @classmethod
    def check_io(cls, config: Mapping[str, Any], io: OnnxIO) -> list[str]:
        """Problems between the model's first input and the config (shapes and element type)."""
        if not io.inputs:
            return [f"model {cls.model_name(config)!r}: the graph has no input"]
        return input_problems(
            cls.model_name(config),
            io.inputs[0],
            cls.expected_input(config),
            cls.input_element_type(config),
            cls.describe_input(config),
        )

    # --- in the model-server process --------------------------------------------------------------------------
    def session_options(self) -> Any:
        """onnxruntime session options from the config (threads, memory arena): for every session the plugin opens."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.config.get("INTRA_OP_THREADS") or 0)
        options.inter_op_num_threads = int(self.config.get("INTER_OP_THREADS") or 0)
        options.log_severity_level = 3
        if not self.config.get("MEMORY_ARENA", True):
            options.enable_cpu_mem_arena = False  # memory goes back after each batch: sizes vary, peaks do not stay
            options.enable_mem_pattern = False
        return options

    def on_init(self) -> None:
        """Create the session; raise (a load error naming model and shapes) when the model does not fit."""
        import onnxruntime as ort

        path = self.model_location(self.config, self.context.models_dir)
        if not path.is_file():
            raise FileNotFoundError(f"model {self.model_name(self.config)!r}: file not found ({path.name})")
        options = self.session_options()
        self.run_options: Any = None
        if self.config.get("MEMORY_ARENA", True) and self.config.get("ARENA_SHRINK"):
            # the arena's chunks in use go back once the batch is done
            self.run_options = ort.RunOptions()
            self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        build = f"{execution.installed_build() or 'onnxruntime'} {ort.__version__}"
        self.execution_provider, providers = execution.load(
            self.config, ort.get_available_providers(), self.model_name(self.config), build
        )
        self.model_path = path
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime's text names the file: say the model's name instead (no local path)
            name = self.model_name(self.config)
            text = str(exc).replace(str(path), name).replace(str(path.parent), "_models")
            raise ValueError(f"model {name!r} does not load: {text}") from None
        inputs = [
            TensorInfo(i.name, _ort_type(i.type), tuple(_ort_dim(d) for d in i.shape))
            for i in self.session.get_inputs()
        ]
        outputs = [
            TensorInfo(o.name, _ort_type(o.type), tuple(_ort_dim(d) for d in o.shape))
            for o in self.session.get_outputs()
        ]
        metadata = dict(self.session.get_modelmeta().custom_metadata_map or {})
        problems = self.check_io(self.config, OnnxIO(tuple(inputs), tuple(outputs), metadata))
        if problems:
            raise ValueError("; ".join(problems))
        self.inputs, self.outputs, self.metadata = inputs, outputs, metadata
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in outputs]
        batch_dim = inputs[0].shape[0] if inputs[0].shape else None
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) else None
        self.warm_up()

    def warm_up(self) -> None:
        """Run the model once on zeros when every input's size is fixed (but the batch): the first run
        allocates, and a model that cannot run at all fails its load here, not on the first frame."""
        import numpy as np

        feeds = {}
        for tensor in self.inputs:
            dims = [d for d in tensor.shape[1:] if isinstance(d, int)] if tensor.shape else []
            if not tensor.shape or len(dims) != len(tensor.shape) - 1:
                return
            dtype = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}.get(tensor.element_type)
            if dtype is None:
                return
            feeds[tensor.name] = np.zeros((1, *dims), dtype)
        self.session.run(None, feeds)

    def predict(self, batch: Any) -> list[Any]:
        """Run the session; a model whose batch dimension is fixed at 1 runs input by input."""
        feeds = batch if isinstance(batch, dict) else {self.input_name: batch}
        size = len(next(iter(feeds.values())))
        if self.fixed_batch == 1 and size > 1:
            import numpy as np

            parts = [
                self.session.run(None, {k: v[i : i + 1] for k, v in feeds.items()}, self.run_options)
                for i in range(size)
            ]
            return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]
        return self.session.run(None, feeds, self.run_options)

    def model_info(self) -> dict[str, Any]:
        return {
            "path": str(self.model_path or ""),
            "providers": list(self.session.get_providers()) if self.session is not None else [],
            "execution_provider": self.execution_provider,
            "inputs": [f"{i.name} {i.element_type} {i.shape_text()}" for i in self.inputs],
            "outputs": [f"{o.name} {o.element_type} {o.shape_text()}" for o in self.outputs],
            "intra_op_threads": self.config.get("INTRA_OP_THREADS"),
            "inter_op_threads": self.config.get("INTER_OP_THREADS"),
        }


def batch_for_input(size: tuple[int, int] | None) -> int:
    """The batch size for inputs of ``size`` (height, width) on CPU: batches of about :data:`BATCH_PIXELS` pixels, a
    power of two from 1 to :data:`AUTO_BATCH_MAX`; 1 when the size is unknown (a whole frame, most likely).

    Measured with ``benchmarks/bench_serving_batch.py`` (a convnet, one thread per process): a batch spreads the
    per-call cost of small inputs, while one big input already keeps the core busy, so a batch of big inputs
    gains nothing and holds a batch's activations; and a server whose batches take every input in flight leaves
    its other processes idle."""
    if size is None or size[0] <= 0 or size[1] <= 0:
        return 1
    fit = max(1, min(AUTO_BATCH_MAX, BATCH_PIXELS // (size[0] * size[1])))
    return 1 << (fit.bit_length() - 1)


def input_problems(
    model: str, tensor: TensorInfo, expected: tuple[Dim, ...] | None, element_type: str | None, source: str
) -> list[str]:
    """Sentences describing how ``expected`` (what pre-processing gives) does not fit the model's input."""
    problems = []
    if element_type and tensor.element_type not in ("unknown", element_type):
        problems.append(
            f"model {model!r}: input {tensor.name!r} takes {tensor.element_type} but {source} gives {element_type}"
        )
    if expected is None or tensor.shape is None:
        return problems
    given = TensorInfo(tensor.name, tensor.element_type, expected).shape_text()
    if len(tensor.shape) != len(expected):
        problems.append(
            f"model {model!r}: input {tensor.name!r} has shape {tensor.shape_text()} "
            f"({len(tensor.shape)} dimensions) but {source} gives {given} ({len(expected)} dimensions)"
        )
        return problems
    for index, (have, want) in enumerate(zip(tensor.shape, expected, strict=True)):
        if index == 0:
            continue  # the batch: a model fixed at 1 runs input by input
        if isinstance(have, int) and isinstance(want, int) and have != want:
            problems.append(
                f"model {model!r}: input {tensor.name!r} expects shape {tensor.shape_text()} but {source} gives {given}"
            )
            break
    return problems


def _ort_dim(dim: Any) -> Dim:
    if isinstance(dim, int):
        return dim if dim >= 0 else None
    return str(dim) if dim else None


def _ort_type(text: str) -> str:
    """``tensor(float)`` → ``float32``."""
    inner = text[text.find("(") + 1 : text.rfind(")")] if "(" in text else text
    return {"float": "float32", "double": "float64", "float16": "float16"}.get(inner, inner)
