"""Gradient accounting: one gradient per parameter, however many consumers and views it has.

A parameter reaches the operators that use it either directly or through *views*: tensors
computed from parameters alone by weight-only operators (the ``Transpose`` of a tied embedding
read by the lm_head, the ``Identity`` copies of de-duplicated weights in legacy exports). Such a
tensor is the same for every micro-batch; its gradient is summed locally with the other
consumers' contributions and all-reduced once per iteration with the rest of the gradients
(ZeRO-sharded like them), never as an activation gradient per micro-batch.

:func:`gradient_roots` maps every parameter and view to its *root* (the parameter it is
computed from; a tensor computed from several parameters is its own root), and
:func:`consumer_counts` counts the data-dependent uses of each root. The cost model gives each
use ``1/k`` of the root's gradient all-reduce (``k`` its consumers), so that a parameter whose
consumers hold its gradient in the same layout is all-reduced exactly once, and every search
sees that price operator by operator.

When a root's consumers sit on different pipeline stages, each stage keeps its own copy of the
parameter (Megatron-LM's first and last stage both hold the word embeddings): each copy is
all-reduced over its stage's data-parallel group, and the copies' gradients are then
all-reduced with each other, Megatron's *embedding group*: :func:`tied_stage_sync` prices both.
"""

from __future__ import annotations

from collections.abc import Callable

from planner.cost.collectives import all_reduce, hierarchical_all_reduce
from planner.model.graph import OperatorGraph, TensorRole


def data_dependent_ops(graph: OperatorGraph) -> set[str]:
    """Operators whose outputs depend on the data inputs (everything but weight arithmetic)."""
    return set(graph.data_dependent_operators())  # computed once per graph


def weight_only_ops(graph: OperatorGraph) -> set[str]:
    """Operators whose outputs do not depend on the data inputs (weight arithmetic)."""
    return set(graph.operators) - data_dependent_ops(graph)


def gradient_roots(graph: OperatorGraph) -> dict[str, str]:
    """Tensor -> the parameter whose gradient it carries, for parameters (their own root) and
    for float tensors computed by weight-only operators from parameters (and constants)."""
    roots = {n: n for n, t in graph.tensors.items() if t.role is TensorRole.PARAMETER}
    weight_only = weight_only_ops(graph)
    for name in graph.topological_order():
        if name not in weight_only:
            continue
        op = graph.operators[name]
        sources = {roots[u.tensor] for u in op.inputs if u.tensor in roots}
        if not sources:
            continue
        for u in op.outputs:
            t = graph.tensors[u.tensor]
            if t.requires_grad and t.is_float:
                roots[u.tensor] = next(iter(sources)) if len(sources) == 1 else u.tensor
    return roots


def consumer_counts(graph: OperatorGraph, roots: dict[str, str]) -> dict[str, int]:
    """Per root, the uses of it (directly or through views) by operators that read the data."""
    weight_only = weight_only_ops(graph)
    counts: dict[str, int] = {}
    for name, op in graph.operators.items():
        if name in weight_only:
            continue
        for u in op.inputs:
            root = roots.get(u.tensor)
            if root is not None:
                counts[root] = counts.get(root, 0) + 1
    return counts


def root_consumers(cm) -> dict[str, list[tuple[str, int]]]:
    """Per root with consumers: ``(operator, use index)`` of every data-dependent planned use."""
    out: dict[str, list[tuple[str, int]]] = {}
    for name in cm.planned:
        for i, use in enumerate(cm.info[name].uses):
            if not use.is_output and use.grad_root is not None and name not in cm.weight_only:
                out.setdefault(use.grad_root, []).append((name, i))
    return out


def sync_traffic(nbytes, groups: dict[int, int], share: float = 1.0, bucket_bytes: float = 0.0) -> dict:
    """A parameter gradient's all-reduce, ``share`` of it (:func:`consumer_counts`), with its
    latency paid per bucket: a tensor of ``S < B`` bytes fills ``S/B`` of a bucket of ``B`` bytes
    and pays that share of the bucket's supersteps; a larger one is a bucket of its own.
    ``bucket_bytes = 0``: one all-reduce per tensor."""
    traffic = hierarchical_all_reduce(nbytes, groups)
    steps_share = share
    if bucket_bytes > 0:
        steps_share *= _smaller(nbytes / bucket_bytes, 1)
    return {level: (share * b, steps_share * n) for level, (b, n) in traffic.items()}


def _smaller(a, b):
    if isinstance(a, (int, float)):
        return min(a, b)
    import sympy  # formulas only

    return sympy.Min(a, b)


def use_gradient_sync(cm, name: str, index: int, strategy):
    """The whole once-per-iteration all-reduce of one use's gradient (no consumer share), as a
    basis vector; zero under ZeRO-3, whose gradient reduce-scatter is per micro-batch."""
    vec = cm.basis.zero()
    groups: dict[int, int] = {}
    for t in cm.partial_cuts(name, index, strategy):
        groups[cm.cut_level[t]] = groups.get(cm.cut_level[t], 1) * cm.cut_factor[t]
    if not groups or cm.zero == 3:
        return vec
    d = cm.num_levels
    for level, (nbytes, steps) in sync_traffic(cm.local_bytes(name, index, strategy), groups, 1.0,
                                               cm.bucket_bytes).items():
        vec[1 + level] += nbytes
        vec[1 + d + level] += steps
    return vec


def gradient_bytes(cm, name: str, strategy) -> float:
    """Bytes of parameter gradient an operator adds to the gradient buckets (its share of each
    parameter it reads whose gradient is all-reduced), local to one device."""
    total = 0.0
    for i, use in enumerate(cm.info[name].uses):
        if use.is_parameter and not use.is_output and cm.partial_cuts(name, i, strategy):
            total += use.grad_share * cm.local_bytes(name, i, strategy)
    return total


def tied_stage_sync(cm, strategies: dict, stage_of_op: dict[str, int], crossing: Callable[[int, int], object]
                    ) -> dict[int, float]:
    """Seconds to add to each stage's once-per-iteration gradient sync for parameters whose
    consumers sit on several stages.

    The cost model charged each consumer ``1/k`` of its all-reduce; a stage holding ``j`` of the
    ``k`` consumers holds a whole copy, which is all-reduced over its data-parallel group once:
    the mean of its consumers' all-reduces, not ``j/k`` of it. Then the copies' gradients are
    all-reduced among the stages that hold one (``2 (s-1)/s`` of a copy's local bytes over the
    level between the first and the last of them, in two supersteps).
    """
    extra: dict[int, float] = {}
    basis = cm.basis
    for root, uses in root_consumers(cm).items():
        by_stage: dict[int, list[tuple[str, int]]] = {}
        for name, i in uses:
            by_stage.setdefault(stage_of_op[name], []).append((name, i))
        if len(by_stage) < 2:
            continue
        k = len(uses)
        for s, held in by_stage.items():
            syncs = [basis.time(use_gradient_sync(cm, n, i, strategies[n])) for n, i in held]
            extra[s] = extra.get(s, 0.0) + sum(syncs) / len(syncs) - sum(syncs) / k
        stages = sorted(by_stage)
        level = crossing(stages[0], stages[-1])
        copy_bytes = max(cm.local_bytes(n, i, strategies[n]) for n, i in uses)
        nbytes, steps = all_reduce(copy_bytes, len(stages))
        seconds = nbytes * level.gap_s_per_byte + steps * level.latency_s
        for s in stages:
            extra[s] = extra.get(s, 0.0) + seconds
    return extra
