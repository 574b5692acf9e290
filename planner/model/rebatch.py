"""Where the batch is in a model's inputs, and re-batching a static export.

Symbolic exports: the batch is the symbolic dimension named like a batch (``batch``,
``batch_size``, ``N``, ``B``, ``bs``; case-insensitive), else the one on axis 0 of the first data
input, and it enters on every data input axis that carries that name (axis 1 for
``nn.MultiheadAttention(batch_first=False)``).

Static exports: the batch axis is found by tracing (``planner.model.batch_trace.candidate_axes``): the
lowest axis of the first data input (of size > 1) that reaches operators and is never summed over
(a sequence is: attention's ``P @ V`` contracts it; features are: every linear layer contracts
them). :func:`rebatch_static` re-binds that axis to another size: the data inputs' batch axes and
every shape constant of ``Reshape``/``Expand`` whose output axis carries the batch are rewritten,
and shapes are re-inferred from the (weight-free) model.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from planner.model.batch_trace import candidate_axes, trace
from planner.model.graph import OperatorGraph, TensorRole
from planner.errors import PlannerError

BATCH_NAMES = ("batch", "batch_size", "batchsize", "n", "b", "bs", "nbatch", "num_batch")
STATIC_SYMBOL = "batch"  # the name a re-batched static export's batch is bound under


def data_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def find_batch_symbol(model: onnx.ModelProto) -> str | None:
    """The symbolic dimension that is the batch (see the module docstring), or None."""
    names, first = [], None
    for k, vi in enumerate(data_inputs(model)):
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_param") and isinstance(d.dim_param, str) and d.dim_param:
                names.append(d.dim_param)
                if k == 0 and axis == 0:
                    first = d.dim_param
    for name in names:
        low = name.lower()
        if low in BATCH_NAMES or "batch" in low:
            return name
    return first


def symbol_axes(model: onnx.ModelProto, symbol: str) -> dict[str, int]:
    """Each data input's first axis named ``symbol``."""
    axes = {}
    for vi in data_inputs(model):
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_param") and d.dim_param == symbol:
                axes[vi.name] = axis
                break
    return axes


def static_batch_axes(graph: OperatorGraph) -> dict[str, int]:
    """For a static export: the traced batch axis of the first data input, and of every other
    data input the first axis of the same size (empty when no axis traces as a batch)."""
    if not graph.inputs:
        return {}
    first = graph.inputs[0]
    axes = candidate_axes(graph, first)
    if not axes:
        return {}
    size = graph.tensors[first].shape[axes[0]]
    found = {first: axes[0]}
    for name in graph.inputs[1:]:
        shape = graph.tensors[name].shape
        if size in shape:
            found[name] = shape.index(size)
    return found


def locate_batch(model: onnx.ModelProto, graph: OperatorGraph) -> None:
    """Set ``graph.batch_symbol`` and ``graph.batch_axes`` (see the module docstring)."""
    graph.batch_symbol = find_batch_symbol(model)
    if graph.batch_symbol is not None:
        graph.batch_axes = symbol_axes(model, graph.batch_symbol)
    else:
        graph.batch_axes = static_batch_axes(graph)


class RebatchError(PlannerError, ValueError):
    """A static export whose batch cannot be re-bound; the message says why and what to do."""


def no_batch_message(graph: OperatorGraph) -> str:
    shapes = ", ".join(f"{n} {'x'.join(map(str, graph.tensors[n].shape)) or 'scalar'}" for n in graph.inputs)
    return (f"no batch axis can be traced in {graph.name} (inputs: {shapes or 'none'}): every input axis is 1, "
            "fixed or summed over; export the model with a dynamic batch axis (dynamic_axes / dynamic_shapes) "
            "or with a batch of 2 or more")


def rebatch_static(model: onnx.ModelProto, graph: OperatorGraph, batch: int) -> onnx.ModelProto:
    """A copy of static ``model`` whose traced batch axis is ``batch`` instead of its exported size."""
    if not graph.batch_axes:
        raise RebatchError(no_batch_message(graph))
    first = graph.inputs[0]
    old = graph.tensors[first].shape[graph.batch_axes[first]]
    position: dict[str, tuple[int, int]] = {}
    trace(graph, starts={n: (a, 0) for n, a in graph.batch_axes.items()}, position=position)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    del g.value_info[:]
    for vi in g.output:
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    for vi in g.input:
        axis = graph.batch_axes.get(vi.name)
        if axis is not None:
            vi.type.tensor_type.shape.dim[axis].dim_value = batch
    consts = {i.name: i for i in g.initializer}
    const_nodes = {o: n for n in g.node if n.op_type == "Constant" for o in n.output}
    for k, node in enumerate(g.node):
        if node.op_type not in ("Reshape", "Expand") or len(node.input) < 2 or not node.output:
            continue
        pos = position.get(node.output[0])
        if pos is None or node.output[0] not in graph.tensors:
            continue
        shape_name = node.input[1]
        value = _constant(consts, const_nodes, shape_name)
        if value is None:
            continue  # computed at run time from the input's shape: re-inferred by itself
        axis, _ = pos
        extent = graph.tensors[node.output[0]].shape[axis]
        if axis >= value.size or value[axis] != extent or extent % old:
            continue  # -1 / 0 (inferred or copied) or broadcast: nothing to rewrite
        patched = value.copy()
        patched[axis] = extent // old * batch
        name = f"{shape_name}__rebatched_{k}"
        g.initializer.append(numpy_helper.from_array(patched.astype(value.dtype), name))
        node.input[1] = name
    return out


