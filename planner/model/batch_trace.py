"""The batch traced through the graph, whatever axis it enters on and however it is reshaped.

The batch enters on one axis of each data input (``OperatorGraph.batch_axes``; axis 0 unless the
importer found it elsewhere, e.g. axis 1 for ``nn.MultiheadAttention(batch_first=False)``) and is
followed factor by factor (see ``planner.model.graph``): through transposes (a dim moves axis), flattened
axes (``(seq*batch)`` or ``(batch*heads)``: the batch is one atomic factor of the flattened axis,
inner or outer) and gathers (the batch indexes the indices). :func:`broadcast_batch` then gives
the batch to operators that broadcast a parameter to it (ViT's class token, ``Expand`` to
``(batch, 1, hidden)``): their output's batch axis is read from no input, so only the consumer
says it is the batch; splitting it is then exactly data parallelism, with no communication.

An operator dimension that covers the batch factor *and* factors outside it, e.g. the rows
``m = seq*batch`` of the output projection in ``nn.MultiheadAttention``, where the batch is the
inner factor, cannot be split along the batch as one dimension (a split takes the outermost factor
it divides: the sequence). :func:`split_batch_dims` therefore splits such a dimension in two at the
batch factor, ``m`` (seq) and ``m~b`` (batch, and any factors inside it), keeping FLOPs and tensor
shapes; splitting ``m~b`` is then exactly data parallelism.
"""

from __future__ import annotations

import math

from planner.model.graph import Operator, OperatorGraph, TensorRole, TensorUse

BATCH_SUFFIX = "~b"


def batch_start(graph: OperatorGraph) -> dict[str, tuple[int, int]]:
    """Per data input carrying the batch: (axis, atomic factor index 0) where the batch enters."""
    starts = {}
    for name in graph.inputs:
        t = graph.tensors[name]
        axis = graph.batch_axes.get(name, 0) if graph.batch_axes else 0
        if axis is None or axis >= len(t.shape) or not t.axis_factors or not t.axis_factors[axis]:
            continue
        starts[name] = (axis, 0)
    return starts


def trace(graph: OperatorGraph, split: bool = False, starts: dict[str, tuple[int, int]] | None = None,
          position: dict[str, tuple[int, int]] | None = None, reduced: list[str] | None = None
          ) -> dict[str, str | None]:
    """For each operator, the dimension that carries the batch (None where none does).

    With ``split``, a dimension in which the batch is not the outermost factor is first split in
    two at the batch factor (the graph is changed in place; see the module docstring).
    ``position`` (filled in) maps each tensor the batch reaches to its (axis, factor index);
    ``reduced`` collects the operators where the traced factor is summed over (a reduction dim:
    then it is not a batch, e.g. the sequence in attention's ``P @ V``)."""
    position = {} if position is None else position
    position.update(batch_start(graph) if starts is None else starts)
    result: dict[str, str | None] = {}
    for op_name in graph.topological_order():
        op = graph.operators[op_name]
        found = None
        for use in op.inputs:
            pos = position.get(use.tensor)
            if pos is None or graph.tensors[use.tensor].role is TensorRole.CONSTANT:
                continue
            hit = _covering_dim(op, use, pos)
            if hit is None:
                continue
            dim, inner = hit
            if reduced is not None and dim in op.reduction_dims:
                reduced.append(op_name)
            if found is not None:
                continue
            if inner and split and dim not in op.halo:
                dim = _split_dim(op, dim, inner)
                inner = 0
            if inner == 0:
                found = dim
                if reduced is None:
                    break
        if found is not None and op.op_type in ROW_GATHERS and all(_factor_of_dim(op, u, found) is None for u in op.outputs):
            found = _gathered_rows(graph, op, found) or found
        result[op_name] = found
        if found is None:
            continue
        for use in op.outputs:
            pos = _factor_of_dim(op, use, found)
            if pos is not None:
                position[use.tensor] = pos
    return result


#: Gathers whose output rows can be the rows of their indices (``out[i...] = data[idx[i...]]``).
ROW_GATHERS = frozenset({"GatherND", "Gather"})


def broadcast_batch(graph: OperatorGraph, result: dict[str, str | None]) -> dict[str, str | None]:
    """``result`` (the traced batch dims) with the batch of every operator that has none but whose
    output feeds an operator's batch dim on a dim of its own that no input reads (a broadcast, e.g.
    ``Expand`` of a class token to the batch), of the same size and not summed over. Walked from
    the outputs back, so a chain of broadcasts gets it too."""
    consumers: dict[str, list[tuple[Operator, TensorUse]]] = {}
    for op in graph.operators.values():
        for use in op.inputs:
            consumers.setdefault(use.tensor, []).append((op, use))
    for name in reversed(graph.topological_order()):
        op = graph.operators[name]
        if result.get(name) is not None:
            continue
        read = {d for use in op.inputs for axis in use.axes for d in axis}
        for out in op.outputs:
            dim = next((d for consumer, use in consumers.get(out.tensor, ())
                        for d in [_broadcast_dim(op, out, consumer, use, result.get(consumer.name))]
                        if d is not None and d not in read and d not in op.reduction_dims), None)
            if dim is not None:
                result[name] = dim
                break
    return result


