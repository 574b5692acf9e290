"""ONNX -> OperatorGraph: shape inference, dimension binding and the operator table.

The importer never reads external data: a model file may name any path on disk, so it is
loaded with ``load_external_data=False`` and only shapes are used. Every failure a user can
cause (a file that is not ONNX, a truncated protobuf, an empty graph, a cycle, shapes that
cannot be resolved) raises :class:`ModelImportError` with a message that says what to do.
"""

from __future__ import annotations

import hashlib
import math
import string
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from planner.bindings import MAX_BINDING
from planner.onnx import guard as onnx_guard

from planner.onnx import validate as onnx_validate
from planner.model.buffers import non_parameter_initializers
from planner.model.graph import Operator, OperatorGraph, OpKind, Tensor, TensorRole, TensorUse, common_refinement, refine_factors
from planner.model.batch_trace import split_batch_dims
from planner.model.quantised import SUB_BYTE_BITS, quantised_weights
from planner.model.rebatch import STATIC_SYMBOL, RebatchError, import_rebatched, locate_batch
from planner.model.tied_weights import without_transposed_copies


class ModelImportError(ValueError):
    """The model cannot be imported or planned; the message says why and how to fix it."""


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


def _dtype(elem_type: int) -> tuple[str, int]:
    return _DTYPES.get(elem_type, ("unknown", 4))


# ---- loading ---------------------------------------------------------------------------------

def load_model_proto(source: bytes | str | Path) -> onnx.ModelProto:
    """Parse an ONNX model from bytes or a path without opening any external-data file."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        data = onnx_guard.read_regular_file(path, ModelImportError)
        label = str(path)
    else:
        data = bytes(source)
        label = "the uploaded file"
        if len(data) > onnx_guard.MAX_MODEL_BYTES:
            raise ModelImportError(f"{label} is {len(data):,} bytes, above the bound of {onnx_guard.MAX_MODEL_BYTES:,}: "
                                   "save the weights as external data (they are never read)")
    if not data:
        raise ModelImportError(f"{label} is empty (0 bytes): export the model again with torch.onnx.export")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError and, for some inputs, other errors
        raise ModelImportError(
            f"{label} is not a valid ONNX model (the protobuf could not be parsed: {exc}); "
            "it may be truncated or not an .onnx file at all"
        ) from None
    _check_header(model, label)
    return model


def _check_header(model: onnx.ModelProto, label: str) -> None:
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelImportError(
            f"{label} is not an ONNX model (no IR version or no graph); choose an .onnx file "
            "written by an exporter such as torch.onnx.export"
        )
    if len(model.graph.node) == 0:
        raise ModelImportError(f"{label} has an empty graph (no operators): nothing to plan")
    try:  # no external-data reference survives parsing; bounds are checked before any inference
        onnx_guard.neutralise(model)
        onnx_guard.check_limits(model, _operator_names(model.graph.node))
    except onnx_guard.LimitError as exc:
        raise ModelImportError(f"{label}: {exc}") from None


def _operator_names(nodes) -> list[str]:
    """The operator name of each node: its own name, else ``OpType_index``; made unique."""
    used: set[str] = set()
    names = []
    for index, node in enumerate(nodes):
        name = node.name or f"{node.op_type}_{index}"
        base, k = name, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        names.append(name)
    return names


def _check_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every tensor defined once and before it is read; no cycle.

    Nodes listed out of order (ONNX asks for topological order, some tools do not keep it) are
    sorted in a copy; an undefined tensor or a cycle is an error that names the nodes.
    """
    g = model.graph
    names = _operator_names(g.node)
    sources = {i.name for i in g.initializer} | {i.name for i in g.input}
    producer: dict[str, int] = {}
    for idx, node in enumerate(g.node):
        for out in node.output:
            if not out:
                continue
            if out in producer or out in sources:
                first = f"node '{names[producer[out]]}'" if out in producer else "a graph input or initializer"
                raise ModelImportError(
                    f"tensor '{out}' is written by node '{names[idx]}' ({node.op_type}) and also by {first}: "
                    "in an ONNX graph every tensor has exactly one producer; re-export the model"
                )
            producer[out] = idx
    out_of_order = False
    for idx, node in enumerate(g.node):
        for inp in node.input:
            if not inp or inp in sources:
                continue
            if inp not in producer:
                raise ModelImportError(
                    f"node '{names[idx]}' ({node.op_type}) reads tensor '{inp}', which is not a graph input, "
                    "not an initializer and not the output of any node: the model is incomplete; re-export it"
                )
            out_of_order |= producer[inp] >= idx
    if not out_of_order:
        return model
    deps = nx.DiGraph()
    deps.add_nodes_from(range(len(g.node)))
    for idx, node in enumerate(g.node):
        for inp in node.input:
            if inp in producer:
                deps.add_edge(producer[inp], idx)
    if not nx.is_directed_acyclic_graph(deps):
        cycle = [names[u] for u, _ in nx.find_cycle(deps)]
        raise ModelImportError(
            "the graph has a cycle: " + " -> ".join(f"'{n}'" for n in cycle + cycle[:1])
            + " (each feeds the next); an ONNX graph must be acyclic: re-export the model"
        )
    order = list(nx.lexicographical_topological_sort(deps))
    sorted_model = onnx.ModelProto()
    sorted_model.CopyFrom(model)
    del sorted_model.graph.node[:]
    for idx in order:
        node = sorted_model.graph.node.add()
        node.CopyFrom(g.node[idx])
        node.name = names[idx]  # keep the names the nodes had in the original order
    return sorted_model


def model_sha256(source: bytes | str | Path) -> str:
    data = onnx_guard.read_regular_file(Path(source), ModelImportError) if isinstance(source, (str, Path)) else bytes(source)
    return hashlib.sha256(data).hexdigest()


def symbolic_dims(model: onnx.ModelProto) -> list[str]:
    """Names of the symbolic dimensions of the graph's data inputs, in order of appearance."""
    inits = {i.name for i in model.graph.initializer}
    names: list[str] = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_param"):
                continue
            if not isinstance(d.dim_param, str):  # protobuf hands back bytes that are not UTF-8
                raise ModelImportError(f"input {vi.name!r} has a dimension name that is not valid text: "
                                       "the file is corrupt; export the model again")
            if d.dim_param not in names:
                names.append(d.dim_param)
    return names


# ---- import ----------------------------------------------------------------------------------

@dataclass
class _ShapeTable:
    shapes: dict[str, tuple[int, ...] | None]
    dtypes: dict[str, int]
    values: dict[str, np.ndarray] = field(default_factory=dict)  # folded shape arithmetic


