"""The configuration search on mixture-of-experts models, stages and micro-batches left to it: its
plan beats or equals every hand-made Megatron-style configuration (tensor x pipeline x data x
expert, one sample per micro-batch, each on its memory ladder) on small versions of the Mixtral and
DeepSeek samples, with memory so tight that one micro-batch of the whole batch does not fit (the
case the search lost before the expert-parallel layouts became its candidates: one stage, gradient
accumulation over eight micro-batches, beat its pipelined plan)."""

from __future__ import annotations

import pytest

import models  # tests/models.py
from moe_models import write
from planner.api import plan_model
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.search.configurations import climb_memory_ladder, evaluate_configuration, memory_ladder
from planner.search.expert_parallel import expert_layouts

SAMPLES = {
    "mixtral_8x7b": dict(layers=2, hidden=256, heads=8, kv_heads=2, ffn=512, vocab=1024),
    "deepseek_moe": dict(layers=3, hidden=256, heads=8, ffn=512, vocab=1024, experts=16, top_k=4, expert_ffn=128,
                         shared=2),
}
BATCH, SEQ = 64, 256


def _hand_made(path, graph, machine):
    """Every tensor x pipeline x data x expert configuration on 2 x 4 devices, one sample per
    micro-batch, each on the first rung of its memory ladder that fits (or the last)."""
    out = {}
    for tp in (1, 2, 4, 8):
        for pp in (1, 2):
            dp = 8 // (tp * pp)
            for ep in (1, 2, 4, 8):
                if dp < 1 or dp % ep:
                    continue
                first = evaluate_configuration(graph, machine, tp, pp, dp, 1, BATCH,
                                               PlanOptions(algorithm="megatron", precision="bf16", recompute="none",
                                                           zero=0), rebinder=rebinder_for(path), expert=ep)
                out[(tp, pp, dp, ep)] = climb_memory_ladder(first, memory_ladder(None, None, pp == 1))
    return out


@pytest.mark.parametrize("name,memory", [("mixtral_8x7b", 60e6), ("mixtral_8x7b", 25e6), ("deepseek_moe", 60e6)])
def test_the_search_beats_or_equals_every_hand_made_configuration(tmp_path, name, memory):
    path = write(tmp_path, name, **SAMPLES[name])
    machine = models.two_level(2, 4, memory=memory)
    graph = import_model(path, {"batch": BATCH, "seq": SEQ})
    searched = plan_model(graph, machine, PlanOptions(algorithm="drec+", precision="bf16"),
                          rebinder=rebinder_for(path))
    hand = _hand_made(path, graph, machine)
    assert len(hand) == 16  # (1, 1, 8) x EP 1, 2, 4, 8; (1, 2, 4) x 3; (2, 1, 4) x 3; (2, 2, 2) x 2; ... (8, 1, 1) x 1
    fitting = {k: r for k, r in hand.items() if r.memory.fits}
    assert fitting and searched.memory.fits
    for layout, r in fitting.items():
        assert searched.total_seconds <= r.total_seconds * (1 + 1e-9), layout
    assert any("expert-parallel layouts tried" in n for n in searched.notes)


def test_without_the_layouts_the_search_loses_to_gradient_accumulation(tmp_path, monkeypatch):
    """The premise of the test above: at 60 MB, without the expert-parallel layouts as candidates,
    the search's plan is slower than the hand-made DP 8 (one stage, eight micro-batches of one sample)."""
    import planner.search.expert_parallel as expert_parallel

    path = write(tmp_path, "mixtral_8x7b", **SAMPLES["mixtral_8x7b"])
    graph = import_model(path, {"batch": BATCH, "seq": SEQ})
    machine = models.two_level(2, 4, memory=60e6)
    monkeypatch.setattr(expert_parallel, "search_experts", lambda best, *args, **kwargs: best)
    alone = plan_model(graph, machine, PlanOptions(algorithm="drec+", precision="bf16"), rebinder=rebinder_for(path))
    dp8 = _hand_made(path, graph, machine)[(1, 1, 8, 1)]
    assert dp8.memory.fits and dp8.schedule.micro_batches == 8
    assert dp8.total_seconds < alone.total_seconds


def test_layouts_follow_megatron_rules():
    """8 heads on 4 x 8 devices, 64 samples, experts 8: tensor 1, 2, 4, 8 (dividing the heads and
    the node's 8 GPUs), stages 1, 2, 4 over the 4 nodes, expert 1 or 8 where 8 divides the data size."""
    machine = models.two_level(4, 8)
    layouts = expert_layouts(machine, 8, [8], 64)
    assert (1, 1, 32, 8) in layouts and (8, 4, 1, 1) in layouts
    assert (8, 1, 4, 8) not in layouts  # 8 experts over 4 data-parallel ranks: not inside them
    assert {p for _, p, _, _ in layouts} == {1, 2, 4}
    assert all(t * p * d == 32 and d % e == 0 and 64 % d == 0 for t, p, d, e in layouts)
    # expert 1 for each of the 4 x 3 (tensor, stages); expert 8 where the data size (32 / (tensor x stages))
    # is a multiple of 8: data 32, 16, 8 with one stage, 16, 8 with two, 8 with four
    assert len(layouts) == 12 + 3 + 2 + 1


def test_a_moe_layer_without_attention_keeps_the_plan_found():
    """The one-layer moe.onnx has experts but no attention: no Megatron layout to try, no note."""
    path = "sample_models/moe.onnx"
    graph = import_model(path, {"batch": 8, "seq": 8})
    result = plan_model(graph, models.two_level(2, 4), PlanOptions(algorithm="drec+"), rebinder=rebinder_for(path))
    assert not any("expert-parallel layouts" in n for n in result.notes)
    assert result.plan.algorithm == "drec+"
