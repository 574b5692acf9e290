"""planner.cost.dimension_roles: heads, head_dim, vocabulary and experts named from the roles of
attention, embedding and expert operators, on the GPT-2 small and MoE samples (GPT-2 small: 12
heads of 64, vocabulary 50,257, 1,024 positions; the MoE layer: 8 experts of 512 -> 2,048 -> 512,
sample_models/README.md)."""

from pathlib import Path

import pytest

from planner.cost import formula_text as ft
from planner.cost.dimension_roles import dimension_roles
from planner.onnx.importer import import_model

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


@pytest.fixture(scope="module")
def gpt2():
    return import_model(str(SAMPLES / "gpt2_small.onnx"), {"batch": 4, "seq": 128})


@pytest.fixture(scope="module")
def moe():
    return import_model(str(SAMPLES / "moe.onnx"), {"batch": 4, "seq": 128})


def _named(graph, op, role):
    """The sizes of the op's dims named ``role``."""
    names = ft.dimension_names(graph, op)
    return sorted(graph.operators[op].dims[d] for d, n in names.items() if n == role)


def test_attention_scores_name_heads_and_the_summed_head_dim(gpt2):
    # scores[b, h, m, n] = sum_k q[b, h, m, k] k[b, h, k, n]: 12 heads, k the head dim (768 / 12 = 64)
    assert _named(gpt2, "layer0.attn.scores", "heads") == [12]
    assert _named(gpt2, "layer0.attn.scores", "summed head_dim") == [64]
    assert _named(gpt2, "layer0.attn.scores", "sequence") == [128, 128]
    # context[b, h, m, n] = sum_k p[b, h, m, k] v[b, h, k, n]: the head dim is an output here
    assert _named(gpt2, "layer0.attn.context", "head_dim") == [64]
    assert _named(gpt2, "layer0.attn.context", "heads") == [12]


def test_heads_are_traced_through_the_softmax_but_not_into_the_merged_hidden(gpt2):
    for op in ("layer0.attn.scale", "layer0.attn.softmax", "layer11.attn.softmax"):
        assert _named(gpt2, op, "heads") == [12], op
    # the output projection sums over heads x head_dim = 768: not "heads"
    assert "heads" not in dimension_roles(gpt2).get("layer0.attn.proj", {}).values()
    assert _named(gpt2, "layer0.attn.proj", "summed input features") == [768]


def test_the_vocabulary_is_the_token_table_rows_and_the_logits_columns(gpt2):
    assert _named(gpt2, "embed.tokens", "vocabulary") == [50_257]
    assert _named(gpt2, "embed.positions", "table rows") == [1_024]  # positions are not the vocabulary
    assert _named(gpt2, "logits", "vocabulary") == [50_257]  # the tied LM head's output


def test_experts_are_the_stacked_weights_leading_axis(moe):
    # fc1: y[b, s, e, f] = sum_d x[b, s, d] w[e, d, f], 8 experts
    assert _named(moe, "experts.fc1", "experts") == [8]
    assert _named(moe, "experts.relu", "experts") == [8]  # traced through the bias and the ReLU
    assert _named(moe, "experts.fc2", "experts") == [8]
    # the gate-weighted sum over the experts: summed, and the sequence is not taken for heads
    assert _named(moe, "output", "summed experts") == [8]
    assert "heads" not in set(ft.dimension_names(moe, "output").values())


def test_an_mlp_has_none_of_these_roles():
    graph = import_model(str(SAMPLES / "mlp.onnx"), {"batch": 8})
    assert dimension_roles(graph) == {}