def import_model(
    source: bytes | str | Path | onnx.ModelProto,
    bindings: dict[str, int] | None = None,
    name: str | None = None,
) -> OperatorGraph:
    """Import an ONNX model as an OperatorGraph.

    ``bindings`` gives values to symbolic input dimensions (``{"batch": 32, "seq": 2048}``).
    Dimensions left unbound are listed in ``graph.unbound_dims`` and taken as 1, so that
    ``inspect`` works; planning refuses such a graph (see :func:`require_bound`).
    """
    if isinstance(source, onnx.ModelProto):
        model = source
        _check_header(model, f"model '{model.graph.name or 'model'}'")
    else:
        model = load_model_proto(source)
    if name is None:
        name = Path(source).stem if isinstance(source, (str, Path)) else (model.graph.name or "model")
    bindings = dict(bindings or {})
    for key, value in bindings.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 1 <= value <= MAX_BINDING:
            raise ModelImportError(f"binding {key}={value!r} must be a positive integer (at most {MAX_BINDING:,}), "
                                   f"e.g. {key}=32")
    known = symbolic_dims(model)
    if STATIC_SYMBOL in bindings and STATIC_SYMBOL not in known:  # --batch N on a static export
        try:
            return import_rebatched(model, bindings, name, import_model)
        except RebatchError as exc:
            raise ModelImportError(str(exc)) from None
    unknown_keys = [k for k in bindings if k not in known]
    if unknown_keys:
        hint = ", ".join(known) if known else "none: every input dimension is fixed"
        raise ModelImportError(
            f"the model has no symbolic dimension named {', '.join(unknown_keys)}; its symbolic dimensions are: {hint}"
        )
    unbound = [d for d in known if d not in bindings]
    values = {**{d: 1 for d in unbound}, **bindings}
    try:
        model = _check_graph(model)
        model = without_transposed_copies(model)  # a tied embedding exported twice (unstripped file)
        table = _infer_shapes(model, values)
        onnx_validate.check_unresolved(model, _operator_names(model.graph.node), table.shapes)
        graph = _Builder(model, table, name).build()
    except ModelImportError:
        raise
    except onnx_validate.InvalidNodeError as exc:
        raise ModelImportError(str(exc)) from None
    except RecursionError:
        raise ModelImportError("the model is nested too deeply to import (recursion limit)") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt model must give a message, not a traceback
        raise ModelImportError(
            f"the model could not be imported ({type(exc).__name__}: {exc}); it is probably corrupt: "
            "check it with onnx.checker.check_model or export it again"
        ) from None
    graph.unbound_dims = unbound
    graph.bindings = dict(bindings)
    locate_batch(model, graph)  # planner.model.rebatch: the batch's symbol and its axis in each input
    split_batch_dims(graph)
    return graph


def batch_symbol(model: onnx.ModelProto) -> str | None:
    """The symbolic dimension on axis 0 of the first data input: the batch, by convention."""
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        return dims[0].dim_param or None if len(dims) and dims[0].HasField("dim_param") else None
    return None


def require_bound(graph: OperatorGraph) -> None:
    """Refuse to plan a graph whose symbolic dimensions are not all bound."""
    if graph.unbound_dims:
        names = ", ".join(graph.unbound_dims)
        example = " ".join(f"--bind {d}=N" for d in graph.unbound_dims)
        raise ModelImportError(
            f"symbolic dimension(s) {names} are not bound: give each a value "
            f"(command line: {example}; in the app: the sidebar's dimension fields)"
        )


def _infer_shapes(model: onnx.ModelProto, values: dict[str, int]) -> _ShapeTable:
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
        if vi.type.HasField("tensor_type") and (name not in types or _static_shape(types[name]) is None):
            shape = _static_shape(vi.type, values)
            if shape is not None:
                types[name] = onnx.helper.make_tensor_type_proto(vi.type.tensor_type.elem_type, list(shape))
    folded = _propagate(inferred, types)

    shapes: dict[str, tuple[int, ...] | None] = {}
    dtypes: dict[str, int] = {}
    for name, tp in types.items():
        dtypes[name] = tp.tensor_type.elem_type
        shapes[name] = _static_shape(tp)
    for name in [n for n, s in shapes.items() if s is None]:
        del shapes[name]
    return _ShapeTable(shapes, dtypes, folded)


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


def _static_shape(tp: onnx.TypeProto, fallback: dict[str, int] | None = None) -> tuple[int, ...] | None:
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
        value = _inline_value(init, FOLD_MAX_ELEMENTS)
        if value is not None:
            known[init.name] = value
    for sparse in model.graph.sparse_initializer:
        value = onnx_guard.sparse_values(sparse, FOLD_MAX_ELEMENTS)
        if value is not None:
            known[sparse.values.name] = value
    for node in model.graph.node:
        outs = [o for o in node.output if o]
        ins = [i for i in node.input if i]
        domain = node.domain if node.domain != "ai.onnx" else ""
        try:
            if node.op_type == "Constant" and not domain:
                value = _constant_value(node)
                if value is not None:
                    known[outs[0]] = value
                    types[outs[0]] = _type_of(value)
                continue
            if not domain and node.op_type in ("Shape", "Size") and ins and ins[0] in types:
                shape = _static_shape(types[ins[0]])
                if shape is not None:
                    value = _shape_value(node, shape)
                    known[outs[0]] = value
                    types[outs[0]] = _type_of(value)
                    continue
            resolved = all(o in types and _static_shape(types[o]) is not None for o in outs)
            if not resolved and all(i in types for i in ins):
                try:
                    _infer_node(node, domain, opsets, types, known)
                except Exception:  # noqa: BLE001 - no schema (contrib op) or inference error
                    pass
                if (node.op_type in _SHAPE_PRESERVING and ins and outs and ins[0] in types
                        and (outs[0] not in types or _static_shape(types[outs[0]]) is None)):
                    types[outs[0]] = types[ins[0]]  # contrib norms and activations keep the shape
            if (not domain and node.op_type not in _NO_FOLD and ins and all(i in known for i in ins)
                    and all(o in types and (s := _static_shape(types[o])) is not None
                            and math.prod(s) <= FOLD_MAX_ELEMENTS for o in outs)):
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
        except Exception:  # noqa: BLE001 - best effort: the builder names unresolved nodes
            continue
    return known


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
        if name not in types or (_static_shape(types[name]) is None and tp.tensor_type.HasField("shape")):
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


# ---- the operator table ----------------------------------------------------------------------

