"""Sequence parallelism (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models"): what it changes in the price of a plan.

With tensor parallelism, Megatron-LM computes the LayerNorm, dropout, bias and residual regions
replicated on every tensor-parallel rank, after an all-reduce of the row-parallel output (and of
the column-parallel input's gradient in the backward pass). Sequence parallelism splits those
regions along the sequence instead: the forward all-reduce becomes a reduce-scatter (into the
sequence-split region) followed by an all-gather (back to the next column-parallel layer), and
the backward the same in reverse. The bytes are those of the all-reduces; the region's compute
and activations are divided by the tensor-parallel size ``t``.

In the cost model the layout itself is an ordinary plan (``planner.search.megatron`` splits the
region's operators on their sequence dimension over the tensor-parallel cuts): the all-gathers
are the redistributions between the region and the linear layers. What this module adds is the
one rule the generic pricing lacks, applied when the cost model has ``sequence_parallel`` set:
*a partial sum whose consumers all hold it split over the same cuts is reduce-scattered, not
all-reduced*, and likewise *an input gradient that is a partial sum over cuts where its producer
holds the tensor split is reduce-scattered*: one all-gather of traffic fewer than the all-reduce
the operator's own price counts (:func:`reduce_scatter_savings`).
"""

from __future__ import annotations

import numpy as np

from planner.cost.collectives import hierarchical_collectives
from planner.model.graph import Operator


def sequence_dim(op: Operator, batch_dim: str | None) -> str | None:
    """The dimension of ``op`` that indexes the sequence of its (first) output ``[..., seq, hidden]``:
    the one dimension on axis -2, if it is not the batch and the output has rank 3 or more."""
    if not op.outputs:
        return None
    axes = op.outputs[0].axes
    if len(axes) < 3 or len(axes[-2]) != 1:
        return None
    dim = axes[-2][0]
    return None if dim == batch_dim or dim in op.reduction_dims else dim


def _groups(cm, cuts: list[int]) -> dict[int, int]:
    groups: dict[int, int] = {}
    for t in cuts:
        groups[cm.cut_level[t]] = groups.get(cm.cut_level[t], 1) * cm.cut_factor[t]
    return groups


def _split_on(layout: tuple[int, ...], cuts: list[int]) -> bool:
    return all(layout[t] >= 0 for t in cuts)


def reduce_scatter_savings(cm, full: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Per operator, the traffic (a basis vector) its collectives save because an all-reduce
    is a reduce-scatter under sequence parallelism (see the module docstring).

    Forward: an output that is a partial sum over cuts ``C`` and whose every consumer holds it
    split on all of ``C`` (the layout it receives is a slice of the sum): the all-reduce
    (reduce-scatter + all-gather) loses its all-gather, one collective over ``C``; the gradient
    coming back is then all-gathered, which the redistribution of the edge already charges.
    Backward: an activation input replicated over cuts ``C`` (its gradient a partial sum there)
    whose producer holds it split on all of ``C``: its gradient is reduce-scattered into the
    producer's layout, again one collective fewer; the forward all-gather is the edge's
    redistribution. Gradients of parameters (the once-per-iteration sync) are not touched.
    """
    consumers: dict[tuple[str, int], list] = {}
    for e in cm.edges:
        consumers.setdefault((e.producer, e.out_index), []).append(e)
    savings: dict[str, np.ndarray] = {}
    d = cm.num_levels
    for name in cm.planned:
        strategy = full[name]
        for i, use in enumerate(cm.info[name].uses):
            if not use.is_output and (not use.grad_allreduce or use.is_parameter):
                continue
            partial = cm.partial_cuts(name, i, strategy)
            if not partial:
                continue
            if use.is_output:
                edges = consumers.get((name, i), [])
                fused = bool(edges) and all(_split_on(cm.layout(e.consumer, e.in_index, full[e.consumer]), partial)
                                            for e in edges)
            else:
                edge = next((e for e in cm.in_edges[name] if e.in_index == i), None)
                fused = edge is not None and _split_on(cm.layout(edge.producer, edge.out_index, full[edge.producer]),
                                                       partial)
            if not fused:
                continue
            vec = savings.setdefault(name, cm.basis.zero())
            for level, (nbytes, steps) in hierarchical_collectives(cm.local_bytes(name, i, strategy),
                                                                   _groups(cm, partial), 1).items():
                vec[1 + level] += nbytes
                vec[1 + d + level] += steps
    return savings


def apply_reduce_scatters(cm, full: dict[str, tuple], communication: dict[str, np.ndarray]) -> None:
    """Subtract :func:`reduce_scatter_savings` from each operator's communication, when the cost
    model prices sequence parallelism (``cm.sequence_parallel``)."""
    if cm.sequence_parallel:
        for name, saved in reduce_scatter_savings(cm, full).items():
            communication[name] = communication[name] - saved
