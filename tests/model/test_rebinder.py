"""Re-binding the batch is an explicit Rebinder the caller passes, not a closure on the graph."""

from __future__ import annotations

import pickle

import pytest

import models  # tests/models.py
from planner.api import plan_model
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions

WIDTH = 64


def mlp():
    return models.gemm_mlp([WIDTH, WIDTH, WIDTH], batch="batch", bias=False)


def test_a_graph_holds_no_function_and_pickles_as_it_is():
    graph = import_model(mlp(), {"batch": 32})
    assert not any(callable(v) for v in vars(graph).values())
    again = pickle.loads(pickle.dumps(graph))
    assert again.flops_forward == graph.flops_forward == 2 * 2 * 32 * WIDTH * WIDTH  # two 64x64 layers, by hand


def test_the_rebinder_binds_the_batch_and_keeps_the_other_bindings():
    graph = import_model(mlp(), {"batch": 32})
    micro = rebinder_for(mlp()).with_batch(graph, 8)
    assert micro.bindings == {"batch": 8}
    assert micro.flops_forward == 2 * 2 * 8 * WIDTH * WIDTH
    assert rebinder_for(mlp()).with_batch(graph, 32) is graph  # the same batch: nothing to import


def test_micro_batches_need_the_rebinder_and_plan_with_it():
    graph = import_model(mlp(), {"batch": 32})
    options = PlanOptions(algorithm="data_parallel", pipeline_stages=1, micro_batches=4)
    with pytest.raises(ValueError, match="rebinder"):
        plan_model(graph, models.one_level(2), options)
    result = plan_model(graph, models.one_level(2), options, rebinder=rebinder_for(mlp()))
    assert result.schedule.micro_batches == 4 and result.schedule.micro_batch_size == 8
    assert result.cost_model.graph.flops_forward * 4 == graph.flops_forward


def test_the_rebinder_keeps_the_graphs_it_imported():
    """A configuration search, a what-if change and a sweep ask for the same micro-batch sizes
    again: the second request is the graph already imported, and it is the graph a fresh import
    gives (FLOPs by hand: two 64 x 64 layers on 8 samples)."""
    from planner.model.rebind import REBOUND_GRAPHS_KEPT

    graph = import_model(mlp(), {"batch": 32})
    rebinder = rebinder_for(mlp())
    eight = rebinder.with_batch(graph, 8)
    assert rebinder.with_batch(graph, 8) is eight
    assert eight.flops_forward == 2 * 2 * 8 * WIDTH * WIDTH
    sizes = [1, 2, 4, 16] + list(range(33, 33 + REBOUND_GRAPHS_KEPT))
    for b in sizes:  # more sizes than it keeps: the least recently used go first
        assert rebinder.with_batch(graph, b).bindings == {"batch": b}
    again = rebinder.with_batch(graph, 8)
    assert again is not eight and again.flops_forward == eight.flops_forward
    assert rebinder.with_batch(graph, sizes[-1]) is rebinder.with_batch(graph, sizes[-1])