ELEMENTWISE_FLOPS = {
    # one FLOP per output element for arithmetic; data movement counts none
    **{t: 1 for t in (
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log", "Sin",
        "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Min", "Max", "Sum", "Mean", "Relu",
        "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish",
        "Softplus", "Softsign", "Tanh", "Erf", "Where", "Clip", "And", "Or", "Xor", "Not", "Equal",
        "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Floor", "Ceil", "Round", "Sign",
        "IsNaN", "IsInf", "Mod", "Mish", "BitShift", "ThresholdedRelu", "FastGelu", "BiasGelu",
        "QuickGelu", "Trilu", "QuantizeLinear", "DequantizeLinear",
    )},
    **{t: 0 for t in ("Cast", "CastLike", "Identity", "Dropout", "Expand")},
}
REDUCE_OPS = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSumExp", "ReduceSumSquare", "ReduceLogSum"}
ARG_REDUCE_OPS = {"ArgMax", "ArgMin"}
NORM_OPS = {"LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization"}
POOL_OPS = {"MaxPool", "AveragePool", "LpPool"}
GLOBAL_POOL_OPS = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}
RESHAPE_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}
SHAPE_OPS = {"Shape", "Size"}
SOURCE_OPS = {"ConstantOfShape", "Range", "RandomNormal", "RandomUniform", "EyeLike"}
COMPUTE_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum"}
AXIS_SLICE_OPS = {"Slice", "Pad", "Tile"}


def supported_op_types() -> set[str]:
    return (set(ELEMENTWISE_FLOPS) | REDUCE_OPS | ARG_REDUCE_OPS | NORM_OPS | POOL_OPS | GLOBAL_POOL_OPS
            | RESHAPE_OPS | SHAPE_OPS | SOURCE_OPS | COMPUTE_OPS | AXIS_SLICE_OPS
            | {"BatchNormalization", "InstanceNormalization", "GroupNormalization", "Softmax",
               "LogSoftmax", "Transpose", "Concat", "Split", "Gather", "GatherND", "GatherElements",
               "TopK", "Constant", "CumSum", "ScatterElements", "ScatterND"})


class _NodeError(Exception):
    pass


