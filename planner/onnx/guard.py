"""What an ONNX file may make the importer do: the one gate for tensor data, and the work bounds.

An uploaded model is hostile until proven otherwise. Two rules keep it harmless:

* **One gate for tensor data.** :func:`tensor_values` is the only function that turns a
  ``TensorProto`` into numbers, and it says yes only for data stored inline in the file, below a
  size bound. Right after parsing, :func:`neutralise` strips every external-data reference from
  every tensor in the model (initializers, sparse initializers, tensor attributes of every node,
  in every subgraph and function), so no later code - ours or ONNX's - can be led to open a file.
* **Bounded work.** :func:`check_limits` refuses, before any shape inference, a model whose node
  count, subgraph nesting, fixed dimensions or constant-driven shape operators (``Range``,
  ``ConstantOfShape``, ``Expand``, ``Tile``, ``Resize``, ...) exceed the bounds below; ONNX's own
  inference then runs without data propagation and the importer folds only small values.

Every bound is a constant here; the README's "Security and limits" section lists them.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

# ---- the bounds (documented in the README, "Security and limits") ----------------------------
MAX_NODES = 500_000                # nodes in the model, counting subgraphs and functions
MAX_SUBGRAPH_DEPTH = 8             # If/Loop/Scan bodies nested inside each other
MAX_DIM = 2**40                    # a dimension fixed in the file (same bound as a --bind value)
MAX_TENSOR_ELEMENTS = 2**50        # elements of one tensor whose shape is fixed in the file
MAX_CONSTANT_ELEMENTS = 2**32      # elements a constant-driven operator (Range, ConstantOfShape...) makes
FOLD_MAX_ELEMENTS = 4096           # a tensor's values are read (folded) only up to this many elements
VERIFY_MAX_ELEMENTS = 2**24        # ... and up to this many when a plan is verified by execution

# Operators whose output size is set by the *values* of their inputs or attributes.
CONSTANT_DRIVEN = ("Range", "ConstantOfShape", "Expand", "Tile", "Resize", "Upsample", "OneHot",
                   "RandomNormal", "RandomUniform", "Pad", "CenterCropPad")

_TENSOR_TYPES = {onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS}
_SPARSE_TYPES = {onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS}
_GRAPH_TYPES = {onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS}


class LimitError(ValueError):
    """A model exceeds a bound or is malformed; the message names the part and the bound."""


# ---- the gate --------------------------------------------------------------------------------

def _dims_elements(dims) -> int | None:
    if any(d < 0 for d in dims):
        return None
    return math.prod(int(d) for d in dims)


def may_materialise(tensor: onnx.TensorProto, limit: int = FOLD_MAX_ELEMENTS) -> bool:
    """True only for a tensor whose data is inline in the file and has at most ``limit`` elements."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0:
        return False
    n = _dims_elements(tensor.dims)
    return n is not None and n <= limit


def tensor_values(tensor: onnx.TensorProto, limit: int = FOLD_MAX_ELEMENTS) -> np.ndarray | None:
    """The values of a tensor if :func:`may_materialise` allows it and the data is consistent, else None.

    Never opens a file: ``numpy_helper.to_array`` is called only on inline data, with no base
    directory, after the external-data check.
    """
    if not may_materialise(tensor, limit):
        return None
    try:
        return numpy_helper.to_array(tensor)
    except Exception:  # noqa: BLE001 - inconsistent inline data (too few values, bad type): unknown
        return None


def sparse_values(sparse: onnx.SparseTensorProto, limit: int = FOLD_MAX_ELEMENTS) -> np.ndarray | None:
    """A sparse tensor's dense value, through the same gate (values, indices and dense size)."""
    n = _dims_elements(sparse.dims)
    if n is None or n > limit or not may_materialise(sparse.values, limit) or not may_materialise(sparse.indices, limit):
        return None
    try:
        return _dense(sparse)
    except Exception:  # noqa: BLE001
        return None


def _dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    dense = np.zeros(math.prod(sparse.dims), dtype=values.dtype)
    flat = indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), tuple(sparse.dims))
    dense[flat] = values
    return dense.reshape(tuple(sparse.dims))


def node_tensors_allowed(node: onnx.NodeProto, limit: int = FOLD_MAX_ELEMENTS) -> bool:
    """May a node be evaluated? Only if every tensor in its attributes passes the gate."""
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR and not may_materialise(a.t, limit):
            return False
        if a.type == onnx.AttributeProto.TENSORS and not all(may_materialise(t, limit) for t in a.tensors):
            return False
        if a.type in _SPARSE_TYPES or a.type in _GRAPH_TYPES:
            return False  # sparse constants and subgraphs are never evaluated
    return True


