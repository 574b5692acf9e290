"""Repeated layers planned once (issue 13): the folded search gives the full search's answer.

The reference is the same search on the whole graph (``fold=False``, ``fold_layers=False``): on
every sample model, on random GPT-style stacks and through the whole configuration search, the
folded search must return the same strategies and the same cost (to 1e-9 relative). The folded
plan is priced by the ordinary evaluator on the full graph; the copies left out of the folded
graph must cost there exactly what their representative costs in the folded graph, so that the
folded graph's prices times the multiplicities are the full graph's.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from planner.api import plan_model
from planner.cost.result import cost_model_for
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.search.drec import SMALL_GRAPH_OPS
from planner.search.folded import folding_of, plan_stage, search_folded, twin
from sample_models.synthetic import gpt_decoder, mlp
from tests.models import sample_graph, sixteen_nodes

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


def same_answer(folded, full, cm) -> None:
    assert folded.strategies == full.strategies
    assert math.isclose(cm.total_seconds(folded.strategies), cm.total_seconds(full.strategies), rel_tol=1e-9)


DEEP = {"gpt3_175b", "llama2_70b", "llama3_8b", "bert_large", "bert_base", "gpt2_small"}  # more than SMALL_GRAPH_OPS operators, layers


# Under the shape-aware compute costs (issue 11 item 4) the folded search settles on a periodic
# plan that the full search beats on these stacks (Llama-3-8B: 0.3268 s against 0.3248 s, every
# middle layer split another way), so folding is off by default (planner.api.plan_model).
DIVERGES = {("drec+", "llama3_8b"), ("drec", "llama3_8b"), ("drec", "gpt2_small")}
_KNOWN = pytest.mark.xfail(strict=True, reason="the folded search's periodic plan is costlier than the full search's")


@pytest.mark.parametrize("name", sorted(p.stem for p in SAMPLES.glob("*.onnx")))
@pytest.mark.parametrize("algorithm", ["drec+", "drec"])
def test_every_sample_gets_the_full_search_plan(name, algorithm, request):
    if (algorithm, name) in DIVERGES:
        request.applymarker(_KNOWN)
    graph, _ = sample_graph(name)
    cm = cost_model_for(graph, sixteen_nodes(), PlanOptions())
    folding = folding_of(cm, algorithm)
    # the deep samples are folded (else this test would compare the full search with itself)
    assert (folding is not None) == (name in DEEP)
    if folding is not None:
        assert len(folding.graph.operators) < len(graph.operators)
    fast = search_folded(cost_model_for(graph, sixteen_nodes(), PlanOptions()), algorithm)
    same_answer(fast, search_folded(cm, algorithm, fold=False), cm)


@pytest.mark.parametrize("seed", range(4))
def test_random_gpt_stacks_agree(seed):
    """GPT-style stacks of random depth and width on random two-level machines."""
    rng = random.Random(seed)
    heads = rng.choice([4, 8, 12])
    graph = import_model(gpt_decoder(rng.randint(12, 20), hidden=64 * heads, heads=heads, ffn=256 * heads,
                                     vocab=rng.choice([1000, 32000]), max_pos=512),
                         {"batch": rng.choice([16, 64, 96]), "seq": rng.choice([128, 256])})
    machine = load_preset("dgx_a100_64nodes").with_level(0, arity=rng.choice([2, 6, 16]))
    cm = cost_model_for(graph, machine, PlanOptions(precision=rng.choice(["bf16", "fp32"])))
    assert folding_of(cm, "drec+") is not None
    fast, _ = plan_stage(twin(cm, graph), "drec+")
    full, _ = plan_stage(cm, "drec+", fold=False)
    same_answer(fast, full, cm)


@pytest.mark.parametrize("name, machine, layers", [("gpt", "a100_512x8", 16),
                                                   pytest.param("llama3_8b", "dgx_a100_64nodes", 0, marks=_KNOWN)])
def test_the_configuration_search_keeps_its_answer(name, machine, layers):
    """The whole default search (stages x micro-batches x recomputation x ZeRO, the Megatron-SP
    candidate): the same configuration, plan and iteration time."""
    if name == "gpt":
        model = gpt_decoder(layers)
        graph, rebind = import_model(model, {"batch": 1536, "seq": 2048}), (lambda: rebinder_for(model, name="g"))
    else:
        graph, path = sample_graph(name)
        rebind = lambda: rebinder_for(path)  # noqa: E731
    m = load_preset(machine)
    fast = plan_model(graph, m, PlanOptions(), rebinder=rebind(), fold_layers=True)
    full = plan_model(graph, m, PlanOptions(), rebinder=rebind())  # the default: the full search
    assert (fast.schedule.stages, fast.schedule.micro_batches, fast.schedule.recompute, fast.schedule.zero) == \
        (full.schedule.stages, full.schedule.micro_batches, full.schedule.recompute, full.schedule.zero)
    assert fast.plan.strategies == full.plan.strategies
    assert list(fast.plan.strategies) == list(full.plan.strategies)  # the JSON's order too
    assert math.isclose(fast.total_seconds, full.total_seconds, rel_tol=1e-9)
    assert [row["iteration_seconds"] for row in fast.tried] == \
        pytest.approx([row["iteration_seconds"] for row in full.tried], rel=1e-9)


def test_copies_cost_what_their_representative_costs():
    """Folded prices times multiplicities are the full graph's prices, operator by operator."""
    graph = import_model(gpt_decoder(14, hidden=512, heads=8, ffn=2048, vocab=1000, max_pos=256),
                         {"batch": 64, "seq": 256})
    cm = cost_model_for(graph, sixteen_nodes(), PlanOptions())
    folding = folding_of(cm, "drec+")
    plan = search_folded(cm, "drec+").strategies
    small = twin(cm, folding.graph)
    for copy, rep in folding.source.items():
        if copy in plan:
            assert cm.op_seconds(copy, plan[copy]) == pytest.approx(small.op_seconds(rep, plan[rep]), rel=1e-12)
    weighted = sum(small.op_seconds(n, plan[n]) * folding.multiplicity.get(n, 1) for n in small.planned)
    assert weighted == pytest.approx(sum(cm.op_seconds(n, plan[n]) for n in cm.planned), rel=1e-9)
    # 14 layers: layer 0 reads the embeddings (its own hash), then a run of 13 copies: 6 kept before
    # the left-out ones (the representative is the 6th, layer 6), 4 kept after (layers 10-13), so the
    # representative stands for itself and layers 7, 8, 9
    assert set(folding.multiplicity.values()) == {4}
    assert {c.split(".")[0] for c in folding.source} == {"layer7", "layer8", "layer9"}
    assert {r.split(".")[0] for r in folding.source.values()} == {"layer6"}


