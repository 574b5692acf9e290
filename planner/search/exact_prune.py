"""Shrinking the exact dynamic program's strategy lists without losing the optimum: each
operator's cost priced once per class of strategies equal up to the machine's symmetry, and the
strategies that cannot be in any plan as cheap as a known one dropped.

**Symmetry.** ``CostModel.op_seconds(n, s)`` depends on ``s`` only through (i) which strategies
divide the dimensions (per dimension, the sequence of cut factors assigned to it), (ii) ``split``,
the product of the factors per dimension, (iii) per tensor and machine level, the product of the
factors of the cuts that leave it a partial sum (``_collectives``: groups by level), and (iv) per
spatially split dimension, the lowest level splitting it (``_halos``). Swapping the choices of two
cuts with the same level and the same factor leaves each of these unchanged (the multiset of
(level, factor) pairs per dimension, and so every product and minimum, are the same; the sequence
of factors per dimension is the same since the swapped factors are equal); what the overlaps hide
(``planner.cost.overlap.hidden_seconds``) is a function of the operator and of those per-level
cost vectors, so it is unchanged too. So the operator cost is
priced once per orbit, at its representative with the choices sorted within each group of cuts
sharing (level, factor): :func:`op_values`. The redistribution does depend on the cuts' order
(prefixes), so whole strategies, not orbits, stay in the program.

**Bound.** A plan costs its operators' ``op_seconds`` plus redistributions, which are ``>= 0``
(sequence parallelism's discount is the one negative term, and the dynamic program is not used
under it). Let ``U`` be the cost of any complete plan (the evaluator's price of the data-parallel
or all-replicated plan, or drec+'s) and ``L_m`` the least ``op_seconds`` of operator ``m``. A plan
giving ``n`` the strategy ``s`` costs at least ``op_seconds(n, s) + sum_{m != n} L_m``; when that
exceeds ``U`` the plan is costlier than one already known, hence not optimal. Dropping every such
``s`` (:func:`prune`) keeps every optimal plan, so the dynamic program over what is left returns the
optimum. A relative slack of ``1e-9`` keeps strategies within rounding of the bound.
"""

from __future__ import annotations

import numpy as np

from planner.cost.model import CostModel, Strategy

SLACK = 1e-9  # relative: a strategy within rounding of the bound is kept (keeping more is always safe)


def symmetry_groups(cm: CostModel) -> list[list[int]]:
    """The cuts grouped by (level, factor): choices may be permuted within a group."""
    groups: dict[tuple[int, int], list[int]] = {}
    for t, (level, factor) in enumerate(zip(cm.cut_level, cm.cut_factor)):
        groups.setdefault((level, factor), []).append(t)
    return [g for g in groups.values() if len(g) > 1]


def canonical(strategy: Strategy, groups: list[list[int]]) -> Strategy:
    """The orbit's representative: within each group of interchangeable cuts, the choices sorted."""
    s = list(strategy)
    for g in groups:
        for t, d in zip(g, sorted((s[t] for t in g), key=lambda d: (d is not None, d or ""))):
            s[t] = d
    return tuple(s)


def op_values(cm: CostModel, name: str, strategies: list[Strategy]) -> np.ndarray:
    """``op_seconds`` of each strategy, priced once per orbit of the machine's symmetry."""
    groups = symmetry_groups(cm)
    memo: dict[Strategy, float] = {}
    out = np.empty(len(strategies))
    for i, s in enumerate(strategies):
        key = canonical(s, groups) if groups else s
        v = memo.get(key)
        if v is None:
            v = memo[key] = cm.op_seconds(name, key)
        out[i] = v
    return out


def prune(options: dict[str, list[Strategy]], values: dict[str, np.ndarray], upper: float
          ) -> tuple[dict[str, list[Strategy]], dict[str, np.ndarray]]:
    """Drop the strategies that no plan costing at most ``upper`` can use (module docstring)."""
    floors = {n: float(v.min()) for n, v in values.items()}
    total_floor = sum(floors.values())
    kept_options, kept_values = {}, {}
    for n, v in values.items():
        keep = v + (total_floor - floors[n]) <= upper * (1 + SLACK) + 1e-30
        index = np.flatnonzero(keep)
        kept_options[n] = [options[n][i] for i in index]
        kept_values[n] = v[index]
    return kept_options, kept_values


def upper_bound(cm: CostModel, plans: list[dict[str, Strategy]]) -> float:
    """The cheapest of some complete plans, priced by the evaluator (an upper bound on the optimum)."""
    return min(cm.total_seconds(p) for p in plans)
