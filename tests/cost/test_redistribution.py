"""Redistribution once per (tensor, target layout), not once per consumer edge (issue 10, item 7),
in the evaluator and in every search alike.

The graph: ``h = x @ W0`` (mm0, dims m, n, k) read by three Softmax over its last axis (which
they cannot split: dims d0 = m, d1 = n fixed). On two devices, mm0 split on n leaves h split by
columns; a Softmax split on d0 needs it split by rows. By hand (``CostModel.redistribution_fractions``):
each device holds half of h's columns and needs half of its rows, so it already has a quarter
of what it needs and fetches ``1/2 - 1/4 = 1/4`` of h, in one superstep; the gradient goes back
the same way. A replicated Softmax needs all of h: it fetches the other half (1/2 of h), and
its gradient needs no exchange (each device slices its columns).
"""

from __future__ import annotations

import itertools

import pytest
from onnx import TensorProto, helper

import models  # tests/models.py
from planner.cost.model import CostModel
from planner.onnx.importer import import_model
from planner.search.drec import plan_drec
from planner.search.exact import all_strategies, plan_exact

B, K, N = 1024, 1024, 4096
H_BYTES = B * N * 4
SOFTMAX = ["softmax_a", "softmax_b", "softmax_c"]


def fan_out(b=B, k=K, n=N):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])
    outs = [helper.make_tensor_value_info(f"y{c}", TensorProto.FLOAT, ["batch", n]) for c in "abc"]
    nodes = [helper.make_node("MatMul", ["x", "W0"], ["h"], name="mm0")]
    nodes += [helper.make_node("Softmax", ["h"], [f"y{c}"], name=f"softmax_{c}", axis=-1) for c in "abc"]
    graph = helper.make_graph(nodes, "fan_out", [x], outs, [models._weight("W0", [k, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return import_model(model, {"batch": b})


@pytest.fixture(scope="module")
def cm():
    return CostModel(fan_out(), models.one_level(2), bucket_mb=0)


def redistribution(cm, plan):
    total = sum(cm.evaluate(plan).redistribution.values())
    return total[1], total[2]  # bytes and supersteps on the one level


def test_three_consumers_in_one_layout_pay_one_conversion(cm):
    plan = {"mm0": ("n",), **{s: ("d0",) for s in SOFTMAX}}
    nbytes, steps = redistribution(cm, plan)
    assert nbytes == pytest.approx(2 * H_BYTES / 4)  # forward and gradient, once (was 3x)
    assert steps == pytest.approx(2)
    payers = [n for n, v in cm.evaluate(plan).redistribution.items() if v.any()]
    assert len(payers) == 1


def test_consumers_in_two_layouts_pay_two_conversions(cm):
    plan = {"mm0": ("n",), "softmax_a": ("d0",), "softmax_b": ("d0",), "softmax_c": (None,)}
    nbytes, steps = redistribution(cm, plan)
    assert nbytes == pytest.approx(2 * H_BYTES / 4 + H_BYTES / 2)
    assert steps == pytest.approx(3)


def brute_force(cm):
    names = list(cm.planned)
    plans = (dict(zip(names, c)) for c in itertools.product(*(all_strategies(cm, n) for n in names)))
    return min(plans, key=cm.total_seconds)


def test_every_search_prices_the_shared_conversion_once(cm):
    # Splitting mm0 on n avoids all-reducing W0's gradient (K*N*4 B: 2 * 1/2 * 16.8 MB) for one
    # all-gather of h (1/2 of 16.8 MB) shared by the three Softmax. Charged per edge (three
    # all-gathers) that lost to data parallelism; charged once it wins.
    best = brute_force(cm)
    assert best == {"mm0": ("n",), **{s: (None,) for s in SOFTMAX}}
    data_parallel = {"mm0": ("m",), **{s: ("d0",) for s in SOFTMAX}}
    assert cm.total_seconds(best) < cm.total_seconds(data_parallel)
    for plan in (plan_exact(cm), plan_drec(cm), plan_drec(cm, improved=False)):
        assert cm.total_seconds(plan.strategies) == pytest.approx(cm.total_seconds(best), rel=1e-12), plan.algorithm
    # the search objective (per-prefix sum) agrees with the evaluator
    assert cm.evaluate_prefix(best) == pytest.approx(cm.total_seconds(best), rel=1e-12)
