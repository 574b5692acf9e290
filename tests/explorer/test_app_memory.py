"""Nothing heavy kept by the explorer (issue 16 item 3): an upload's weights are dropped (its
shapes kept, the batch re-binds from the weight-free model) and every cache is bounded by the
bytes its entries keep alive."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from explorer import upload as app_upload
from explorer.cache import PlanCache, _LRU
from explorer.cache_budget import deep_size
from planner.onnx.importer import import_model, model_sha256

WIDTH = 512  # one weight: 512 x 512 float32 = 1 MiB


@pytest.fixture(scope="module")
def heavy() -> bytes:
    """Two Gemm layers with real float32 weights (2 MiB) and a symbolic batch."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    inits = [numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH), dtype=np.float32), "W0"),
             numpy_helper.from_array(rng.standard_normal((WIDTH, 16), dtype=np.float32), "W1"),
             numpy_helper.from_array(np.array([-1, WIDTH], dtype=np.int64), "shape")]
    nodes = [helper.make_node("Gemm", ["x", "W0"], ["h"], name="fc0"),
             helper.make_node("Reshape", ["h", "shape"], ["h2"], name="reshape"),
             helper.make_node("Gemm", ["h2", "W1"], ["y"], name="fc1")]
    model = helper.make_model(helper.make_graph(nodes, "heavy", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def summary(graph) -> tuple:
    return tuple(sorted((n, o.op_type, tuple(sorted(o.dims.items())), o.flops) for n, o in graph.operators.items()))


def test_weight_free_keeps_shapes_and_drops_the_data(heavy):
    small = app_upload.weight_free(heavy)
    assert len(heavy) > 4 * 512 * 512  # the two weights' 4 * (512*512 + 512*16) bytes
    assert len(small) < 2_000
    model = onnx.ModelProto.FromString(small)
    w0 = next(t for t in model.graph.initializer if t.name == "W0")
    assert list(w0.dims) == [WIDTH, WIDTH] and w0.data_location == TensorProto.EXTERNAL and not w0.raw_data
    shape = next(t for t in model.graph.initializer if t.name == "shape")  # a shape constant stays inline
    assert numpy_helper.to_array(shape).tolist() == [-1, WIDTH]
    for batch in (8, 96):
        a, b = import_model(heavy, {"batch": batch}), import_model(small, {"batch": batch})
        assert summary(a) == summary(b)
        assert b.operators["fc0"].flops == 2 * batch * WIDTH * WIDTH  # worked out by hand
        assert b.summary()["parameters"] == WIDTH * WIDTH + WIDTH * 16


def test_an_upload_keeps_no_weights_and_rebinds_the_batch(heavy):
    cache = PlanCache()
    source, small, bindings = app_upload.accept_upload("heavy.onnx", heavy, cache, {"batch": 64})
    assert source.sha256 == model_sha256(heavy)  # the identity of the file as uploaded
    assert bindings == {"batch": 64} and len(small) < 2_000
    graph = cache.graph(source, bindings, small)
    assert deep_size(graph) < 1 * 2**20  # far less than the 2 MiB of weights (the graph keeps its ModelProto)
    assert sum(cache.bytes_held().values()) < 1 * 2**20
    rebound = cache.rebinder(source).with_batch(graph, 32)  # what a pipeline's micro-batches do
    assert rebound.operators["fc0"].flops == 2 * 32 * WIDTH * WIDTH
    assert summary(rebound) == summary(import_model(heavy, {"batch": 32}))


def test_deep_size_counts_what_a_value_holds():
    big = np.zeros(1_000_000)  # 8 MB
    assert 8_000_000 <= deep_size(big) < 8_001_000
    assert 8_000_000 <= deep_size({"a": [big, big]}) < 8_002_000  # counted once
    payload = b"x" * 3_000_000
    holder = (lambda: payload)  # a closure: charged for its cell, not for the module's globals
    assert 3_000_000 <= deep_size(holder) < 3_010_000
    model = onnx.ModelProto()
    model.graph.initializer.add().raw_data = b"\0" * 1_000_000
    assert deep_size(model) >= 1_000_000  # protobuf messages by their size


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 100)), max_size=40), st.integers(1, 150))
def test_lru_by_bytes_stays_within_its_budget(puts, budget):
    lru = _LRU(float("inf"), weight=lambda v: v, max_weight=budget)
    for key, weight in puts:
        lru.put(key, weight)
        weights = [w for (_, w) in lru.items.values()]
        assert lru.total == sum(weights)
        assert lru.total <= budget or len(lru) == 1  # only the newest entry may exceed it alone
        assert lru.get(key) == weight  # the newest always stays


@pytest.mark.parametrize("name", ["mlp", "vgg16", "resnet50", "bert_base", "moe"])
def test_pickled_size_bounds_what_a_graph_and_its_results_hold(name):
    """What the explorer charges an entry planned in a worker (explorer.plan_pool: a walk-free
    multiple of its pickle) is at least what walking the unpickled entry finds, and within 2x of
    it; a result is charged without the graph the graph table already holds."""
    import io
    import pickle

    from explorer.cache_budget import pickled_size
    from explorer.plan_pool import _dumps, _ResultUnpickler
    from planner.api import PlanOptions
    from planner.machine.tree import load_preset

    from explorer.cache import PlanRequest
    from explorer.sources import bindings_for, sample_source

    src = sample_source(name)
    cache = PlanCache()
    bindings = bindings_for(cache.symbolic_dims(src), {"batch": 32, "seq": 128})
    made = cache.graph(src, bindings)
    payload = _dumps(made)
    graph = pickle.loads(payload)
    assert deep_size(graph) <= pickled_size(payload) <= 2 * deep_size(graph)
    for algorithm in ("drec+", "data_parallel"):
        result = cache.result(PlanRequest(src, bindings, load_preset("dgx_a100"), PlanOptions(algorithm=algorithm)), made)
        payload = _dumps(result, made)
        received = _ResultUnpickler(io.BytesIO(payload), graph).load()
        assert received.graph is graph
        held = deep_size(received, exclude=(graph,))
        assert held <= pickled_size(payload) <= 2 * held


def test_deep_size_leaves_out_what_it_is_told_to():
    shared = np.zeros(1_000_000)  # 8 MB, held elsewhere
    own = np.zeros(10_000)  # 80 KB
    assert 80_000 <= deep_size({"a": shared, "b": own}, exclude=(shared,)) < 82_000
