"""Mixture-of-experts layers recognised in the forms exporters write (planner/cost/moe.py), and the
expert-parallel rules Megatron-LM enforces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from moe_models import DEEPSEEK, MIXTRAL, write
from planner.cost.moe import (ExpertParallelError, check_expert_parallel, expert_cuts, expert_dims,
                              find_moe_layers, router_layers)
from planner.machine.tree import Device, Level, Machine
from planner.onnx.importer import import_model

REPO = Path(__file__).resolve().parents[2]
B, S, D, F, E, K = 2, 4, 8, 16, 4, 2
RNG = np.random.default_rng(12)


def _w(*shape):
    """Distinct random weights (equal ones would be merged as tied by the importer)."""
    return RNG.standard_normal(shape).astype(np.float32)


def _router(nodes, inits):
    inits.append(numpy_helper.from_array(_w(D, E), "router.w"))
    inits.append(numpy_helper.from_array(np.array([K], np.int64), "k"))
    nodes += [helper.make_node("MatMul", ["x", "router.w"], ["logits"], name="router"),
              helper.make_node("Softmax", ["logits"], ["probs"], name="router.softmax", axis=-1),
              helper.make_node("TopK", ["probs", "k"], ["gates", "idx"], name="router.topk", axis=-1)]


def _model(nodes, inits, out_shape) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, D])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, "moe", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def gathered_experts() -> onnx.ModelProto:
    """Hugging Face's batched_mm form: each token's k expert weights gathered from the stacked
    [E, F, D] table by the routed indices, then one batched matmul per (token, choice)."""
    nodes, inits = [], []
    _router(nodes, inits)
    inits += [numpy_helper.from_array(_w(E, F, D), "experts.w1"),
              numpy_helper.from_array(np.array([-1], np.int64), "flat"),
              numpy_helper.from_array(np.array([B * S * K, D, 1], np.int64), "cols"),
              numpy_helper.from_array(np.array([B, S, K, D], np.int64), "rep")]
    nodes += [helper.make_node("Reshape", ["idx", "flat"], ["idx_flat"], name="experts.index"),
              helper.make_node("Gather", ["experts.w1", "idx_flat"], ["w"], name="experts.gather", axis=0),
              helper.make_node("Unsqueeze", ["x", "axes2"], ["xu"], name="experts.unsqueeze"),
              helper.make_node("Expand", ["xu", "rep"], ["xe"], name="experts.expand"),
              helper.make_node("Reshape", ["xe", "cols"], ["xc"], name="experts.cols"),
              helper.make_node("MatMul", ["w", "xc"], ["y"], name="experts.matmul")]
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "axes2"))
    return _model(nodes, inits, [B * S * K, F, 1])


def per_expert_loop() -> onnx.ModelProto:
    """An unrolled ``for expert in experts``: E separate two-layer MLPs, each weighted by its gate
    (scattered from the top-k into [b, s, E] and picked with a Gather), summed."""
    nodes, inits = [], []
    _router(nodes, inits)
    inits.append(numpy_helper.from_array(np.zeros((B, S, E), np.float32), "zeros"))
    nodes.append(helper.make_node("ScatterElements", ["zeros", "idx", "gates"], ["dense_gates"], name="gates", axis=-1))
    outs = []
    for e in range(E):
        inits += [numpy_helper.from_array(_w(D, F), f"e{e}.w1"),
                  numpy_helper.from_array(_w(F, D), f"e{e}.w2"),
                  numpy_helper.from_array(np.array([e], np.int64), f"e{e}.index")]
        nodes += [helper.make_node("MatMul", ["x", f"e{e}.w1"], [f"e{e}.h"], name=f"e{e}.fc1"),
                  helper.make_node("Relu", [f"e{e}.h"], [f"e{e}.r"], name=f"e{e}.relu"),
                  helper.make_node("MatMul", [f"e{e}.r", f"e{e}.w2"], [f"e{e}.o"], name=f"e{e}.fc2"),
                  helper.make_node("Gather", ["dense_gates", f"e{e}.index"], [f"e{e}.g"], name=f"e{e}.gate", axis=2),
                  helper.make_node("Mul", [f"e{e}.o", f"e{e}.g"], [f"e{e}.y"], name=f"e{e}.weighted")]
        outs.append(f"e{e}.y")
    nodes.append(helper.make_node("Sum", outs, ["y"], name="combine"))
    return _model(nodes, inits, [B, S, D])


def test_the_generated_mixtral_has_stacked_experts_in_every_layer(tmp_path):
    graph = import_model(write(tmp_path, "mixtral_8x7b", **MIXTRAL), {"batch": 2, "seq": 16})
    layers = find_moe_layers(graph)
    assert [(m.form, m.experts, m.top_k) for m in layers] == [("stacked", 8, 2)] * 2
    assert sorted(layers[1].expert_ops) == ["layer1.moe.experts.down_proj", "layer1.moe.experts.gate_proj",
                                           "layer1.moe.experts.up_proj"]
    assert set(expert_dims(graph).values()) == {"b1"}  # [b, E, C, hidden] @ [E, hidden, ffn]: E is batched
    assert router_layers(graph) == {"layer0.moe.router", "layer1.moe.router"}


def test_the_deepseek_sample_keeps_its_first_layer_and_shared_experts_dense(tmp_path):
    graph = import_model(write(tmp_path, "deepseek_moe", **DEEPSEEK), {"batch": 2, "seq": 32})
    layers = find_moe_layers(graph)
    assert [(m.form, m.experts, m.top_k) for m in layers] == [("stacked", 16, 4)] * 2
    assert not any(n.startswith("layer0.") or ".shared." in n for n in expert_dims(graph))


def test_the_dense_einsum_sample_is_one_stacked_layer():
    graph = import_model(str(REPO / "sample_models" / "moe.onnx"), {"batch": 2, "seq": 8})
    [layer] = find_moe_layers(graph)
    assert (layer.form, layer.experts, layer.top_k, layer.expert_ops) == ("stacked", 8, 2, ("experts.fc1", "experts.fc2"))


def test_gathered_experts_are_recognised():
    graph = import_model(gathered_experts(), {}, name="gathered")
    [layer] = find_moe_layers(graph)
    assert (layer.form, layer.experts, layer.top_k, layer.expert_ops) == ("gathered", E, K, ("experts.gather",))
    assert expert_dims(graph) == {}  # nothing a split turns into expert parallelism


def test_a_loop_of_per_expert_matmuls_is_recognised():
    graph = import_model(per_expert_loop(), {}, name="loop")
    [layer] = find_moe_layers(graph)
    assert (layer.form, layer.experts, layer.top_k) == ("per-expert", E, K)
    assert set(layer.expert_ops) == {f"e{e}.fc{i}" for e in range(E) for i in (1, 2)}


def test_a_dense_model_has_no_moe_layer():
    graph = import_model(str(REPO / "sample_models" / "llama3_8b.onnx"), {"batch": 1, "seq": 8})
    assert find_moe_layers(graph) == [] and router_layers(graph) == frozenset()


@pytest.mark.parametrize("expert, data, message", [
    (3, 6, "--ep 3 does not divide the 8 experts"),
    (4, 6, "--ep 4 does not divide the data-parallel size 6"),
])
def test_megatron_rules(tmp_path, expert, data, message):
    graph = import_model(write(tmp_path, "mixtral_8x7b", **MIXTRAL), {"batch": 2, "seq": 16})
    with pytest.raises(ExpertParallelError, match=message):
        check_expert_parallel(find_moe_layers(graph), expert, data)
    check_expert_parallel(find_moe_layers(graph), 2, data)  # 2 divides both


def test_gathered_experts_refuse_expert_parallelism():
    graph = import_model(gathered_experts(), {}, name="gathered")
    with pytest.raises(ExpertParallelError, match="no experts stacked on a leading axis .*gathered"):
        check_expert_parallel(find_moe_layers(graph), 2, 4)


def test_expert_cuts_are_the_innermost_data_parallel_cuts():
    # 4 nodes x 6 GPUs: cuts node 2, node 2, gpu 2, gpu 3; tensor parallelism on none of them
    machine = Machine("m", Device("d", 1e12, 1e9), (Level("node", 4, 1e9, 1e-6), Level("gpu", 6, 1e10, 1e-6)))
    cuts = machine.cuts()
    assert [(c.level, c.factor) for c in cuts] == [(0, 2), (0, 2), (1, 2), (1, 3)]
    assert expert_cuts(cuts, frozenset(), 6) == {2, 3}
    assert expert_cuts(cuts, frozenset(), 4) == {1, 2}
    assert expert_cuts(cuts, frozenset({1}), 4) == {0, 1}  # the GPUs are tensor parallel
    with pytest.raises(ExpertParallelError):
        expert_cuts(cuts, frozenset({1}), 3)
