"""A priced plan and the shared evaluator that prices it.

:class:`PlanResult` (frozen) is everything the summary, the plan JSON and the app show about one
plan: the plan, its cost per micro-batch on one stage machine, its 1F1B schedule
(:mod:`planner.cost.schedule`), memory, and the pure-data-parallel baseline
(:mod:`planner.cost.baseline`). :func:`result_for` is the one place a plan is scored, whichever
search or file it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from planner.cost.baseline import data_parallel_baseline
from planner.cost.memory import MemoryReport
from planner.cost.model import CostModel, Plan, PlanCost
from planner.cost.overlap import overlaps_of
from planner.cost.schedule import CutPoints, PipelineSchedule, price_schedule
from planner.machine.split import MachineSplit, split_machine
from planner.machine.tree import Machine
from planner.model.graph import OperatorGraph
from planner.onnx.importer import require_bound
from planner.options import PlanOptions


@dataclass(frozen=True)
class PlanResult:
    """A plan with everything the summary, the JSON and the app show."""

    graph: OperatorGraph
    machine: Machine
    options: PlanOptions
    cost_model: CostModel
    plan: Plan
    cost: PlanCost  # one micro-batch on one stage machine
    schedule: PipelineSchedule
    split: MachineSplit
    data_parallel_seconds: float
    notes: list[str] = field(default_factory=list)
    tried: list[dict] = field(default_factory=list)  # the configurations the search priced
    data_parallel_memory: MemoryReport | None = None  # per device, when the baseline was priced here

    @property
    def memory(self) -> MemoryReport:
        """The stage that needs the most memory per device."""
        return self.schedule.worst_memory

    @property
    def total_seconds(self) -> float:
        """One iteration (the whole batch): all micro-batches, the bubble and the gradient sync."""
        return self.schedule.iteration_seconds

    @property
    def pipelined(self) -> bool:
        return self.schedule.stages > 1 or self.schedule.micro_batches > 1

    @property
    def speedup_over_data_parallel(self) -> float:
        return self.data_parallel_seconds / self.total_seconds if self.total_seconds > 0 else math.inf


def cost_model_for(graph: OperatorGraph, machine: Machine, options: PlanOptions, recompute: str | None = None,
                   zero: int | None = None, micro_batches: int = 1) -> CostModel:
    require_bound(graph)
    cm = CostModel(graph, machine, options.mode, options.precision, recompute or options.recompute or "none",
                   options.zero or 0 if zero is None else zero, micro_batches, options.bucket_mb)
    cm.sequence_parallel = options.sequence_parallel
    cm.overlap = overlaps_of(options)
    return cm


def result_for(cm: CostModel, plan: Plan, options: PlanOptions, notes: list[str] | None = None,
               split: MachineSplit | None = None, data_parallel_seconds: float | None = None,
               points: CutPoints | None = None, data_parallel_memory: MemoryReport | None = None) -> PlanResult:
    """Score a plan with the shared evaluator: the schedule (one stage and one micro-batch unless
    ``split`` and ``cm.micro_batches`` say otherwise), memory and the data-parallel baseline."""
    split = split or split_machine(cm.machine, 1)
    cost = cm.evaluate(plan.strategies)
    schedule = price_schedule(cm, plan.strategies, split, cm.micro_batches, options.interleave, options.optimizer,
                              options.overlap_gradient_sync, points, cost=cost)
    if data_parallel_seconds is None:  # the baseline of a plain plan: same graph and machine
        if split.stages > 1 or cm.micro_batches > 1:
            raise ValueError("result_for needs data_parallel_seconds (the whole batch on the whole machine) "
                             "for a pipelined plan")
        plain = cm.variant("none", 0, 1)
        data_parallel_seconds, data_parallel_memory = data_parallel_baseline(plain, options.optimizer)
    return PlanResult(cm.graph, split.machine, options, cm, plan, cost, schedule, split,
                      data_parallel_seconds, list(plan.notes) + list(notes or []),
                      data_parallel_memory=data_parallel_memory)
