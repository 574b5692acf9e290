"""The exact optimum under the cost model, over the same choices D-Rec has: the integer program for
graphs with cycles (chains and trees go to the dynamic program of :mod:`planner.search.exact_dp`).

Every planned operator (folded ones included) picks one full strategy (a dimension or none at
each cut). The plan's cost is a sum of per-operator terms and per-edge terms that depend on the
two endpoint strategies, so the optimum is a MAP problem on a pairwise model, solved exactly
as an integer program with scipy's HiGHS:

    minimise   sum_n sum_s c_n(s) x_{n,s} + sum_e sum_{a,b} c_e(a,b) z_{e,a,b}
    subject to sum_s x_{n,s} = 1,
               sum_b z_{e,a,b} = sum_{s: layout_u(s)=a} x_{u,s},   likewise for b and v,
               x binary, z >= 0,

where a and b range over the layouts the edge's tensor can have at its producer and consumer
(an edge's cost depends on nothing else). With x integral the marginal constraints force z to
the indicator of the chosen pair of layouts.

A tensor with several consumers pays once per (tensor, consumer layout) (planner.cost.redistribution):
its edges' z carry no cost; instead ``y_{t,a,b} >= z_{e,a,b}`` for each of its edges ``e``, and
``c_e(a,b)`` is paid on ``y``, which the minimisation holds at the largest of those z (1 when any
consumer takes layout b from a, else 0).
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from planner.cost.model import CostModel, Plan, Strategy
from planner.errors import PlannerError

MAX_VARIABLES = 400_000


class SearchTooLargeError(PlannerError, ValueError):
    """The joint space is too big for the exact search; the message names the bound."""


def all_strategies(cm: CostModel, name: str, limit: int | None = None) -> list[Strategy]:
    """Every full strategy of one operator that divides its dimensions (enumeration stops once
    a partial list exceeds ``limit``: the caller refuses such a problem anyway)."""
    out: list[Strategy] = [()]
    for _ in cm.cuts:
        out = [s + (c,) for s in out for c in cm.candidates(name, s)]
        if limit is not None and len(out) > limit:
            break
    return out


def _too_large(cm: CostModel, size: str, max_variables: int) -> SearchTooLargeError:
    return SearchTooLargeError(
        f"the exact search would need {size} variables, above its bound of {max_variables:,} "
        f"({len(cm.planned)} operators on {cm.machine.num_devices} devices); use a smaller model or "
        "machine, or --algorithm drec+"
    )


def _edge_groups(cm: CostModel, options: dict[str, list[Strategy]]):
    """Per edge, the operators' strategies grouped by the layout they give the edge's tensor:
    the edge cost depends only on the two layouts, which keeps the pairwise tables small."""
    groups = []
    for e in cm.edges:
        la: dict[tuple, list[int]] = {}
        lb: dict[tuple, list[int]] = {}
        for i, s in enumerate(options[e.producer]):
            la.setdefault(cm.layout(e.producer, e.out_index, s), []).append(i)
        for j, s in enumerate(options[e.consumer]):
            lb.setdefault(cm.layout(e.consumer, e.in_index, s), []).append(j)
        groups.append((e, la, lb))
    return groups


def plan_exact(cm: CostModel, max_variables: int = MAX_VARIABLES, time_limit_s: float = 120.0) -> Plan:
    """The optimum: by dynamic programming over layouts when operators and tensors form a forest
    (chains, trees: :mod:`planner.search.exact_dp`), else by the integer program below."""
    from planner.search.exact_dp import dp_applies, plan_dp

    start = time.perf_counter()
    if not cm.cuts:
        return Plan({n: () for n in cm.planned}, "exact", time.perf_counter() - start)
    if dp_applies(cm):
        from planner.cost.baseline import data_parallel_strategies
        from planner.search.drec import plan_drec

        # drec+'s plan bounds the optimum from above: the program drops what cannot beat it
        known = plan_drec(cm, improved=True, data_parallel=data_parallel_strategies(cm)).strategies
        strategies, predicted = plan_dp(cm, (known,))
        notes = ["exact by dynamic programming over layouts (the graph is a chain or a tree)"]
        priced = cm.total_seconds(strategies)
        if abs(priced - predicted) > 1e-9 * max(abs(priced), 1e-30):  # a cost term the program does not add up
            notes.append(f"the evaluator prices this plan at {priced:.6g} s, the dynamic program at {predicted:.6g} s: "
                         "it may not be optimal")
        return Plan(strategies, "exact", time.perf_counter() - start, notes)
    options = {}
    for n in cm.planned:  # refuse before enumerating a space that would not fit anyway
        options[n] = all_strategies(cm, n, limit=max_variables)
        if sum(len(v) for v in options.values()) > max_variables:
            raise _too_large(cm, f"more than {max_variables:,}", max_variables)
    strategies, notes, _ = solve(cm, options, max_variables, time_limit_s, gap=0.0)
    return Plan(strategies, "exact", time.perf_counter() - start, notes)


class _Program:
    """The integer program's columns (cost, integrality) and sparse constraint rows, in order."""

    def __init__(self):
        self.rows, self.cols, self.vals, self.lower, self.upper = [], [], [], [], []
        self.cost: list[float] = []
        self.integrality: list[int] = []
        self.r = 0  # rows so far

    @property
    def col(self) -> int:
        return len(self.cost)

    def row(self, entries, lower: float, upper: float) -> None:
        """One constraint ``lower <= sum(value * x[column]) <= upper`` over ``(column, value)`` pairs."""
        for column, value in entries:
            self.rows.append(self.r); self.cols.append(column); self.vals.append(value)
        self.lower.append(lower); self.upper.append(upper); self.r += 1


