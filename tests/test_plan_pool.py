"""Planning in worker processes (explorer/plan_pool.py): the same plan as on the script thread,
a graph that still re-binds its batch, and the planner's errors unchanged."""

from __future__ import annotations

import pytest

from explorer.cache import PlanCache, PlanRequest
from explorer.sources import SAMPLES_DIR, sample_source, upload_source
from planner.api import PlanOptions
from planner.machine.tree import load_preset
from explorer.plan_pool import PlanPool


@pytest.fixture(scope="module")
def pool():
    p = PlanPool(workers=1)
    yield p
    p.shutdown()


def test_the_pool_plans_what_the_script_thread_plans(pool):
    src, bindings = sample_source("mlp"), {"batch": 64}
    machine = load_preset("dgx_a100")
    local = PlanCache()
    remote = PlanCache()
    remote.pool = pool
    for options in (PlanOptions(algorithm="drec"), PlanOptions(algorithm="drec+", pipeline_stages=2, micro_batches=4)):
        a = local.result(PlanRequest(src, bindings, machine, options), local.graph(src, bindings))
        g = remote.graph(src, bindings)
        b = remote.result(PlanRequest(src, bindings, machine, options), g)
        assert b.plan.strategies == a.plan.strategies
        assert b.total_seconds == pytest.approx(a.total_seconds, rel=1e-12)
        assert (b.schedule.stages, b.schedule.micro_batches) == (a.schedule.stages, a.schedule.micro_batches)
        assert b.graph.reimport is not None
        assert b.graph.with_batch(32).operators  # re-binding works on the returned graph
    assert remote.has_result(PlanRequest(src, bindings, machine, PlanOptions(algorithm="drec")))  # cached in the main process


def test_an_upload_is_planned_from_its_weight_free_bytes(pool):
    data = (SAMPLES_DIR / "mlp.onnx").read_bytes()
    src = upload_source("mine.onnx", data)
    cache = PlanCache()
    cache.pool = pool
    g = cache.graph(src, {"batch": 16}, data)
    r = cache.result(PlanRequest(src, {"batch": 16}, load_preset("dgx_a100"), PlanOptions(algorithm="data_parallel")), g)
    assert r.graph.name == "mine.onnx" and r.machine.num_devices == 8


def test_the_planners_errors_come_back_unchanged(pool):
    src = sample_source("resnet50")
    cache = PlanCache()
    cache.pool = pool
    g = cache.graph(src, {"batch": 8})
    local_error = None
    try:
        PlanCache().result(PlanRequest(src, {"batch": 8}, load_preset("dgx_a100"), PlanOptions(algorithm="megatron")), g)
    except ValueError as exc:
        local_error = exc
    assert local_error is not None
    with pytest.raises(type(local_error)) as caught:
        cache.result(PlanRequest(src, {"batch": 8}, load_preset("dgx_a100"), PlanOptions(algorithm="megatron")), g)
    assert str(caught.value) == str(local_error)
