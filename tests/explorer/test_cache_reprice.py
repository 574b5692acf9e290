"""The explorer's cache re-prices the plan in use on a what-if machine (PlanCache.repriced):
the current plan's strategies, priced as scoring its file on that machine prices them."""

from __future__ import annotations

import math

from explorer.cache import PlanCache, PlanRequest
from explorer.sources import sample_source
from planner.api import PlanOptions, evaluate_plan
from planner.machine.tree import Machine, load_preset
from planner.plans.report import plan_to_json


def test_the_cache_reprices_the_plan_in_use_on_a_what_if_machine():
    src, bindings, options = sample_source("mlp"), {"batch": 64}, PlanOptions(algorithm="drec+")
    machine = load_preset("dgx_a100")
    data = machine.to_dict()
    data["levels"][-1]["bandwidth_Bps"] /= 20  # NVLink 300 GB/s -> 15 GB/s
    what_if = Machine.from_dict(data)
    cache = PlanCache()
    graph = cache.graph(src, bindings)
    current = PlanRequest(src, bindings, machine, options)
    fast = cache.repriced(current.on(machine=what_if), graph, current)
    in_use = cache.result(current, graph)
    assert fast.plan.strategies == in_use.plan.strategies
    slow = evaluate_plan(graph, what_if, plan_to_json(in_use), in_use.options, rebinder=cache.rebinder(src))
    assert math.isclose(fast.total_seconds, slow.total_seconds, rel_tol=1e-9)
    assert not math.isclose(fast.total_seconds, in_use.total_seconds, rel_tol=1e-9)  # the slower link shows
    assert cache.repriced(current.on(machine=what_if), graph, current) is fast  # cached
