"""The configuration search on mixture-of-experts models: the expert axis is a dimension it may
split (expert parallelism), and on small versions of the Mixtral and DeepSeek samples its plan
beats or equals every hand-made tensor x data x expert configuration it could express (one stage,
one micro-batch, no recomputation, ZeRO 0), all priced by the same cost model."""

from __future__ import annotations

import pytest

import models  # tests/models.py
from moe_models import write
from planner.api import plan_model
from planner.cost.moe import expert_dims
from planner.cost.result import cost_model_for
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import ConfigError, PlanOptions
from planner.search.configurations import evaluate_configuration

SAMPLES = {
    "mixtral_8x7b": dict(layers=2, hidden=256, heads=8, kv_heads=2, ffn=512, vocab=1024),
    "deepseek_moe": dict(layers=3, hidden=256, heads=8, ffn=512, vocab=1024, experts=16, top_k=4, expert_ffn=128,
                         shared=2),
}
BATCH, SEQ = 32, 256
FIXED = dict(precision="bf16", recompute="none", zero=0)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_search_beats_or_equals_every_hand_made_configuration(tmp_path, name):
    path = write(tmp_path, name, **SAMPLES[name])
    machine = models.two_level(2, 4)
    searched = plan_model(import_model(path, {"batch": BATCH, "seq": SEQ}), machine,
                          PlanOptions(algorithm="drec+", pipeline_stages=1, micro_batches=1, **FIXED),
                          rebinder=rebinder_for(path))
    priced = 0
    for tp in (1, 2, 4, 8):
        dp = 8 // tp
        for ep in (1, 2, 4, 8):
            if dp % ep:
                continue
            graph = import_model(path, {"batch": BATCH // dp, "seq": SEQ})
            hand = evaluate_configuration(graph, machine, tp, 1, dp, BATCH // dp, BATCH,
                                          PlanOptions(algorithm="megatron", **FIXED), rebinder=rebinder_for(path),
                                          expert=ep)
            assert searched.total_seconds <= hand.total_seconds * (1 + 1e-9), (tp, dp, ep)
            priced += 1
    assert priced == 10  # (1, 8) x EP 1, 2, 4, 8; (2, 4) x 1, 2, 4; (4, 2) x 1, 2; (8, 1) x 1


def test_the_expert_axis_is_a_candidate_split(tmp_path):
    path = write(tmp_path, "mixtral_8x7b", **SAMPLES["mixtral_8x7b"])
    cm = cost_model_for(import_model(path, {"batch": BATCH, "seq": SEQ}), models.two_level(2, 4),
                        PlanOptions(**FIXED))
    experts = expert_dims(cm.graph)
    assert len(experts) == 6
    for name, dim in experts.items():
        assert dim in cm.candidates(name, ())
        assert cm.assignment(name, (dim, dim, dim)) is not None  # 8 experts over 2 x 2 x 2 devices


def test_a_configuration_error_names_the_flag(tmp_path):
    path = write(tmp_path, "mixtral_8x7b", **SAMPLES["mixtral_8x7b"])
    graph = import_model(path, {"batch": 4, "seq": SEQ})
    with pytest.raises(ConfigError, match="--ep 16 does not divide the 8 experts"):
        evaluate_configuration(graph, models.two_level(2, 4), 1, 1, 8, 4, 32, PlanOptions(algorithm="megatron"),
                               rebinder=rebinder_for(path), expert=16)
