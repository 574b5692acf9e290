"""The planner as a library: the facade the command line and the app call.

:func:`plan_model` plans a model (the configuration search of :mod:`planner.search.configurations`
over the searches of :mod:`planner.search.registry`); :func:`evaluate_plan` scores a plan file
(:mod:`planner.plans.plan_json`); :func:`reprice_plan` prices a plan already made on a machine
whose links changed (the what-if panel's first answer). All return a :class:`planner.cost.result.PlanResult`, priced by
the shared evaluator; neither the CLI nor the app computes a cost itself. The options are
:class:`planner.options.PlanOptions`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from planner.cost.baseline import data_parallel_baseline
from planner.cost.model import Plan, Strategy
from planner.cost.result import PlanResult, cost_model_for, result_for
from planner.machine.split import split_machine
from planner.machine.tree import Level, Machine
from planner.model.graph import OperatorGraph
from planner.model.rebind import Rebinder, micro_batch_graph
from planner.onnx.importer import require_bound
from planner.options import ALGORITHMS, DEFAULT_ALGORITHM, ConfigError, PlanOptions
from planner.plans.plan_json import recorded_split, strategies_from_json
from planner.search.vocab import pad_as_recorded

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "PlanOptions", "PlanResult", "plan_model", "evaluate_plan",
           "reprice_plan"]


def plan_model(graph: OperatorGraph, machine: Machine, options: PlanOptions | None = None,
               progress: Callable[[float, str], None] | None = None,
               hints: list[dict[str, Strategy]] | None = None, rebinder: Rebinder | None = None,
               fold_layers: bool = False) -> PlanResult:
    """THE planning entry: the command line's ``plan`` and the explorer both plan through it.

    Plans over the stage counts, micro-batches, recomputation and ZeRO stages the options leave
    open, and as the options fix them otherwise (:mod:`planner.search.configurations`). The exact
    search is refused first when the graph has too many strategies for it
    (:func:`planner.search.exact_guard.require_exact_feasible`, on one stage's machine). ``progress`` is
    called with a fraction and a message while planning; drec+ also starts from ``hints`` (plans
    of the same model and options on other machines, e.g. before a what-if change); ``rebinder``
    re-binds the model's batch for micro-batches (:class:`planner.model.rebind.Rebinder`).
    ``fold_layers=True`` plans repeated layers once (:mod:`planner.search.folded`): 40-55% less
    CPU, but under the shape-aware compute costs its plan can differ from the full search's (0.6%
    costlier on Llama-3-8B), so it is off by default until it provably gives the same plans.
    """
    from planner.limits import check_planning_work
    from planner.search.configurations import SEARCHED_ALGORITHMS, plan_configurations

    options = options or PlanOptions()
    if options.algorithm == "exact":
        from planner.search.exact_guard import require_exact_feasible

        check_planning_work(machine.num_devices, len(graph.operators))
        stage_machine = split_machine(machine, options.pipeline_stages or 1).stage_machine
        require_exact_feasible(cost_model_for(graph, stage_machine, options))
    best = plan_configurations(graph, machine, options, progress, hints=hints, rebinder=rebinder,
                               fold_layers=fold_layers)
    if options.algorithm in SEARCHED_ALGORITHMS:  # experts and long sequences: Megatron-style candidates
        from planner.search.context_parallel import search_context
        from planner.search.expert_parallel import search_experts

        best = search_experts(best, graph, machine, options, rebinder, progress)
        best = search_context(best, graph, machine, options, rebinder, progress)
    return best


def evaluate_plan(graph: OperatorGraph, machine: Machine, data: dict, options: PlanOptions | None = None,
                  rebinder: Rebinder | None = None) -> PlanResult:
    """Score a plan written by hand or by another tool (see :func:`strategies_from_json`);
    ``rebinder`` re-binds the model to one micro-batch when the options have several."""
    from planner.limits import check_planning_work

    options = options or PlanOptions()
    require_bound(graph)
    check_planning_work(machine.num_devices, len(graph.operators))
    split = recorded_split(machine, options.pipeline_stages or 1, data)
    micro_batches = options.micro_batches or 1
    stage_graph = pad_as_recorded(micro_batch_graph(graph, micro_batches, rebinder), data)
    cm = cost_model_for(stage_graph, split.stage_machine, options, micro_batches=micro_batches)
    start = time.perf_counter()
    strategies, notes = strategies_from_json(cm, data)
    plan = Plan(strategies, str(data.get("algorithm", "user plan")), time.perf_counter() - start)
    dp_seconds, dp_memory = data_parallel_baseline(cost_model_for(graph, machine, options, "none", 0), options.optimizer)
    return result_for(cm, plan, options, notes, split=split, data_parallel_seconds=dp_seconds,
                      data_parallel_memory=dp_memory)


def reprice_plan(graph: OperatorGraph, result: PlanResult, machine: Machine) -> PlanResult:
    """``result``'s plan, with its stages, micro-batches, recomputation and ZeRO stage, priced on
    ``machine``: the same levels (names and arities) as ``result.machine`` with other bandwidths,
    latencies or device. Nothing is searched: the figures :func:`evaluate_plan` gives for the
    plan's file on ``machine`` (to rounding), at the cost of one evaluation, since the cost
    model's per-operator tables belong to the graph and are shared. ``graph`` is the model at
    the whole batch (the data-parallel baseline's)."""
    shape = [(lv.name, lv.arity) for lv in machine.levels]
    if shape != [(lv.name, lv.arity) for lv in result.machine.levels]:
        raise ConfigError(f"re-pricing keeps the plan's machine levels ({_shape(result.machine)}), but this machine "
                          f"has {_shape(machine)}: plan again for a machine of another shape")
    if getattr(result.plan, "context_parallel", 1) > 1:  # its ring is priced outside the evaluator
        raise ConfigError("re-pricing does not cover a context-parallel plan (its attention ring is priced apart): "
                          "plan or evaluate it again on this machine")
    split = replace(result.split, machine=machine, stage_machine=_relinked(result.split.stage_machine, machine))
    old = result.cost_model
    options = result.options
    cm = cost_model_for(old.graph, split.stage_machine, options, old.recompute, old.zero, old.micro_batches)
    dp_seconds, dp_memory = data_parallel_baseline(cost_model_for(graph, machine, options, "none", 0),
                                                   options.optimizer)
    plan = Plan(dict(result.plan.strategies), result.plan.algorithm, 0.0, list(result.plan.notes))
    return result_for(cm, plan, options, split=split, data_parallel_seconds=dp_seconds,
                      data_parallel_memory=dp_memory)


def _shape(machine: Machine) -> str:
    return " x ".join(f"{lv.arity} {lv.name}" for lv in machine.levels)


def _relinked(stage_machine: Machine, machine: Machine) -> Machine:
    """The stage machine with each level's links taken from the level of ``machine`` it is part of
    (``node (data)`` and ``node (tensor)`` are parts of ``node``) and ``machine``'s device."""
    links = {lv.name: lv for lv in machine.levels}
    levels = []
    for lv in stage_machine.levels:
        source = links[lv.name.removesuffix(" (data)").removesuffix(" (tensor)")]
        levels.append(Level(lv.name, lv.arity, source.bandwidth_Bps, source.latency_s))
    return replace(stage_machine, device=machine.device, levels=tuple(levels))