class _Builder:
    def __init__(self, model: onnx.ModelProto, table: _ShapeTable, name: str):
        self.model = model
        self.g = model.graph
        self.table = table
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.operators: dict[str, Operator] = {}
        self.static: set[str] = set()
        self.const_values: dict[str, np.ndarray] = dict(table.values)
        self.opaque_types: set[str] = set()
        self.warnings: list[str] = []

    # -- tensors --
    def _shape(self, name: str, where: str) -> tuple[int, ...]:
        shape = self.table.shapes.get(name)
        if shape is None:
            raise ModelImportError(
                f"shape inference could not resolve the shape of tensor '{name}' {where}; export the "
                "model with fixed or named input dimensions, or add value_info with that tensor's shape "
                "(for example with onnx.shape_inference or onnxruntime's symbolic shape inference)"
            )
        return shape

    def _add_tensor(self, name: str, role: TensorRole, producer: str | None, label: str) -> Tensor:
        if name in self.tensors:
            return self.tensors[name]
        dtype, itemsize = _dtype(self.table.dtypes.get(name, onnx.TensorProto.FLOAT))
        t = Tensor(name, self._shape(name, label), dtype, itemsize, role, producer)
        self.tensors[name] = t
        return t

    def build(self) -> OperatorGraph:
        g = self.g
        init_names = set()
        not_params = non_parameter_initializers(g)  # lifted buffers (rotary inv_freq), one-element scales
        quantised = quantised_weights(g)
        for init in g.initializer:
            init_names.add(init.name)
            dtype, _ = _dtype(init.data_type)
            # A float initializer is a weight, except a rank-0 one: that is a scalar constant the
            # dynamo exporter lifts out of the code (0.5, sqrt(2), a dropout ratio), never a layer's
            # weight. (A learnable rank-0 scalar, rare, is then missed: one parameter.)
            is_param = (dtype.startswith(("float", "bfloat")) and len(init.dims) > 0 and init.name not in not_params
                        or init.name in quantised)
            role = TensorRole.PARAMETER if is_param else TensorRole.CONSTANT
            self.table.shapes[init.name] = tuple(int(x) for x in init.dims)
            self.table.dtypes[init.name] = init.data_type
            self._add_tensor(init.name, role, None, "(an initializer)").frozen = init.name in quantised
            if not is_param:
                self.static.add(init.name)
                value = _inline_value(init)
                if value is not None:
                    self.const_values[init.name] = value
        inputs = []
        for vi in g.input:
            if vi.name in init_names:
                continue
            self._add_tensor(vi.name, TensorRole.INPUT, None, "(a graph input: give each of its dimensions a size or a name)")
            inputs.append(vi.name)

        for node, op_name in zip(g.node, _operator_names(g.node)):
            self._build_node(node, op_name)
        graph = OperatorGraph(self.name, self.operators, self.tensors, inputs,
                              [o.name for o in g.output if o.name in self.tensors])
        graph.build_edges()
        if not nx.is_directed_acyclic_graph(graph.graph):
            cycle = nx.find_cycle(graph.graph)
            raise ModelImportError(
                "the graph has a cycle (" + " -> ".join(u for u, _ in cycle) + f" -> {cycle[0][0]}); "
                "an ONNX graph must be acyclic: re-export the model"
            )
        self._mark_requires_grad(graph)
        refine_factors(graph)
        if self.opaque_types:
            graph.unsupported_op_types = sorted(self.opaque_types)
            self.warnings.append(
                "unsupported op types (planned as replicated, opaque operators): " + ", ".join(graph.unsupported_op_types)
            )
        graph.warnings = self.warnings
        return graph

    def _mark_requires_grad(self, graph: OperatorGraph) -> None:
        for t in self.tensors.values():
            t.requires_grad = t.role is TensorRole.PARAMETER and not t.frozen
        for name in graph.topological_order():
            op = self.operators[name]
            if op.kind is OpKind.STATIC:
                continue
            grad = any(self.tensors[u.tensor].requires_grad for u in op.inputs)
            for u in op.outputs:
                t = self.tensors[u.tensor]
                t.requires_grad = grad and t.is_float

    # -- nodes --
    def _build_node(self, node: onnx.NodeProto, op_name: str) -> None:
        label = f"'{op_name}' ({node.op_type})"
        ins = [i for i in node.input if i]
        outs = [o for o in node.output if o]
        missing = [i for i in ins if i not in self.tensors]
        if missing:
            raise ModelImportError(
                f"node {label} reads tensor '{missing[0]}' that no earlier node produces and that is not "
                "a graph input or initializer: the graph is not in topological order or is incomplete"
            )
        if node.op_type == "Constant":
            for o in outs:
                self.table.shapes.setdefault(o, _constant_shape(node))
                self._add_tensor(o, TensorRole.CONSTANT, op_name, f"produced by node {label}")
                self.static.add(o)
                value = _constant_value(node)
                if value is not None:
                    self.const_values[o] = value
            self._add_op(Operator(op_name, node.op_type, OpKind.STATIC, {}, [], [TensorUse(o, ()) for o in outs], 0.0))
            return
        is_static = node.op_type in SHAPE_OPS or (
            node.op_type not in ("RandomNormal", "RandomUniform") and ins and all(i in self.static for i in ins)
        ) or (node.op_type in SOURCE_OPS and all(i in self.static for i in ins))
        if is_static:
            for o in outs:
                if self.table.shapes.get(o) is None:
                    self.table.shapes[o] = ()  # a value we never need the shape of
                self._add_tensor(o, TensorRole.CONSTANT, op_name, f"produced by node {label}")
                self.static.add(o)
            self._add_op(Operator(op_name, node.op_type, OpKind.STATIC, {},
                                  [TensorUse(i, ()) for i in ins], [TensorUse(o, ()) for o in outs], 0.0))
            return
        for o in outs:
            self._add_tensor(o, TensorRole.ACTIVATION, op_name, f"produced by node {label}")
        in_shapes = [self.tensors[i].shape for i in ins]
        out_shapes = [self.tensors[o].shape for o in outs]
        builder = getattr(self, "_op_" + node.op_type, None)
        kind_default = OpKind.COMPUTE if node.op_type in COMPUTE_OPS else OpKind.FOLLOW
        spec = None
        try:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type in ELEMENTWISE_FLOPS:
                spec = self._elementwise(node, ins, in_shapes, out_shapes)
            elif node.op_type in REDUCE_OPS or node.op_type in ARG_REDUCE_OPS:
                spec = self._reduce(node, ins, in_shapes, out_shapes, attrs)
            elif node.op_type in NORM_OPS:
                spec = self._norm(node, ins, in_shapes, out_shapes, attrs)
            elif node.op_type in POOL_OPS:
                spec = self._pool(in_shapes, out_shapes, attrs)
            elif node.op_type in GLOBAL_POOL_OPS:
                spec = self._global_pool(in_shapes, out_shapes)
            elif node.op_type in RESHAPE_OPS:
                spec = self._reshape(in_shapes, out_shapes, len(ins))
            elif node.op_type in AXIS_SLICE_OPS:
                spec = self._axis_slice(in_shapes, out_shapes, len(ins))
            elif node.op_type in SOURCE_OPS:
                spec = self._source(in_shapes, out_shapes)
            elif builder is not None:
                spec = builder(node, ins, in_shapes, out_shapes, attrs)
        except _NodeError as exc:
            self.warnings.append(f"node {label}: {exc}; planned as opaque (replicated)")
            spec = None
        except Exception as exc:  # noqa: BLE001 - a malformed node (wrong input count, bad attribute)
            self.warnings.append(
                f"node {label} does not match its op type's definition ({type(exc).__name__}: {exc}); "
                "planned as opaque (replicated)"
            )
            spec = None
        if spec is None:
            if builder is None and node.op_type not in supported_op_types():
                self.opaque_types.add(node.op_type if not node.domain or node.domain == "ai.onnx"
                                      else f"{node.domain}.{node.op_type}")
            spec = self._opaque(in_shapes, out_shapes)
            kind_default = OpKind.OPAQUE
        dims, in_axes, out_axes, flops, extra = spec
        kind = extra.pop("kind", kind_default)
        op = Operator(
            op_name, node.op_type, kind, dims,
            [TensorUse(i, tuple(a), frozenset(extra.get("loose_in", {}).get(k, ()))) for k, (i, a) in enumerate(zip(ins, in_axes))],
            [TensorUse(o, tuple(a), frozenset(extra.get("loose_out", {}).get(k, ()))) for k, (o, a) in enumerate(zip(outs, out_axes))],
            float(flops),
            frozenset(extra.get("reduction", ())),
            frozenset(extra.get("fixed", ())) | frozenset(d for d, s in dims.items() if s <= 1),
            dict(extra.get("halo", {})),
        )
        self._add_op(op)

    def _add_op(self, op: Operator) -> None:
        self.operators[op.name] = op

    # -- generic shapes --
    @staticmethod
    def _broadcast_axes(in_shape, out_names, out_shape):
        """Right-aligned broadcasting: axes of size 1 against a larger output are broadcast."""
        offset = len(out_shape) - len(in_shape)
        axes = []
        for j, size in enumerate(in_shape):
            k = j + offset
            if k < 0:
                raise _NodeError("input has a higher rank than the output")
            if size == out_shape[k]:
                axes.append((out_names[k],))
            elif size == 1:
                axes.append(())
            else:
                raise _NodeError(f"cannot broadcast {tuple(in_shape)} to {tuple(out_shape)}")
        return axes

    def _elementwise(self, node, ins, in_shapes, out_shapes):
        out_shape = out_shapes[0]
        names = [f"d{i}" for i in range(len(out_shape))]
        dims = dict(zip(names, out_shape))
        in_axes = []
        for k, s in enumerate(in_shapes):
            if node.op_type == "Expand" and k > 0 or node.op_type in ("Clip", "Trilu") and k > 0 and len(s) == 0:
                in_axes.append(() if len(s) == 0 else [() for _ in s])
                continue
            in_axes.append(self._broadcast_axes(s, names, out_shape))
        out_axes = [self._broadcast_axes(s, names, out_shape) for s in out_shapes]
        flops = ELEMENTWISE_FLOPS[node.op_type] * math.prod(out_shape)
        return dims, in_axes, out_axes, flops, {}

    def _opaque(self, in_shapes, out_shapes):
        """Every axis of every tensor its own unsplittable dim: the operator can only be replicated."""
        dims: dict[str, int] = {}

        def own(prefix, shapes):
            axes = []
            for k, s in enumerate(shapes):
                names = [f"{prefix}{k}_{a}" for a in range(len(s))]
                dims.update(zip(names, s))
                axes.append([(n,) for n in names])
            return axes
        in_axes, out_axes = own("i", in_shapes), own("o", out_shapes)
        return dims, in_axes, out_axes, 0, {"fixed": set(dims), "kind": OpKind.OPAQUE}

    def _source(self, in_shapes, out_shapes):
        spec = self._opaque([], out_shapes)
        dims, _, out_axes, _, extra = spec
        extra["kind"] = OpKind.FOLLOW
        return dims, [[() for _ in s] for s in in_shapes], out_axes, 0, extra

    # -- compute operators --
    def _op_MatMul(self, node, ins, in_shapes, out_shapes, attrs):
        a, b = in_shapes
        if len(a) == 0 or len(b) == 0:
            raise _NodeError("MatMul of a scalar")
        m_present, n_present = len(a) >= 2, len(b) >= 2
        k = a[-1]
        if (b[-2] if n_present else b[0]) != k:
            raise _NodeError(f"inner dimensions differ: {a} x {b}")
        m = a[-2] if m_present else 1
        n = b[-1] if n_present else 1
        a_batch = a[:-2] if m_present else ()
        b_batch = b[:-2] if n_present else ()
        out = out_shapes[0]
        rank_batch = max(len(a_batch), len(b_batch))
        batch_names = [f"b{i}" for i in range(rank_batch)]
        batch_sizes = list(out[:rank_batch])
        dims = dict(zip(batch_names, batch_sizes))
        if m_present:
            dims["m"] = m
        if n_present:
            dims["n"] = n
        dims["k"] = k
        a_axes = self._broadcast_axes(a_batch, batch_names, batch_sizes) + ([("m",)] if m_present else []) + [("k",)]
        b_axes = self._broadcast_axes(b_batch, batch_names, batch_sizes) + [("k",)] + ([("n",)] if n_present else [])
        y_axes = [(b,) for b in batch_names] + ([("m",)] if m_present else []) + ([("n",)] if n_present else [])
        flops = 2 * math.prod(batch_sizes) * m * n * k
        return dims, [a_axes, b_axes], [y_axes], flops, {"reduction": {"k"}}

    def _op_Gemm(self, node, ins, in_shapes, out_shapes, attrs):
        a, b = in_shapes[0], in_shapes[1]
        ta, tb = attrs.get("transA", 0), attrs.get("transB", 0)
        m, k = (a[1], a[0]) if ta else (a[0], a[1])
        n = b[0] if tb else b[1]
        dims = {"m": m, "n": n, "k": k}
        a_axes = [("k",), ("m",)] if ta else [("m",), ("k",)]
        b_axes = [("n",), ("k",)] if tb else [("k",), ("n",)]
        in_axes = [a_axes, b_axes]
        if len(in_shapes) > 2:
            in_axes.append(self._broadcast_axes(in_shapes[2], ["m", "n"], (m, n)))
        return dims, in_axes, [[("m",), ("n",)]], 2 * m * n * k, {"reduction": {"k"}}

    def _op_Conv(self, node, ins, in_shapes, out_shapes, attrs):
        x, w = in_shapes[0], in_shapes[1]
        y = out_shapes[0]
        group = int(attrs.get("group", 1))
        nsp = len(x) - 2
        strides = list(attrs.get("strides", [1] * nsp))
        dilations = list(attrs.get("dilations", [1] * nsp))
        ks = list(w[2:])
        c_per_group = w[1]
        dims, ch_in, ch_out, sp, kr = _conv_dims(x[0], group, c_per_group, w[0] // group, "o", y[2:], ks)
        halo = {sp[i]: max(0, (ks[i] - 1) * dilations[i] + 1 - strides[i]) for i in range(nsp)}
        x_axes = [("n",), ch_in] + [(s,) for s in sp]
        w_axes = [ch_out, ("ic",)] + [(r,) for r in kr]
        y_axes = [("n",), ch_out] + [(s,) for s in sp]
        in_axes = [x_axes, w_axes] + ([[ch_out]] if len(in_shapes) > 2 else [])
        flops = 2 * x[0] * w[0] * math.prod(y[2:]) * c_per_group * math.prod(ks)
        extra = {"reduction": {"ic", *kr}, "fixed": set(kr), "halo": halo,
                 "loose_in": {0: set(range(2, 2 + nsp))}}
        return dims, in_axes, [y_axes], flops, extra

    def _op_ConvTranspose(self, node, ins, in_shapes, out_shapes, attrs):
        x, w = in_shapes[0], in_shapes[1]
        group = int(attrs.get("group", 1))
        nsp = len(x) - 2
        ks = list(w[2:])
        dims, ch_in, ch_out, sp, kr = _conv_dims(x[0], group, x[1] // group, w[1], "i", x[2:], ks)
        x_axes = [("n",), ch_in] + [(s,) for s in sp]
        w_axes = [ch_in, ("oc",)] + [(r,) for r in kr]
        y_axes = [("n",), ch_out] + [(s,) for s in sp]
        in_axes = [x_axes, w_axes] + ([[ch_out]] if len(in_shapes) > 2 else [])
        flops = 2 * x[0] * x[1] * math.prod(x[2:]) * w[1] * math.prod(ks)
        halo = {s: max(0, k - 1) for s, k in zip(sp, ks)}
        extra = {"reduction": {"ic", *kr}, "fixed": set(kr), "halo": halo,
                 "loose_out": {0: set(range(2, 2 + nsp))}}
        return dims, in_axes, [y_axes], flops, extra

    def _op_Einsum(self, node, ins, in_shapes, out_shapes, attrs):
        equation = attrs["equation"]
        if isinstance(equation, bytes):
            equation = equation.decode()
        equation = equation.replace(" ", "")
        lhs, _, rhs = equation.partition("->")
        terms = lhs.split(",")
        if len(terms) != len(in_shapes):
            raise _NodeError("equation does not match the number of inputs")
        spare = [c for c in string.ascii_uppercase if c not in equation]
        ell_rank = max((len(s) - (len(t) - 3) for t, s in zip(terms, in_shapes) if "..." in t), default=0)
        ell = "".join(spare[:ell_rank])
        expanded = []
        for t, s in zip(terms, in_shapes):
            if "..." in t:
                n = len(s) - (len(t) - 3)
                t = t.replace("...", ell[ell_rank - n:])
            expanded.append(t)
        if "->" in equation:
            out = rhs.replace("...", ell)
        else:
            letters = "".join(expanded)
            out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))
        dims: dict[str, int] = {}
        for t, s in zip(expanded, in_shapes):
            for c, size in zip(t, s):
                dims[c] = max(dims.get(c, 1), size)
        in_axes = [[(c,) if size == dims[c] else () for c, size in zip(t, s)] for t, s in zip(expanded, in_shapes)]
        out_axes = [[(c,) for c in out]]
        reduction = {c for c in dims if c not in out}
        flops = (2 if len(in_shapes) > 1 else 1) * math.prod(dims.values())
        return dims, in_axes, out_axes, flops, {"reduction": reduction}

    # -- normalisations and softmax --
    def _norm(self, node, ins, in_shapes, out_shapes, attrs):
        x = in_shapes[0]
        axis = attrs.get("axis", -1) % len(x)
        names = [f"d{i}" for i in range(len(x))]
        dims = dict(zip(names, x))
        in_axes = [[(n,) for n in names]] + [self._broadcast_axes(s, names, x) for s in in_shapes[1:]]
        out_axes = [self._broadcast_axes(s, names, x) for s in out_shapes]
        return dims, in_axes, out_axes, 8 * math.prod(x), {"fixed": set(names[axis:]), "reduction": set(names[axis:])}

    def _op_BatchNormalization(self, node, ins, in_shapes, out_shapes, attrs):
        x = in_shapes[0]
        names = ["n", "c"] + [f"s{i}" for i in range(len(x) - 2)]
        dims = dict(zip(names, x))
        in_axes = [[(n,) for n in names]] + [[("c",)] for _ in in_shapes[1:]]
        out_axes = [[(n,) for n in names]] + [[("c",)] for _ in out_shapes[1:]]
        return dims, in_axes, out_axes, 2 * math.prod(x), {}

    def _op_InstanceNormalization(self, node, ins, in_shapes, out_shapes, attrs):
        dims, in_axes, out_axes, flops, _ = self._op_BatchNormalization(node, ins, in_shapes, out_shapes, attrs)
        spatial = {d for d in dims if d.startswith("s")}
        return dims, in_axes, out_axes, 4 * flops, {"fixed": spatial}

    def _op_GroupNormalization(self, node, ins, in_shapes, out_shapes, attrs):
        x = in_shapes[0]
        names = ["n", "c"] + [f"s{i}" for i in range(len(x) - 2)]
        dims = dict(zip(names, x))
        in_axes = [[(n,) for n in names]] + [[("c",)] for _ in in_shapes[1:]]
        return dims, in_axes, [[(n,) for n in names]], 8 * math.prod(x), {"fixed": set(names[1:])}

    def _op_Softmax(self, node, ins, in_shapes, out_shapes, attrs):
        x = in_shapes[0]
        opset = _opset(self.model)
        axis = attrs.get("axis", -1 if opset >= 13 else 1) % max(len(x), 1)
        names = [f"d{i}" for i in range(len(x))]
        fixed = {names[axis]} if opset >= 13 else set(names[axis:])
        axes = [(n,) for n in names]
        return dict(zip(names, x)), [axes], [axes], 5 * math.prod(x), {"fixed": fixed}

    _op_LogSoftmax = _op_Softmax

    def _op_CumSum(self, node, ins, in_shapes, out_shapes, attrs):
        x = in_shapes[0]
        axis = int(self._const(ins[1]).reshape(-1)[0]) % len(x)
        names = [f"d{i}" for i in range(len(x))]
        axes = [(n,) for n in names]
        return dict(zip(names, x)), [axes, []], [axes], math.prod(x), {"fixed": {names[axis]}}

    # -- reductions and pooling --
    def _reduce(self, node, ins, in_shapes, out_shapes, attrs):
        x = in_shapes[0]
        y = out_shapes[0]
        keep = attrs.get("keepdims", 1)
        if node.op_type in ARG_REDUCE_OPS:
            axes = [attrs.get("axis", 0)]
        elif "axes" in attrs:
            axes = list(attrs["axes"])
        elif len(ins) > 1:
            axes = [int(v) for v in self._const(ins[1]).reshape(-1)]
        else:
            axes = [] if attrs.get("noop_with_empty_axes", 0) else list(range(len(x)))
        axes = sorted({a % len(x) for a in axes}) if x else []
        if not axes and attrs.get("noop_with_empty_axes", 0):
            names = [f"d{i}" for i in range(len(x))]
            a = [(n,) for n in names]
            return dict(zip(names, x)), [a] + [[]] * (len(in_shapes) - 1), [a], 0, {}
        names = [f"d{i}" for i in range(len(x))]
        dims = dict(zip(names, x))
        y_axes = [() if i in axes else (n,) for i, n in enumerate(names)] if keep else [(n,) for i, n in enumerate(names) if i not in axes]
        if len(y_axes) != len(y):
            raise _NodeError("reduced axes do not match the output shape")
        reduced = {names[i] for i in axes}
        extra = {"reduction": reduced}
        if node.op_type in ARG_REDUCE_OPS:
            extra["fixed"] = reduced
        in_axes = [[(n,) for n in names]] + [[() for _ in s] for s in in_shapes[1:]]
        return dims, in_axes, [y_axes], math.prod(x), extra

    def _pool(self, in_shapes, out_shapes, attrs):
        x, y = in_shapes[0], out_shapes[0]
        nsp = len(x) - 2
        ks = list(attrs.get("kernel_shape", [1] * nsp))
        strides = list(attrs.get("strides", [1] * nsp))
        sp = [f"o{i}" for i in range(nsp)]
        dims = {"n": x[0], "c": x[1], **{s: y[2 + i] for i, s in enumerate(sp)}}
        axes = [("n",), ("c",)] + [(s,) for s in sp]
        halo = {s: max(0, ks[i] - strides[i]) for i, s in enumerate(sp)}
        extra = {"halo": halo, "loose_in": {0: set(range(2, 2 + nsp))}}
        return dims, [axes], [axes for _ in out_shapes], math.prod(y) * math.prod(ks), extra

    def _global_pool(self, in_shapes, out_shapes):
        x = in_shapes[0]
        sp = [f"s{i}" for i in range(len(x) - 2)]
        dims = {"n": x[0], "c": x[1], **{s: x[2 + i] for i, s in enumerate(sp)}}
        x_axes = [("n",), ("c",)] + [(s,) for s in sp]
        y_axes = [("n",), ("c",)] + [() for _ in sp]
        return dims, [x_axes], [y_axes], math.prod(x), {"reduction": set(sp)}

    # -- layout operators --
    def _reshape(self, in_shapes, out_shapes, n_inputs):
        """Reshape, Flatten, Squeeze, Unsqueeze: match axes into groups of equal product.

        Within a group both sides are expressed over shared atomic factors (so [b*s, h] ->
        [b, s, h] gives dims b, s, h with the input's first axis indexed by (b, s)). A group
        with no common refinement ((6, 4) -> (4, 6)) gets separate, unsplittable dims.
        """
        x, y = in_shapes[0], out_shapes[0]
        if 0 in x or math.prod(x) != math.prod(y):
            raise _NodeError(f"cannot match reshape {x} -> {y}")
        xi = [a for a, s in enumerate(x) if s != 1]
        yj = [b for b, s in enumerate(y) if s != 1]
        dims, fixed = {}, set()
        x_axes: list[list[str]] = [[] for _ in x]
        y_axes: list[list[str]] = [[] for _ in y]
        i = j = group = 0
        while i < len(xi) and j < len(yj):
            gi, gj = [xi[i]], [yj[j]]
            pi, pj = x[xi[i]], y[yj[j]]
            i, j = i + 1, j + 1
            while pi != pj:
                if pi < pj:
                    gi.append(xi[i]); pi *= x[xi[i]]; i += 1
                else:
                    gj.append(yj[j]); pj *= y[yj[j]]; j += 1
            refined = common_refinement(tuple(x[a] for a in gi), tuple(y[b] for b in gj))
            if refined is None:
                for a in gi:
                    dims[f"x{a}"] = x[a]; fixed.add(f"x{a}"); x_axes[a] = [f"x{a}"]
                for b in gj:
                    dims[f"y{b}"] = y[b]; fixed.add(f"y{b}"); y_axes[b] = [f"y{b}"]
            else:
                names = [f"f{group}_{k}" for k in range(len(refined))]
                dims.update(zip(names, refined))
                _distribute(names, refined, gi, x, x_axes)
                _distribute(names, refined, gj, y, y_axes)
            group += 1
        in_axes = [[tuple(a) for a in x_axes]] + [[() for _ in s] for s in in_shapes[1:]]
        return dims, in_axes, [[tuple(a) for a in y_axes]], 0, {"fixed": fixed}

    def _op_Transpose(self, node, ins, in_shapes, out_shapes, attrs):
        x = in_shapes[0]
        perm = list(attrs.get("perm", list(range(len(x)))[::-1]))
        names = [f"d{i}" for i in range(len(x))]
        return dict(zip(names, x)), [[(n,) for n in names]], [[(names[p],) for p in perm]], 0, {}

    def _op_Concat(self, node, ins, in_shapes, out_shapes, attrs):
        y = out_shapes[0]
        axis = attrs["axis"] % len(y)
        names = [f"d{i}" for i in range(len(y))]
        dims = {n: s for i, (n, s) in enumerate(zip(names, y)) if i != axis}
        dims["cat"] = y[axis]
        in_axes = []
        for k, s in enumerate(in_shapes):
            dims[f"cat{k}"] = s[axis]
            in_axes.append([(f"cat{k}",) if i == axis else (names[i],) for i in range(len(s))])
        y_axes = [("cat",) if i == axis else (n,) for i, n in enumerate(names)]
        fixed = {"cat"} | {f"cat{k}" for k in range(len(in_shapes))}
        return dims, in_axes, [y_axes], 0, {"fixed": fixed}

    def _op_Split(self, node, ins, in_shapes, out_shapes, attrs):
        x = in_shapes[0]
        axis = attrs.get("axis", 0) % len(x)
        names = [f"d{i}" for i in range(len(x))]
        dims = {n: s for i, (n, s) in enumerate(zip(names, x)) if i != axis}
        sizes = [s[axis] for s in out_shapes]
        extra_in = [[] for _ in in_shapes[1:]]
        if len(set(sizes)) == 1 and sizes[0] > 1 and len(sizes) > 1:
            # equal parts: the axis is (parts, part) and a split of the part flows through
            dims["parts"] = len(sizes)
            dims["part"] = sizes[0]
            x_axes = [("parts", "part") if i == axis else (n,) for i, n in enumerate(names)]
            y_axes = [("part",) if i == axis else (n,) for i, n in enumerate(names)]
            return dims, [x_axes] + extra_in, [y_axes for _ in out_shapes], 0, {"fixed": {"parts"}}
        dims["whole"] = x[axis]
        x_axes = [("whole",) if i == axis else (n,) for i, n in enumerate(names)]
        out_axes = []
        for k, s in enumerate(sizes):
            dims[f"part{k}"] = s
            out_axes.append([(f"part{k}",) if i == axis else (n,) for i, n in enumerate(names)])
        fixed = {"whole"} | {f"part{k}" for k in range(len(sizes))}
        return dims, [x_axes] + extra_in, out_axes, 0, {"fixed": fixed}

    def _axis_slice(self, in_shapes, out_shapes, n_inputs):
        """Slice, Pad, Tile: axes whose size changes get separate, unsplittable dims."""
        x, y = in_shapes[0], out_shapes[0]
        dims, x_axes, y_axes, fixed = {}, [], [], set()
        for i, (a, b) in enumerate(zip(x, y)):
            if a == b:
                dims[f"d{i}"] = a
                x_axes.append((f"d{i}",)); y_axes.append((f"d{i}",))
            else:
                dims[f"x{i}"] = a; dims[f"y{i}"] = b
                fixed |= {f"x{i}", f"y{i}"}
                x_axes.append((f"x{i}",)); y_axes.append((f"y{i}",))
        in_axes = [x_axes] + [[() for _ in s] for s in in_shapes[1:]]
        return dims, in_axes, [y_axes], 0, {"fixed": fixed}

    def _op_Gather(self, node, ins, in_shapes, out_shapes, attrs):
        data, idx = in_shapes
        axis = attrs.get("axis", 0) % len(data)
        dims = {}
        data_axes, idx_axes, y_axes = [], [], []
        for i, s in enumerate(data):
            name = "v" if i == axis else f"d{i}"
            dims[name] = s
            data_axes.append((name,))
        for j, s in enumerate(idx):
            dims[f"i{j}"] = s
            idx_axes.append((f"i{j}",))
        for i in range(len(data)):
            if i == axis:
                y_axes.extend(idx_axes)
            else:
                y_axes.append((f"d{i}",))
        is_embedding = self.tensors[ins[0]].role is TensorRole.PARAMETER
        extra = {"reduction": {"v"}}
        if is_embedding:
            extra["kind"] = OpKind.COMPUTE  # a split vocabulary is a masked gather + all-reduce
        else:
            extra["fixed"] = {"v"}
        # data movement: priced by the bytes it moves (planner.cost.model's roofline), no FLOPs
        return dims, [data_axes, idx_axes], [y_axes], 0, extra

    def _op_GatherElements(self, node, ins, in_shapes, out_shapes, attrs):
        data, idx = in_shapes
        dims, d_axes, i_axes, fixed = _axiswise(data, idx, attrs.get("axis", 0) % len(data), "y")
        return dims, [d_axes, i_axes], [i_axes], 0, {"fixed": fixed}

    def _op_ScatterElements(self, node, ins, in_shapes, out_shapes, attrs):
        """Output = data with updates written along ``axis`` at the indices (MoE gate scatter)."""
        y, idx, upd = out_shapes[0], in_shapes[1], in_shapes[2]
        if not (len(y) == len(idx) == len(upd)):
            raise _NodeError("data, indices and updates must have the same rank")
        dims, y_axes, u_axes, fixed = _axiswise(y, idx, attrs.get("axis", 0) % len(y), "u")
        # data movement (a reduction's adds included) is priced by bytes moved, not FLOPs
        return dims, [y_axes, u_axes, u_axes], [y_axes], 0, {"fixed": fixed}

    def _op_ScatterND(self, node, ins, in_shapes, out_shapes, attrs):
        y, idx, upd = out_shapes[0], in_shapes[1], in_shapes[2]
        k = idx[-1] if idx else 0
        if not idx or k > len(y) or len(upd) != len(idx) - 1 + len(y) - k:
            raise _NodeError("indices and updates do not match the data's rank")
        dims, fixed, y_axes = {}, set(), []
        for a, s in enumerate(y):
            name = f"x{a}" if a < k else f"t{a}"
            dims[name] = s
            y_axes.append((name,))
            if a < k:
                fixed.add(name)
        lead = [f"i{j}" for j in range(len(idx) - 1)]
        dims.update(zip(lead, idx[:-1]))
        dims["last"] = k
        fixed |= set(lead) | {"last"}
        i_axes = [(n,) for n in lead] + [("last",)]
        u_axes = [(n,) for n in lead] + [(f"t{a}",) for a in range(k, len(y))]
        return dims, [y_axes, i_axes, u_axes], [y_axes], 0, {"fixed": fixed}

    def _op_GatherND(self, node, ins, in_shapes, out_shapes, attrs):
        data, idx = in_shapes
        bd = attrs.get("batch_dims", 0)
        k = idx[-1]
        dims, fixed = {}, set()
        batch = [f"b{i}" for i in range(bd)]
        dims.update(zip(batch, data[:bd]))
        mid = [f"i{j}" for j in range(len(idx) - 1 - bd)]
        dims.update(zip(mid, idx[bd:-1]))
        gathered = [f"v{j}" for j in range(k)]
        dims.update(zip(gathered, data[bd:bd + k]))
        trailing = [f"t{j}" for j in range(len(data) - bd - k)]
        dims.update(zip(trailing, data[bd + k:]))
        dims["last"] = k
        fixed |= set(gathered) | {"last"}
        d_axes = [(n,) for n in batch + gathered + trailing]
        i_axes = [(n,) for n in batch + mid + ["last"]]
        y_axes = [(n,) for n in batch + mid + trailing]
        return dims, [d_axes, i_axes], [y_axes], 0, {"fixed": fixed}

    def _op_TopK(self, node, ins, in_shapes, out_shapes, attrs):
        x = in_shapes[0]
        axis = attrs.get("axis", -1) % len(x)
        names = [f"d{i}" for i in range(len(x))]
        dims = {n: s for i, (n, s) in enumerate(zip(names, x)) if i != axis}
        dims["v"] = x[axis]
        dims["topk"] = out_shapes[0][axis]
        x_axes = [("v",) if i == axis else (n,) for i, n in enumerate(names)]
        y_axes = [("topk",) if i == axis else (n,) for i, n in enumerate(names)]
        flops = math.prod(x) * max(1, math.ceil(math.log2(max(x[axis], 2))))
        return dims, [x_axes, []], [y_axes, y_axes], flops, {"fixed": {"v", "topk"}}

    # -- constants --
    def _const(self, name: str) -> np.ndarray:
        if name not in self.const_values:
            raise _NodeError(f"needs the constant value of '{name}', which is computed at run time")
        return self.const_values[name]