def _broadcast_dim(op: Operator, out: TensorUse, consumer: Operator, use: TensorUse, batch: str | None) -> str | None:
    """The dim of ``op``'s output ``out`` that sits where ``consumer``'s batch dim reads it, if it
    is that whole axis's leading factor and of the batch's size."""
    pos = None if batch is None else _factor_of_dim(consumer, use, batch)
    if pos is None or pos[1] != 0 or pos[0] >= len(out.axes) or not out.axes[pos[0]]:
        return None
    dim = out.axes[pos[0]][0]
    return dim if op.dims.get(dim) == consumer.dims.get(batch) else None


def _gathered_rows(graph: OperatorGraph, op: Operator, data_dim: str) -> str | None:
    """The batch through a gather with per-sample indices, which exporters build from
    ``arange(batch)`` for attention masks: the output's leading indices dim, which then carries
    the batch. None otherwise (a gather of tokens, e.g. MoE routing): the batch stops there.

    * ``GatherND`` (dynamo): the indices' leading axis has as many rows as the data's batch dim.
    * ``Gather`` (TorchScript: ``flat_mask[arange(batch) * seq + arange(seq)]``, the mask
      flattened to ``(batch*seq)`` rows): the batch is the outer factor of the gathered axis, and
      the indices are computed from shapes alone (a constant: no data picks the rows) with a
      leading axis of the batch's size."""
    if len(op.inputs) < 2 or not op.inputs[1].axes or not op.inputs[1].axes[0]:
        return None
    rows = op.inputs[1].axes[0][0]
    if rows == data_dim:
        return None
    if op.op_type == "Gather":
        # data_dim is the data's gathered axis: the caller found it on an input but on no output
        if (op.factors_of(data_dim)[:1] != (op.dims[rows],)
                or graph.tensors[op.inputs[1].tensor].role is not TensorRole.CONSTANT):
            return None
    elif op.dims.get(rows) != op.dims.get(data_dim):
        return None
    if not any(u.axes and u.axes[0] and u.axes[0][0] == rows for u in op.outputs):
        return None
    return rows


def split_batch_dims(graph: OperatorGraph) -> None:
    """Split every dimension whose inner factor is the batch (see the module docstring)."""
    trace(graph, split=True)


def _covering_dim(op: Operator, use: TensorUse, pos: tuple[int, int]) -> tuple[str, int] | None:
    """The dim covering atomic factor ``pos`` of the tensor, and the factor's index inside it."""
    axis, index = pos
    if axis >= len(use.axes) or axis in use.loose:
        return None
    offset = 0
    for dim in use.axes[axis]:
        n = len(op.factors_of(dim))
        if offset <= index < offset + n:
            return dim, index - offset
        offset += n
    return None


def _factor_of_dim(op: Operator, use: TensorUse, dim: str) -> tuple[int, int] | None:
    for axis, dims in enumerate(use.axes):
        if axis in use.loose:
            continue
        offset = 0
        for d in dims:
            if d == dim:
                return axis, offset
            offset += len(op.factors_of(d))
    return None


def _split_dim(op: Operator, dim: str, at: int) -> str:
    """Split ``dim`` into ``dim`` (its first ``at`` factors) and ``dim~b`` (the rest)."""
    factors = op.factors_of(dim)
    outer, inner = factors[:at], factors[at:]
    new = dim + BATCH_SUFFIX
    dims, dim_factors = {}, {}
    for d, size in op.dims.items():
        if d == dim:
            dims[d], dims[new] = math.prod(outer), math.prod(inner)
            dim_factors[d], dim_factors[new] = tuple(outer), tuple(inner)
        else:
            dims[d] = size
            if d in op.dim_factors:
                dim_factors[d] = op.dim_factors[d]
    op.dims, op.dim_factors = dims, dim_factors
    for use in op.uses():
        use.axes = tuple(tuple(x for d in axis for x in ((d, new) if d == dim else (d,))) for axis in use.axes)
    if dim in op.reduction_dims:
        op.reduction_dims = op.reduction_dims | {new}
    if dim in op.fixed_dims:
        op.fixed_dims = op.fixed_dims | {new}
    return new


def candidate_axes(graph: OperatorGraph, data_input: str) -> list[int]:
    """Axes of a data input that trace as a batch: size > 1 and never summed over, lowest first."""
    t = graph.tensors[data_input]
    axes = []
    for axis, size in enumerate(t.shape):
        if size <= 1 or not t.axis_factors[axis]:
            continue
        reduced: list[str] = []
        reached = trace(graph, starts={data_input: (axis, 0)}, reduced=reduced)
        if not reduced and any(reached.values()):
            axes.append(axis)
    return axes
