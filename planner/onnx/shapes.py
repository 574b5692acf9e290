"""Shape inference and constant folding: every tensor's static shape, element type and, for
small shape arithmetic, its value.

ONNX's whole-graph inference runs first (without data propagation: that would materialise any
constant-driven tensor); then :func:`_propagate` walks the nodes in order, folds small
computations whose inputs are known (bounded by ``FOLD_MAX_ELEMENTS``, through the guard's
``evaluation_allowed``) and re-infers each node still unresolved with those values. Also owns
the element-type table (``dtype_of``) and reading inline constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from planner.model.quantised import SUB_BYTE_BITS
from planner.onnx import guard as onnx_guard


def _dtype_table() -> dict[int, tuple[str, int]]:
    """ONNX element type -> (numpy-style name, bytes per element), from onnx's own mapping."""
    table = {}
    for elem_type in onnx.TensorProto.DataType.values():
        try:
            np_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
        except (KeyError, ValueError, TypeError):
            continue  # UNDEFINED, STRING, ... have no fixed element size
        name = onnx.TensorProto.DataType.Name(elem_type).lower()
        if name == "float":
            name = "float32"
        elif name == "double":
            name = "float64"
        elif name.startswith("float8"):
            name = "float8"
        if np_dtype.kind == "O" or np_dtype.itemsize == 0:
            continue
        label = name if name.startswith(("float", "bfloat")) else np_dtype.name
        # sub-byte types (INT4, FLOAT4E2M1, INT2, FP6) take their fraction of a byte (planner.model.quantised)
        table[elem_type] = (label, SUB_BYTE_BITS[label] / 8 if label in SUB_BYTE_BITS else np_dtype.itemsize)
    return table


_DTYPES = _dtype_table()


def dtype_of(elem_type: int) -> tuple[str, int]:
    return _DTYPES.get(elem_type, ("unknown", 4))


@dataclass
class ShapeTable:
    shapes: dict[str, tuple[int, ...] | None]
    dtypes: dict[str, int]
    values: dict[str, np.ndarray] = field(default_factory=dict)  # folded shape arithmetic



def infer_shapes(model: onnx.ModelProto, values: dict[str, int]) -> ShapeTable:
    """Bind symbolic input dims, run ONNX shape inference, then finish node by node.

    ONNX's own data propagation stops at operators such as Div, Mod or Where, which the
    TorchScript exporter uses for shape arithmetic (``head_dim = hidden // heads``), and every
    tensor downstream of an unresolved Reshape is then left without a shape. So after the
    whole-graph pass the nodes are walked in order: small computations whose inputs are all known
    (shape arithmetic, constants) are evaluated with ONNX's reference implementation, and each
    node whose outputs are still unresolved is inferred again on its own with those values.
    """
    m = _skeleton(model)
    inits = {i.name for i in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in values:
                d.dim_value = values[d.dim_param]
    original = {vi.name: vi for vi in model.graph.value_info}
    del m.graph.value_info[:]
    for out in m.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
    try:
        # no data propagation: ONNX's would materialise any constant-driven tensor (Range(0, 10**12)...);
        # _propagate folds values itself, bounded by FOLD_MAX_ELEMENTS
        inferred = shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=False)
    except Exception:  # the node-by-node pass below names the node that cannot be resolved
        inferred = m

    types: dict[str, onnx.TypeProto] = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type
    for init in inferred.graph.initializer:
        types[init.name] = onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims))
    for name, vi in original.items():  # exporter hints for what inference could not resolve
        if vi.type.HasField("tensor_type") and (name not in types or static_shape(types[name]) is None):
            shape = static_shape(vi.type, values)
            if shape is not None:
                types[name] = onnx.helper.make_tensor_type_proto(vi.type.tensor_type.elem_type, list(shape))
    folded = _propagate(inferred, types)

    shapes: dict[str, tuple[int, ...] | None] = {}
    dtypes: dict[str, int] = {}
    for name, tp in types.items():
        dtypes[name] = tp.tensor_type.elem_type
        shapes[name] = static_shape(tp)
    for name in [n for n, s in shapes.items() if s is None]:
        del shapes[name]
    return ShapeTable(shapes, dtypes, folded)


