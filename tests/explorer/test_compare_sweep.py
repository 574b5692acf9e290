"""The Compare page's sweep over device counts: with the cache's pool of planning processes the
counts are planned side by side, and the sweep is the one planned count by count."""

from __future__ import annotations

import pandas as pd

from explorer.cache import PlanCache, PlanRequest
from explorer.plan_pool import PlanPool
from explorer.sources import sample_source
from explorer.views.compare import sweep
from planner.api import PlanOptions
from planner.machine.tree import load_preset

COUNTS = (4, 8, 16, 32)


def _request(cache: PlanCache):
    src, bindings = sample_source("mlp"), {"batch": 64}
    request = PlanRequest(src, bindings, load_preset("a100_2x8_slow"), PlanOptions(algorithm="drec"))
    return request, cache.graph(src, bindings)


def test_a_sweep_through_the_pool_is_the_sweep_planned_count_by_count():
    alone = PlanCache()
    request, graph = _request(alone)
    expected = sweep(alone, request, graph, COUNTS)
    pooled = PlanCache()
    pooled.pool = PlanPool(workers=2)
    try:
        request, graph = _request(pooled)
        seen = []
        got = sweep(pooled, request, graph, COUNTS, progress=lambda f, msg: seen.append(f))
    finally:
        pooled.pool.shutdown()
    pd.testing.assert_frame_equal(got, expected)
    assert sorted(seen) == seen and seen[-1] == 1.0 and len(seen) == len(COUNTS)  # one step per count planned
    assert all(pooled.has_result(request.on(machine=request.machine.with_level(0, arity=n // 8)))
               for n in COUNTS if n >= 8)