def test_without_repeated_layers_the_full_path_is_taken():
    graph = import_model(mlp([1024] + [4096] * 300 + [1024]), {"batch": 256})  # deep, no named layers
    cm = cost_model_for(graph, sixteen_nodes(), PlanOptions())
    assert len(cm.planned) > SMALL_GRAPH_OPS
    assert folding_of(cm, "drec+") is None
    fast, full = search_folded(cm, "drec+"), search_folded(cm, "drec+", fold=False)
    same_answer(fast, full, cm)


def test_the_trace_covers_every_copy():
    """The explorer shows each operator's decisions: a left-out copy has its representative's."""
    graph = import_model(gpt_decoder(14, hidden=512, heads=8, ffn=2048, vocab=1000, max_pos=256),
                         {"batch": 64, "seq": 256})
    cm = cost_model_for(graph, sixteen_nodes(), PlanOptions())
    folding = folding_of(cm, "drec")
    trace = search_folded(cm, "drec").trace
    full = search_folded(cm, "drec", fold=False).trace
    key = lambda e: (e["cut"], e["operator"], e["chosen"])  # noqa: E731
    assert sorted(map(key, trace)) == sorted(map(key, full))
    assert {e["operator"] for e in trace} >= set(folding.source) & {e["operator"] for e in full}
