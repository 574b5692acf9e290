"""Megatron-LM's scatter-gather pipeline sends (Narayanan et al. SC21, section 4.1) against hand
arithmetic.

The chain of tests/cost/test_pipeline.py (fc0..fc3, x[b, 64] @ W[64, 64], fp32) on 2 nodes x 8
GPUs, 2 stages (one node each). A boundary tensor is b*64*4 bytes. The node link: 1e10 B/s, 10 µs;
NVLink: 2e11 B/s, 2 µs.
"""

from __future__ import annotations

import numpy as np
import pytest

from planner.cost.model import CostModel
from planner.cost.pipeline_sends import BoundaryTraffic, level_seconds
from planner.cost.schedule import price_schedule
from planner.machine.split import split_machine
from planner.machine.tree import Device, Level, Machine
from planner.options import PlanOptions
from planner.search.configurations import evaluate_configuration
from sample_models.synthetic import gpt_decoder
from planner.onnx.importer import import_model

import models  # tests/models.py

F = 1e14
NODE_BW, NODE_LAT = 1e10, 1e-5
GPU_BW, GPU_LAT = 2e11, 2e-6


def _machine() -> Machine:
    return Machine("m", Device("d", F, 80e9), (Level("node", 2, NODE_BW, NODE_LAT), Level("gpu", 8, GPU_BW, GPU_LAT)))


def _schedule(batch: int, strategy_of):
    graph = models.graph_of(models.gemm_mlp([64] * 5, batch="batch", bias=False), batch=batch)
    split = split_machine(_machine(), 2)
    cm = CostModel(graph, split.stage_machine, "train", bucket_mb=0)
    plan = {n: strategy_of(cm, n) for n in cm.planned}
    return price_schedule(cm, plan, split, 1)


def test_a_replicated_boundary_tensor_is_scattered_over_the_slow_link_and_gathered_over_nvlink():
    # replicated on the 8 GPUs of a stage: each GPU sends S/8 over the node link and the
    # receiving node all-gathers it over NVLink: 7/8 S in one superstep
    s = 8192 * 64 * 4  # 2 MiB
    sched = _schedule(8192, lambda cm, n: cm.replicated())
    one_way = s / 8 / NODE_BW + NODE_LAT + 7 / 8 * s / GPU_BW + GPU_LAT
    whole = s / NODE_BW + NODE_LAT
    assert one_way < whole  # 55.3 µs against 219.7 µs
    # stage 0 sends the activations and gathers the gradients; stage 1 the reverse
    assert sched.send_seconds == pytest.approx([one_way, one_way], rel=1e-12)


def test_a_small_tensor_crosses_whole_when_the_gather_costs_more_than_it_saves():
    s = 8 * 64 * 4  # 2 KiB: the gather's latency is more than the bytes saved
    sched = _schedule(8, lambda cm, n: cm.replicated())
    assert sched.send_seconds == pytest.approx([s / NODE_BW + NODE_LAT] * 2, rel=1e-12)


def test_a_tensor_split_on_the_batch_crosses_as_it_is():
    # data parallel inside the stage: each GPU holds S/8 of its own samples and sends them
    s = 8192 * 64 * 4

    def batch_split(cm, n):
        return tuple("m" if "m" in cm.info[n].splittable else None for _ in cm.cuts)

    sched = _schedule(8192, batch_split)
    assert sched.send_seconds == pytest.approx([s / 8 / NODE_BW + NODE_LAT] * 2, rel=1e-12)


def test_the_cheaper_way_is_chosen_per_boundary_and_direction():
    level = Level("ib", 2, 1e10, 1e-5)
    traffic = BoundaryTraffic(whole=np.array([[8e6, 8e3], [0.0, 0.0]]),
                              scattered=np.array([[1e6, 1e3], [0.0, 0.0]]),
                              gather_seconds=np.array([[1e-4, 1e-4], [0.0, 0.0]]))
    send, gather = traffic.seconds(level, 0)
    # 8 MB whole: 810 µs; scattered 110 µs + 100 µs gathered: scattered
    assert send[0] == pytest.approx(1e6 / 1e10 + 1e-5) and gather[0] == pytest.approx(1e-4)
    # 8 kB whole: 10.8 µs; scattered 10.1 + 100 µs: whole
    assert send[1] == pytest.approx(level_seconds(level, 8e3)) and gather[1] == 0.0


def test_megatron_tensor_parallel_stages_send_an_eighth_of_the_residual_stream():
    # a 2-layer GPT (h 64, 8 heads, s 32, b 2, fp32) on 2 nodes x 8 GPUs, tensor 8 x pipeline 2: the
    # residual stream b*s*h*4 = 16,384 bytes is replicated on the 8 tensor-parallel ranks; per
    # micro-batch and way: 2,048 bytes over the node link, then an all-gather of 7/8 of it on NVLink
    graph = import_model(gpt_decoder(2, 64, 8, 256, 1024, 32), {"batch": 2, "seq": 32}, name="gpt2l")
    machine = Machine("m", Device("d", 1e12, 80e9), (Level("node", 2, 1e8, 1e-6), Level("gpu", 8, 1e11, 1e-6)))
    options = PlanOptions(algorithm="megatron", recompute="none", zero=0)
    result = evaluate_configuration(graph, machine, 8, 2, 1, 2, 2, options)
    s = 2 * 32 * 64 * 4
    one_way = s / 8 / 1e8 + 1e-6 + 7 / 8 * s / 1e11 + 1e-6
    assert result.schedule.send_seconds == pytest.approx([one_way, one_way], rel=1e-9)