def _conv_dims(batch, group, ic, oc, spatial_prefix, spatial, kernel):
    """The iteration space shared by Conv and ConvTranspose: n, (g,) channels per group, one dim
    per spatial axis (``o*`` for a convolution's output, ``i*`` for a transposed one's input) and
    one per kernel axis. Returns dims and the axis tuples of the input and output channels."""
    dims = {"n": batch}
    ch_in, ch_out = ("ic",), ("oc",)
    if group > 1:
        dims["g"] = group
        ch_in, ch_out = ("g", "ic"), ("g", "oc")
    sp = [f"{spatial_prefix}{i}" for i in range(len(spatial))]
    kr = [f"r{i}" for i in range(len(kernel))]
    dims.update(oc=oc, ic=ic)
    dims.update(zip(sp, spatial))
    dims.update(zip(kr, kernel))
    return dims, ch_in, ch_out, sp, kr


def _axiswise(data, other, axis, prefix):
    """GatherElements / ScatterElements: axes where ``data`` and ``other`` (indices, updates)
    agree, except ``axis``, share a dim; the others get separate unsplittable dims."""
    dims, d_axes, o_axes, fixed = {}, [], [], set()
    for a, (s, t) in enumerate(zip(data, other)):
        if a == axis or s != t:
            dims[f"x{a}"], dims[f"{prefix}{a}"] = s, t
            fixed |= {f"x{a}", f"{prefix}{a}"}
            d_axes.append((f"x{a}",))
            o_axes.append((f"{prefix}{a}",))
        else:
            dims[f"d{a}"] = s
            d_axes.append((f"d{a}",))
            o_axes.append((f"d{a}",))
    return dims, d_axes, o_axes, fixed


def _distribute(names, refined, group_axes, shape, axes_out):
    """Hand the atomic factors of one reshape group to the axes of one side, in order."""
    pos = 0
    for a in group_axes:
        size, acc = shape[a], 1
        while acc < size:
            acc *= refined[pos]
            axes_out[a].append(names[pos])
            pos += 1


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 17


def _inline_value(init: onnx.TensorProto, limit: int = 4096) -> np.ndarray | None:
    """The value of a small tensor stored in the model itself (never read from external data)."""
    return onnx_guard.tensor_values(init, limit)


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return _inline_value(a.t)
        if a.name in ("value_int", "value_ints", "value_float", "value_floats"):
            return np.array(onnx.helper.get_attribute_value(a))
    return None


def _constant_shape(node: onnx.NodeProto) -> tuple[int, ...]:
    for a in node.attribute:
        if a.name == "value":
            return tuple(int(x) for x in a.t.dims)
        if a.name in ("value_ints", "value_floats"):
            return (len(onnx.helper.get_attribute_value(a)),)
    return ()
