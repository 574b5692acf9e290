"""Megatron-LM's padded vocabulary: ``--make-vocab-size-divisible-by`` (default 128) times the
tensor-parallel size, so that the embedding table and the output layer split evenly.

GPT-2's 50,257 tokens become 50,304 without tensor parallelism and 51,200 with 8-way tensor
parallelism. :func:`pad_vocabulary` returns a copy of the graph in which every tensor axis and
operator dimension carrying the vocabulary (traced from the embedding table through the tied
transpose, the output layer and what follows it) has the padded size, so the padded size is
what gets priced: FLOPs, bytes, parameters and communication.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

from planner.model.graph import OperatorGraph, TensorRole

MAKE_VOCAB_SIZE_DIVISIBLE_BY = 128


def padded_vocabulary(vocab: int, tensor: int, divisible_by: int = MAKE_VOCAB_SIZE_DIVISIBLE_BY) -> int:
    """The smallest multiple of ``divisible_by * tensor`` that is at least ``vocab``."""
    multiple = divisible_by * tensor
    return math.ceil(vocab / multiple) * multiple


def vocabulary_size(graph: OperatorGraph) -> int | None:
    """The rows of the largest embedding table (a parameter gathered along its first axis)."""
    sizes = [op.dims["v"] for op in graph.operators.values()
             if op.op_type == "Gather" and "v" in op.dims and op.inputs
             and graph.tensors[op.inputs[0].tensor].role is TensorRole.PARAMETER]
    return max(sizes, default=None)


def pad_vocabulary(graph: OperatorGraph, tensor: int,
                   divisible_by: int = MAKE_VOCAB_SIZE_DIVISIBLE_BY) -> tuple[OperatorGraph, int, int]:
    """``(graph, vocabulary, padded)``: the graph itself when there is nothing to pad."""
    vocab = vocabulary_size(graph)
    if vocab is None:
        return graph, 0, 0
    padded = padded_vocabulary(vocab, tensor, divisible_by)
    if padded == vocab:
        return graph, vocab, padded
    # the (tensor, axis) pairs and (operator, dim) pairs that carry the vocabulary, to a fixed point
    axes: set[tuple[str, int]] = set()
    dims: set[tuple[str, str]] = set()
    for name, op in graph.operators.items():
        if op.op_type == "Gather" and op.dims.get("v") == vocab and op.inputs \
                and graph.tensors[op.inputs[0].tensor].role is TensorRole.PARAMETER:
            dims.add((name, "v"))
    changed = True
    while changed:
        changed = False
        for name, op in graph.operators.items():
            for use in op.uses():
                for a, ax in enumerate(use.axes):
                    if len(ax) != 1 or op.dims.get(ax[0]) != vocab:
                        continue
                    if (use.tensor, a) in axes and (name, ax[0]) not in dims:
                        dims.add((name, ax[0]))
                        changed = True
                    if (name, ax[0]) in dims and (use.tensor, a) not in axes:
                        axes.add((use.tensor, a))
                        changed = True
    tensors = dict(graph.tensors)
    for tname in {t for t, _ in axes}:
        t = tensors[tname]
        shape = tuple(padded if (tname, a) in axes else s for a, s in enumerate(t.shape))
        factors = tuple((padded,) if (tname, a) in axes else f for a, f in enumerate(t.axis_factors))
        tensors[tname] = replace(t, shape=shape, axis_factors=factors)
    operators = dict(graph.operators)
    for name in {n for n, _ in dims}:
        op = operators[name]
        mine = [d for n, d in dims if n == name]
        new_dims = {d: (padded if d in mine else s) for d, s in op.dims.items()}
        new_factors = {d: ((padded,) if d in mine else f) for d, f in op.dim_factors.items()}
        operators[name] = replace(op, dims=new_dims, dim_factors=new_factors,
                                  flops=op.flops * (padded / vocab) ** len(mine))
    out = copy.copy(graph)
    out.operators, out.tensors = operators, tensors
    out.vocabulary_padding = (vocab, padded)  # read by the plan JSON (report.plan_to_json)
    return out, vocab, padded


def pad_as_recorded(graph: OperatorGraph, data: dict) -> OperatorGraph:
    """The graph padded as a plan file records (``vocabulary_padded``: ``{"from": V, "to": P}``,
    written for plans priced on a padded vocabulary), so that the file's splits divide again."""
    from planner.cost.model import PlanError

    record = data.get("vocabulary_padded")
    if record is None:
        return graph
    vocab = vocabulary_size(graph)
    target = record.get("to") if isinstance(record, dict) else None
    if not isinstance(target, int) or isinstance(target, bool) or vocab is None or target < vocab:
        raise PlanError(f"vocabulary_padded must be {{\"from\": V, \"to\": P}} with P at least the model's vocabulary "
                        f"({vocab}); got {record!r}: fix or remove it")
    return pad_vocabulary(graph, 1, divisible_by=target)[0]