# Operators whose output, when ONNX cannot tell its shape, is still no larger than a small multiple
# of their inputs: they may be evaluated on small inputs (NonZero, Unique... in shape arithmetic).
_BOUNDED_BY_INPUT = {"NonZero", "Unique", "Compress", "Slice", "Gather", "GatherElements", "GatherND", "Squeeze",
                     "Unsqueeze", "Reshape", "Flatten", "Identity", "Cast", "Concat", "Split", "Transpose", "Shape",
                     "Size", "Where", "ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin", "ReduceMean"}


def evaluation_allowed(node: onnx.NodeProto, args: list, opsets: dict[str, int], limit: int = FOLD_MAX_ELEMENTS) -> bool:
    """May ONNX's reference implementation run ``node`` on the values ``args`` (positional, None
    for an omitted input)? Only if its tensor attributes pass the gate and ONNX's shape inference,
    given these very values, says every output has at most ``limit`` elements - never a shape
    claimed by the file's value_info, which may lie (a Range "of shape [1]" from 0 to 10**12).
    """
    if not node_tensors_allowed(node, limit):
        return False
    if any(a is not None and np.asarray(a).size > limit for a in args):
        return False
    from onnx import shape_inference

    try:
        schema = onnx.defs.get_schema(node.op_type, opsets.get("", 1), "")
        types, data = {}, {}
        for name, value in zip(node.input, args):
            if name and value is not None:
                value = np.asarray(value)
                types[name] = onnx.helper.make_tensor_type_proto(onnx.helper.np_dtype_to_tensor_dtype(value.dtype),
                                                                 list(value.shape))
                data[name] = numpy_helper.from_array(value, name)
        out = shape_inference.infer_node_outputs(schema, node, types, data,
                                                 opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()])
    except Exception:  # noqa: BLE001 - no schema or an inference error: do not evaluate
        return False
    for o in node.output:
        if not o:
            continue
        tp = out.get(o)
        dims = list(tp.tensor_type.shape.dim) if tp is not None and tp.tensor_type.HasField("shape") else None
        if dims is None or not all(d.HasField("dim_value") for d in dims):
            if node.op_type in _BOUNDED_BY_INPUT:
                continue
            return False
        if math.prod(d.dim_value for d in dims) > limit:
            return False
    return True


# ---- neutralising external data --------------------------------------------------------------

