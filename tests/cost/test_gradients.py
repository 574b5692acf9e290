"""One gradient per parameter (issue 10, item 2) and gradient buckets (item 6).

Expected figures are worked out by hand from the models' shapes: an all-reduce of ``S`` bytes
over ``f`` devices on one level moves ``2 (f-1)/f S`` bytes per device in two supersteps.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import models  # tests/models.py
from planner.onnx.rebinder import rebinder_for
from planner.cost.model import CostModel
from planner.options import OptionsError
from planner.model.graph import TensorRole
from planner.onnx.importer import import_model
from planner.cost.baseline import data_parallel_strategies
from planner.model.rebind import micro_batch_graph
from planner.cost.schedule import price_schedule
from planner.machine.split import split_machine
from sample_models.synthetic import gpt_decoder

L, H, HEADS, FFN, V, POS = 2, 64, 4, 256, 1000, 32


def gpt_parameters(layers=L, h=H, f=FFN, vocab=V, pos=POS) -> tuple[int, int]:
    """(parameters, parameter tensors) of ``gpt_decoder``: wte, wpe, per layer two LayerNorms
    (4h), QKV (3h^2 + 3h), projection (h^2 + h), MLP (2hf + f + h); the final LayerNorm (2h)."""
    per_layer = 4 * h + 3 * h * h + 3 * h + h * h + h + 2 * h * f + f + h
    return vocab * h + pos * h + layers * per_layer + 2 * h, 2 + 12 * layers + 2


@pytest.fixture(scope="module")
def gpt():
    return import_model(gpt_decoder(L, H, HEADS, FFN, V, POS), {"batch": 16, "seq": POS})


@pytest.fixture(scope="module")
def gpt_rebinder():
    return rebinder_for(gpt_decoder(L, H, HEADS, FFN, V, POS))


def level_vector(cm, plan):
    """(bytes, supersteps) of a plan's communication on each machine level."""
    vec = cm.evaluate(plan).total_vector - sum(cm.evaluate(plan).compute.values())
    d = cm.num_levels
    return [(vec[1 + i], vec[1 + d + i]) for i in range(d)]


def test_tied_embedding_is_all_reduced_once_under_data_parallelism(gpt):
    params, tensors = gpt_parameters()
    assert gpt.parameter_count == params  # the hand count matches the model
    cm = CostModel(gpt, models.one_level(8), bucket_mb=0)
    (nbytes, steps), = level_vector(cm, data_parallel_strategies(cm))
    # every parameter once: 2 * 7/8 * 4 bytes each, two supersteps per tensor; before the fix
    # wte^T (V*H floats) was all-reduced a second time at the lm_head
    assert nbytes == pytest.approx(2 * 7 / 8 * 4 * params)
    assert steps == pytest.approx(2 * tensors)
    # and once per iteration: all of it is gradient sync, none an activation gradient per micro-batch
    sync = sum(cm.evaluate(data_parallel_strategies(cm)).gradient_sync.values())
    assert sync[1] == pytest.approx(nbytes)


def test_tied_embedding_on_two_stages_pays_a_copy_each_and_the_embedding_group(gpt, gpt_rebinder):
    machine = models.two_level(node_arity=2, gpu_arity=4)
    split = split_machine(machine, 2)
    cm = CostModel(micro_batch_graph(gpt, 2, gpt_rebinder), split.stage_machine, micro_batches=2, bucket_mb=0)
    plan = data_parallel_strategies(cm)
    sched = price_schedule(cm, plan, split, 2)
    stage = sched.stage_of_op
    assert stage["embed.tokens"] == 0 and stage["logits"] == 1
    # by hand: each stage all-reduces every parameter its operators read over its 4 GPUs
    # (2 * 3/4 * bytes * g_gpu + 2 L_gpu); wte is on both, and the two copies are then
    # all-reduced over the node level (2 * 1/2 * bytes * g_node + 2 L_node) on both stages
    expected = [0.0, 0.0]
    for name, t in gpt.tensors.items():
        if t.role is not TensorRole.PARAMETER:
            continue
        readers = {op.name for op in gpt.operators.values() if name in [u.tensor for u in op.inputs]}
        if name == "wte.weight":
            readers = {"embed.tokens", "logits"}  # through lm_head.transpose
        for s in {stage[r] for r in readers}:
            expected[s] += 2 * 3 / 4 * t.nbytes / models.B1 + 2 * models.L1
    wte = V * H * 4
    for s in (0, 1):
        expected[s] += 2 * 1 / 2 * wte / models.B0 + 2 * models.L0
    assert sched.gradient_sync_seconds == pytest.approx(expected)