FOLD_MAX_ELEMENTS = onnx_guard.FOLD_MAX_ELEMENTS  # shape arithmetic and small constants are evaluated; nothing larger


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy for shape inference in which large initializers keep their type and dims only.

    Shape inference never needs a weight's values, and a 1 GB export would otherwise be copied
    and serialized again (and cannot be passed to ONNX's inference at all beyond 2 GB). The
    stubs are marked as external data; nothing ever reads it.
    """
    m = onnx.ModelProto()
    for fld in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        setattr(m, fld, getattr(model, fld))
    m.opset_import.extend(model.opset_import)
    m.functions.extend(model.functions)
    src, g = model.graph, m.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    g.sparse_initializer.extend(src.sparse_initializer)
    for init in src.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL or math.prod(init.dims) <= FOLD_MAX_ELEMENTS:
            g.initializer.append(init)
        else:
            stub = g.initializer.add()
            stub.name, stub.data_type = init.name, init.data_type
            stub.dims.extend(init.dims)
            stub.data_location = onnx.TensorProto.EXTERNAL
            entry = stub.external_data.add()
            entry.key, entry.value = "location", "(weights not read)"
    return m
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
            "Bernoulli", "If", "Loop", "Scan", "SequenceMap"}


# Operators whose first output has the shape and type of their first input: used when ONNX has
# no schema for them (onnxruntime contrib ops such as SimplifiedLayerNormalization, FastGelu).
_SHAPE_PRESERVING = {"LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization",
                     "FastGelu", "BiasGelu", "QuickGelu", "Gelu"}


def static_shape(tp: onnx.TypeProto, fallback: dict[str, int] | None = None) -> tuple[int, ...] | None:
    tt = tp.tensor_type
    if not tt.HasField("shape"):
        return None
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and fallback and d.dim_param in fallback:
            dims.append(int(fallback[d.dim_param]))
        else:
            return None
    return tuple(dims)


def _propagate(model: onnx.ModelProto, types: dict[str, onnx.TypeProto]) -> dict[str, np.ndarray]:
    """Fold small constant computations and re-infer unresolved nodes, in graph order.

    Updates ``types`` in place and returns the values it could compute. Never raises: a node it
    cannot handle is left as it is, and the builder reports it by name if its shape is needed.
    """
    opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in model.opset_import}
    known: dict[str, np.ndarray] = {}
    for init in model.graph.initializer:
        value = inline_value(init, FOLD_MAX_ELEMENTS)
        if value is not None:
            known[init.name] = value
    for sparse in model.graph.sparse_initializer:
        value = onnx_guard.sparse_values(sparse, FOLD_MAX_ELEMENTS)
        if value is not None:
            known[sparse.values.name] = value
    for node in model.graph.node:
        try:
            _propagate_node(node, opsets, types, known)
        except Exception:  # noqa: BLE001 - best effort: the builder names unresolved nodes
            continue
    return known


def _propagate_node(node: onnx.NodeProto, opsets: dict[str, int], types: dict[str, onnx.TypeProto],
                    known: dict[str, np.ndarray]) -> None:
    """One node: a Constant's or a Shape's value, else inference again, then a fold if it is small."""
    outs = [o for o in node.output if o]
    ins = [i for i in node.input if i]
    domain = node.domain if node.domain != "ai.onnx" else ""
    if node.op_type == "Constant" and not domain:
        value = constant_value(node)
        if value is not None:
            known[outs[0]] = value
            types[outs[0]] = _type_of(value)
        return
    if not domain and node.op_type in ("Shape", "Size") and ins and ins[0] in types:
        shape = static_shape(types[ins[0]])
        if shape is not None:
            value = _shape_value(node, shape)
            known[outs[0]] = value
            types[outs[0]] = _type_of(value)
            return
    resolved = all(o in types and static_shape(types[o]) is not None for o in outs)
    if not resolved and all(i in types for i in ins):
        try:
            _infer_node(node, domain, opsets, types, known)
        except Exception:  # noqa: BLE001 - no schema (contrib op) or inference error
            pass
        if (node.op_type in _SHAPE_PRESERVING and ins and outs and ins[0] in types
                and (outs[0] not in types or static_shape(types[outs[0]]) is None)):
            types[outs[0]] = types[ins[0]]  # contrib norms and activations keep the shape
    if (not domain and node.op_type not in _NO_FOLD and ins and all(i in known for i in ins)
            and all(o in types and (s := static_shape(types[o])) is not None
                    and math.prod(s) <= FOLD_MAX_ELEMENTS for o in outs)):
        _fold(node, opsets, types, known, outs, resolved)


def _fold(node, opsets, types, known, outs, resolved: bool) -> None:
    """Evaluate a node whose inputs are all known, when the guard allows it."""
    # positional: an omitted optional input ("") stays in its place as None
    args = [known[i] if i else None for i in node.input]
    while args and args[-1] is None:
        args.pop()
    allowed = onnx_guard.evaluation_allowed(node, args, opsets, FOLD_MAX_ELEMENTS)
    results = _evaluate(node, args, opsets.get("", 17)) if allowed else None
    if results is not None:
        for o, r in zip(outs, results):
            if r is not None and np.asarray(r).size <= FOLD_MAX_ELEMENTS:
                known[o] = np.asarray(r)
                if not resolved:
                    types[o] = _type_of(known[o])


def _infer_node(node, domain, opsets, types, known) -> None:
    schema = onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), domain)
    input_types = {i: types[i] for i in node.input if i}
    input_data = {i: numpy_helper.from_array(known[i]) for i in node.input if i in known}
    out = shape_inference.infer_node_outputs(
        schema, node, input_types, input_data,
        opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()],
    )
    for name, tp in out.items():
        if not tp.HasField("tensor_type"):
            continue
        if name not in types or (static_shape(types[name]) is None and tp.tensor_type.HasField("shape")):
            types[name] = tp


def _evaluate(node: onnx.NodeProto, inputs: list[np.ndarray], opset: int) -> list | None:
    from onnx.reference.ops import load_op

    cls = load_op("", node.op_type, opset)
    op = cls(node, {"log": lambda *a: None, "opsets": {"": opset}, "new_ops": None, "verbose": 0})
    result = op.run(*inputs)
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(math.prod(shape), dtype=np.int64)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return np.array(shape[start:end], dtype=np.int64)


def _type_of(value: np.ndarray) -> onnx.TypeProto:
    value = np.asarray(value)
    elem = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
    return onnx.helper.make_tensor_type_proto(elem, list(value.shape))


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 17


def inline_value(init: onnx.TensorProto, limit: int = 4096) -> np.ndarray | None:
    """The value of a small tensor stored in the model itself (never read from external data)."""
    return onnx_guard.tensor_values(init, limit)


def constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return inline_value(a.t)
        if a.name in ("value_int", "value_ints", "value_float", "value_floats"):
            return np.array(onnx.helper.get_attribute_value(a))
    return None


def constant_shape(node: onnx.NodeProto) -> tuple[int, ...]:
    for a in node.attribute:
        if a.name == "value":
            return tuple(int(x) for x in a.t.dims)
        if a.name in ("value_ints", "value_floats"):
            return (len(onnx.helper.get_attribute_value(a)),)
    return ()
