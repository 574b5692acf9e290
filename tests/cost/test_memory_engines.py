"""Memory as the engines keep it, against hand-worked formulas (issue 11, item 5).

* Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models"),
  Table 2, per transformer layer in 16-bit precision with dropout, tensor parallel over t:
  no recomputation ``s b h (10 + 24/t + 5 a s/(h t))``; selective ``s b h (10 + 24/t)``; with
  sequence parallelism ``s b h (34 + 5 a s/h) / t`` and ``34 s b h / t``; full recomputation keeps
  the layer's input, ``2 s b h``. Worked here for GPT-3 175B's layer: b = 1, s = 2048, h = 12288,
  a = 96, t = 8, so ``s b h`` = 25,165,824 and ``5 a s / h`` = 80.
* Rajbhandari et al. 2020 (ZeRO), mixed-precision Adam: ``2 + 2 + 12 = 16`` bytes per parameter;
  ZeRO-1 ``4 + 12/N_d``; ZeRO-3 ``16/N_d`` (plus the parameters it gathers).
* Megatron-LM's 1F1B schedules (``megatron/core/pipeline_parallel/schedules.py``): stage ``i`` of
  ``P`` runs ``P - i - 1`` warm-up forward passes (interleaved over ``v`` chunks:
  ``2 (P - i - 1) + (v - 1) P`` chunk forward passes), then one more before each backward.
"""

from __future__ import annotations

import pytest

import models  # tests/models.py
from planner.api import PlanOptions
from planner.cost.activations import loss_tensors
from planner.cost.baseline import data_parallel_strategies
from planner.cost.memory import in_flight_micro_batches, memory_per_device, stored_activations
from planner.cost.model import CostModel
from planner.cost.overlap import Overlaps
from planner.machine.tree import Device, Level, Machine
from planner.onnx.importer import import_model
from planner.search.configurations import evaluate_configuration
from sample_models.synthetic import gpt_decoder

S, B, H, A, T, V = 2048, 1, 12288, 96, 8, 51200
SBH = S * B * H  # 25,165,824


def _machine(devices: int) -> Machine:
    return Machine("m", Device("gpu", 1e12, 80e9), (Level("gpu", devices, 1e9, 1e-6),))


@pytest.fixture(scope="module")
def gpt3_layers():
    """GPT-3 175B's layer shape, 2 and 4 layers deep (the difference is two layers)."""
    return {n: import_model(gpt_decoder(n, H, A, 4 * H, V, S, dropout=0.1), {"batch": B, "seq": S}, name=f"g{n}")
            for n in (2, 4)}


def _megatron(graph, recompute: str, sequence_parallel: bool):
    options = PlanOptions(algorithm="megatron", precision="bf16", recompute=recompute, zero=0,
                          sequence_parallel=sequence_parallel)
    return evaluate_configuration(graph, _machine(T), T, 1, 1, B, B, options, data_parallel=(1.0, None))


def _layer_bytes(result, layer: str = "layer1.") -> float:
    cm = result.cost_model
    full = cm.complete(result.plan.strategies)
    return sum(stored_activations(cm, full, [n for n in cm.planned if n.startswith(layer)]).values())


