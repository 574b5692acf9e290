"""The exact program's strategy pruning (planner.search.exact_prune): the symmetry memo must give
each strategy the evaluator's own ``op_seconds``, and the bound must keep every optimal plan
(checked against brute-force enumeration of every plan, priced by ``CostModel.total_seconds``)."""

from __future__ import annotations

import itertools

import pytest

from planner.cost.result import cost_model_for
from planner.machine.tree import Machine
from planner.onnx.importer import import_model
from planner.options import PlanOptions
from planner.search.exact import all_strategies
from planner.search.exact_dp import plan_dp
from planner.search.exact_prune import canonical, op_values, prune, symmetry_groups
from sample_models import synthetic


def machine(levels) -> Machine:
    return Machine.from_dict({"name": "t", "device": {"name": "d", "peak_flops": 1e14, "memory_bytes": 8e10},
                              "levels": [{"name": n, "arity": a, "bandwidth_Bps": b, "latency_s": lat}
                                         for n, a, b, lat in levels]})


SYMMETRIC = machine([("node", 4, 1.25e9, 1e-5), ("gpu", 4, 3e11, 2e-6)])  # cuts 2,2 | 2,2


def test_symmetry_groups_are_the_cuts_sharing_level_and_factor():
    cm = cost_model_for(import_model(synthetic.mlp([8, 8]), {"batch": 8}), SYMMETRIC, PlanOptions())
    assert symmetry_groups(cm) == [[0, 1], [2, 3]]
    assert canonical(("n", None, "k", "m"), [[0, 1], [2, 3]]) == (None, "n", "k", "m")


def test_op_values_equal_the_evaluator_on_every_strategy_of_a_cnn():
    cm = cost_model_for(import_model(synthetic.cnn_chain([3, 8, 16]), {"batch": 8}), SYMMETRIC, PlanOptions())
    for n in cm.planned:
        strategies = all_strategies(cm, n)
        values = op_values(cm, n, strategies)
        assert len(set(map(lambda s: canonical(s, symmetry_groups(cm)), strategies))) < len(strategies)
        for s, v in zip(strategies, values):
            assert v == pytest.approx(cm.op_seconds(n, s), rel=1e-12)


@pytest.mark.parametrize("widths,batch,levels", [
    ([16, 64, 16], 8, [("node", 2, 1.25e9, 1e-5), ("gpu", 2, 3e11, 2e-6)]),
    ([64, 8, 64], 32, [("gpu", 4, 1e10, 2e-6)]),
    ([8, 256, 8], 4, [("node", 2, 1e9, 1e-5), ("gpu", 2, 2e11, 2e-6)]),
])
def test_pruning_to_any_plans_cost_keeps_every_optimal_plan(widths, batch, levels):
    cm = cost_model_for(import_model(synthetic.mlp(widths), {"batch": batch}), machine(levels), PlanOptions())
    names = list(cm.planned)
    options = {n: all_strategies(cm, n) for n in names}
    costs = {combo: cm.total_seconds(dict(zip(names, combo))) for combo in itertools.product(*options.values())}
    best = min(costs.values())
    optima = [c for c, v in costs.items() if v <= best * (1 + 1e-12)]
    values = {n: op_values(cm, n, options[n]) for n in names}
    for upper in (best, sorted(costs.values())[len(costs) // 10]):  # the optimum itself, a plan at the 10th percentile
        kept, _ = prune(options, values, upper)
        assert sum(map(len, kept.values())) < sum(map(len, options.values()))  # it prunes something
        for combo in optima:
            assert all(s in kept[n] for n, s in zip(names, combo))


@pytest.mark.parametrize("widths,batch,levels", [
    ([16, 64, 16, 8], 8, [("node", 2, 1.25e9, 1e-5), ("gpu", 2, 3e11, 2e-6)]),
    ([64, 8, 64], 32, [("gpu", 4, 1e10, 2e-6)]),
])
def test_the_program_bounded_by_the_optimum_itself_still_returns_it(widths, batch, levels):
    # the tightest bound there is: an optimal plan's own cost (found by brute force) prunes the
    # most, operators before the program and subtrees during it; the optimum must survive both
    cm = cost_model_for(import_model(synthetic.mlp(widths), {"batch": batch}), machine(levels), PlanOptions())
    names = list(cm.planned)
    best_plan = min((dict(zip(names, combo)) for combo in itertools.product(*(all_strategies(cm, n) for n in names))),
                    key=cm.total_seconds)
    plan, predicted = plan_dp(cm, (best_plan,))
    assert cm.total_seconds(plan) == pytest.approx(cm.total_seconds(best_plan), rel=1e-9)
    assert predicted == pytest.approx(cm.total_seconds(best_plan), rel=1e-9)
