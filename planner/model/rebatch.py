"""Where the batch is in a model's inputs, and re-batching a static export.

Symbolic exports: the batch is the symbolic dimension named like a batch (``batch``,
``batch_size``, ``N``, ``B``, ``bs``; case-insensitive), else the one on axis 0 of the first data
input, and it enters on every data input axis that carries that name (axis 1 for
``nn.MultiheadAttention(batch_first=False)``).

Static exports: the batch axis is found by tracing (``planner.model.batch_trace.candidate_axes``): the
lowest axis of the first data input (of size > 1) that reaches operators and is never summed over
(a sequence is: attention's ``P @ V`` contracts it; features are: every linear layer contracts
them). :func:`rebatch_static` re-binds that axis to another size: the data inputs' batch axes and
every constant holding the batch (``Reshape``/``Expand`` shapes, also behind ``Where``/``Concat``,
and per-sample gather indices: ``planner.model.rebatch_constants``) are rewritten, and shapes are
re-inferred from the (weight-free) model.
"""

from __future__ import annotations

import onnx

from planner.model.batch_trace import candidate_axes, trace
from planner.model.graph import OperatorGraph, TensorRole
from planner.errors import PlannerError
from planner.model.rebatch_constants import rewrite_batch_constants

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
    rewrite_batch_constants(out, graph, position, old, batch)
    return out


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
    dimension ``batch``: a :class:`planner.model.rebind.Rebinder` (micro-batches, the stage search)
    re-batches again."""
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
    try:
        graph = original if batch == old else import_fn(rebatch_static(model, original, batch), rest, name)
    except ValueError as exc:  # the importer's error: a shape that no longer infers at all
        raise RebatchError(_unfit_message(name, old, batch, str(exc).removeprefix("error: "))) from None
    broken = [w for w in graph.warnings if "cannot broadcast" in w and w not in original.warnings]
    if broken:
        raise RebatchError(_unfit_message(name, old, batch, broken[0]))
    shape = graph.tensors[first].shape
    if shape[axis] != batch:
        raise RebatchError(f"re-batching {name} to {batch} failed: input {first} came out {shape}")
    graph.batch_symbol = STATIC_SYMBOL
    graph.batch_axes = dict(original.batch_axes)
    graph.bindings = {**rest, STATIC_SYMBOL: batch}
    if batch != old:
        graph.warnings.append(f"static export re-batched: input {first} axis {axis} ({old} in the file) bound to {batch}")
    return graph


def _unfit_message(name: str, old: int, batch: int, detail: str) -> str:
    return (f"{name}: re-batching this static export from {old} to {batch} leaves shapes that do not fit "
            f"({detail.split(';')[0]}): the export bakes its batch of {old} into constants the planner "
            "cannot rewrite (a mask baked into a constant tensor, one row per sample, say); "
            f"export the model with a dynamic batch axis, or plan it at batch {old}")


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
