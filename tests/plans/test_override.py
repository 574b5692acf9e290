"""Overriding one operator of a pipelined plan: priced with the plan's own stages and re-balanced
(issue 10 item 11). Before, only the re-balanced figure was shown, and it hid the change.

The chain: tests/models.gemm_mlp, Gemm layers x[b, w] @ W[w, w] (no bias), on 2 nodes x G GPUs
in 2 stages (one node each), so a stage plans on G GPUs (one cut of factor G).
"""

from __future__ import annotations

import pytest

import models  # tests/models.py
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.api import plan_model
from planner.cost.model import PlanError
from planner.machine.tree import Device, Level, Machine
from planner.plans.override import price_override

F = 1e14
GPU_BW, GPU_LAT = 2e11, 2e-6


def machine(gpus: int, gpu_bandwidth: float = GPU_BW, gpu_latency: float = GPU_LAT, node_bandwidth: float = 1e10,
            node_latency: float = 1e-5) -> Machine:
    return Machine("m", Device("d", F, 80e9), (Level("node", 2, node_bandwidth, node_latency),
                                              Level("gpu", gpus, gpu_bandwidth, gpu_latency)))


def data_parallel_pipeline(layers: int, width: int, batch: int, gpus: int, **kw):
    proto = models.gemm_mlp([width] * (layers + 1), batch="batch", bias=False)
    return plan_model(models.graph_of(proto, batch=batch), machine(gpus, **kw),
                      PlanOptions(pipeline_stages=2, micro_batches=2, algorithm="data_parallel"),
                      rebinder=rebinder_for(proto))


def test_stages_fixed_by_hand():
    # 4 layers of 64 x 64, batch 8 in 2 micro-batches of 4, 2 stages (fc0 fc1 | fc2 fc3), 2 GPUs
    # per stage splitting the batch. Replicating fc0 (the override) on a stage:
    # * fc0 computes all 4 samples of the micro-batch on each GPU: 3 passes x 2 x 4 x 64 x 64
    #   FLOPs = 98,304 FLOPs = 0.98304 ns, instead of half that;
    # * fc1 (still batch-split) sends the gradient of fc0's output back, which the replicated fc0
    #   needs whole: an all-gather of 4 x 64 fp32 = 1,024 bytes, 512 per GPU, over the GPU level:
    #   512 / 2e11 + 1 step x 2e-6 s = 2.00256 us.
    r = data_parallel_pipeline(4, 64, 8, 2)
    assert r.schedule.stage_of_op == {"fc0": 0, "fc1": 0, "fc2": 1, "fc3": 1}
    priced = price_override(r, "fc0", (None,))
    compute = 3 * 2 * 4 * 64 * 64 / F
    assert priced.op_seconds_after == pytest.approx(compute, rel=1e-12)
    grown = priced.fixed.schedule.stage_seconds[0] - r.schedule.stage_seconds[0]
    assert grown == pytest.approx(compute - compute / 2 + 512 / GPU_BW + GPU_LAT, rel=1e-9)
    assert priced.fixed.schedule.stage_seconds[1] == r.schedule.stage_seconds[1]  # the other stage is untouched
    assert priced.fixed.schedule.stage_of_op == r.schedule.stage_of_op
    # stage 0 was already the slowest (a tie): the iteration grows by (m + P - 1) = 3 slots of it
    # (plus the gradient sync, the longest stage's, which fc0 no longer joins)
    assert max(r.schedule.stage_seconds) == r.schedule.stage_seconds[0]
    slots = priced.fixed.total_seconds - max(priced.fixed.schedule.gradient_sync_seconds)
    before = r.total_seconds - max(r.schedule.gradient_sync_seconds)
    assert slots - before == pytest.approx(3 * grown, rel=1e-9)
    text = " ".join(priced.lines())
    assert "stays on stage 0" in text and "Re-balanced" in text


def test_rebalancing_can_hide_what_fixed_stages_show():
    # 6 layers of 1024 x 1024 on 2 stages x 4 GPUs, links fast enough that compute decides:
    # each batch-split layer is 1 unit, fc1 replicated is 4 units. Fixed stages (3 | 3 layers):
    # 4 + 1 + 1 = 6 units against 3; re-balanced, fc2 moves to stage 1: 4 + 1 | 4 x 1 = 5 units
    r = data_parallel_pipeline(6, 1024, 64, 4, gpu_bandwidth=1e16, gpu_latency=1e-12, node_bandwidth=1e16,
                               node_latency=1e-12)
    assert [r.schedule.stage_of_op[f"fc{i}"] for i in range(6)] == [0, 0, 0, 1, 1, 1]
    unit = 3 * 2 * (32 // 4) * 1024 * 1024 / F  # one batch-split layer per micro-batch of 32
    priced = price_override(r, "fc1", (None, None))
    fixed, rebalanced = priced.fixed.schedule, priced.rebalanced.schedule
    assert max(fixed.stage_seconds) == pytest.approx(6 * unit, rel=1e-3)
    assert max(rebalanced.stage_seconds) == pytest.approx(5 * unit, rel=1e-3)
    assert rebalanced.stage_of_op["fc2"] == 1 and priced.moved == 1
    assert priced.fixed.total_seconds > priced.rebalanced.total_seconds > r.total_seconds
    assert "1 operator(s) change stage" in " ".join(priced.lines())


def test_one_stage_has_one_figure():
    graph = models.graph_of(models.gemm_mlp([64] * 3, batch="batch", bias=False), batch=8)
    r = plan_model(graph, machine(2), PlanOptions(pipeline_stages=1, micro_batches=1, algorithm="data_parallel"))
    priced = price_override(r, "fc0", (None, None))
    assert priced.fixed is priced.rebalanced and not priced.pipelined


def test_a_split_that_does_not_divide_is_refused():
    r = data_parallel_pipeline(2, 64, 8, 2)
    with pytest.raises(PlanError, match="does not divide"):
        price_override(r, "fc0", ("nope",))
    with pytest.raises(PlanError, match="has 2 cut.s. but the stage machine has 1"):
        price_override(r, "fc0", (None, None))
    with pytest.raises(PlanError, match="not a planned operator"):
        price_override(r, "nothing", (None,))
