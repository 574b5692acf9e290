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