def _shared_pairs(groups) -> dict[str, dict]:
    """Tensors read by several edges -> {(producer layout, consumer layout): y column (None yet)}."""
    readers: dict[str, int] = {}
    for e, _, _ in groups:
        readers[e.tensor] = readers.get(e.tensor, 0) + 1
    shared_pairs: dict[str, dict] = {}
    for e, la, lb in groups:
        if readers[e.tensor] > 1:
            pairs = shared_pairs.setdefault(e.tensor, {})
            for a in la:
                for b in lb:
                    pairs.setdefault((a, b), None)
    return shared_pairs


def _add_choices(prog: _Program, cm: CostModel, options: dict[str, list[Strategy]], names: list[str]) -> dict[str, int]:
    """x: one binary column per (operator, strategy), and one row per operator choosing exactly one."""
    offset = {}
    for n in names:
        offset[n] = prog.col
        prog.cost.extend(cm.op_seconds(n, s) for s in options[n])
    prog.integrality.extend([1] * prog.col)
    for n in names:
        prog.row(((offset[n] + k, 1.0) for k in range(len(options[n]))), 1.0, 1.0)
    return offset


def _add_shared(prog: _Program, cm: CostModel, groups, shared_pairs: dict[str, dict]) -> None:
    """y: one column per (tensor, producer layout, consumer layout) of a tensor read by several edges."""
    for tensor, pairs in shared_pairs.items():
        e = next(e for e, _, _ in groups if e.tensor == tensor)
        for (a, b) in pairs:
            pairs[(a, b)] = prog.col
            prog.cost.append(cm.redistribution_seconds(e.nbytes, a, b, e.requires_grad))
            prog.integrality.append(0)


def _add_edge(prog: _Program, cm: CostModel, e, la, lb, shared: dict | None, offset: dict[str, int]) -> None:
    """z: one column per (producer layout, consumer layout) of an edge, tied to the x columns."""
    la_keys, lb_keys = list(la), list(lb)
    nu, nv = len(la_keys), len(lb_keys)
    base = prog.col
    for a in la_keys:
        for b in lb_keys:
            column = prog.col
            prog.cost.append(0.0 if shared is not None else cm.redistribution_seconds(e.nbytes, a, b, e.requires_grad))
            if shared is not None:  # z_{e,a,b} - y_{t,a,b} <= 0
                prog.row(((column, 1.0), (shared[(a, b)], -1.0)), -np.inf, 0.0)
    prog.integrality.extend([0] * (nu * nv))
    for i, a in enumerate(la_keys):  # sum_b z_ab = sum of x_u over strategies giving layout a
        prog.row([(base + i * nv + j, 1.0) for j in range(nv)] + [(offset[e.producer] + k, -1.0) for k in la[a]],
                 0.0, 0.0)
    for j, b in enumerate(lb_keys):
        prog.row([(base + i * nv + j, 1.0) for i in range(nu)] + [(offset[e.consumer] + k, -1.0) for k in lb[b]],
                 0.0, 0.0)


def _run_milp(prog: _Program, time_limit_s: float, gap: float):
    """HiGHS stops at an absolute gap of 1e-6 by default, which is everything when costs are
    microseconds: solve on costs scaled to a maximum of 1, with a tight relative gap (0 for the
    exact search: proven optimal, up to the solver's tolerances)."""
    a = coo_matrix((prog.vals, (prog.rows, prog.cols)), shape=(prog.r, prog.col)).tocsr()
    c = np.array(prog.cost)
    scale = float(np.abs(c).max()) or 1.0
    result = milp(
        c / scale,
        constraints=LinearConstraint(a, prog.lower, prog.upper),
        integrality=np.array(prog.integrality),
        bounds=Bounds(np.zeros(prog.col), np.ones(prog.col)),
        options={"time_limit": time_limit_s, "mip_rel_gap": gap},
    )
    if result.x is None:
        raise SearchTooLargeError(f"the exact search found no solution within {time_limit_s:.0f} s: {result.message}")
    return result


def solve(cm: CostModel, options: dict[str, list[Strategy]], max_variables: int = MAX_VARIABLES,
          time_limit_s: float = 120.0, gap: float = 1e-9) -> tuple[dict[str, Strategy], list[str], int]:
    """The cheapest combination of one option per operator (the integer program above), the
    solver's notes, and the number of variables the program had.

    The exact search passes every strategy of every operator; the improved D-Rec passes, per
    cut, each operator's alternatives at that cut only (a small block of the same problem).
    """
    if not options:
        return {}, [], 0
    if sum(len(v) for v in options.values()) > max_variables:
        raise _too_large(cm, f"more than {max_variables:,}", max_variables)
    groups = _edge_groups(cm, options)
    shared_pairs = _shared_pairs(groups)
    size = (sum(len(v) for v in options.values()) + sum(len(la) * len(lb) for _, la, lb in groups)
            + sum(len(p) for p in shared_pairs.values()))
    if size > max_variables:
        raise _too_large(cm, f"{size:,}", max_variables)
    names = list(cm.planned)
    prog = _Program()
    offset = _add_choices(prog, cm, options, names)
    _add_shared(prog, cm, groups, shared_pairs)
    for e, la, lb in groups:
        _add_edge(prog, cm, e, la, lb, shared_pairs.get(e.tensor), offset)
    result = _run_milp(prog, time_limit_s, gap)
    plan = {}
    for n in names:
        k = int(np.argmax(result.x[offset[n]:offset[n] + len(options[n])]))
        plan[n] = options[n][k]
    notes = [] if result.status == 0 else [f"the solver stopped early ({result.message}); the plan may not be optimal"]
    return plan, notes, size