def shared_weight_chain(views: list[str], n: int = 32, batch: int = 16):
    """``h_{i+1} = h_i @ view_i(W)`` with one square weight W read through Identity, Transpose
    or directly ('') by every MatMul."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])
    nodes, cur = [], "x"
    for i, view in enumerate(views):
        w = "W"
        if view:
            attrs = {"perm": [1, 0]} if view == "Transpose" else {}
            nodes.append(helper.make_node(view, ["W"], [f"W{i}"], name=f"view{i}", **attrs))
            w = f"W{i}"
        out = "y" if i == len(views) - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [cur, w], [out], name=f"mm{i}"))
        cur = out
    graph = helper.make_graph(nodes, "shared", [x], [y], [models._weight("W", [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return import_model(model, {"batch": batch})


@settings(max_examples=20, deadline=None)
@given(views=st.lists(st.sampled_from(["", "Identity", "Transpose"]), min_size=1, max_size=4),
       bucket_mb=st.sampled_from([0, 0.001, 25]))
def test_one_all_reduce_per_parameter_whatever_its_views(views, bucket_mb):
    n = 32
    cm = CostModel(shared_weight_chain(views, n), models.one_level(4), bucket_mb=bucket_mb)
    (nbytes, steps), = level_vector(cm, data_parallel_strategies(cm))
    size = n * n * 4
    assert nbytes == pytest.approx(2 * 3 / 4 * size)
    # one tensor: two supersteps, or its share of a bucket (a whole bucket when it is larger)
    assert steps == pytest.approx(2 if bucket_mb == 0 else 2 * min(1, size / (bucket_mb * 1e6)))


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "25", True])
def test_bucket_size_is_validated(gpt, bad):
    with pytest.raises(OptionsError, match="bucket_mb must be a number of megabytes >= 0"):
        CostModel(gpt, models.one_level(8), bucket_mb=bad)


def test_issue_scale_gpt_data_parallel_on_one_dgx():
    # A 1.65B-parameter GPT (24 layers, hidden 2304, FFN 9216, vocab 50,257, 1,024 positions, tied
    # head), bf16, pure data parallel over the 8 GPUs of machines/dgx_a100.yaml (300e9 B/s, 5 us),
    # one all-reduce per tensor: 2 * 7/8 * 2 B * 1,647,698,688 / 300e9 = 19.223 ms plus
    # 292 tensors * 2 * 5 us = 2.92 ms -> 22.143 ms. Before, wte was all-reduced again at the
    # lm_head (2 * 7/8 * 2 B * 50,257 * 2,304 / 300e9 + 10 us = 1.361 ms more: 23.504 ms).
    from planner.machine.tree import load_preset

    params, tensors = gpt_parameters(24, 2304, 9216, 50257, 1024)
    assert (params, tensors) == (1_647_698_688, 292)
    graph = import_model(gpt_decoder(24, 2304, 24, 9216, 50257, 1024), {"batch": 8, "seq": 1024})
    assert graph.parameter_count == params
    cm = CostModel(graph, load_preset("dgx_a100"), "train", "bf16", bucket_mb=0)
    cost = cm.evaluate(data_parallel_strategies(cm))
    expected = 2 * 7 / 8 * 2 * params / 300e9 + tensors * 2 * 5e-6
    assert cost.seconds()["communication"] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(22.143e-3, abs=1e-6)
