"""Pipeline stages, micro-batches, recomputation and ZeRO against hand computation.

The chain: tests/models.gemm_mlp([64] * 5, batch="batch", bias=False) = four Gemm layers
fc0..fc3, each x[b, 64] @ W[64, 64]: 2*b*64*64 FLOPs forward, 3x that in training; the
activation between two layers is b*64 fp32 values. On a machine of N nodes x 1 GPU, a stage of
a pipeline over the nodes is a single device: no collective, so a stage's time is its compute
plus its point-to-point sends (bytes / bandwidth + one latency each).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models  # tests/models.py
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.cost.result import result_for
from planner.search.registry import search
from planner.search.configurations import memory_ladder, plan_configurations
from planner.cost.model import CostModel
from planner.machine.tree import Device, Level, Machine
from planner.cost.memory import memory_per_device
from planner.cost.baseline import data_parallel_strategies
from planner.options import ConfigError
from planner.cost.schedule import balance_stages, cut_points, price_schedule
from planner.machine.split import split_machine

F = 1e14
BW, LAT = 1e10, 1e-5


def nodes_machine(nodes: int, gpus: int = 1, memory: float = 80e9, memory_bandwidth=None) -> Machine:
    return Machine("nodes", Device("dev", F, memory, memory_bandwidth_Bps=memory_bandwidth),
                   (Level("node", nodes, BW, LAT), Level("gpu", gpus, 2e11, 2e-6)))


def chain(layers: int = 4, batch: int = 8, width: int = 64):
    return models.graph_of(models.gemm_mlp([width] * (layers + 1), batch="batch", bias=False), batch=batch)


def chain_rebinder(layers: int = 4, width: int = 64):
    return rebinder_for(models.gemm_mlp([width] * (layers + 1), batch="batch", bias=False))


def stage_cost_model(graph, machine, stages, micro_batches=1, **kw):
    split = split_machine(machine, stages)
    kw.setdefault("bucket_mb", 0)  # one all-reduce per gradient tensor, as the figures below count
    return split, CostModel(graph, split.stage_machine, "train", micro_batches=micro_batches, **kw)


def layer_seconds(batch: int, width: int = 64) -> float:
    return 3 * 2 * batch * width * width / F  # forward + two backward products


def send_seconds(batch: int, width: int = 64) -> float:
    return batch * width * 4 / BW + LAT


# ---- machine split ---------------------------------------------------------------------------------

def test_stages_take_outer_levels_and_tensor_the_inner_devices():
    machine = Machine("m", Device("d", F, 80e9), (Level("node", 315, BW, LAT), Level("gpu", 8, 3e11, 5e-6)))
    split = split_machine(machine, 35, tensor=8, data=9)  # the 530B model's 315 nodes
    assert split.stages == 35
    assert [(lv.name, lv.arity) for lv in split.stage_machine.levels] == [("node", 9), ("gpu", 8)]
    assert split.tensor_levels == {1}
    assert split.crossing_level(0, 1).name == "node"


def test_stages_spill_into_the_next_level_and_shared_levels_are_split():
    machine = nodes_machine(4, 8)
    split = split_machine(machine, 8)  # 4 nodes, then 2 of each node's 8 GPUs
    assert split.pipeline == ((0, 4), (1, 2))
    assert [(lv.name, lv.arity) for lv in split.stage_machine.levels] == [("gpu", 4)]
    assert split.crossing_level(0, 1).name == "gpu"  # stages 0 and 1 share a node
    assert split.crossing_level(1, 2).name == "node"
    shared = split_machine(nodes_machine(1, 8), 1, tensor=4, data=2)
    assert [(lv.name, lv.arity) for lv in shared.stage_machine.levels] == [("gpu (data)", 2), ("gpu (tensor)", 4)]
    assert shared.tensor_levels == {1}


@pytest.mark.parametrize("stages, tensor, data, message", [
    (3, 1, None, "3 pipeline stages does not fit"),
    (2, 3, None, "tensor parallelism of 3 does not fit"),
    (2, 8, 3, "must equal"),
])
def test_configurations_that_do_not_fit_the_machine_say_why(stages, tensor, data, message):
    with pytest.raises(ConfigError, match=message):
        split_machine(nodes_machine(4, 8), stages, tensor=tensor, data=data)


# ---- stage balancing ---------------------------------------------------------------------------------

def brute_force_bottleneck(weights: list[float], parts: int) -> float:
    n = len(weights)
    best = math.inf
    for cuts in itertools.combinations(range(1, n), parts - 1):
        bounds = (0, *cuts, n)
        best = min(best, max(sum(weights[a:b]) for a, b in zip(bounds, bounds[1:])))
    return best


def test_balancing_a_hand_worked_chain():
    # 3, 1, 1, 3 | 2, 2 in two stages: the best split is [3, 1, 1] [3, 2, 2]? no: loads 5 and 7;
    # [3, 1, 1, 3] [2, 2] gives 8 and 4; [3, 1] [1, 3, 2, 2] 4 and 8: the optimum is 7
    starts = balance_stages([3, 1, 1, 3, 2, 2], 2)
    assert starts == [0, 3]
    # three stages: [3, 1] [1, 3] [2, 2] -> 4, 4, 4
    assert balance_stages([3, 1, 1, 3, 2, 2], 3) == [0, 2, 4]


def test_balancing_counts_the_sends_at_each_boundary():
    # four equal segments in two stages; the first stage pays its forward send at its end (by
    # boundary: 0..4), the second its backward send at its start.
    none = np.zeros(5)

    def forward_over_2_is_slow(j):  # cutting at 2 makes the first stage 2 + 10: cut at 1 or 3
        return (none, np.array([0, 0, 10.0, 0, 0])) if j == 0 else (none, none)

    assert balance_stages([1, 1, 1, 1], 2, forward_over_2_is_slow) in ([0, 1], [0, 3])

    def backward_over_2_is_slow(j):  # the second stage would pay 5 at boundary 2: cut at 1 or 3
        return (np.array([0, 0, 5.0, 0, 0]), none) if j == 1 else (none, none)

    assert balance_stages([1, 1, 1, 1], 2, backward_over_2_is_slow) in ([0, 1], [0, 3])

    def backward_over_1_is_slow(j):  # cutting at 1 makes the second stage 3 + 5: 2 | 2 is best
        return (np.array([0, 5.0, 0, 0, 0]), none) if j == 1 else (none, none)

    assert balance_stages([1, 1, 1, 1], 2, backward_over_1_is_slow) == [0, 2]
    assert balance_stages([3, 1, 1, 1], 2, backward_over_1_is_slow) == [0, 2]  # 4 | 2 beats 3 | 3 + 5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.1, 10), min_size=1, max_size=8), st.integers(1, 8))
def test_balancing_finds_the_brute_force_optimum(weights, parts):
    parts = min(parts, len(weights))
    starts = balance_stages(weights, parts)
    assert starts[0] == 0 and len(starts) == parts and starts == sorted(set(starts))
    bounds = [*starts, len(weights)]
    load = max(sum(weights[a:b]) for a, b in zip(bounds, bounds[1:]))
    assert load == pytest.approx(brute_force_bottleneck(weights, parts), rel=1e-9)


def test_more_stages_than_segments_is_an_error():
    with pytest.raises(ConfigError, match="at most 3 stages"):
        balance_stages([1, 1, 1], 4)


def test_cut_points_of_a_chain_are_between_layers():
    cm = CostModel(chain(), nodes_machine(1))
    points = cut_points(cm)
    assert [points.order[k] for k in points.positions] == ["fc1", "fc2", "fc3"]


# ---- the 1F1B schedule -----------------------------------------------------------------------------

def test_one_layer_per_stage_bubble_and_iteration_by_hand():
    # 4 stages x 1 layer, 4 micro-batches of 2 (batch 8): stage 0 sends activations forward,
    # stages 1-2 send forward and gradients back, stage 3 sends gradients back
    graph = chain(batch=2)
    split, cm = stage_cost_model(graph, nodes_machine(4), 4, micro_batches=4)
    sched = price_schedule(cm, {n: () for n in cm.planned}, split, 4)
    c, t = layer_seconds(2), send_seconds(2)
    assert sched.stage_of_op == {"fc0": 0, "fc1": 1, "fc2": 2, "fc3": 3}
    assert sched.stage_seconds == pytest.approx([c + t, c + 2 * t, c + 2 * t, c + t], rel=1e-12)
    slowest = c + 2 * t
    assert sched.bubble_seconds == pytest.approx(3 * slowest, rel=1e-12)  # (P - 1) slots
    assert sched.iteration_seconds == pytest.approx((4 + 3) * slowest, rel=1e-12)  # no replica: no gradient sync
    assert sched.boundary_levels == ["node"] * 3
    # the bubble fraction of the issue, (s - 1) / m, of the m slots
    assert sched.bubble_seconds / (4 * slowest) == pytest.approx(3 / 4)


def test_two_layers_per_stage_and_more_micro_batches():
    graph = chain(batch=1)
    split, cm = stage_cost_model(graph, nodes_machine(2), 2, micro_batches=16)
    sched = price_schedule(cm, {n: () for n in cm.planned}, split, 16)
    c, t = layer_seconds(1), send_seconds(1)
    assert sched.stage_of_op == {"fc0": 0, "fc1": 0, "fc2": 1, "fc3": 1}
    assert sched.stage_seconds == pytest.approx([2 * c + t, 2 * c + t], rel=1e-12)
    assert sched.iteration_seconds == pytest.approx((16 + 1) * (2 * c + t), rel=1e-12)


def test_interleaving_divides_the_bubble_and_multiplies_the_sends():
    # 2 devices x 2 chunks = 4 chunks of one layer: device 0 holds fc0 and fc2, device 1 fc1, fc3
    graph = chain(batch=1)
    split, cm = stage_cost_model(graph, nodes_machine(2), 2, micro_batches=4)
    sched = price_schedule(cm, {n: () for n in cm.planned}, split, 4, interleave=2)
    c, t = layer_seconds(1), send_seconds(1)
    assert sched.stage_of_op == {"fc0": 0, "fc1": 1, "fc2": 0, "fc3": 1}
    # device 0 sends fc0->fc1 and fc2->fc3 forward, and fc2's input gradient back to fc1;
    # device 1 sends fc1->fc2 forward, and gradients back to fc0 and fc2: 3 sends each
    assert sched.stage_seconds == pytest.approx([2 * c + 3 * t, 2 * c + 3 * t], rel=1e-12)
    slowest = 2 * c + 3 * t
    assert sched.bubble_seconds == pytest.approx((2 - 1) / 2 * slowest, rel=1e-12)
    assert sched.iteration_seconds == pytest.approx((4 + 0.5) * slowest, rel=1e-12)


def test_interleaving_needs_stages_and_whole_rounds():
    graph = chain(batch=1)
    split, cm = stage_cost_model(graph, nodes_machine(2), 1, micro_batches=2)
    with pytest.raises(ConfigError, match="interleaving needs pipeline stages"):
        price_schedule(cm, {n: () for n in cm.planned}, split, 2, interleave=2)
    split, cm = stage_cost_model(graph, nodes_machine(2), 2, micro_batches=3)
    with pytest.raises(ConfigError, match="multiple of the pipeline stages"):
        price_schedule(cm, {n: () for n in cm.planned}, split, 3, interleave=2)


def test_gradient_accumulation_syncs_gradients_once_per_iteration():
    # one stage, data parallel over 2 nodes, 4 micro-batches of 8: each micro-batch pays compute;
    # the gradient all-reduce (2 * (2-1)/2 * 64*64*4 B per layer) is paid once
    graph = chain(batch=8)
    split, cm = stage_cost_model(graph, nodes_machine(2), 1, micro_batches=4)
    plan = data_parallel_strategies(cm)
    sched = price_schedule(cm, plan, split, 4)
    c = layer_seconds(4)  # 8 samples split over 2 devices
    sync_per_layer = 64 * 64 * 4 / BW + 2 * LAT
    # the activation gradient of fc0's input is not needed (x is data): no collective there
    assert sched.iteration_seconds == pytest.approx(4 * 4 * c + 4 * sync_per_layer, rel=1e-12)
    assert sched.gradient_sync_seconds == pytest.approx([4 * sync_per_layer], rel=1e-12)


def test_overlap_hides_the_gradient_sync_behind_the_backward_pass():
    graph = chain(batch=8)
    split, cm = stage_cost_model(graph, nodes_machine(2), 1, micro_batches=1)
    plan = data_parallel_strategies(cm)
    plain = price_schedule(cm, plan, split, 1)
    hidden = price_schedule(cm, plan, split, 1, overlap_gradient_sync=True)
    per_layer = 64 * 64 * 4 / BW + 2 * LAT  # 21.6 µs, one bucket per layer (bucket_mb 0)
    backward = layer_seconds(4) * 2 / 3  # 0.65 ns per layer
    assert plain.gradient_sync_seconds == pytest.approx([4 * per_layer])
    # fc3's gradient is ready after one layer's backward, and the four all-reduces then run back to
    # back (each longer than a layer's backward): they end at backward + 4 syncs, the pass at 4 backward
    exposed = backward + 4 * per_layer - 4 * backward
    assert hidden.gradient_sync_seconds == pytest.approx([exposed], rel=1e-12)
    assert hidden.iteration_seconds == pytest.approx(plain.iteration_seconds - 3 * backward, rel=1e-12)


def test_tflops_per_device_count_recomputation_as_hardware_flops_only():
    graph = chain(batch=2)
    split, cm = stage_cost_model(graph, nodes_machine(4), 4, micro_batches=4, recompute="full")
    sched = price_schedule(cm, {n: () for n in cm.planned}, split, 4)
    forward = 4 * 2 * 2 * 64 * 64  # four layers, one micro-batch
    assert sched.model_flops == pytest.approx(4 * 3 * forward)
    assert sched.hardware_flops == pytest.approx(4 * 4 * forward)
    tf = sched.tflops_per_device()
    assert tf["model"] == pytest.approx(sched.model_flops / (sched.iteration_seconds * 4) / 1e12)
    assert tf["hardware"] / tf["model"] == pytest.approx(4 / 3)


# ---- memory per stage under 1F1B -------------------------------------------------------------------

def test_memory_per_stage_keeps_the_micro_batches_in_flight():
    # stage s keeps min(m, P - s) micro-batches: 4, 3, 2, 1 with 8 micro-batches of 2 samples.
    # A micro-batch's activations: the input its Gemm saves for the weight gradient (2*64*4 = 512 B:
    # x on stage 0, then h0, h1, h2), and on the last stage also the model's output y (512 B),
    # which the loss reads.
    graph = chain(batch=2)
    split, cm = stage_cost_model(graph, nodes_machine(4), 4, micro_batches=8)
    sched = price_schedule(cm, {n: () for n in cm.planned}, split, 8)
    assert [m.activations for m in sched.memory] == [4 * 512, 3 * 512, 2 * 512, 1 * 1024]
    for m in sched.memory:  # one 64x64 fp32 weight per stage, its gradient, Adam's two moments
        assert (m.parameters, m.gradients, m.optimizer_state) == (16_384, 16_384, 32_768)


def test_full_recomputation_keeps_only_the_layer_inputs():
    # two stages of two layers; full recomputation keeps each segment's input per micro-batch
    # (512 B per layer) and the activations of one layer while it is recomputed (512 B, and
    # the input x on stage 0)
    graph = chain(batch=2)
    split, cm = stage_cost_model(graph, nodes_machine(2), 2, micro_batches=4, recompute="full")
    sched = price_schedule(cm, {n: () for n in cm.planned}, split, 4)
    # stage 0: 2 in flight x (x + h0, the two layers' inputs) + recompute of one layer (its input)
    assert sched.memory[0].activations == 2 * 1024 + 512
    # stage 1: 1 in flight x (h1 + h2) + recompute of one layer (fc3: its input h2 and the output y)
    assert sched.memory[1].activations == 1 * 1024 + 1024


# ---- ZeRO: memory and traffic ------------------------------------------------------------------

def zero_model(zero: int):
    # tests/cost/test_memory.py's MLP: 3,152 parameters, data parallel over 4 devices of one level
    g = models.graph_of(models.gemm_mlp([32, 64, 16], batch=64, relu=True))
    return CostModel(g, models.one_level(4), "train", zero=zero, bucket_mb=0)


@pytest.mark.parametrize("zero, shard_params, shard_state, gathered", [(0, 1, 1, 0), (1, 1, 4, 0), (3, 4, 4, 8_448)])
def test_zero_divides_memory_over_the_data_parallel_group(zero, shard_params, shard_state, gathered):
    cm = zero_model(zero)
    mem = memory_per_device(cm, data_parallel_strategies(cm))
    # ZeRO-3 also holds fc0's 2,112 parameters gathered whole (8,448 B) and their whole gradient
    # before the reduce-scatter (planner.cost.memory.zero3_working_set)
    assert mem.parameters == 12_608 / shard_params + gathered
    assert mem.gradients == 12_608 / shard_params + gathered
    assert mem.optimizer_state == 8 * 3_152 / shard_state


def test_zero3_traffic_is_two_gathers_and_a_reduce_scatter_per_micro_batch():
    # W0 is 32 x 64 fp32 = 8,192 B. Stage 0/1: an all-reduce over 4 devices, 2 * 3/4 * 8,192 B in
    # two supersteps, once per iteration. Stage 3: gathers for the forward and the backward pass
    # and a reduce-scatter of the gradient, 3 * 3/4 * 8,192 B in three supersteps, per micro-batch.
    plan = ("m", "m")
    for zero in (0, 1):
        cost = zero_model(zero).op_cost("fc0", plan)
        assert list(cost.communication) == pytest.approx([0, 12_288 + 2 * 3 / 4 * 256, 4])  # + bias b0
        assert list(cost.gradient_sync) == list(cost.communication)
    cost = zero_model(3).op_cost("fc0", plan)
    assert list(cost.communication) == pytest.approx([0, 18_432 + 3 * 3 / 4 * 256, 6])
    assert not cost.gradient_sync.any()


def test_zero3_collectives_are_flat_rings_at_the_outermost_level():
    # 2 nodes x 2 GPUs: the hierarchical all-reduce splits the bytes over the levels; ZeRO-3's
    # flat ring moves 3 * 3/4 of the weight over the node level
    g = models.graph_of(models.gemm_mlp([32, 64, 16], batch=64, bias=False))
    cm = CostModel(g, models.two_level(), "train", zero=3)
    cost = cm.op_cost("fc0", ("m", "m"))
    assert list(cost.communication) == pytest.approx([0, 3 * 3 / 4 * 8192, 0, 3, 0])


# ---- recomputation and the roofline ------------------------------------------------------------------

def test_recomputation_adds_one_forward_pass_of_the_recomputed_operators():
    g = models.graph_of(models.gemm_mlp([32, 64, 16], batch=64, relu=True))
    machine = models.one_level(1)
    none, selective, full = (CostModel(g, machine, "train", recompute=r) for r in ("none", "selective", "full"))
    for name in ("fc0", "relu0", "fc1"):
        base = none.op_cost(name, ()).compute[0]
        assert full.op_cost(name, ()).compute[0] == pytest.approx(base * 4 / 3)
        # selective recomputes only an attention core (tests/cost/test_activations.py); an MLP has none
        assert selective.op_cost(name, ()).compute[0] == pytest.approx(base)


def test_memory_bound_operators_are_priced_by_their_traffic():
    # Relu on 64 x 64 fp32: 4,096 FLOPs, but it reads and writes 16 KiB each; at 1 TB/s against
    # 1e14 FLOP/s the traffic takes 32,768 / 1e12 s per pass, 100x the FLOPs' time
    g = models.graph_of(models.gemm_mlp([32, 64, 16], batch=64, relu=True))
    m = Machine("m", Device("d", F, 80e9, memory_bandwidth_Bps=1e12), (Level("gpu", 1, BW, LAT),))
    cm = CostModel(g, m, "train")
    assert cm.basis.time(cm.op_cost("relu0", ()).compute) == pytest.approx(3 * 32_768 / 1e12)
    # this small Gemm is memory-bound too: 2*64*32*64 = 262,144 FLOPs over
    # (64*32 + 32*64 + 64 + 64*64) * 4 = 33,024 B is 8 FLOP/B, below the machine's 100 FLOP/B
    assert cm.basis.time(cm.op_cost("fc0", ()).compute) == pytest.approx(3 * 33_024 / 1e12)
    fast_memory = Machine("m", Device("d", F, 80e9, memory_bandwidth_Bps=1e15), (Level("gpu", 1, BW, LAT),))
    assert CostModel(g, fast_memory, "train").op_cost("fc0", ()).compute[0] == pytest.approx(3 * 262_144)


# ---- the configuration search ------------------------------------------------------------------------

def test_search_keeps_one_stage_when_everything_fits():
    # 16 samples on 8 devices, tiny weights: data parallelism costs microseconds, while two stages
    # pay 8 micro-batches of sends (10 us latency each) and the bubble
    graph = chain(layers=8, batch=16)
    result = plan_configurations(graph, nodes_machine(4, 2), PlanOptions(algorithm="drec"), rebinder=chain_rebinder(8))
    assert result.memory.fits and result.schedule.stages == 1
    assert (result.schedule.recompute, result.schedule.zero) == ("none", 0)  # the first rung fits


def test_search_adds_stages_until_the_model_fits():
    # 8 layers of a 512 x 512 fp32 weight: 1 MiB each, 16 B/param with Adam = 4 MiB per layer;
    # 12 MiB per device holds at most 2 layers: 4 stages or more (ZeRO-3 without stages also fits)
    graph = models.graph_of(models.gemm_mlp([512] * 9, batch="batch", bias=False), batch=64)
    machine = nodes_machine(8, 1, memory=12 * 2**20)
    result = plan_configurations(graph, machine, PlanOptions(algorithm="drec"), rebinder=chain_rebinder(8, 512))
    assert result.memory.fits
    assert result.schedule.stages >= 4 or result.schedule.zero == 3
    assert any(not r["fits"] for r in result.tried)  # fewer stages were tried and did not fit


@pytest.mark.parametrize("memory", [12 * 2**20, 80e9])
def test_search_is_as_fast_as_every_stage_count_tried_one_by_one(memory):
    # a second method: fix each stage count the machine allows, let the ladder pick the memory
    # options, keep the fastest that fits; the search must match it (it may skip counts only
    # when they cannot win)
    graph = models.graph_of(models.gemm_mlp([512] * 9, batch="batch", bias=False), batch=64)
    machine = nodes_machine(8, 1, memory=memory)
    searched = plan_configurations(graph, machine, PlanOptions(algorithm="drec"), rebinder=chain_rebinder(8, 512))
    fixed = [plan_configurations(graph, machine, PlanOptions(algorithm="drec", pipeline_stages=p),
                                 rebinder=chain_rebinder(8, 512))
             for p in (1, 2, 4, 8)]
    best = min(r.total_seconds for r in fixed if r.memory.fits)
    assert searched.total_seconds == pytest.approx(best, rel=1e-9)


def test_memory_ladder_climbs_what_is_left_open():
    assert memory_ladder(None, None) == [("none", 0), ("none", 1), ("selective", 1), ("full", 1), ("full", 3)]
    assert memory_ladder(None, None, zero3=False) == [("none", 0), ("none", 1), ("selective", 1), ("full", 1)]
    assert memory_ladder(None, 0, zero3=False) == [("none", 0), ("selective", 0), ("full", 0)]
    assert memory_ladder("full", None) == [("full", 0), ("full", 1), ("full", 3)]
    assert memory_ladder("selective", 3, zero3=False) == [("selective", 3)]


def test_bert_is_cut_between_layers_despite_its_attention_mask():
    # the mask is read by all 12 layers and crosses every cut alike: it must not hide them
    from planner.onnx.importer import import_model

    g = import_model(Path(__file__).resolve().parents[2] / "sample_models" / "bert_base.onnx", {"batch": 2, "seq": 16})
    cm = CostModel(g, nodes_machine(1))
    starts = {cm.planned[k] for k in cut_points(cm).positions}
    assert {f"layer{i}.attn.q" for i in range(12)} <= starts  # each layer's input


def test_fixed_options_are_kept():
    graph = chain(layers=8, batch=16)
    options = PlanOptions(algorithm="drec+", pipeline_stages=2, micro_batches=4, recompute="selective", zero=1)
    result = plan_configurations(graph, nodes_machine(4, 2), options, rebinder=chain_rebinder(8))
    s = result.schedule
    assert (s.stages, s.micro_batches, s.recompute, s.zero) == (2, 4, "selective", 1)
    assert result.graph.bindings["batch"] == 4


def test_micro_batches_must_divide_the_batch():
    with pytest.raises(ConfigError, match="do not divide the batch"):
        plan_configurations(chain(batch=16), nodes_machine(2), PlanOptions(pipeline_stages=2, micro_batches=3))


def test_result_for_without_stages_is_the_plain_plan():
    graph = chain(batch=16)
    cm = CostModel(graph, nodes_machine(2, 2), "train")
    plan = search(cm, "drec+")
    result = result_for(cm, plan, PlanOptions())
    assert result.total_seconds == pytest.approx(cm.evaluate(plan.strategies).total_seconds, rel=1e-12)
    assert not result.pipelined


def test_a_gather_is_priced_by_the_rows_it_reads_not_its_table():
    # an embedding: table [1000, 64] fp32 (256,000 B), 8 x 16 int64 ids (1,024 B), output
    # 8 x 16 x 64 fp32 (32,768 B). At 1 GB/s against 1e14 FLOP/s the traffic dominates:
    # (1,024 + 32,768) B per pass, three passes; the table is not read whole
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [8, 16])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 16, 64])
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="embed", axis=0)
    model = models._model("gather", [node], [ids], [out], [models._weight("table", [1000, 64])])
    m = Machine("m", Device("d", F, 80e9, memory_bandwidth_Bps=1e9), (Level("gpu", 1, BW, LAT),))
    cm = CostModel(models.graph_of(model), m, "train")
    assert cm.basis.time(cm.op_cost("embed", ()).compute) == pytest.approx(3 * 33_792 / 1e9)


def test_interleaving_without_room_for_stages_says_so():
    with pytest.raises(ConfigError, match="set interleave to 1"):
        plan_configurations(chain(batch=16), models.one_level(8), PlanOptions(algorithm="drec", interleave=2))


def test_a_plan_given_as_a_hint_is_never_beaten_by_a_slower_one():
    graph = chain(layers=8, batch=16)
    machine = nodes_machine(4, 2)
    first = plan_configurations(graph, machine, PlanOptions(), rebinder=chain_rebinder(8))
    again = plan_configurations(graph, machine, PlanOptions(), hints=[first.plan.strategies], rebinder=chain_rebinder(8))
    assert again.total_seconds <= first.total_seconds * (1 + 1e-12)