def _strip(tensor: onnx.TensorProto) -> None:
    """Remove an external-data reference; the tensor keeps its name, type and dims, and no data."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0:
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
        tensor.ClearField("raw_data")


def _graphs(model: onnx.ModelProto):
    """Every graph of the model (main graph and subgraphs) with its nesting depth (main graph 0)."""
    stack = [(model.graph, 0)]
    while stack:
        graph, depth = stack.pop()
        yield graph, depth
        for node in graph.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append((a.g, depth + 1))
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend((g, depth + 1) for g in a.graphs)


def _nodes_below(nodes, depth: int = 0):
    """Nodes and, recursively, the nodes of their subgraphs (used for function bodies)."""
    for node in nodes:
        yield node
        for a in node.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for g in subs:
                if depth >= MAX_SUBGRAPH_DEPTH:
                    raise LimitError(f"a function nests subgraphs more than {MAX_SUBGRAPH_DEPTH} deep")
                yield from _nodes_below(g.node, depth + 1)


def _all_nodes(model: onnx.ModelProto):
    for graph, _ in _graphs(model):
        yield from graph.node
    for function in model.functions:
        yield from _nodes_below(function.node)


def _attribute_tensors(node: onnx.NodeProto):
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            yield a.t
        elif a.type == onnx.AttributeProto.TENSORS:
            yield from a.tensors
        elif a.type == onnx.AttributeProto.SPARSE_TENSOR:
            yield a.sparse_tensor.values
            yield a.sparse_tensor.indices
        elif a.type == onnx.AttributeProto.SPARSE_TENSORS:
            for s in a.sparse_tensors:
                yield s.values
                yield s.indices


def all_tensors(model: onnx.ModelProto):
    """Every TensorProto in the model: initializers, sparse initializers and node attributes,
    in the main graph, every subgraph and every function."""
    for graph, _ in _graphs(model):
        yield from graph.initializer
        for s in graph.sparse_initializer:
            yield s.values
            yield s.indices
    for node in _all_nodes(model):
        yield from _attribute_tensors(node)


def neutralise(model: onnx.ModelProto) -> onnx.ModelProto:
    """Strip every external-data reference in the model, in place; returns the model."""
    _check_nesting(model)
    for tensor in all_tensors(model):
        _strip(tensor)
    return model


# ---- bounds ----------------------------------------------------------------------------------

def _check_nesting(model: onnx.ModelProto) -> None:
    count = 0
    for graph, depth in _graphs(model):
        if depth > MAX_SUBGRAPH_DEPTH:
            raise LimitError(f"the model nests subgraphs {depth} deep (If/Loop/Scan bodies); the planner "
                             f"accepts at most {MAX_SUBGRAPH_DEPTH} levels")
        count += len(graph.node)
        if count > MAX_NODES:
            raise LimitError(f"the model has more than {MAX_NODES:,} nodes; the planner accepts at most "
                             f"{MAX_NODES:,} (counting subgraphs)")
    count += sum(len(f.node) for f in model.functions)
    if count > MAX_NODES:
        raise LimitError(f"the model has {count:,} nodes with its functions; the planner accepts at most {MAX_NODES:,}")


def _check_dims(where: str, dims) -> None:
    for d in dims:
        if d > MAX_DIM:
            raise LimitError(f"{where} has a dimension of {d:,}, above the bound of {MAX_DIM:,} (2^40): "
                             "the file is corrupt or hostile; export the model again")
    n = _dims_elements(dims)
    if n is not None and n > MAX_TENSOR_ELEMENTS:
        raise LimitError(f"{where} has {n:,} elements, above the bound of {MAX_TENSOR_ELEMENTS:,} (2^50)")


def _check_value_infos(graph: onnx.GraphProto) -> None:
    for kind, infos in (("input", graph.input), ("output", graph.output), ("value_info", graph.value_info)):
        for vi in infos:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
                _check_dims(f"graph {kind} '{vi.name}'", dims)
    for init in graph.initializer:
        _check_dims(f"initializer '{init.name}'", init.dims)


def check_limits(model: onnx.ModelProto, names: list[str] | None = None) -> None:
    """Refuse, before any inference, what would cost unbounded work or is silently wrong.

    ``names`` are the main graph's operator names (for messages); nodes are numbered otherwise.
    """
    _check_nesting(model)
    g = model.graph
    _check_value_infos(g)
    seen: set[str] = set()
    for o in g.output:
        if o.name in seen:
            raise LimitError(f"the graph output '{o.name}' is listed twice: every graph output must have a "
                             "distinct name; re-export the model")
        seen.add(o.name)
    names = names or [n.name or f"{n.op_type}_{i}" for i, n in enumerate(g.node)]
    _check_constant_driven(model, names)


def _scalar(v: np.ndarray | None):
    if v is None or v.size != 1 or v.dtype.kind not in "iuf":
        return None
    x = v.reshape(()).item()
    return x if math.isfinite(x) else None


def _ints(v: np.ndarray | None) -> list[int] | None:
    if v is None or v.ndim > 1 or v.dtype.kind not in "iu":
        return None
    return [int(x) for x in v.reshape(-1)]


def _check_constant_driven(model: onnx.ModelProto, names: list[str]) -> None:
    """Estimate the elements each constant-driven operator makes from the constants in the file."""
    g = model.graph
    known: dict[str, np.ndarray] = {}
    shapes: dict[str, list[int]] = {}
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
        v = tensor_values(init)
        if v is not None:
            known[init.name] = v
    for vi in list(g.input) + list(g.value_info):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes.setdefault(vi.name, [d.dim_value for d in tt.shape.dim])
    for node, name in zip(g.node, names):
        if node.domain not in ("", "ai.onnx"):
            continue
        ins = list(node.input)
        arg = (lambda k: known.get(ins[k]) if len(ins) > k and ins[k] else None)
        attrs = {a.name: a for a in node.attribute}
        if _track_value(node, arg, attrs, known):
            continue
        estimate = _estimate(node.op_type, name, ins, arg, attrs, shapes)
        if estimate is not None and estimate > MAX_CONSTANT_ELEMENTS:
            raise LimitError(
                f"node '{name}' ({node.op_type}) would make a tensor of about {int(estimate):,} elements from "
                f"constants in the file, above the bound of {MAX_CONSTANT_ELEMENTS:,} (2^32): refused as hostile or corrupt"
            )


def _track_value(node: onnx.NodeProto, arg, attrs: dict, known: dict[str, np.ndarray]) -> bool:
    """Record the value a Constant or a value-preserving operator makes; True when the node is one."""
    op = node.op_type
    if op == "Constant":
        for a in node.attribute:
            if a.name == "value":
                v = tensor_values(a.t)
            elif a.name in ("value_int", "value_ints"):
                v = np.asarray(onnx.helper.get_attribute_value(a), dtype=np.int64)
            elif a.name in ("value_float", "value_floats"):
                v = np.asarray(onnx.helper.get_attribute_value(a), dtype=np.float32)
            else:
                v = None
            if v is not None and node.output:
                known[node.output[0]] = v
        return True
    if op in ("Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape") and arg(0) is not None and node.output:
        v = arg(0)
        if op == "Cast" and "to" in attrs:
            try:
                v = v.astype(onnx.helper.tensor_dtype_to_np_dtype(attrs["to"].i))
            except Exception:  # noqa: BLE001
                return True
        if op in ("Squeeze", "Unsqueeze", "Reshape"):
            v = v.reshape(-1) if v.size > 1 else v  # value tracking only: the shape is not needed
        known[node.output[0]] = v
        return True
    return False


def _estimate(op: str, name: str, ins: list[str], arg, attrs: dict, shapes: dict[str, list[int]]):
    """The elements a constant-driven operator makes, when its operands are constants; else None."""
    if op == "Range":
        start, limit, delta = _scalar(arg(0)), _scalar(arg(1)), _scalar(arg(2))
        if None not in (start, limit, delta):
            if delta == 0:
                raise LimitError(f"node '{name}' (Range) has a step (delta) of 0: the range would never end")
            return max(math.ceil((limit - start) / delta), 0)
    elif op == "ConstantOfShape":
        dims = _ints(arg(0))
        if dims is not None:
            return math.prod(max(d, 0) for d in dims)
    elif op == "Expand":
        dims = _ints(arg(1))
        if dims is not None:
            base = shapes.get(ins[0], [])
            n = max(len(dims), len(base))
            a = [1] * (n - len(base)) + list(base)
            b = [1] * (n - len(dims)) + dims
            return math.prod(max(x, y, 0) for x, y in zip(a, b))
    elif op == "Tile":
        reps = _ints(arg(1))
        if reps is not None:
            return math.prod(max(r, 0) for r in reps) * math.prod(shapes.get(ins[0], [1]))
    elif op in ("Resize", "Upsample"):
        return _resize_estimate(op, ins, arg, shapes)
    elif op == "OneHot":
        depth = _scalar(arg(1))
        if depth is not None:
            return max(depth, 0) * math.prod(shapes.get(ins[0], [1]))
    elif op in ("RandomNormal", "RandomUniform") and "shape" in attrs:
        return math.prod(max(d, 0) for d in attrs["shape"].ints)
    elif op == "Pad":
        pads = _ints(arg(1))
        if pads is not None and ins[0] in shapes and len(pads) == 2 * len(shapes[ins[0]]):
            r = len(shapes[ins[0]])
            return math.prod(max(d + pads[i] + pads[i + r], 0) for i, d in enumerate(shapes[ins[0]]))
    return None


def _resize_estimate(op: str, ins: list[str], arg, shapes: dict[str, list[int]]):
    sizes = _ints(arg(3)) if op == "Resize" else None
    scales = arg(2) if op == "Resize" else arg(1)
    if sizes:
        return math.prod(max(s, 0) for s in sizes)
    if scales is not None and scales.size and ins[0] in shapes and scales.dtype.kind == "f":
        return math.prod(max(d * float(s), 0) for d, s in zip(shapes[ins[0]], scales.reshape(-1)))
    return None


# ---- reading the model file ------------------------------------------------------------------

MAX_MODEL_BYTES = 2**31  # protobuf cannot parse a larger message anyway


def check_regular_file(path, error: type[Exception], what: str = "model") -> None:
    """``error`` unless ``path`` names an existing regular file (not a directory, device or FIFO);
    the one check is :func:`planner.limits.require_regular_file`, re-raised as ``error``."""
    from planner.limits import LimitError, require_regular_file

    try:
        require_regular_file(path, f"{what} file", " (give the path of an .onnx file)")
    except LimitError as exc:
        raise error(str(exc)) from None


def read_regular_file(path, error: type[Exception]) -> bytes:
    """The bytes of a regular file; ``error`` for a missing path, a directory, a device or a FIFO.

    The file is opened without blocking (a FIFO would otherwise wait for a writer forever) and
    checked with ``fstat`` on the open descriptor, so a path swapped in between cannot slip through.
    """
    import os
    import stat

    check_regular_file(path, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise error(f"cannot read the model file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path} is not a regular file: give the path of an .onnx file")
        if st.st_size > MAX_MODEL_BYTES:
            raise error(f"{path} is {st.st_size:,} bytes, above the bound of {MAX_MODEL_BYTES:,} (2 GiB, "
                        "protobuf's limit): save the weights as external data (they are never read)")
        return f.read()
