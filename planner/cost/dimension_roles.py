"""What an operator's dimensions are, beyond the batch and the bound symbols: attention heads and
the head dimension, the vocabulary, experts; found from the roles of a few operators and traced
from them through the graph (the batch tracer's machinery, ``planner.model.batch_trace``).

Owns the seeds and the tracing of these names:

* **heads, head_dim**: an attention score or context MatMul (two activations, no weight, a
  matrix product with a batched dimension besides the batch that is not the sequence): that
  batched dimension is the heads; of its
  contracted and output dimensions, one that is not the sequence (not a bound symbol's size) is
  the head dimension.
* **vocabulary**: the rows of the largest embedding table (a Gather of a weight's rows), and every
  dimension of that size (the logits' columns, a tied or untied LM head's rows); the rows of a
  smaller table (positions, token types) are its ``table rows``.
* **experts**: the leading axis of a stacked expert weight (a weight of three or more axes whose
  leading axis indexes the output, as Mixtral's ``w[e, d, f]``).

Each name is traced forward from where it is found (through transposes, biases, softmaxes) and
kept only on dimensions of the same size, so that a hidden axis made of heads x head_dim is not
called the heads. No streamlit: planner.cost.formula_text words what this finds.
"""

from __future__ import annotations

from planner.model.graph import Operator, OperatorGraph, TensorRole

#: Gathers whose first input is a table of rows (an embedding).
EMBEDDINGS = frozenset({"Gather"})
#: Contractions of two tensors (attention scores and context are MatMuls or Einsums).
MATMULS = frozenset({"MatMul", "Einsum"})


def dimension_roles(graph: OperatorGraph) -> dict[str, dict[str, str]]:
    """For each operator, ``{dim: role}`` for the dims found to be ``heads``, ``head_dim``,
    ``vocabulary``, ``table rows`` or ``experts`` (computed once per graph)."""
    return graph.memo("dimension_roles", None, lambda: _roles(graph))


def _is_weight(graph: OperatorGraph, tensor: str) -> bool:
    return graph.tensors[tensor].role is TensorRole.PARAMETER


def _roles(graph: OperatorGraph) -> dict[str, dict[str, str]]:
    roles: dict[str, dict[str, str]] = {}
    batch = graph.batch_dims()
    sequence = {v for k, v in graph.bindings.items() if k != graph.batch_symbol}
    seeds: list[tuple[str, str, str]] = []  # (operator, dim, role)
    tables = []
    for name, op in graph.operators.items():
        if op.op_type in EMBEDDINGS and len(op.inputs) >= 2 and op.inputs[0].axes \
                and _is_weight(graph, op.inputs[0].tensor) and len(op.inputs[0].axes[0]) == 1:
            tables.append((op.dims[op.inputs[0].axes[0][0]], name, op.inputs[0].axes[0][0]))
        elif op.op_type in MATMULS:
            seeds += _attention_seeds(graph, name, op, batch.get(name), sequence)
            seeds += _expert_seeds(graph, name, op)
    vocabulary = max(tables)[0] if tables else None
    for _, name, dim in tables:
        if graph.operators[name].dims[dim] == vocabulary:
            seeds.append((name, dim, "vocabulary"))
        else:  # a position or token-type table: named where it is read, not traced
            roles.setdefault(name, {})[dim] = "table rows"
    for name, dim, role in seeds:
        _trace_from(graph, name, dim, role, roles)
    if vocabulary is not None and vocabulary not in sequence:
        for name, op in graph.operators.items():
            for d, size in op.dims.items():
                if size == vocabulary:
                    roles.setdefault(name, {}).setdefault(d, "vocabulary")
    return roles


def _attention_seeds(graph, name: str, op: Operator, batch_dim, sequence) -> list[tuple[str, str, str]]:
    """Heads and head_dim of a MatMul of two activations with a batched dim besides the batch."""
    if len(op.inputs) != 2 or any(_is_weight(graph, u.tensor) for u in op.inputs):
        return []
    a, b = (u.dims() for u in op.inputs)
    out = op.outputs[0].dims() if op.outputs else frozenset()
    batched = (a & b & out) - {batch_dim}
    rows, columns = (a & out) - b, (b & out) - a  # a matrix product: each input brings an output dim
    if not batched or not rows or not columns or any(d.endswith("~b") or op.dims[d] in sequence for d in batched):
        return []
    seeds = [(name, d, "heads") for d in batched]
    seeds += [(name, d, "head_dim") for d in (a | b | out) - batched - {batch_dim}
              if op.dims[d] not in sequence and op.dims[d] > 1]
    return seeds


def _expert_seeds(graph, name: str, op: Operator) -> list[tuple[str, str, str]]:
    """The leading axis of a stacked expert weight (three or more axes) that the output keeps."""
    out = op.outputs[0].dims() if op.outputs else frozenset()
    return [(name, u.axes[0][0], "experts") for u in op.inputs
            if _is_weight(graph, u.tensor) and len(u.axes) >= 3 and len(u.axes[0]) == 1 and u.axes[0][0] in out]


def _trace_from(graph: OperatorGraph, name: str, dim: str, role: str, roles: dict) -> None:
    """Name ``dim`` of ``name`` and the dims that carry its outermost factor downstream (of the
    same size), with ``role``."""
    from planner.model.batch_trace import _factor_of_dim, trace

    op = graph.operators[name]
    size = op.dims[dim]
    roles.setdefault(name, {}).setdefault(dim, role)
    starts = {}
    for use in op.outputs + op.inputs:
        pos = _factor_of_dim(op, use, dim)
        if pos is not None and pos[1] == 0 and graph.tensors[use.tensor].role is not TensorRole.CONSTANT:
            starts.setdefault(use.tensor, pos)
    if not starts:
        return
    for other, d in trace(graph, starts=starts).items():
        if d is not None and graph.operators[other].dims.get(d) == size:
            roles.setdefault(other, {}).setdefault(d, role)