def _constant(consts, const_nodes, name: str) -> np.ndarray | None:
    if name in consts:
        init = consts[name]
        if init.data_location == onnx.TensorProto.EXTERNAL:
            return None
        return numpy_helper.to_array(init).reshape(-1)
    node = const_nodes.get(name)
    if node is None:
        return None
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t).reshape(-1)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    return None


def is_data_dependent(graph: OperatorGraph, name: str) -> bool:
    """Whether an operator reads data (an input or an activation), not only weights/constants."""
    return any(graph.tensors[u.tensor].role in (TensorRole.INPUT, TensorRole.ACTIVATION)
               for u in graph.operators[name].inputs)


def batch_binding(model: onnx.ModelProto, bindings: dict[str, int], batch: int | None) -> dict[str, int]:
    """``bindings`` with ``batch`` (``--batch N``) under the model's batch symbol: its symbolic
    batch dimension, or :data:`STATIC_SYMBOL` for a static export (re-batched on import)."""
    if batch is None:
        return dict(bindings)
    symbol = find_batch_symbol(model) or STATIC_SYMBOL
    if symbol in bindings and bindings[symbol] != batch:
        raise RebatchError(f"--batch {batch} and --bind {symbol}={bindings[symbol]} disagree: give the batch once")
    return {**bindings, symbol: batch}


def import_rebatched(model: onnx.ModelProto, bindings: dict[str, int], name: str, import_fn) -> OperatorGraph:
    """Import static ``model`` with its traced batch axis re-bound to ``bindings[STATIC_SYMBOL]``.

    ``import_fn`` is ``planner.onnx.importer.import_model``. The graph's batch is then the pseudo-
    dimension ``batch``: ``with_batch`` (micro-batches, the stage search) re-batches again."""
    rest = {k: v for k, v in bindings.items() if k != STATIC_SYMBOL}
    batch = bindings[STATIC_SYMBOL]
    original = import_fn(model, rest, name)
    if original.batch_symbol is not None:
        raise RebatchError(f"the model's batch dimension is the symbolic '{original.batch_symbol}': bind it with "
                           f"--bind {original.batch_symbol}={batch} (or --batch {batch})")
    if not original.batch_axes:
        raise RebatchError(no_batch_message(original))
    first = original.inputs[0]
    axis = original.batch_axes[first]
    old = original.tensors[first].shape[axis]
    graph = original if batch == old else import_fn(rebatch_static(model, original, batch), rest, name)
    broken = [w for w in graph.warnings if "cannot broadcast" in w and w not in original.warnings]
    if broken:
        raise RebatchError(f"{name}: re-batching this static export from {old} to {batch} leaves shapes that do not fit "
                           f"({broken[0].split(';')[0]}): the export bakes its batch of {old} into constants the planner "
                           "cannot rewrite (an attention mask expanded through Where/Equal, arange(batch) indices); "
                           f"export the model with a dynamic batch axis, or plan it at batch {old}")
    shape = graph.tensors[first].shape
    if shape[axis] != batch:
        raise RebatchError(f"re-batching {name} to {batch} failed: input {first} came out {shape}")
    graph.batch_symbol = STATIC_SYMBOL
    graph.batch_axes = dict(original.batch_axes)
    graph.bindings = {**rest, STATIC_SYMBOL: batch}
    graph.reimport = lambda new: import_fn(model, new, name)
    if batch != old:
        graph.warnings.append(f"static export re-batched: input {first} axis {axis} ({old} in the file) bound to {batch}")
    return graph


def planning_dims(model: onnx.ModelProto) -> list[str]:
    """The dimensions a user binds to plan ``model``: its symbolic input dims, and for a static
    export whose batch axis traces, the pseudo-dimension :data:`STATIC_SYMBOL` (the app's batch
    field; binding it re-batches the export)."""
    from planner.onnx.importer import ModelImportError, import_model, symbolic_dims  # the importer uses this module

    dims = symbolic_dims(model)
    if find_batch_symbol(model) is not None or STATIC_SYMBOL in dims or not data_inputs(model):
        return dims
    try:
        graph = import_model(model, {k: 1 for k in dims})
    except ModelImportError:
        return dims  # the import error is reported when the model is planned
    return dims + [STATIC_SYMBOL] if graph.batch_axes else dims
