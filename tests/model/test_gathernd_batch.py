"""The batch through a GatherND with per-sample indices (the attention mask of dynamo-exported
GPT-2: ``mask[arange(batch), ...]``), found by a new-user trial: the data-parallel baseline left
the mask's operators unsplit (109 us against 33.7 us priced by hand as ``--tp 1 --dp 512``)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from planner.options import PlanOptions
from planner.api import plan_model
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model

B, S = 16, 8


def _model(rows: int):
    """out = GatherND(mask, idx) * x, idx [rows, S, 2] a constant; rows == B: per-sample indices."""
    idx = np.stack(np.meshgrid(np.arange(rows) % B, np.arange(S), indexing="ij"), axis=-1).astype(np.int64)
    nodes = [helper.make_node("GatherND", ["mask", "idx"], ["g"], name="gather"),
             helper.make_node("Mul", ["g", "x"], ["y"], name="mul")]
    graph = helper.make_graph(
        nodes, "gnd",
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [B, S]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, S])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, S])],
        initializer=[numpy_helper.from_array(idx, "idx")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_per_sample_gathernd_carries_the_batch_to_its_consumers():
    graph = import_model(_model(B))
    dims = graph.batch_dims()
    gather = graph.operators["gather"]
    # the output rows are the indices' leading axis, which has the data's batch rows
    assert dims["gather"] == gather.inputs[1].axes[0][0] and gather.dims[dims["gather"]] == B
    assert dims["mul"] is not None
    # pure data parallelism over 8 devices splits both operators 8 ways along the batch
    result = plan_model(graph, load_preset("dgx_a100"), PlanOptions(algorithm="data_parallel", mode="infer"))
    for name in ("gather", "mul"):
        strategy = result.plan.strategies[name]  # one dim per prime cut of the 8 GPUs: 2 x 2 x 2
        assert strategy == (dims[name],) * 3, (name, strategy)


def test_a_gather_of_other_rows_stops_the_batch():
    # 7 index rows for a batch of 16: a gather of tokens (as MoE routing), not per sample
    graph = import_model(_model(7))
    dims = graph.batch_dims()
    assert dims["gather"] not in (graph.operators["gather"].inputs[1].axes[0][0],)
