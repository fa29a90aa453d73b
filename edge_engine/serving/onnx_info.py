"""Read an ONNX file's graph inputs and outputs (names, element types, shapes) without onnx or onnxruntime.

The node process checks a model's input shape against its serving config when a pipeline is added, so a
mismatch is a configuration error at once, naming plugin, model and shapes. Importing onnxruntime for that
would cost the node process tens of megabytes; the part of the ONNX protobuf needed here (``ModelProto.graph``
→ ``GraphProto.input/output/initializer`` → ``ValueInfoProto.type.tensor_type.shape``) is small enough to
read with a hand-written protobuf wire-format walker. Large fields (weights, nodes) are skipped by length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# field numbers from onnx.proto3
_MODEL_GRAPH = 7
_MODEL_METADATA = 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_SPARSE_INITIALIZER = 5, 11, 12, 15
_TENSOR_NAME = 8
_SPARSE_VALUES = 1
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_ELEM_TYPE, _TENSOR_SHAPE = 1, 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2

ELEMENT_TYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
}

Dim = int | str | None
"""A dimension: a fixed size, a symbolic name (``"batch"``), or None when unknown."""


class OnnxFormatError(ValueError):
    """The file is not an ONNX model this reader understands."""


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output."""

    name: str
    element_type: str
    shape: tuple[Dim, ...] | None

    def shape_text(self) -> str:
        """``[N, 3, 48, 192]``: symbolic or unknown dimensions are written ``N`` (first) or ``?``."""
        if self.shape is None:
            return "[?]"
        parts = [str(d) if isinstance(d, int) else ("N" if i == 0 else "?") for i, d in enumerate(self.shape)]
        return "[" + ", ".join(parts) + "]"


@dataclass(frozen=True)
class OnnxIO:
    """The graph's real inputs (initializers excluded), its outputs, and the model's metadata properties
    (``metadata_props``: e.g. the ``names`` of an Ultralytics export)."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    metadata: dict[str, str] = field(default_factory=dict, compare=False)


def read_onnx_io(path: str | Path) -> OnnxIO:
    """Inputs and outputs of the ONNX model at ``path``; OnnxFormatError when it cannot be parsed."""
    data = memoryview(Path(path).read_bytes())
    graph = None
    metadata: dict[str, str] = {}
    for number, wire, value in _fields(data, 0, len(data)):
        if number == _MODEL_GRAPH and wire == 2:
            graph = value
        elif number == _MODEL_METADATA and wire == 2:
            metadata[_string_field(data, value, _ENTRY_KEY)] = _string_field(data, value, _ENTRY_VALUE)
    if graph is None:
        raise OnnxFormatError(f"{path}: no graph found (not an ONNX model?)")
    initializers: set[str] = set()
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    for number, wire, value in _fields(data, *graph):
        if wire != 2:
            continue
        if number == _GRAPH_INPUT:
            inputs.append(_value_info(data, value))
        elif number == _GRAPH_OUTPUT:
            outputs.append(_value_info(data, value))
        elif number == _GRAPH_INITIALIZER:
            initializers.add(_string_field(data, value, _TENSOR_NAME))
        elif number == _GRAPH_SPARSE_INITIALIZER:
            for sub_number, sub_wire, sub in _fields(data, *value):
                if sub_number == _SPARSE_VALUES and sub_wire == 2:
                    initializers.add(_string_field(data, sub, _TENSOR_NAME))
    return OnnxIO(tuple(i for i in inputs if i.name not in initializers), tuple(outputs), metadata)


# --- protobuf wire format -------------------------------------------------------------------------------------
def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise OnnxFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError("varint too long")


def _fields(data: memoryview, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field number, wire type, value)``; a length-delimited value is ``(start, end)``."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise OnnxFormatError("field runs past its message")
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise OnnxFormatError(f"unsupported wire type {wire}")


def _string_field(data: memoryview, span: tuple[int, int], wanted: int) -> str:
    for number, wire, value in _fields(data, *span):
        if number == wanted and wire == 2:
            return bytes(data[value[0] : value[1]]).decode("utf-8", "replace")
    return ""


def _value_info(data: memoryview, span: tuple[int, int]) -> TensorInfo:
    name, element, shape = "", "unknown", None
    for number, wire, value in _fields(data, *span):
        if number == _VALUE_NAME and wire == 2:
            name = bytes(data[value[0] : value[1]]).decode("utf-8", "replace")
        elif number == _VALUE_TYPE and wire == 2:
            for t_number, t_wire, t_value in _fields(data, *value):
                if t_number == _TYPE_TENSOR and t_wire == 2:
                    element, shape = _tensor_type(data, t_value)
    return TensorInfo(name, element, shape)


def _tensor_type(data: memoryview, span: tuple[int, int]) -> tuple[str, tuple[Dim, ...] | None]:
    element, shape = "unknown", None
    for number, wire, value in _fields(data, *span):
        if number == _TENSOR_ELEM_TYPE and wire == 0:
            element = ELEMENT_TYPES.get(value, f"type{value}")
        elif number == _TENSOR_SHAPE and wire == 2:
            shape = tuple(_dim(data, d) for n, w, d in _fields(data, *value) if n == _SHAPE_DIM and w == 2)
    return element, shape


def _dim(data: memoryview, span: tuple[int, int]) -> Dim:
    for number, wire, value in _fields(data, *span):
        if number == _DIM_VALUE and wire == 0:
            return value if value < 1 << 63 else None  # a negative int64 (-1): unknown
        if number == _DIM_PARAM and wire == 2:
            return bytes(data[value[0] : value[1]]).decode("utf-8", "replace") or None
    return None
