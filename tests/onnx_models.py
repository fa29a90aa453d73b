"""Small real ONNX models for the serving tests, built with the ``onnx`` package at test time."""

from __future__ import annotations

from pathlib import Path


def mean_model(path: Path, height: int | str = "H", width: int | str = "W") -> Path:
    """``image`` (N × 3 × H × W float) → ``mean`` (N × 3): each image's mean per channel."""
    import onnx
    from onnx import TensorProto, helper

    path.parent.mkdir(parents=True, exist_ok=True)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])
    mean = helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", 3])
    node = helper.make_node("ReduceMean", ["image"], ["mean"], axes=[2, 3], keepdims=0)
    model = helper.make_model(
        helper.make_graph([node], "mean", [image], [mean]), opset_imports=[helper.make_opsetid("", 13)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
