"""Repeated layers found by structure when the names say nothing (dynamo's ``node_linear_28``), and
the role of each dimension (batch, sequence, hidden, heads, vocabulary, experts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from models import _model, _weight, graph_of
from onnx import TensorProto, helper

from planner.model.layers import find_layers, layers_by_name, layers_by_structure
from planner.model.roles import dim_roles, model_sizes
from planner.onnx.importer import import_model

ROOT = Path(__file__).resolve().parents[2]
H, V, OUT = 24, 40, 10


def residual_stack(layers: int, names: str = "dynamo"):
    """An input projection ``x[batch,16] @ Win[16,H]``, then ``layers`` identical blocks of five
    operators (MatMul, bias Add, Relu, MatMul, residual Add; weights [H,H]), then a head
    ``@ Wout[H,OUT]``. With ``names="dynamo"`` the nodes are numbered as dynamo numbers them
    (``node_linear_3``), one counter per op type across the whole model: no name says "layer"."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUT])
    counters: dict[str, int] = {}

    def name(kind: str) -> str:
        counters[kind] = counters.get(kind, -1) + 1
        return f"node_{kind}_{counters[kind]}" if counters[kind] else f"node_{kind}"
    nodes = [helper.make_node("MatMul", ["x", "Win"], ["h0"], name=name("linear"))]
    inits = [_weight("Win", [16, H]), _weight("Wout", [H, OUT])]
    cur = "h0"
    for i in range(layers):
        inits += [_weight(f"W{i}a", [H, H]), _weight(f"b{i}", [H]), _weight(f"W{i}b", [H, H])]
        nodes += [helper.make_node("MatMul", [cur, f"W{i}a"], [f"a{i}"], name=name("linear")),
                  helper.make_node("Add", [f"a{i}", f"b{i}"], [f"ab{i}"], name=name("add")),
                  helper.make_node("Relu", [f"ab{i}"], [f"r{i}"], name=name("relu")),
                  helper.make_node("MatMul", [f"r{i}", f"W{i}b"], [f"m{i}"], name=name("linear")),
                  helper.make_node("Add", [f"m{i}", cur], [f"h{i + 1}"], name=name("add"))]
        cur = f"h{i + 1}"
    nodes.append(helper.make_node("MatMul", [cur, "Wout"], ["y"], name=name("linear")))
    return _model("stack", nodes, [x], [y], inits)


@pytest.mark.parametrize("layers", [2, 3, 7])
def test_dynamo_named_blocks_are_found_by_structure(layers):
    g = graph_of(residual_stack(layers), batch=4)
    assert layers_by_name(g.operators).count == 0  # nothing in the names to go by
    found = find_layers(g)
    assert found.by == "structure" and found.count == layers
    members = {}
    for op, i in found.index.items():
        members.setdefault(i, []).append(op)
    # block i is operators 1 + 5i .. 5 + 5i in model order (the input projection is operator 0)
    order = list(g.operators)
    for i in range(layers):
        assert sorted(members[i]) == sorted(order[1 + 5 * i: 6 + 5 * i])
    assert order[0] not in found.index and order[-1] not in found.index  # projection and head: no layer


def test_one_block_is_not_a_repeated_layer():
    assert layers_by_structure(graph_of(residual_stack(1), batch=4)).count == 0


@pytest.mark.parametrize("sample,layers", [("bert_base", 12), ("gpt2_small", 12), ("bert_large", 24)])
def test_structure_agrees_with_the_names_on_the_samples(sample, layers):
    """Two independent methods: the samples' names (``layer7.attn.q``) and their structure."""
    g = import_model(ROOT / "sample_models" / f"{sample}.onnx", {"batch": 2, "seq": 16})
    by_name, by_structure = layers_by_name(g.operators), layers_by_structure(g)
    assert by_name.count == by_structure.count == layers
    same = sum(1 for op, i in by_structure.index.items() if by_name.index.get(op) == i)
    # GPT-2's pre-LN residual Add before a layer looks the same as the embedding Add before layer 0:
    # at most one operator per layer may be attributed to its neighbour
    assert same >= len(by_structure.index) - layers
    assert len(by_structure.index) >= 0.95 * len(by_name.index)


def test_roles_of_gpt2_dimensions():
    g = import_model(ROOT / "sample_models" / "gpt2_small.onnx", {"batch": 2, "seq": 16})
    # GPT-2 small: vocabulary 50257, hidden 768, 12 heads (sample_models/README.md)
    assert model_sizes(g) == {"sequence": 16, "vocabulary": 50257, "hidden": 768, "heads": 12}
    roles = dim_roles(g)
    qkv = g.operators["layer0.attn.qkv"]  # y[b,m,n] = sum_k x[b,m,k] w[k,n], n = 3 x 12 heads x 64
    assert {d: roles["layer0.attn.qkv"][d] for d in qkv.dims} == \
        {"b0": "batch", "m": "sequence", "n": "heads", "k": "hidden"}
    tokens = g.operators["embed.tokens"]
    assert sorted(roles["embed.tokens"].values()) == sorted(["vocabulary", "hidden", "batch", "sequence"])
    assert len(tokens.dims) == 4


def test_roles_of_an_expert_layer():
    g = import_model(ROOT / "sample_models" / "moe.onnx", {"batch": 2, "seq": 16})
    assert model_sizes(g)["experts"] == 8  # sample_models/README.md: 8 experts
    roles = dim_roles(g)
    assert "experts" in roles["router.logits"].values()
