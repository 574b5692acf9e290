"""The Megatron layout with sequence parallelism as a candidate of the configuration search
(planner.search.megatron.sequence_parallel_candidate): priced with the sequence-parallel rules, it
replaces a searched plan that is slower per micro-batch, and the plan then records the option.

The model: a 2-layer GPT (hidden 64, 8 heads, FFN 256, vocabulary 1024, sequence 32), batch 2,
fp32, on one level of 8 GPUs computing at 1e11 FLOP/s with links of 1e12 B/s (splitting pays).
"""

from __future__ import annotations

import pytest

from planner.cost.result import cost_model_for
from planner.machine.tree import Device, Level, Machine
from planner.onnx.importer import import_model
from planner.options import PlanOptions
from planner.search.megatron import plan_megatron, sequence_parallel_candidate
from planner.search.registry import search
from planner.cost.model import Plan
from sample_models.synthetic import gpt_decoder


@pytest.fixture(scope="module")
def cm():
    graph = import_model(gpt_decoder(2, 64, 8, 256, 1024, 32), {"batch": 2, "seq": 32}, name="gpt2l")
    machine = Machine("eight", Device("gpu", 1e11, 80e9), (Level("gpu", 8, 1e12, 1e-7),))
    return cost_model_for(graph, machine, PlanOptions(recompute="none", zero=0))


def test_a_slower_searched_plan_is_replaced_by_megatron_sp(cm):
    replicated = Plan({n: cm.replicated() for n in cm.planned}, "drec+")
    kept, priced = sequence_parallel_candidate(cm, replicated)
    assert priced.sequence_parallel and not cm.sequence_parallel
    reference = plan_megatron(priced)  # the same layout, planned directly with the option on
    assert kept.strategies == reference.strategies and kept.algorithm == "drec+"
    assert priced.total_seconds(kept.strategies) < cm.total_seconds(replicated.strategies)
    assert "sequence parallelism" in kept.notes[0] and "kept" in kept.notes[0]


def test_a_faster_searched_plan_is_kept(cm):
    plan = search(cm, "drec+")
    sp_cm = cost_model_for(cm.graph, cm.machine, PlanOptions(recompute="none", zero=0, sequence_parallel=True))
    sp = plan_megatron(sp_cm)
    # on this machine drec+ finds a layout faster than the Megatron-SP one
    assert cm.total_seconds(plan.strategies) < sp_cm.total_seconds(sp.strategies)
    kept, priced = sequence_parallel_candidate(cm, plan)
    assert kept is plan and priced is cm
