"""Turn a model's weights into references to an absent external-data file.

The planner needs shapes, never weight values.  ``strip_weights`` rewrites every initializer
that carries float (or large) data into a ``TensorProto`` with only its name, dims and type, and
``data_location = EXTERNAL`` pointing at ``location`` with running ``offset`` / ``length``
entries; that file is never written.  Integer (and bool) initializers with fewer than
``INLINE_MAX_ELEMENTS`` elements stay inline: they are shape constants (reshape targets, axes,
split sizes) that shape inference with ``data_prop=True`` has to read.  So do 1-D int32/int64
initializers of any length: ONNX data propagation reads those, and strict inference fails when
one is external.  Nothing is read from any existing external-data file: a tensor that already
lives outside the model is only re-pointed at ``location``.

Models treated this way (and the files in ``sample_models/``) load with
``onnx.load(path, load_external_data=False)`` and go through
``onnx.shape_inference.infer_shapes``; ``onnx.checker.check_model`` however insists that the
external file exists, so use ``check_model_skeleton`` to check them.
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx
from onnx import TensorProto

from planner.model.tied_weights import fold_transposed_copies

INLINE_MAX_ELEMENTS = 1024  # integer/bool initializers smaller than this stay inline

# Bits per element of each fixed-size tensor type (sub-byte types are packed).
_BITS = {
    TensorProto.FLOAT: 32,
    TensorProto.UINT8: 8,
    TensorProto.INT8: 8,
    TensorProto.UINT16: 16,
    TensorProto.INT16: 16,
    TensorProto.INT32: 32,
    TensorProto.INT64: 64,
    TensorProto.BOOL: 8,
    TensorProto.FLOAT16: 16,
    TensorProto.DOUBLE: 64,
    TensorProto.UINT32: 32,
    TensorProto.UINT64: 64,
    TensorProto.COMPLEX64: 64,
    TensorProto.COMPLEX128: 128,
    TensorProto.BFLOAT16: 16,
}
for _name, _bits in (
    ("FLOAT8E4M3FN", 8), ("FLOAT8E4M3FNUZ", 8), ("FLOAT8E5M2", 8), ("FLOAT8E5M2FNUZ", 8), ("FLOAT8E8M0", 8),
    ("UINT4", 4), ("INT4", 4), ("FLOAT4E2M1", 4), ("UINT2", 2), ("INT2", 2),
):
    if hasattr(TensorProto, _name):
        _BITS[getattr(TensorProto, _name)] = _bits

_FLOAT_TYPES = {
    TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE,
    TensorProto.COMPLEX64, TensorProto.COMPLEX128,
} | {
    getattr(TensorProto, n)
    for n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1")
    if hasattr(TensorProto, n)
}

_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")


def tensor_nbytes(tensor: TensorProto) -> int:
    """Bytes the tensor's data takes in raw little-endian form (from dims and type only)."""
    bits = _BITS.get(tensor.data_type)
    if bits is None:
        raise ValueError(f"tensor {tensor.name!r}: no fixed element size for data type {tensor.data_type}")
    return (math.prod(tensor.dims) * bits + 7) // 8


def _keeps_inline(tensor: TensorProto) -> bool:
    if tensor.data_type == TensorProto.STRING or tensor.data_type not in _BITS:
        return True  # strings cannot be external data; unknown types are left alone
    if tensor.data_type in _FLOAT_TYPES:
        return False
    if math.prod(tensor.dims) < INLINE_MAX_ELEMENTS:
        return True
    # ONNX data propagation reads 1-D int32/int64 tensors (shape-like values) of any length, and
    # strict shape inference fails if one of them is external; keep those inline as well.
    return len(tensor.dims) <= 1 and tensor.data_type in (TensorProto.INT32, TensorProto.INT64)


def _make_external(tensor: TensorProto, location: str, offset: int) -> int:
    """Drop the tensor's data and point it at ``location``; return the next offset."""
    length = tensor_nbytes(tensor)
    for field in _DATA_FIELDS:
        tensor.ClearField(field)
    del tensor.external_data[:]
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key = key
        entry.value = value
    return offset + length


def _strip_graph(graph: onnx.GraphProto, location: str, offset: int) -> int:
    for tensor in graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL or not _keeps_inline(tensor):
            offset = _make_external(tensor, location, offset)
    for node in graph.node:
        for attr in node.attribute:
            # Large tensors held by Constant nodes (some exporters put weights there) go too;
            # small ones (scalars, shape constants) stay.
            tensors = [attr.t] if attr.HasField("t") else list(attr.tensors)
            for t in tensors:
                external = t.data_location == TensorProto.EXTERNAL
                if external or (not _keeps_inline(t) and math.prod(t.dims) >= INLINE_MAX_ELEMENTS):
                    offset = _make_external(t, location, offset)
            subgraphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            for sub in subgraphs:
                offset = _strip_graph(sub, location, offset)
    return offset


def strip_weights(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    """A copy of ``model`` whose weights are external references to ``location`` (not created).

    Every float initializer, and every other initializer with at least ``INLINE_MAX_ELEMENTS``
    elements, loses its data and gets ``external_data`` = (location, offset, length) with
    running offsets.  Small integer/bool initializers keep their data.  String tensors and
    sparse initializers are left as they are.  The input model is not modified.

    First, an initializer that is exactly the transpose of another (the exporters' constant-folded
    ``Transpose`` of a tied embedding) becomes a ``Transpose`` node of the original, so that the
    tied weight is stored, and counted, once (see ``planner.model.tied_weights``).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    fold_transposed_copies(out)
    _strip_graph(out.graph, location, 0)  # model-local functions are left as they are
    return out


def strip_weights_file(in_path: str | Path, out_path: str | Path, location: str | None = None) -> Path:
    """Read ``in_path`` without its external data, strip it, write ``out_path``.

    ``location`` defaults to ``<out stem>.weights.bin``.  Only the .onnx file is written."""
    out_path = Path(out_path)
    model = onnx.load(str(in_path), load_external_data=False)
    stripped = strip_weights(model, location or f"{out_path.stem}.weights.bin")
    out_path.write_bytes(stripped.SerializeToString(deterministic=True))
    return out_path


def check_model_skeleton(model: onnx.ModelProto, full_check: bool = False) -> None:
    """``onnx.checker.check_model`` for a model whose external weight file is absent.

    The checker refuses external data it cannot open, so this checks a copy in which each
    external initializer, and each Constant node holding an external tensor, becomes a graph
    input of the same type and shape instead.  Raises ``onnx.checker.ValidationError`` like the
    checker does."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    new_inputs = []
    kept_inits = []
    for t in graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            new_inputs.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        else:
            kept_inits.append(t)
    kept_nodes = []
    for node in graph.node:
        attr = node.attribute[0] if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if attr is not None and attr.HasField("t") and attr.t.data_location == TensorProto.EXTERNAL:
            new_inputs.append(onnx.helper.make_tensor_value_info(node.output[0], attr.t.data_type, list(attr.t.dims)))
        else:
            kept_nodes.append(node)
    if new_inputs:
        del graph.initializer[:]
        graph.initializer.extend(kept_inits)
        del graph.node[:]
        graph.node.extend(kept_nodes)
        graph.input.extend(new_inputs)
    onnx.checker.check_model(copy, full_check=full_check)