@pytest.mark.parametrize("recompute, sequence_parallel, by_hand", [
    ("none", False, 25_165_824 * 23),  # 10 + 24/8 + 80/8 = 23 sbh = 578,813,952 B
    ("selective", False, 25_165_824 * 13),  # 10 + 3 = 13 sbh = 327,155,712 B
    ("none", True, 25_165_824 * 114 // 8),  # (34 + 80)/8 = 14.25 sbh = 358,612,992 B
    ("selective", True, 25_165_824 * 34 // 8),  # 34/8 = 4.25 sbh = 106,954,752 B
])
def test_korthikanti_table_2_on_gpt3s_layer(gpt3_layers, recompute, sequence_parallel, by_hand):
    assert _layer_bytes(_megatron(gpt3_layers[2], recompute, sequence_parallel)) == pytest.approx(by_hand)


def test_full_recomputation_keeps_each_layers_input_once(gpt3_layers):
    # two more layers keep two more layer inputs, 2 sbh each without sequence parallelism (the input
    # is whole on every tensor-parallel rank): 4 sbh = 100,663,296 B; before, the attention and MLP
    # halves were checkpointed apart and kept 8 sbh
    two, four = (_megatron(gpt3_layers[n], "full", False).memory.activations for n in (2, 4))
    assert four - two == pytest.approx(4 * SBH)
    # with sequence parallelism the checkpointed input is the rank's sequence shard: 2 sbh / t each
    two, four = (_megatron(gpt3_layers[n], "full", True).memory.activations for n in (2, 4))
    assert four - two == pytest.approx(4 * SBH / T)


def test_logits_are_kept_in_fp32_once(gpt3_layers):
    result = _megatron(gpt3_layers[2], "selective", True)
    cm = result.cost_model
    full = cm.complete(result.plan.strategies)
    # the vocabulary split 8 ways, 4 bytes per element: 2048 * 51200 / 8 * 4 = 52,428,800 B
    assert sum(loss_tensors(cm, full, list(cm.planned)).values()) == 52_428_800
    one, three = (memory_per_device(cm, result.plan.strategies, in_flight=k).activations for k in (1, 3))
    # three micro-batches in flight triple everything but the logits
    assert three - one == pytest.approx(2 * (one - 52_428_800))


@pytest.mark.parametrize("stage, stages, micro_batches, interleave, by_hand", [
    (0, 8, 64, 1, 8), (7, 8, 64, 1, 1), (0, 8, 2, 1, 2),
    (0, 8, 64, 3, (2 * 7 + 2 * 8 + 1) / 3),  # 31 chunks = 8 (1 + 7/24) stages' worth, Korthikanti's count
    (7, 8, 64, 3, (2 * 8 + 1) / 3),  # the last stage: 17 chunk-micro-batches, not 1 (1 + 7/24)
    (3, 4, 4, 2, 4),  # m = P: every forward pass is warm-up, all m micro-batches held
])
def test_in_flight_micro_batches_follow_megatron(stage, stages, micro_batches, interleave, by_hand):
    assert in_flight_micro_batches(stage, stages, micro_batches, interleave) == pytest.approx(by_hand)


def _mlp(zero: int, prefetch: bool = False) -> CostModel:
    # tests/models.gemm_mlp([32, 64, 16]): fc0 W0 32x64 + b0 64 = 2,112 parameters, fc1 W1 64x16 +
    # b1 16 = 1,040; 3,152 in all; bf16, data parallel over 4
    cm = CostModel(models.graph_of(models.gemm_mlp([32, 64, 16], batch=64, relu=True)), models.one_level(4),
                   precision="bf16").variant("none", zero, 1)
    cm.overlap = Overlaps(parameter_prefetch=prefetch)
    return cm


def test_zero_model_states_per_rajbhandari():
    psi, nd = 3_152, 4
    states = {}
    for zero in (0, 1, 3):
        cm = _mlp(zero)
        mem = memory_per_device(cm, data_parallel_strategies(cm))
        states[zero] = (mem.parameters, mem.gradients, mem.optimizer_state)
    assert sum(states[0]) == 16 * psi  # 50,432 B
    assert sum(states[1]) == 4 * psi + 12 * psi / nd  # 12,608 + 9,456
    # ZeRO-3: 16 psi / N_d = 12,608 B, plus fc0's 2,112 parameters gathered whole (4,224 B) and its
    # whole gradient before the reduce-scatter (4,224 B), the larger of the two layers
    assert states[3] == (2 * psi / nd + 4_224, 2 * psi / nd + 4_224, 12 * psi / nd)


def test_zero3_prefetch_holds_the_next_layers_parameters_too():
    # backward order: fc1 first (2,080 B, with fc0's 4,224 B prefetched: 2 * 2,080 + 4,224 = 8,384),
    # then fc0 (2 * 4,224 = 8,448, nothing left to prefetch): fc0 is the worst moment
    cm = _mlp(3, prefetch=True)
    mem = memory_per_device(cm, data_parallel_strategies(cm))
    assert mem.parameters - 2 * 3_152 / 4 == 4_224 and mem.gradients - 2 * 3_152 / 4 == 4_224
    # with a larger second layer the prefetched first one counts: fc1 64x256 + 256 = 16,640 params
    big = CostModel(models.graph_of(models.gemm_mlp([32, 64, 256], batch=64, relu=True)), models.one_level(4),
                    precision="bf16").variant("none", 3, 1)
    big.overlap = Overlaps(parameter_prefetch=True)
    mem = memory_per_device(big, data_parallel_strategies(big))
    shards = 2 * (2_112 + 16_640) / 4
    assert mem.parameters == shards + 33_280 + 4_224  # fc1 gathered, fc0 prefetched
    assert mem.gradients == shards + 33_280
