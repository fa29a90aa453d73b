"""``ONNX`` serving plugin: serve any ``.onnx`` model with a configurable resize, layout and normalisation.

Put the file in the local cache's ``_models/`` folder (or give an absolute path) and name it in the business
instance's ``STARTUP_AI_ENGINE_PARAMS``::

    {"INSTANCE_ID": "cam", "AI_ENGINE": "ONNX",
     "STARTUP_AI_ENGINE_PARAMS": {"ONNX_MODEL": "mobilenet.onnx", "INPUT_WIDTH": 224, "INPUT_HEIGHT": 224,
                                  "MEAN": [0.485, 0.456, 0.406], "STD": [0.229, 0.224, 0.225]}}

Each frame (BGR, as decoded) is converted to ``COLOR_ORDER``, resized to ``INPUT_WIDTH`` × ``INPUT_HEIGHT``
(stretched, or letterboxed with ``LETTERBOX``), scaled and normalised as ``(pixel * SCALE - MEAN) / STD``
per channel, laid out as ``NCHW`` or ``NHWC`` and cast to ``INPUT_DTYPE`` (``uint8`` skips the
normalisation). A width or height of 0 takes the model's own fixed size. ``MAX_BATCH_SIZE`` 0 (the default)
batches by input size: up to 8 small inputs (96×96 or less), 1 full frame (see ``batch_for_input``). The result
for each input is
``{output name: array}``: that input's row of every output whose first dimension is the batch (other
outputs are given whole). A size, layout or type that does not fit the model's input is refused when the
pipeline is added, naming the model and both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edge_engine.api import Input, Key, OnnxIO, OnnxServingPlugin

CHANNELS = {"RGB": 3, "BGR": 3, "GRAY": 1}


class OnnxModel(OnnxServingPlugin):
    """A generic image model; see the module docstring."""

    SIGNATURE = "ONNX"
    VERSION = "1.0.0"
    DESCRIPTION = "any ONNX image model from _models/: resize, layout, colour order and normalisation configurable"
    CONFIG: ClassVar[dict[str, Any]] = {
        "ONNX_MODEL": Key(
            "", type=str, doc="model file: a name in the cache's _models/, or a full path (or MODEL_URL)"
        ),
        "INPUT_WIDTH": Key(0, type=int, min=0, max=16384, doc="model input width; 0 = the model's fixed width"),
        "INPUT_HEIGHT": Key(0, type=int, min=0, max=16384, doc="model input height; 0 = the model's fixed height"),
        "LAYOUT": Key("NCHW", type=str, choices=("NCHW", "NHWC"), doc="tensor layout of the model's input"),
        "COLOR_ORDER": Key("RGB", type=str, choices=tuple(CHANNELS), doc="channels the model expects"),
        "SCALE": Key(1 / 255, min=0, doc="pixel values are multiplied by SCALE first"),
        "MEAN": Key([0.0, 0.0, 0.0], type=list, doc="per-channel mean subtracted after SCALE"),
        "STD": Key([1.0, 1.0, 1.0], type=list, doc="per-channel divisor after MEAN"),
        "INPUT_DTYPE": Key("float32", type=str, choices=("float32", "float16", "uint8"), doc="input element type"),
        "LETTERBOX": Key(False, type=bool, doc="keep the aspect ratio and pad, instead of stretching"),
        "MAX_BATCH_SIZE": Key(
            0, type=int, min=0, doc="largest batch; 0 = from the input size (8 for small inputs, 1 for full frames)"
        ),
    }

    # --- configuration checks (node process) --------------------------------------------------------------------
    @classmethod
    def model_file(cls, config: Mapping[str, Any], models_dir: Path | None) -> Path:
        name = str(config.get("ONNX_MODEL") or "").strip()
        if not name:
            raise ValueError("set ONNX_MODEL (a file in _models/) or MODEL_URL and MODEL_SHA256")
        path = Path(name).expanduser()
        if path.is_absolute() or models_dir is None:
            return path
        return models_dir / path

    @classmethod
    def expected_input(cls, config: Mapping[str, Any]) -> tuple[Any, ...]:
        channels = CHANNELS[str(config.get("COLOR_ORDER", "RGB"))]
        height = int(config.get("INPUT_HEIGHT") or 0) or None
        width = int(config.get("INPUT_WIDTH") or 0) or None
        if config.get("LAYOUT") == "NHWC":
            return (None, height, width, channels)
        return (None, channels, height, width)

    @classmethod
    def describe_input(cls, config: Mapping[str, Any]) -> str:
        keys = ("INPUT_HEIGHT", "INPUT_WIDTH", "LAYOUT", "COLOR_ORDER")
        return "the config (" + ", ".join(f"{k} {config.get(k)}" for k in keys) + ")"

    @classmethod
    def input_element_type(cls, config: Mapping[str, Any]) -> str:
        return str(config.get("INPUT_DTYPE") or "float32")

    @classmethod
    def check_io(cls, config: Mapping[str, Any], io: OnnxIO) -> list[str]:
        problems = super().check_io(config, io)
        channels = CHANNELS[str(config.get("COLOR_ORDER", "RGB"))]
        for key in ("MEAN", "STD"):
            values = config.get(key) or []
            if len(values) not in (1, channels) or not all(isinstance(v, (int, float)) for v in values):
                problems.append(f"{key} needs 1 or {channels} numbers for COLOR_ORDER {config.get('COLOR_ORDER')}")
        if any(v == 0 for v in config.get("STD") or []):
            problems.append("STD must not contain 0")
        if io.inputs and not problems:
            try:
                cls.input_size(config, io.inputs[0].shape)
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    @classmethod
    def model_input_size(cls, config: Mapping[str, Any], models_dir: Path | None) -> tuple[int, int] | None:
        if not (int(config.get("INPUT_HEIGHT") or 0) and int(config.get("INPUT_WIDTH") or 0)):
            shape = cls.fixed_input_dims(config, models_dir)
        else:
            shape = None
        try:
            return cls.input_size(config, shape)
        except ValueError:
            return None

    @classmethod
    def input_size(cls, config: Mapping[str, Any], shape: tuple[Any, ...] | None) -> tuple[int, int]:
        """``(height, width)`` of the model input: the config's, or the model's own fixed ones."""
        height, width = int(config.get("INPUT_HEIGHT") or 0), int(config.get("INPUT_WIDTH") or 0)
        if height and width:
            return height, width
        dims = (shape[1], shape[2]) if config.get("LAYOUT") == "NHWC" else (shape[2], shape[3]) if shape else (0, 0)
        height = height or (dims[0] if isinstance(dims[0], int) else 0)
        width = width or (dims[1] if isinstance(dims[1], int) else 0)
        if not height or not width:
            raise ValueError(
                f"model {cls.model_name(config)!r}: its input size is not fixed ({shape}); set INPUT_WIDTH and "
                "INPUT_HEIGHT"
            )
        return height, width

    # --- model-server process ---------------------------------------------------------------------------------
    def on_init(self) -> None:
        import numpy as np

        super().on_init()
        self.height, self.width = self.input_size(self.config, self.inputs[0].shape)
        channels = CHANNELS[self.config["COLOR_ORDER"]]
        self.mean = np.asarray(self.config["MEAN"], np.float32).reshape(1, 1, 1, -1)
        self.std = np.asarray(self.config["STD"], np.float32).reshape(1, 1, 1, -1)
        self.scale = float(self.config["SCALE"])
        self.channels = channels

    def pre_process(self, inputs: list[Input]) -> Any:
        import numpy as np

        batch = np.empty((len(inputs), self.height, self.width, self.channels), np.uint8)
        for index, inp in enumerate(inputs):
            if inp.image is None:
                raise ValueError(f"input #{inp.seq} has no image")
            batch[index] = self._resize(self._colors(inp.image))
        if self.config["INPUT_DTYPE"] == "uint8":
            tensor = batch
        else:
            tensor = (batch.astype(np.float32) * self.scale - self.mean) / self.std
            tensor = tensor.astype(self.config["INPUT_DTYPE"], copy=False)
        if self.config["LAYOUT"] == "NCHW":
            tensor = tensor.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(tensor)

    def _colors(self, image: Any) -> Any:
        import cv2

        order = self.config["COLOR_ORDER"]
        if image.ndim == 2:
            return image[..., None] if order == "GRAY" else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)[..., ::-1]
        if order == "GRAY":
            return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None]
        return image[..., ::-1] if order == "RGB" else image

    def _resize(self, image: Any) -> Any:
        import cv2
        import numpy as np

        height, width = image.shape[:2]
        if not self.config["LETTERBOX"]:
            resized = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
            return resized.reshape(self.height, self.width, self.channels)
        ratio = min(self.width / width, self.height / height)
        new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
        canvas = np.zeros((self.height, self.width, self.channels), np.uint8)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        canvas[:new_h, :new_w] = resized.reshape(new_h, new_w, self.channels)
        return canvas

    def post_process(self, predictions: Any, inputs: list[Input]) -> list[Any]:
        count = len(inputs)
        results: list[dict[str, Any]] = [{} for _ in inputs]
        for name, output in zip(self.output_names, predictions, strict=False):
            batched = getattr(output, "ndim", 0) > 0 and output.shape[0] == count
            for index in range(count):
                results[index][name] = output[index] if batched else output
        return results
