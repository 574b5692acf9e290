"""The batch of a parameter broadcast to it (ViT's class token), and the data-parallel baseline.

The trial's tiny ViT (issue 15) was planned "DP 512", shown 2.4x faster than pure data
parallelism. Priced term by term, the two layouts differed at one operator: the ``Expand`` of the
class token to ``(batch, 1, hidden)``. Its batch axis is read from no input (only the shape says
it), so the batch trace did not reach it, and the baseline left it replicated: its output's
gradient, coming back batch-split from the ``Concat``, had to be all-gathered across the 512
devices, 20.2 us of the baseline's 32.3 us (batch 512). The search split the broadcast axis and
named it "other". Data parallelism runs the whole model on each device's samples, class token
included; :func:`planner.model.batch_trace.broadcast_batch` now gives such a broadcast the batch.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from planner.cost.baseline import data_parallel_baseline, data_parallel_strategies
from planner.cost.result import cost_model_for
from planner.cost.schedule import price_schedule
from planner.machine.split import split_machine
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model
from planner.options import PlanOptions

B, S, H = 16, 4, 8


def _class_token_model():
    """x (B, S, H) -> concat(expand(cls, (B, 1, H)), x) on the tokens -> @ transpose(W)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((1, 1, H)).astype(np.float32), "cls"),
             numpy_helper.from_array(np.array([B, 1, H], dtype=np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((H, H)).astype(np.float32), "W")]
    nodes = [helper.make_node("Expand", ["cls", "shape"], ["tok"], name="expand"),
             helper.make_node("Concat", ["tok", "x"], ["cat"], name="concat", axis=1),
             helper.make_node("Transpose", ["W"], ["Wt"], name="transpose", perm=[1, 0]),
             helper.make_node("MatMul", ["cat", "Wt"], ["y"], name="matmul")]
    graph = helper.make_graph(nodes, "cls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, H])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, S + 1, H])], inits)
    return import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_the_broadcast_class_token_carries_the_batch():
    graph = _class_token_model()
    dims = graph.batch_dims()
    expand = graph.operators["expand"]
    assert dims["expand"] is not None and expand.dims[dims["expand"]] == B  # 16 samples, as the data
    assert dims["concat"] is not None and dims["matmul"] is not None
    assert dims["transpose"] is None  # the weight's transpose is the same on every device: no batch


def test_data_parallelism_splits_the_class_token_and_redistributes_nothing():
    """Every operator but the weight's transpose splits the batch on the 8 GPUs, so no tensor
    changes layout: the baseline redistributes nothing. The layout it had before (the class token
    replicated) pays, by hand, one all-gather of the token's gradient, B x 1 x H fp32 = 512 bytes,
    over the 8 GPUs (5 us, 300 GB/s): 5e-6 + 7/8 x 512 / 300e9 s = 5.0014933 us."""
    graph = _class_token_model()
    machine = load_preset("dgx_a100")
    options = PlanOptions()
    cm = cost_model_for(graph, machine, options, "none", 0)
    dp = data_parallel_strategies(cm)
    assert dp["expand"] == (graph.batch_dims()["expand"],) * len(cm.cuts)  # 2 x 2 x 2 GPUs
    assert cm.evaluate(dp).term_seconds("redistribution") == 0.0
    before = dict(dp, expand=(None,) * len(cm.cuts))
    gather = 5e-6 + 7 / 8 * B * H * 4 / 300e9
    assert np.isclose(cm.evaluate(before).term_seconds("redistribution"), gather, rtol=1e-9, atol=0)
    seconds, _ = data_parallel_baseline(cm, options.optimizer)
    old = price_schedule(cm, before, split_machine(machine, 1), 1, optimizer=options.optimizer).iteration_seconds
    # the old baseline also expanded all 16 samples on each GPU instead of 2: a few ns more
    assert gather <= old - seconds < gather + 1e-8
