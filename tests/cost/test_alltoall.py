"""The all-to-all of expert parallelism, per machine level, worked out by hand; and the cost model's
redistribution of the dispatched tokens (token-split -> expert-split and back) against it.

Hand count (planner/cost/alltoall.py): a device sends S bytes spread evenly over the E devices of
its expert-parallel group. For 2 nodes x 4 GPUs (E = 8) the 4 destinations on the other node are
reached over the node links (4/8 = 1/2 of S), the 3 other GPUs of the same node over the GPU links
(3/8 of S), 1/8 stays: 7/8 = (E - 1)/E leaves the device.
"""

from __future__ import annotations

import pytest

from moe_models import MIXTRAL, write
from planner.cost.alltoall import all_to_all, all_to_all_fractions
from planner.cost.moe import dispatch_bytes
from planner.machine.tree import Device, Level, Machine
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.search.configurations import evaluate_configuration


def test_two_levels_by_hand():
    assert all_to_all_fractions({0: 2, 1: 4}) == {0: 1 / 2, 1: 3 / 8}
    assert all_to_all(8000.0, {0: 2, 1: 4}) == {0: (4000.0, 1), 1: (3000.0, 1)}


def test_one_level_and_three_levels_leave_e_minus_one_over_e():
    assert all_to_all_fractions({0: 8}) == {0: 7 / 8}
    # 2 racks x 2 nodes x 2 GPUs: 4 of 8 over the racks, 2 over the nodes, 1 over the GPUs
    assert all_to_all_fractions({0: 2, 1: 2, 2: 2}) == {0: 4 / 8, 1: 2 / 8, 2: 1 / 8}
    assert all_to_all_fractions({0: 1, 1: 4}) == {1: 3 / 4}  # a level of factor 1 is not crossed


def test_dispatch_bytes_by_hand():
    # 16 tokens x top-2 x hidden 64 x 2 bytes = 4,096; a capacity factor of 1.25 pads to 5,120
    assert dispatch_bytes(16, 2, 64, 2) == 4096
    assert dispatch_bytes(16, 2, 64, 2, 1.25) == 5120


def _machine() -> Machine:
    return Machine("2x4", Device("gpu", 1e14, 80e9), (Level("node", 2, 1e10, 1e-5), Level("gpu", 4, 1e11, 1e-6)))


@pytest.mark.parametrize("capacity", [1.0, 1.25])
def test_the_cost_model_prices_the_dispatch_and_combine_as_the_hand_count(tmp_path, capacity):
    """evaluate --tp 1 --pp 1 --dp 8 --ep 8, one sequence of 16 tokens per device, bf16: each MoE
    layer moves S = 16 x 2 x 64 x 2 x capacity bytes per all-to-all, forward and backward, on the
    dispatch (charged to the experts' first matmul) and on the combine (to the flattening after the
    experts)."""
    path = write(tmp_path, "mixtral_8x7b", capacity_factor=capacity, **MIXTRAL)
    graph = import_model(path, {"batch": 8, "seq": 16})
    result = evaluate_configuration(graph, _machine(), 1, 1, 8, 1, 8,
                                    PlanOptions(algorithm="megatron", precision="bf16", recompute="none", zero=0),
                                    rebinder=rebinder_for(path), expert=8)
    s = dispatch_bytes(16, 2, 64, 2, capacity)
    node, gpu = all_to_all(s, {0: 2, 1: 4})[0][0], all_to_all(s, {0: 2, 1: 4})[1][0]
    for layer in ("layer0", "layer1"):
        for op in (f"{layer}.moe.experts.gate_proj", f"{layer}.moe.combine.flatten"):
            vec = result.cost.redistribution[op]  # [compute, bytes per level, supersteps per level]
            assert vec[1:3].tolist() == pytest.approx([2 * node, 2 * gpu])
            assert vec[3:5].tolist() == [2, 2]


def test_expert_weights_are_divided_by_the_expert_parallel_size(tmp_path):
    """Per device, EP 8 keeps 1/8 of each expert weight: 2 layers x 3 matrices x 8 x 64 x 96
    parameters, of which 7/8 go, at 2 bytes each (bf16 weights)."""
    path = write(tmp_path, "mixtral_8x7b", **MIXTRAL)
    graph = import_model(path, {"batch": 8, "seq": 16})
    options = PlanOptions(algorithm="megatron", precision="bf16", recompute="none", zero=0)
    ep1, ep8 = (evaluate_configuration(graph, _machine(), 1, 1, 8, 1, 8, options, rebinder=rebinder_for(path),
                                       expert=e) for e in (1, 8))
    experts = 2 * 3 * 8 * 64 * 96
    assert ep1.memory.parameters - ep8.memory.parameters == pytest.approx(experts * 7 / 8 * 2)
