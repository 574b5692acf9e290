"""Activation memory and selective recomputation against Korthikanti et al. 2022, "Reducing
Activation Recomputation in Large Transformer Models" (section 4, equation 1 and Table 2).

Per transformer layer, in 16-bit precision with dropout, the paper counts (bytes):
attention 11sbh + 5as^2b (QKV input 2sbh, Q and K 4sbh, softmax output 2as^2b, its dropout mask
as^2b and output 2as^2b, V 2sbh, the output projection's input 2sbh and its dropout mask sbh),
MLP 19sbh (input 2sbh, GeLU input 8sbh, fc2 input 8sbh, dropout mask sbh), two LayerNorm inputs
4sbh: sbh(34 + 5as/h). Selective recomputation (only the attention core recomputed) removes the
5as/h term; tensor parallelism over t gives sbh(10 + 24/t + 5as/(ht)), sequence parallelism
sbh/t (34 + 5as/h), both with selective recomputation 34sbh/t (Table 2).

The model: the generator's GPT layer (sample_models.synthetic.gpt_decoder, dropout 0.1) with
h = 64, a = 4 heads, s = 32, b = 2, bf16: as/h = 2, sbh = 4,096.
"""

from __future__ import annotations

import pytest

from planner.api import PlanOptions
from planner.cost.memory import stored_activations
from planner.cost.model import CostModel
from planner.machine.tree import Device, Level, Machine
from planner.onnx.importer import import_model
from planner.search.configurations import evaluate_configuration
from sample_models.synthetic import gpt_decoder

S, B, H, A = 32, 2, 64, 4
SBH = S * B * H


@pytest.fixture(scope="module")
def gpt():
    return import_model(gpt_decoder(2, H, A, 4 * H, 1000, S, dropout=0.1), {"batch": B, "seq": S}, name="gpt")


def _machine(devices: int) -> Machine:
    return Machine("m", Device("gpu", 1e12, 80e9), (Level("gpu", devices, 1e9, 1e-6),))


def _layer_bytes(cm, strategies, layer: str = "layer0.") -> float:
    full = cm.complete(strategies)
    return sum(stored_activations(cm, full, [n for n in cm.planned if n.startswith(layer)]).values())


@pytest.mark.parametrize("recompute, per_sbh", [("none", 34 + 5 * A * S / H), ("selective", 34)])
def test_one_device_keeps_the_papers_activations(gpt, recompute, per_sbh):
    cm = CostModel(gpt, _machine(1), precision="bf16", recompute=recompute)
    assert _layer_bytes(cm, {}) == pytest.approx(SBH * per_sbh)  # 44 sbh and 34 sbh


@pytest.mark.parametrize("sequence_parallel, recompute, per_sbh", [
    (False, "none", 10 + 24 / 4 + 5 * A * S / (H * 4)),  # 18.5 sbh
    (False, "selective", 10 + 24 / 4),  # 16 sbh
    (True, "none", (34 + 5 * A * S / H) / 4),  # 11 sbh
    (True, "selective", 34 / 4),  # 8.5 sbh
])
def test_tensor_and_sequence_parallelism_follow_table_2(gpt, sequence_parallel, recompute, per_sbh):
    options = PlanOptions(algorithm="megatron", precision="bf16", recompute=recompute, zero=0,
                          sequence_parallel=sequence_parallel)
    result = evaluate_configuration(gpt, _machine(4), 4, 1, 1, B, B, options)
    assert _layer_bytes(result.cost_model, result.plan.strategies) == pytest.approx(SBH * per_sbh)


def test_the_committed_gpt2_sample_without_dropout():
    # GPT-2 small (h 768, 12 heads) has no Dropout nodes: the attention keeps the softmax output once
    # (2as^2b: no mask, no dropout output) and the two sbh masks go: sbh(32 + 2as/h) per layer
    s, b, h, a = 128, 2, 768, 12
    graph = import_model("sample_models/gpt2_small.onnx", {"batch": b, "seq": s})
    cm = CostModel(graph, _machine(1), precision="bf16")
    assert _layer_bytes(cm, {}, "layer5.") == pytest.approx(s * b * h * (32 + 2 * a * s / h))
    selective = cm.variant("selective", 0, 1)
    assert _layer_bytes(selective, {}, "layer5.") == pytest.approx(s * b * h * 32)


def test_selective_recomputation_is_the_attention_core(gpt):
    cm = CostModel(gpt, _machine(1), recompute="selective")
    core = {n for n in cm.selective_ops if n.startswith("layer0.")}
    assert core == {f"layer0.attn.{n}" for n in ("scores", "scale", "causal_mask", "softmax", "dropout", "context")}
    none = cm.variant("none", 0, 1)
    for name in ("layer0.attn.scores", "layer0.attn.context"):  # recomputed: a fourth pass
        assert cm.op_cost(name, ()).compute[0] == pytest.approx(none.op_cost(name, ()).compute[0] * 4 / 3)
    for name in ("layer0.attn.qkv", "layer0.mlp.fc1", "layer0.mlp.gelu.tanh", "layer0.ln_1"):  # kept
        assert cm.op_cost(name, ()).compute[0] == pytest.approx(none.op_cost(name, ()).compute[0])
        assert not cm.recomputed(name)


def test_recomputed_flops_are_the_two_attention_products(gpt):
    # the FLOPs selective recomputation adds per layer: Q K^T and P V, 2 * 2bs^2h, plus the core's
    # element-wise operators (scale, mask: one FLOP per score each; softmax and dropout as counted)
    cm = CostModel(gpt, _machine(1), recompute="selective")
    ops = cm.graph.operators
    layer = [n for n in cm.selective_ops if n.startswith("layer0.")]
    products = sum(ops[n].flops for n in layer if ops[n].op_type == "MatMul")
    assert products == 2 * 2 * B * S * S * H
    assert sum(ops[n].flops for n in layer if ops[n].op_type in ("Div", "Where")) == 2 * B * A * S * S
