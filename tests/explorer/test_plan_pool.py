"""Planning in worker processes (explorer/plan_pool.py): the same plan as on the script thread,
a graph that still re-binds its batch, and the planner's errors unchanged."""

from __future__ import annotations

import pytest

from explorer.cache import PlanCache, PlanRequest
from explorer.sources import SAMPLES_DIR, sample_source, upload_source
from planner.api import PlanOptions
from planner.machine.tree import load_preset
from explorer.cache_budget import deep_size
from explorer.plan_pool import PlanPool
from planner.onnx.importer import ModelImportError, import_model


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
        assert remote.rebinder(src).with_batch(b.graph, 32).operators  # the returned graph re-binds
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


def test_models_are_imported_in_the_workers_and_results_share_the_servers_graph(pool, monkeypatch):
    def no_import(*args, **kwargs):
        raise AssertionError("the server process imported a model")
    import explorer.cache

    monkeypatch.setattr(explorer.cache, "import_model", no_import)
    src, bindings = sample_source("bert_base"), {"batch": 64, "seq": 128}
    cache = PlanCache()
    cache.pool = pool
    g = cache.graph(src, bindings)
    assert len(g.operators) == len(import_model(src.path, bindings).operators)
    r = cache.result(PlanRequest(src, bindings, load_preset("dgx_a100"), PlanOptions(algorithm="drec")), g)
    assert r.graph is g  # not a second copy of the graph per result
    held = cache.bytes_held()  # charged at least what each holds, though nothing walked them here
    assert deep_size(g) <= held["graphs"] <= 2 * deep_size(g)
    assert deep_size(r, exclude=(g,)) <= held["results"] <= 2 * deep_size(r, exclude=(g,))
    assert cache.rebinder(src).with_batch(g, 16).operators["layer0.attn.q"].flops \
        == 2 * 16 * 128 * 768 * 768  # re-bound here: batch x seq x hidden x hidden, twice


def test_an_import_error_in_a_worker_is_the_importers_message(pool):
    data = b"not an onnx model at all"
    src = upload_source("junk.onnx", data)
    cache = PlanCache()
    cache.pool = pool
    with pytest.raises(ModelImportError) as remote:
        cache.graph(src, {}, data)
    with pytest.raises(ModelImportError) as local:
        PlanCache().graph(src, {}, data)
    assert str(remote.value) == str(local.value)
