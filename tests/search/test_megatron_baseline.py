"""The ``megatron`` baseline as Megatron-LM does it (issue 10 item 9): the vocabulary padded to a
multiple of 128 x the tensor-parallel size and priced padded; a head count the tensor size does
not divide refused; the bias and residual Adds and LayerNorms after a row-parallel layer kept
replicated (no all-gather before the LayerNorm, as without sequence parallelism).

The model: sample_models.synthetic.gpt_decoder(1 layer, hidden 128, heads 4 (or 6), ffn 512,
vocab 1000, tied LM head; hidden 192 with 6 heads), batch 8, seq 32, on tests/models.two_level(2 nodes, 4 gpus): data
parallel over the nodes, 4-way tensor parallel over the GPUs (two cuts of 2).
"""

from __future__ import annotations

import onnx
import pytest

import models  # tests/models.py
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.api import plan_model
from planner.search.configurations import evaluate_configuration
from planner.cost.model import CostModel
from planner.search.megatron import HeadSplitError, attention_heads, plan_megatron
from planner.search.vocab import pad_vocabulary, padded_vocabulary
from sample_models import synthetic

HIDDEN, VOCAB, BATCH, SEQ = 128, 1000, 8, 32


def decoder(heads: int = 4, hidden: int = HIDDEN):
    return synthetic.gpt_decoder(1, hidden=hidden, heads=heads, ffn=4 * hidden, vocab=VOCAB, max_pos=128)


@pytest.fixture(scope="module")
def graph():
    return models.graph_of(decoder(), batch=BATCH, seq=SEQ)


@pytest.fixture(scope="module")
def planned(graph):
    return plan_model(graph, models.two_level(2, 4), PlanOptions(algorithm="megatron"))


@pytest.mark.parametrize("vocab, tensor, padded", [
    (50257, 1, 50304),  # GPT-2 in Megatron-LM: ceil(50257 / 128) * 128
    (50257, 4, 50688),  # multiple of 512: 99 * 512
    (50257, 8, 51200),  # multiple of 1024: 50 * 1024
    (1000, 4, 1024),
    (1024, 8, 1024),  # already a multiple
])
def test_padded_vocabulary_by_hand(vocab, tensor, padded):
    assert padded_vocabulary(vocab, tensor) == padded


def test_the_padded_vocabulary_is_what_is_priced(graph, planned):
    # 1000 tokens, 4-way tensor parallel: padded to 1024. The tied table gains 24 x 128 weights;
    # the logits are 8 x 32 x 1024 fp32; each GPU holds a quarter of the table's rows
    g = planned.cost_model.graph
    assert g.parameter_count - graph.parameter_count == (1024 - 1000) * HIDDEN
    logits = [t for t in g.tensors.values() if t.shape[-1:] == (1024,) and len(t.shape) == 3]
    assert logits and all(t.nbytes == BATCH * SEQ * 1024 * 4 for t in logits)
    embed = next(n for n, op in g.operators.items() if op.op_type == "Gather" and op.dims.get("v") == 1024)
    table = planned.cost_model.local_bytes(embed, 0, planned.plan.strategies[embed])
    assert table == 1024 * HIDDEN * 4 / 4
    assert any("padded from 1,000 to 1,024" in note for note in planned.notes)
    # the FLOPs of the output layer grow with the padding: 2 x 8 x 32 x 128 x 1024 forward
    head = next(n for n, op in g.operators.items() if op.op_type == "MatMul" and op.dims.get("n") == 1024)
    assert g.operators[head].flops == pytest.approx(2 * BATCH * SEQ * HIDDEN * 1024)


def test_nothing_to_pad_returns_the_graph(graph):
    same, vocab, padded = pad_vocabulary(graph, 1, divisible_by=1000)
    assert same is graph and vocab == padded == 1000


def test_hand_made_configuration_is_padded_too(graph):
    r = evaluate_configuration(graph, models.two_level(2, 4), 4, 1, 2, 4, 8, rebinder=rebinder_for(decoder()))
    assert r.cost_model.graph.parameter_count - graph.parameter_count == 24 * HIDDEN
    assert any("padded from 1,000 to 1,024" in note for note in r.notes)


def test_a_head_count_the_tensor_size_does_not_divide_is_refused():
    g = models.graph_of(decoder(heads=6, hidden=192), batch=BATCH, seq=SEQ)
    cm = CostModel(g, models.two_level(2, 4))
    assert attention_heads(cm) == 6
    with pytest.raises(HeadSplitError, match="tensor parallelism of 4 does not divide the 6 attention heads"):
        plan_megatron(cm)
    # 2-way tensor parallelism divides 6 heads
    assert plan_megatron(CostModel(g, models.two_level(4, 2))).strategies


def test_the_cli_refuses_a_head_split_in_one_line(tmp_path, capsys):
    model = tmp_path / "gpt6.onnx"
    onnx.save(decoder(heads=6, hidden=192), model)
    machine = tmp_path / "m.yaml"
    machine.write_text(models.two_level(2, 4).to_yaml())
    code, out, err = models.run_cli(["evaluate", model, "--machine", machine, "--bind", f"seq={SEQ}", "--tp", "4",
                                     "--pp", "1", "--dp", "2", "--micro-batch-size", "4", "--global-batch", "8"], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "does not divide the 6 attention heads" in err


def test_after_a_row_parallel_layer_everything_stays_replicated(planned):
    # Megatron without sequence parallelism: the row-parallel output is all-reduced, then the bias
    # Add, the residual Add and the LayerNorm run replicated on the 4 tensor-parallel GPUs: no
    # split of the hidden dimension and no all-gather in front of the LayerNorm
    cm, s = planned.cost_model, planned.plan.strategies
    tensor_cuts = [t for t, c in enumerate(cm.cuts) if c.level_name == "gpu"]
    g = cm.graph
    rows = [n for n in cm.planned if g.operators[n].op_type == "MatMul" and s[n][tensor_cuts[0]] == "k"]
    assert len(rows) == 2  # the attention output projection and the MLP's second layer
    after = set()
    for row in rows:
        frontier = list(g.graph.successors(row))
        while frontier:
            n = frontier.pop()
            if g.operators[n].op_type in ("Add", "LayerNormalization") and n not in after:
                after.add(n)
                frontier.extend(g.graph.successors(n))
    kinds = {g.operators[n].op_type for n in after}
    assert kinds == {"Add", "LayerNormalization"}
    for n in after:
        assert all(s[n][t] is None for t in tensor_cuts), (n, s[n])
        assert s[n][0] == g.batch_dims()[n]  # split on the batch across the nodes, like the layers
        costs = planned.cost.op_seconds(n)
        # nothing moves in front of them; their only collective is the data-parallel gradient
        # all-reduce of their own bias / LayerNorm weights (one micro-batch: all of it)
        assert costs["redistribution"] == 0.0, (n, costs)
        assert costs["communication"] == pytest.approx(cm.basis.time(planned.cost.gradient_sync[n]), abs=1e-15)


def test_a_plan_file_records_the_padding_and_a_bad_record_is_refused(graph):
    from planner.cost.model import PlanError
    from planner.search.vocab import pad_as_recorded

    assert pad_as_recorded(graph, {}) is graph
    padded = pad_as_recorded(graph, {"vocabulary_padded": {"from": 1000, "to": 1024}})
    assert padded.parameter_count - graph.parameter_count == 24 * HIDDEN
    for bad in ({"to": 999}, {"to": "1024"}, 1024):
        with pytest.raises(PlanError, match="vocabulary_padded must be"):
            pad_as_recorded(graph, {"vocabulary_padded": bad})
