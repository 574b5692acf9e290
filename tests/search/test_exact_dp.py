"""The exact dynamic program over layouts (planner.search.exact_dp) and its redistribution tables.

Its optimum is checked against independent methods: brute-force enumeration of every plan (small
chains and trees, priced by the evaluator ``CostModel.total_seconds``), and the scalar
``CostModel.redistribution_seconds`` for every cell of the numpy tables. It must never be above
``drec+`` nor ``data_parallel`` (both priced by the same evaluator).
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto

import models  # tests/models.py
from planner.cost.baseline import data_parallel_strategies
from planner.cost.model import CostModel
from planner.machine.tree import Machine
from planner.onnx.importer import import_model
from planner.options import PlanOptions
from planner.cost.result import cost_model_for
from planner.search.exact import all_strategies, plan_exact
from planner.search.exact_dp import dp_applies, forest, plan_dp
from planner.search.exact_guard import EXACT_MAX_STRATEGIES, exact_feasible, require_exact_feasible
from planner.search.exact_tables import seconds
from planner.search.registry import search
from sample_models import synthetic
from sample_models.build import GraphBuilder

REL = 1e-9  # float rounding only


def brute_force(cm: CostModel) -> float:
    names = list(cm.planned)
    return min(cm.total_seconds(dict(zip(names, combo)))
               for combo in itertools.product(*(all_strategies(cm, n) for n in names)))


def two_heads(width: int = 16, heads: tuple[int, ...] = (8, 4), batch: int = 8) -> CostModel:
    """A tree: a Gemm trunk whose output feeds one Gemm head per entry of ``heads`` (fan-out, no
    reconvergence), each head a graph output."""
    g = GraphBuilder("two_heads")
    x = g.input("input", TensorProto.FLOAT, ["batch", width])
    trunk = g.gemm(x, "trunk", "trunk", width, width)
    for i, h in enumerate(heads):
        y = g.gemm(trunk, f"head{i}", f"head{i}", width, h)
        g.output(y, TensorProto.FLOAT, ["batch", h])
    return g.model("tree"), {"batch": batch}


def machine(levels) -> Machine:
    return Machine.from_dict({"name": "t", "device": {"name": "d", "peak_flops": 1e14, "memory_bytes": 8e10},
                              "levels": [{"name": n, "arity": a, "bandwidth_Bps": b, "latency_s": lat}
                                         for n, a, b, lat in levels]})


MACHINES = [machine([("gpu", 2, 2e11, 2e-6)]), machine([("node", 2, 1e9, 1e-5), ("gpu", 2, 2e11, 2e-6)]),
            machine([("gpu", 4, 1e10, 2e-6)])]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.sampled_from([4, 8, 16, 64]), min_size=2, max_size=4),
       batch=st.sampled_from([2, 4, 8, 32]), relu=st.booleans(), m=st.integers(0, len(MACHINES) - 1),
       mode=st.sampled_from(["train", "infer"]))
def test_dp_equals_brute_force_on_chains(widths, batch, relu, m, mode):
    cm = CostModel(models.graph_of(models.gemm_mlp(widths, batch=batch, relu=relu)), MACHINES[m], mode)
    assume(len(cm.planned) <= 4)  # keep the enumeration small
    assert dp_applies(cm)
    plan, predicted = plan_dp(cm)
    best = brute_force(cm)
    assert cm.total_seconds(plan) == pytest.approx(best, rel=REL)
    assert predicted == pytest.approx(best, rel=REL)  # the DP adds up what the evaluator does


@pytest.mark.parametrize("heads", [(8, 4), (8, 8, 4)], ids=["2 heads", "3 heads"])
@pytest.mark.parametrize("m", range(len(MACHINES)))
def test_dp_equals_brute_force_on_a_tree(heads, m):
    model, binds = two_heads(heads=heads)
    cm = cost_model_for(import_model(model, binds), MACHINES[m], PlanOptions())
    tensors = forest(cm)
    assert tensors is not None and max(len(t.consumers) for t in tensors.values()) == len(heads)
    plan, predicted = plan_dp(cm)
    best = brute_force(cm)
    assert cm.total_seconds(plan) == pytest.approx(best, rel=REL)
    assert predicted == pytest.approx(best, rel=REL)


def test_graphs_with_cycles_go_to_the_integer_program():
    cm = cost_model_for(import_model(synthetic.transformer(1, 128, 4, 512), {"batch": 4, "seq": 16}),
                        MACHINES[0], PlanOptions())
    assert forest(cm) is None  # the residual connections close cycles
    assert not dp_applies(cm)
    cm.sequence_parallel = True  # a term the DP does not model: the chain goes to the integer program
    chain = cost_model_for(import_model(synthetic.mlp([8, 8, 8]), {"batch": 8}), MACHINES[0], PlanOptions())
    assert dp_applies(chain)
    chain.sequence_parallel = True
    assert not dp_applies(chain)


def test_tables_equal_the_scalar_redistribution_price():
    cm = cost_model_for(import_model(synthetic.cnn_chain([3, 8, 16]), {"batch": 8}), MACHINES[1], PlanOptions())
    rng = random.Random(0)
    edge = next(e for e in cm.edges if cm.info[e.producer].op.op_type == "Conv")
    la = sorted({cm.layout(e.producer, e.out_index, s) for e in [edge] for s in all_strategies(cm, e.producer)})
    lb = sorted({cm.layout(edge.consumer, edge.in_index, s) for s in all_strategies(cm, edge.consumer)})
    pairs = [(a, b) for a in la for b in lb]
    rng.shuffle(pairs)
    for grad in (True, False):
        table = seconds(cm, edge.nbytes, grad, np.array(la)[:, None, :], np.array(lb)[None, :, :])
        for a, b in pairs[:400]:
            assert table[la.index(a), lb.index(b)] == pytest.approx(
                cm.redistribution_seconds(edge.nbytes, a, b, grad), rel=1e-12, abs=1e-18)


def test_the_cnn_chain_on_16_devices_is_accepted_and_solved():
    # The case issue 13 names: a CNN chain (3-64-128-256, batch 32) on 2 x 8 devices, 4 cuts;
    # the integer program over pairs of layouts needed millions of variables.
    cm = cost_model_for(import_model(synthetic.cnn_chain([3, 64, 128, 256]), {"batch": 32}),
                        machine([("node", 2, 1.25e9, 1e-5), ("gpu", 8, 3e11, 2e-6)]), PlanOptions())
    assert cm.machine.num_devices == 16 and dp_applies(cm)
    require_exact_feasible(cm)  # accepted by the guard
    exact = cm.total_seconds(plan_exact(cm).strategies)
    assert exact <= cm.total_seconds(search(cm, "drec+").strategies) * (1 + REL)
    assert exact <= cm.total_seconds(data_parallel_strategies(cm)) * (1 + REL)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_exact_never_above_drec_plus_on_random_chains(seed):
    rng = random.Random(seed)
    widths = [rng.choice([64, 256, 1024, 4096]) for _ in range(rng.randint(3, 6))]
    levels = [("node", 2, rng.choice([1e9, 1e10, 1e11]), 1e-5)] if rng.random() < 0.5 else []
    levels.append(("gpu", rng.choice([2, 4]), rng.choice([1e10, 3e11]), 2e-6))
    cm = cost_model_for(import_model(synthetic.mlp(widths), {"batch": rng.choice([8, 32, 256])}), machine(levels),
                        PlanOptions())
    exact = cm.total_seconds(plan_exact(cm).strategies)
    assert exact <= cm.total_seconds(search(cm, "drec+").strategies) * (1 + REL)
    assert exact <= cm.total_seconds(data_parallel_strategies(cm)) * (1 + REL)


def test_the_guard_accepts_a_50_operator_chain_on_64_devices():
    # issue 13's target size: 25 Gemm + 24 ReLU on 8 x 8 devices (six cuts) has about 120,000
    # strategies, above the integer program's 20,000 but within the dynamic program's 250,000
    cm = cost_model_for(import_model(synthetic.mlp([1024, 4096, 2048, 512] * 6 + [1024, 4096]), {"batch": 256}),
                        machine([("node", 8, 2.5e10, 1e-5), ("gpu", 8, 3e11, 2e-6)]), PlanOptions())
    assert len(cm.planned) == 49 and cm.machine.num_devices == 64 and dp_applies(cm)
    assert not exact_feasible(cm, EXACT_MAX_STRATEGIES)
    require_exact_feasible(cm)


def test_a_term_the_program_does_not_add_up_is_reported(monkeypatch):
    # were the evaluator to price a term the dynamic program leaves out, the plan says so
    cm = cost_model_for(import_model(synthetic.mlp([8, 8, 8]), {"batch": 8}), MACHINES[0], PlanOptions())
    assert plan_exact(cm).notes == ["exact by dynamic programming over layouts (the graph is a chain or a tree)"]
    real = cm.total_seconds
    monkeypatch.setattr(cm, "total_seconds", lambda plan: real(plan) + 1e-6)
    assert "may not be optimal" in plan_exact(cm).notes[-1]


def test_the_guard_accepts_the_cnn_chain_on_64_devices():
    # issue 13's CNN chain (bench/quality.py) on 8 x 8 devices: 12 operators, 213,038 strategies
    # (counted by listing them in test_app's count check); within the dynamic program's 250,000
    cm = cost_model_for(import_model(synthetic.cnn_chain([3, 64, 128, 256]), {"batch": 32}),
                        machine([("node", 8, 2.5e10, 1e-5), ("gpu", 8, 3e11, 2e-6)]), PlanOptions())
    assert len(cm.planned) == 12 and dp_applies(cm)
    assert not exact_feasible(cm, 200_000)
    require_exact_feasible(cm)


@pytest.mark.parametrize("m", [1, 2])
def test_a_tree_bounded_by_its_own_optimum_still_returns_it(m):
    # subtrees are pruned by the floors of the operators outside them: with three heads below the
    # trunk, the floors of sibling subtrees must add up correctly for the optimum to survive
    model, binds = two_heads(heads=(8, 8, 4))
    cm = cost_model_for(import_model(model, binds), MACHINES[m], PlanOptions())
    names = list(cm.planned)
    best = min((dict(zip(names, combo)) for combo in itertools.product(*(all_strategies(cm, n) for n in names))),
               key=cm.total_seconds)
    plan, predicted = plan_dp(cm, (best,))
    assert cm.total_seconds(plan) == pytest.approx(cm.total_seconds(best), rel=REL)
    assert predicted == pytest.approx(cm.total_seconds(best), rel=REL)
