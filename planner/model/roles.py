"""What an operator's dimension *is* in the model: batch, sequence, hidden, heads, vocabulary,
experts (or other), so that a split can be named by its role (``batch``) instead of by the
operator's local letter (``b0``, ``d1``, ``i0``, which name the same batch in three operators).

:func:`dim_roles` is the one entry. The batch is the traced batch dimension
(:meth:`OperatorGraph.batch_dims`); the other roles come from sizes the model itself shows: the
sequence from a bound symbol named like one (``seq``, ``len``, ``token``), the vocabulary and the
hidden size from the largest embedding table (a 2-D weight a Gather reads), the heads from the
second axis of a 4-D Softmax input, the experts from the leading axis of a 3-D weight. A dimension
whose atomic factors hold the heads (a fused QKV output ``3 x heads x head_dim``) is ``heads``; a
dimension indexing a weight, or as long as some weight's axis, is ``hidden`` (features: the hidden
size, the feed-forward width, channels); anything else is ``other``.
"""

from __future__ import annotations

from planner.model.graph import OperatorGraph, TensorRole


ROLES = ("batch", "sequence", "hidden", "heads", "vocabulary", "experts", "other")


def model_sizes(graph: OperatorGraph) -> dict[str, int]:
    """The sizes that name a role in this model (``{"sequence": 128, "vocabulary": 30522, ...}``;
    a role the model does not show is absent)."""
    sizes: dict[str, int] = {}
    for symbol, value in graph.bindings.items():
        low = symbol.lower()
        if symbol != graph.batch_symbol and ("seq" in low or "len" in low or "token" in low):
            sizes["sequence"] = int(value)
    tables = [graph.tensors[op.inputs[0].tensor] for op in graph.operators.values()
              if op.op_type == "Gather" and op.inputs and graph.tensors[op.inputs[0].tensor].role is TensorRole.PARAMETER
              and len(graph.tensors[op.inputs[0].tensor].shape) == 2]
    if tables:
        table = max(tables, key=lambda t: t.numel)
        sizes["vocabulary"], sizes["hidden"] = int(table.shape[0]), int(table.shape[1])
    for op in graph.operators.values():
        if op.op_type == "Softmax" and op.inputs and len(graph.tensors[op.inputs[0].tensor].shape) == 4:
            sizes.setdefault("heads", int(graph.tensors[op.inputs[0].tensor].shape[1]))
        for use in op.inputs:
            t = graph.tensors[use.tensor]
            if t.role is TensorRole.PARAMETER and len(t.shape) == 3 and op.op_type in ("MatMul", "Einsum", "Gemm"):
                sizes.setdefault("experts", int(t.shape[0]))
    return sizes


def _role(op, dim: str, batch: str | None, sizes: dict[str, int], weight_dims: set[str], features: set[int]) -> str:
    if dim == batch:
        return "batch"
    size = op.dims.get(dim, 1)
    order = ("experts", "vocabulary", "heads", "hidden") if dim in weight_dims else \
        ("experts", "vocabulary", "sequence", "heads", "hidden")
    for role in order:
        if sizes.get(role) == size:
            return role
    if sizes.get("heads", 1) > 1 and sizes["heads"] in op.factors_of(dim):
        return "heads"
    return "hidden" if dim in weight_dims or size in features else "other"


def dim_roles(graph: OperatorGraph) -> dict[str, dict[str, str]]:
    """Operator -> its dimension -> role (one of :data:`ROLES`)."""
    batch = graph.batch_dims()
    sizes = model_sizes(graph)
    features = {int(n) for t in graph.tensors.values() if t.role is TensorRole.PARAMETER and len(t.shape) >= 2
                for n in t.shape}
    out: dict[str, dict[str, str]] = {}
    for name, op in graph.operators.items():
        weight_dims = {d for use in op.inputs if graph.tensors[use.tensor].role is TensorRole.PARAMETER
                       for axis in use.axes for d in axis}
        out[name] = {d: _role(op, d, batch.get(name), sizes, weight_dims, features) for d in op.dims}
    return out
