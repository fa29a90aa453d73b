"""Build ``mean_color.onnx``, the tutorial's model, with the ``onnx`` package (a development requirement).

The model takes a batch of images ``N × 3 × H × W`` (any size) and returns each image's mean per channel,
``N × 3``: one ``ReduceMean`` node, 143 bytes. It is committed next to this script; run this only to
rebuild it::

    .venv/bin/python plugins/serving/model_testing/_make_model.py

(The leading ``_`` keeps the node from loading this file as a plugin.)
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(path: Path, height: int | str = "H", width: int | str = "W") -> Path:
    """Write a mean-colour model; fixed ``height``/``width`` make a model with a fixed input size."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])
    mean = helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", 3])
    node = helper.make_node("ReduceMean", ["image"], ["mean"], axes=[2, 3], keepdims=0)
    graph = helper.make_graph([node], "mean_color", [image], [mean])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by onnxruntime 1.14 and later
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


if __name__ == "__main__":
    print(build(HERE / "mean_color.onnx"))
