"""Planning in worker processes (explorer/plan_pool.py): the same plan as on the script thread,
a graph that still re-binds its batch, and the planner's errors unchanged."""

from __future__ import annotations

import pytest

from explorer import core as ex
from planner.options import PlanOptions
from planner.machine.tree import load_preset
from explorer.plan_pool import PlanPool


@pytest.fixture(scope="module")
def pool():
    p = PlanPool(workers=1)
    yield p
    p.shutdown()


def test_the_pool_plans_what_the_script_thread_plans(pool):
    src, bindings = ex.sample_source("mlp"), {"batch": 64}
    machine = load_preset("dgx_a100")
    local = ex.PlanCache()
    remote = ex.PlanCache()
    remote.pool = pool
    for options in (PlanOptions(algorithm="drec"), PlanOptions(algorithm="drec+", pipeline_stages=2, micro_batches=4)):
        a = local.result(src, bindings, local.graph(src, bindings), machine, options)
        g = remote.graph(src, bindings)
        b = remote.result(src, bindings, g, machine, options)
        assert b.plan.strategies == a.plan.strategies
        assert b.total_seconds == pytest.approx(a.total_seconds, rel=1e-12)
        assert (b.schedule.stages, b.schedule.micro_batches) == (a.schedule.stages, a.schedule.micro_batches)
        assert remote.rebinder(src).with_batch(b.graph, 32).operators  # the returned graph re-binds
    assert remote.has_result(src, bindings, machine, PlanOptions(algorithm="drec"))  # cached in the main process


def test_an_upload_is_planned_from_its_weight_free_bytes(pool):
    data = (ex.SAMPLES_DIR / "mlp.onnx").read_bytes()
    src = ex.upload_source("mine.onnx", data)
    cache = ex.PlanCache()
    cache.pool = pool
    g = cache.graph(src, {"batch": 16}, data)
    r = cache.result(src, {"batch": 16}, g, load_preset("dgx_a100"), PlanOptions(algorithm="data_parallel"))
    assert r.graph.name == "mine.onnx" and r.machine.num_devices == 8


def test_the_planners_errors_come_back_unchanged(pool):
    src = ex.sample_source("resnet50")
    cache = ex.PlanCache()
    cache.pool = pool
    g = cache.graph(src, {"batch": 8})
    local_error = None
    try:
        ex.PlanCache().result(src, {"batch": 8}, g, load_preset("dgx_a100"), PlanOptions(algorithm="megatron"))
    except ValueError as exc:
        local_error = exc
    assert local_error is not None
    with pytest.raises(type(local_error)) as caught:
        cache.result(src, {"batch": 8}, g, load_preset("dgx_a100"), PlanOptions(algorithm="megatron"))
    assert str(caught.value) == str(local_error)
