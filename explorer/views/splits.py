"""How a plan splits operators, in words: an operator's splits (``b0 x64 · n x8``), the same by the
role of each split dimension and the level it is split over (``batch x64 over node``), per machine
cut and per level, the kind of parallelism per level, and how many devices do distinct work.
Shared by the graph, the strategy tables, the overview and the sweep."""

from __future__ import annotations

import math

from planner.api import PlanResult
from planner.cost.model import CostModel
from planner.model.graph import OperatorGraph, OpKind, TensorRole
from planner.model.roles import dim_roles
from planner.plans.report import op_cuts, op_splits
from planner.plans.parallelism import describe


PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
            "#9D755D", "#BAB0AC", "#1F77B4", "#17BECF", "#BCBD22", "#8C564B"]


def strategy_label(result: PlanResult, name: str) -> str:
    """``b0 x64 · n x8`` (total split of each dimension), or ``replicated``."""
    if name not in result.plan.strategies:
        return "not planned"
    splits = {d: f for d, f in op_splits(result, name).items() if f > 1}
    return " · ".join(f"{d} x{f}" for d, f in splits.items()) or "replicated"




def roles_of(graph: OperatorGraph) -> dict[str, dict[str, str]]:
    """:func:`planner.model.roles.dim_roles` of a graph, computed once per graph (its memo)."""
    return graph.memo("roles", None, lambda: dim_roles(graph))


def role_label(result: PlanResult, name: str) -> str:
    """The split by role and level: ``batch x64 over node · heads x8 over gpu``, or ``replicated``;
    the same for every operator that splits the same thing over the same level, whatever its
    local dimension letters."""
    if name not in result.plan.strategies:
        return "not planned"
    roles = roles_of(result.graph).get(name, {})
    parts: dict[tuple[str, str], int] = {}
    for level, dim, factor in op_cuts(result, name):
        if dim is not None:
            key = (roles.get(dim, "other"), level)
            parts[key] = parts.get(key, 1) * factor
    return " · ".join(f"{role} x{f} over {level}" for (role, level), f in parts.items()) or "replicated"


def cut_labels(cm: CostModel) -> list[str]:
    """One label per prime cut: ``node x2 (1/6)``."""
    per_level: dict[str, int] = {}
    for c in cm.cuts:
        per_level[c.level_name] = per_level.get(c.level_name, 0) + 1
    seen: dict[str, int] = {}
    labels = []
    for c in cm.cuts:
        seen[c.level_name] = seen.get(c.level_name, 0) + 1
        n = per_level[c.level_name]
        labels.append(f"{c.level_name} x{c.factor}" + (f" ({seen[c.level_name]}/{n})" if n > 1 else ""))
    return labels


def level_splits(result: PlanResult, name: str) -> dict[str, str]:
    """Per machine level, what the operator splits there: ``b0 x8 · n x8`` or ``—``."""
    out: dict[str, dict[str, int]] = {lv.name: {} for lv in result.cost_model.machine.levels}  # a stage's levels
    for level, dim, factor in op_cuts(result, name):
        if dim is not None:
            out[level][dim] = out[level].get(dim, 1) * factor
    return {lv: " · ".join(f"{d} x{f}" for d, f in splits.items()) or "—" for lv, splits in out.items()}


def strategy_shape(result: PlanResult) -> str:
    """What kind of parallelism the plan uses: the pipeline stages, then per level of a stage:
    data, model, data+model, or none.

    A cut counts as data parallel when an operator splits its batch dimension there; weighted by
    the operators' FLOPs so that a cheap bias add does not name a level.
    """
    graph = result.graph
    batch = graph.batch_dims()
    cm = result.cost_model
    heavy = sorted((n for n in cm.planned if graph.operators[n].kind is OpKind.COMPUTE),
                   key=lambda n: -graph.operators[n].flops)
    total = sum(graph.operators[n].flops for n in heavy) or 1.0
    parts = [f"pipeline: {result.schedule.stages} stages"] if result.schedule.stages > 1 else []
    for li, lv in enumerate(cm.machine.levels):
        cuts = [t for t, c in enumerate(cm.cuts) if c.level == li]
        if not cuts:
            continue
        data = model = 0.0
        for n in heavy:
            w = graph.operators[n].flops / total
            dims = {result.plan.strategies[n][t] for t in cuts} - {None}
            if batch.get(n) in dims:
                data += w
            if dims - {batch.get(n)}:
                model += w
        kinds = [k for k, v in (("data", data), ("model", model)) if v >= 0.1]
        parts.append(f"{lv.name}: {'+'.join(kinds) or 'replicated'}")
    return " | ".join(parts) or "one device"


def _weights(result: PlanResult, names: list[str]) -> dict[str, int]:
    graph = result.graph
    return {n: sum(graph.tensors[u.tensor].numel for u in graph.operators[n].inputs
                   if graph.tensors[u.tensor].role is TensorRole.PARAMETER) for n in names}


def level_roles(result: PlanResult) -> list[tuple[str, list[str]]]:
    """Per level of a stage's machine, what the plan splits there, by role (``batch``, ``heads``,
    ...): a role counts when the operators that split it there hold 10% of the FLOPs or 10% of
    the weights (an embedding split by its vocabulary does little compute but holds many weights),
    leaving out the operators the plan's name lists as exceptions (:func:`planner.plans.parallelism.describe`,
    so that this and the name agree); a level where nothing counts has an empty list."""
    graph = result.graph
    cm = result.cost_model
    roles = roles_of(graph)
    heavy = [n for n in cm.planned if graph.operators[n].kind is OpKind.COMPUTE]
    # the operators the plan's name treats as exceptions (planner.plans.parallelism) do not count
    odd = {lv["level"]: set(lv["exceptions"]) for lv in describe(result)["levels"]}
    flops = sum(graph.operators[n].flops for n in heavy) or 1.0
    params = _weights(result, heavy)
    total_params = sum(params.values()) or 1
    out = []
    for li, lv in enumerate(cm.machine.levels):
        cuts = [t for t, c in enumerate(cm.cuts) if c.level == li]
        if not cuts:
            continue
        weight: dict[str, list[float]] = {}
        for n in heavy:
            if n in odd.get(lv.name, ()):
                continue
            dims = {result.plan.strategies[n][t] for t in cuts} - {None}
            for role in {roles[n].get(d, "other") for d in dims}:
                w = weight.setdefault(role, [0.0, 0.0])
                w[0] += graph.operators[n].flops / flops
                w[1] += params[n] / total_params
        split = [r for r, w in sorted(weight.items(), key=lambda kv: -max(kv[1])) if max(w) >= 0.1]
        out.append((lv.name, split))
    return out


def weights_split_by_model(result: PlanResult) -> list[tuple[str, int, str]]:
    """The operators with weights that split something other than the batch (so that their
    gradients are not all-reduced over those devices): ``(name, weights, role label)``, the most
    weights first."""
    cm = result.cost_model
    roles = roles_of(result.graph)
    out = []
    for n, w in _weights(result, list(cm.planned)).items():
        dims = {d for d in result.plan.strategies[n] if d is not None}
        if w and any(roles[n].get(d) != "batch" for d in dims):
            out.append((n, w, role_label(result, n)))
    return sorted(out, key=lambda t: -t[1])


def distinct_workers(result: PlanResult) -> int:
    """How many devices do distinct work: the stages times the product of the cuts of a stage
    machine at which some operator splits."""
    cm = result.cost_model
    return result.schedule.stages * math.prod(c.factor for t, c in enumerate(cm.cuts)
                                              if any(s[t] is not None for s in result.plan.strategies.values()))
