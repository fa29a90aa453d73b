"""Tutorial serving plugin: serve a tiny ONNX model that gives each frame's mean colour, and a business plugin
that reports it.

The model, ``mean_color.onnx`` (143 bytes, next to this file; ``_make_model.py`` rebuilds it with the ``onnx``
package), takes ``N × 3 × H × W`` float images and returns ``N × 3`` channel means. Copy this file to start
your own serving plugin: change ``SIGNATURE``, ``model_file`` (where your ``.onnx`` is: usually the node's
``_models/`` folder, ``models_dir``), ``expected_input`` and the two processing methods. A pipeline uses it
through a business instance's ``AI_ENGINE``::

    {"NAME": "colours", "TYPE": "SYNTHETIC", "MODE": "static",
     "PLUGINS": [{"SIGNATURE": "TUTORIAL_MEAN_COLOR_REPORT", "INSTANCES": [{"INSTANCE_ID": "main"}]}]}

See ``docs/serving.md`` for how serving works.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

# Plugins import only from edge_engine.api. OnnxServingPlugin builds the onnxruntime session for us (threads and
# execution providers come from its config keys) and checks the model's input against expected_input().
from edge_engine.api import BusinessPlugin, Input, Key, OnnxServingPlugin, ServingError

SIZE = 32  # frames are shrunk to 32 × 32 before the model: the mean barely changes and the batch stays small


class TutorialMeanColor(OnnxServingPlugin):
    """Mean colour of each frame, as ``{"mean_rgb": [r, g, b]}`` (0-255)."""

    SIGNATURE = "TUTORIAL_MEAN_COLOR"
    VERSION = "0.1.0"
    DESCRIPTION = "tutorial: a tiny ONNX model giving each frame's mean colour"
    # Keys of a serving plugin are set per business instance in STARTUP_AI_ENGINE_PARAMS. The base classes already
    # declare MAX_BATCH_SIZE, MAX_WAIT_MS, WORKERS, INTRA_OP_THREADS, EXECUTION_PROVIDERS... (see docs/serving.md).
    CONFIG: ClassVar[dict[str, Any]] = {
        "MAX_BATCH_SIZE": Key(16, type=int, min=1, doc="largest batch the server runs"),
        "WORKERS": Key(1, type=int, min=0, doc="one process is plenty for this model"),
    }

    # --- class level: runs in the node process when a pipeline is added (keep it cheap, no heavy imports) ---------
    @classmethod
    def model_file(cls, config: Mapping[str, Any], models_dir: Path | None) -> Path:
        """Where the .onnx file is. A real plugin would usually return ``models_dir / name``."""
        return Path(__file__).resolve().parent / "mean_color.onnx"

    @classmethod
    def expected_input(cls, config: Mapping[str, Any]) -> tuple[Any, ...]:
        """The shape pre_process() gives the model (None: the batch, or any size). A model whose input does not
        fit is refused when the pipeline is added, with both shapes in the message."""
        return (None, 3, SIZE, SIZE)

    # --- in the model-server process (on_init, inherited, has loaded the session) --------------------------------
    def pre_process(self, inputs: list[Input]) -> Any:
        """A batch from inputs of any pipelines: BGR frames → RGB floats, N × 3 × 32 × 32."""
        import cv2  # heavy imports inside methods: the module is imported at every node start
        import numpy as np

        batch = np.empty((len(inputs), 3, SIZE, SIZE), np.float32)
        for index, inp in enumerate(inputs):
            # inp.image is a read-only view of shared memory, valid during this call only
            small = cv2.resize(inp.image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            batch[index] = small[..., ::-1].transpose(2, 0, 1)
        return batch

    # predict(batch) is inherited: it runs the session and returns its outputs (a list of arrays).

    def post_process(self, predictions: Any, inputs: list[Input]) -> list[Any]:
        """One result per input, in order; plain lists and numbers travel back cheaply."""
        means = predictions[0]
        return [{"mean_rgb": [round(float(v), 1) for v in row]} for row in means]


class TutorialMeanColorReport(BusinessPlugin):
    """Reports the mean colour every ``EVERY`` frames (the business side of the tutorial)."""

    SIGNATURE = "TUTORIAL_MEAN_COLOR_REPORT"
    VERSION = "0.1.0"
    DESCRIPTION = "tutorial: reports the mean colour computed by TUTORIAL_MEAN_COLOR"
    CONFIG: ClassVar[dict[str, Any]] = {
        "AI_ENGINE": Key(["TUTORIAL_MEAN_COLOR"], type=(list, str), doc="the serving plugin this instance needs"),
        "EVERY": Key(25, type=int, min=1, doc="report every EVERY frames"),
    }

    def on_init(self) -> None:
        self.seen = 0

    def process(self, inp: Input | None) -> dict[str, Any] | None:
        if inp is None:
            return None
        result = inp.inferences.get("TUTORIAL_MEAN_COLOR")
        if isinstance(result, ServingError):  # the model could not answer for this frame (crash, timeout...)
            raise result  # counted in the instance's errors; the next frame goes on
        self.seen += 1
        if self.seen % self.config["EVERY"]:
            return None
        return {"MEAN_RGB": result["mean_rgb"], "FRAMES": self.seen}
