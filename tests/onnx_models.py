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


def yolo_model(
    path: Path,
    layout: str,
    classes: int,
    rows: list[list[float]],
    size: tuple[int, int] = (320, 320),
    measured_class: int | None = None,
    names: object = None,
    batch: int | str = "N",
    dtype: str = "float32",
) -> Path:
    """A YOLO-shaped model whose output encodes known boxes.

    ``rows`` are fixed predictions in the model input's pixels: ``[cx, cy, w, h, class scores...]`` for
    ``v8`` (output ``[N, 4 + classes, boxes]``) and ``[cx, cy, w, h, objectness, class scores...]`` for ``v5``
    (output ``[N, boxes, 5 + classes]``). With ``measured_class``, one more prediction is *measured* from the
    input: the bounding box of the pixels brighter than 0.5 in any channel, scored 0.9 for that class (0 when
    there are none), so a test can check that a rectangle drawn on a frame comes back where it was drawn,
    through the letterbox and back. ``names`` (a dict or list) goes into the ``names`` metadata as Ultralytics
    writes it (``str(dict)``).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    height, width = size
    attrs = 4 + classes + (1 if layout == "v5" else 0)
    assert all(len(r) == attrs for r in rows), f"each row needs {attrs} values"
    elem = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    nodes, inits = [], []

    def const(name: str, value: object) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs_: object) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs_))
        return output

    image = "images"
    x = node("Cast", [image], "x", to=TensorProto.FLOAT) if dtype == "float16" else image
    bright = node("ReduceMax", [x], "bright_max", axes=[1], keepdims=0)  # N × H × W
    mask = node("Cast", [node("Greater", [bright, const("half", 0.5)], "gt")], "mask", to=TensorProto.FLOAT)
    cols = node("ReduceMax", [mask], "cols", axes=[1], keepdims=0)  # N × W
    lines = node("ReduceMax", [mask], "lines", axes=[2], keepdims=0)  # N × H
    found = node("ReduceMax", [cols], "found", axes=[1], keepdims=1)  # N × 1

    def extent(axis_mask: str, count: int, tag: str) -> tuple[str, str]:
        index = const(f"idx_{tag}", np.arange(count, dtype=np.float32))
        high = node("ReduceMax", [node("Mul", [axis_mask, index], f"m_{tag}")], f"hi_{tag}", axes=[1], keepdims=1)
        far = node("Mul", [node("Sub", [const(f"one_{tag}", 1.0), axis_mask], f"inv_{tag}"), const(f"big_{tag}", 1e6)],
                   f"far_{tag}")  # fmt: skip
        low = node("ReduceMin", [node("Add", [node("Mul", [axis_mask, index], f"m2_{tag}"), far], f"a_{tag}")],
                   f"lo_{tag}", axes=[1], keepdims=1)  # fmt: skip
        end = node("Add", [high, const(f"one2_{tag}", 1.0)], f"end_{tag}")  # the pixel after the last bright one
        return low, end

    x1, x2 = extent(cols, width, "x")
    y1, y2 = extent(lines, height, "y")
    half = const("halfk", 0.5)
    cx = node("Mul", [node("Add", [x1, x2], "sx"), half], "cx")
    cy = node("Mul", [node("Add", [y1, y2], "sy"), half], "cy")
    bw = node("Sub", [x2, x1], "bw")
    bh = node("Sub", [y2, y1], "bh")
    parts = [cx, cy, bw, bh]
    outputs_rows = []
    if measured_class is not None:
        scores = [0.0] * classes
        scores[measured_class] = 0.9
        tail = ([1.0] if layout == "v5" else []) + scores
        parts.append(node("Mul", [found, const("tail", np.asarray([tail], np.float32))], "scored"))
        measured = node("Concat", parts, "measured", axis=1)  # N × attrs
        outputs_rows.append(node("Unsqueeze", [measured, "axis1"], "measured3"))
        inits.append(numpy_helper.from_array(np.asarray([1], np.int64), "axis1"))
    if rows:
        ones = node("Add", [node("Mul", [found, const("zero", 0.0)], "z"), const("onek", 1.0)], "ones")  # N × 1
        ones3 = node("Unsqueeze", [ones, "axis2"], "ones3")  # N × 1 × 1
        inits.append(numpy_helper.from_array(np.asarray([2], np.int64), "axis2"))
        fixed = const("fixed_rows", np.asarray([rows], np.float32))  # 1 × boxes × attrs
        outputs_rows.append(node("Mul", [ones3, fixed], "fixed"))
    boxes = node("Concat", outputs_rows, "boxes", axis=1) if len(outputs_rows) > 1 else outputs_rows[0]
    count = len(rows) + (1 if measured_class is not None else 0)
    if layout == "v8":
        result = node("Transpose", [boxes], "output_t", perm=[0, 2, 1])
        out_shape = [batch, attrs, count]
    else:
        result = node("Identity", [boxes], "output_i")
        out_shape = [batch, count, attrs]
    result = node("Cast", [result], "output0", to=elem) if dtype == "float16" else node("Identity", [result], "output0")
    graph = helper.make_graph(
        nodes, "yolo", [helper.make_tensor_value_info(image, elem, [batch, 3, height, width])],
        [helper.make_tensor_value_info("output0", elem, out_shape)], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": str(names)})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def offset_mean_model(path: Path, offset: float) -> Path:
    """``image`` (N × 3 × H × W float) → ``mean`` (N × 3): each image's mean per channel plus ``offset``, so a
    test can tell which of two model versions answered."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path.parent.mkdir(parents=True, exist_ok=True)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    mean = helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", 3])
    nodes = [helper.make_node("ReduceMean", ["image"], ["raw"], axes=[2, 3], keepdims=0),
             helper.make_node("Add", ["raw", "offset"], ["mean"])]  # fmt: skip
    offset_init = numpy_helper.from_array(np.asarray(offset, np.float32), "offset")
    graph = helper.make_graph(nodes, "offset_mean", [image], [mean], [offset_init])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
