"""D-Rec re-makes a choice only when something it depends on moved (issue 13's speed-up).

The reference is the same search re-making every choice at every pass (``incremental=False``,
what D-Rec did before): on every sample model, and through the whole configuration search, the
incremental search must return the same strategies and the same cost (to 1e-9 relative).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from planner.api import plan_model
from planner.cost.baseline import data_parallel_strategies
from planner.cost.result import cost_model_for
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.search import registry
from planner.search.drec import DRecSearch, plan_drec
from sample_models.synthetic import random_case
from tests.models import sample_graph, sixteen_nodes

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


def same_plans(a, b, cm) -> None:
    assert a.strategies == b.strategies
    fast, full = cm.total_seconds(a.strategies), cm.total_seconds(b.strategies)
    assert math.isclose(fast, full, rel_tol=1e-9)


@pytest.mark.parametrize("name", sorted(p.stem for p in SAMPLES.glob("*.onnx")))
@pytest.mark.parametrize("improved", [True, False], ids=["drec+", "drec"])
def test_every_sample_gets_the_plan_of_the_search_that_remakes_every_choice(name, improved):
    graph, _ = sample_graph(name)
    cm = cost_model_for(graph, sixteen_nodes(), PlanOptions())
    dp = data_parallel_strategies(cm) if improved else None
    fast = plan_drec(cost_model_for(graph, sixteen_nodes(), PlanOptions()), improved, data_parallel=dp)
    full = plan_drec(cm, improved, data_parallel=dp, incremental=False)
    same_plans(fast, full, cm)
    assert fast.trace == full.trace  # the same decisions, cut by cut, with the same candidates' prices


@pytest.mark.parametrize("seed", range(12))
def test_random_small_cases_agree_too(seed):
    from planner.machine.tree import Machine

    _, model, binds, machine = random_case(seed)
    graph = import_model(model, binds)
    cm = cost_model_for(graph, Machine.from_dict(machine), PlanOptions())
    fast = plan_drec(cost_model_for(graph, Machine.from_dict(machine), PlanOptions()), True,
                     data_parallel=data_parallel_strategies(cm))
    same_plans(fast, plan_drec(cm, True, data_parallel=data_parallel_strategies(cm), incremental=False), cm)


@pytest.mark.parametrize("name", ["bert_base", "gpt2_small", "resnet50"])
def test_the_configuration_search_keeps_its_answer(name, monkeypatch):
    """The whole default search (stages x micro-batches x recomputation x ZeRO) on the app's
    default machine, with the reference D-Rec swapped in: the same configuration and plan."""
    graph, path = sample_graph(name)
    machine = load_preset("dgx_a100_64nodes")
    # the full search (repeated layers planned one by one, tests/search/test_folded_search.py checks
    # the folded one against it): the registry's drec+ is the one swapped
    fast = plan_model(graph, machine, PlanOptions(), rebinder=rebinder_for(path), fold_layers=False)

    def reference(cm, progress, hints):
        return plan_drec(cm, improved=True, progress=progress, data_parallel=data_parallel_strategies(cm),
                         hints=hints, incremental=False)
    monkeypatch.setitem(registry.SEARCHES, "drec+", reference)
    full = plan_model(graph, machine, PlanOptions(), rebinder=rebinder_for(path), fold_layers=False)
    assert (fast.schedule.stages, fast.schedule.micro_batches, fast.schedule.recompute, fast.schedule.zero) == \
           (full.schedule.stages, full.schedule.micro_batches, full.schedule.recompute, full.schedule.zero)
    assert fast.plan.strategies == full.plan.strategies
    assert math.isclose(fast.total_seconds, full.total_seconds, rel_tol=1e-9)
    assert fast.tried == full.tried


def test_dependants_are_the_neighbours_and_the_other_readers_of_a_tensor():
    """By hand on the sample MLP (fc1, relu1, fc2, relu2, fc3 and the output's operator, a chain
    where every tensor has one reader): each operator depends on the operators next to it along
    the chain, and on nothing further away."""
    graph, _ = sample_graph("mlp")
    cm = cost_model_for(graph, sixteen_nodes(), PlanOptions())
    deps = DRecSearch(cm).dependants
    order = cm.planned
    assert order == ['fc1', 'relu1', 'fc2', 'relu2', 'fc3', 'output']
    for i, n in enumerate(order):
        assert deps[n] == frozenset(order[j] for j in (i - 1, i + 1) if 0 <= j < len(order))
