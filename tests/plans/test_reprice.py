"""Re-pricing a plan on a machine whose links changed (planner.api.reprice_plan) gives what
scoring the plan's file on that machine gives (evaluate_plan, the second method), searching nothing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import models  # tests/models.py
from planner.api import evaluate_plan, plan_model, reprice_plan
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import ConfigError, PlanOptions
from planner.plans.report import plan_to_json

GPT2 = Path(__file__).resolve().parents[2] / "sample_models" / "gpt2_small.onnx"


@pytest.fixture(scope="module")
def planned():
    rebinder = rebinder_for(GPT2)
    graph = import_model(rebinder.model, {"batch": 32, "seq": 128})
    machine = models.two_level(4, 4, memory=4e9)  # small devices: the search climbs the memory ladder
    result = plan_model(graph, machine, PlanOptions(), rebinder=rebinder)
    return graph, machine, result, rebinder


@pytest.mark.parametrize("factors", [(0.1, 1.0, 0.1, 1.0), (1.0, 3.0, 7.0, 0.5), (40.0, 0.01, 1.0, 100.0)])
def test_repricing_equals_scoring_the_plan_file_on_the_new_machine(planned, factors):
    graph, machine, result, rebinder = planned
    b0, l0, b1, l1 = factors
    what_if = models.two_level(4, 4, models.B0 * b0, models.L0 * l0, models.B1 * b1, models.L1 * l1, memory=4e9)
    fast = reprice_plan(graph, result, what_if)
    slow = evaluate_plan(graph, what_if, plan_to_json(result), result.options, rebinder=rebinder)
    assert fast.plan.strategies == result.plan.strategies  # nothing searched
    assert (fast.schedule.stages, fast.schedule.micro_batches) == (result.schedule.stages, result.schedule.micro_batches)
    for a, b in ((fast.total_seconds, slow.total_seconds), (fast.memory.peak, slow.memory.peak),
                 (fast.data_parallel_seconds, slow.data_parallel_seconds),
                 (fast.cost.seconds()["total"], slow.cost.seconds()["total"])):
        assert math.isclose(a, b, rel_tol=1e-9), (a, b)
    assert not math.isclose(fast.total_seconds, result.total_seconds, rel_tol=1e-9)  # the links matter


def test_repricing_refuses_a_machine_of_another_shape(planned):
    graph, _, result, _ = planned
    with pytest.raises(ConfigError, match="re-pricing keeps the plan's machine levels"):
        reprice_plan(graph, result, models.two_level(2, 8, memory=4e9))


def test_repricing_refuses_a_context_parallel_plan(planned):
    graph, machine, result, _ = planned
    result.plan.context_parallel = 2  # as planner.search.context_parallel marks its plans
    try:
        with pytest.raises(ConfigError, match="context-parallel plan"):
            reprice_plan(graph, result, machine)
    finally:
        del result.plan.context_parallel
