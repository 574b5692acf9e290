"""One operator's split overridden in a plan, priced twice when the plan is pipelined.

* **stages fixed**: every operator stays on the stage the plan put it on; only this operator's
  time (and the redistribution around it) changes, so the iteration moves only if the stage
  holding it is, or becomes, the slowest (``m x slowest + bubble + gradient sync``);
* **re-balanced**: the stage boundaries are chosen again for the changed plan, as planning it
  from scratch with this split would; the re-balancing often absorbs the change.

A one-stage plan has one figure (both are the same). The page draws what :func:`price_override`
returns and adds nothing of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.cost.result import PlanResult, result_for
from planner.cost.model import Plan, PlanError
from planner.cost.schedule import price_schedule
from planner.units import format_seconds


@dataclass
class OverridePrice:
    """The plan before and after overriding ``name``; seconds per micro-batch unless named."""

    name: str
    before: PlanResult
    fixed: PlanResult  # the plan's own stages
    rebalanced: PlanResult  # stages balanced again for the changed plan
    stage: int  # the stage holding the operator in the plan
    op_seconds_before: float  # the operator's own time, collectives and its inputs' redistribution included
    op_seconds_after: float
    moved: int  # operators on another stage after re-balancing

    @property
    def pipelined(self) -> bool:
        return self.before.schedule.stages > 1

    def lines(self) -> list[str]:
        """What the figures mean, in plain words (the page shows these verbatim)."""
        b, f, r = self.before.schedule, self.fixed.schedule, self.rebalanced.schedule
        own = (f"{self.name} itself: {format_seconds(self.op_seconds_before)} -> "
               f"{format_seconds(self.op_seconds_after)} per micro-batch (its collectives and the "
               "redistribution of its inputs included; its neighbours keep their layouts, so their "
               "redistribution may change too).")
        if not self.pipelined:
            return [own, "One stage: the iteration is the sum of every operator's time, so it moves with this one."]
        slowest = max(range(b.stages), key=lambda s: b.stage_seconds[s])
        new_slowest = max(range(f.stages), key=lambda s: f.stage_seconds[s])
        lines = [own,
                 f"Stages fixed: {self.name} stays on stage {self.stage}, which takes "
                 f"{format_seconds(b.stage_seconds[self.stage])} -> {format_seconds(f.stage_seconds[self.stage])} per "
                 f"micro-batch; the iteration is {b.micro_batches} x the slowest stage + bubble + gradient sync, and "
                 f"the slowest is stage {slowest} ({format_seconds(b.stage_seconds[slowest])}) before, stage "
                 f"{new_slowest} ({format_seconds(f.stage_seconds[new_slowest])}) after."]
        if self.moved:
            lines.append(f"Re-balanced: the stage boundaries are chosen again for the changed plan ({self.moved} "
                         f"operator(s) change stage); slowest stage {format_seconds(max(r.stage_seconds))}.")
        else:
            lines.append("Re-balanced: the same stage boundaries are the best for the changed plan.")
        return lines


def price_override(result: PlanResult, name: str, strategy: tuple) -> OverridePrice:
    """``result``'s plan with ``name``'s strategy replaced, priced with the plan's own stages and
    with the stages re-balanced, by the shared evaluator in the same configuration."""
    cm = result.cost_model
    if name not in cm.planned:
        raise PlanError(f"{name!r} is not a planned operator of this model; choose one from the operator table")
    strategy = tuple(strategy)
    if len(strategy) != len(cm.cuts):
        raise PlanError(f"{name}: the split has {len(strategy)} cut(s) but the stage machine has {len(cm.cuts)}; "
                        "give one dimension (or none) per cut")
    if cm.assignment(name, strategy) is None:
        raise PlanError(f"{name}: the split {list(strategy)} does not divide the operator's dimensions; "
                        "choose a dimension the cut's factor divides")
    strategies = dict(result.plan.strategies)
    strategies[name] = strategy
    plan = Plan(strategies, f"{result.plan.algorithm} with {name} overridden", 0.0)
    rebalanced = result_for(cm, plan, result.options, split=result.split,
                            data_parallel_seconds=result.data_parallel_seconds,
                            data_parallel_memory=result.data_parallel_memory)
    assignment = result.schedule.assignment
    if assignment is None or result.schedule.stages == 1:
        fixed = rebalanced
    else:
        cost = cm.evaluate(strategies)
        options = result.options
        schedule = price_schedule(cm, strategies, result.split, cm.micro_batches, options.interleave,
                                  options.optimizer, options.overlap_gradient_sync, assignment=assignment, cost=cost)
        fixed = PlanResult(cm.graph, result.split.machine, options, cm, plan, cost, schedule, result.split,
                           result.data_parallel_seconds, list(plan.notes),
                           data_parallel_memory=result.data_parallel_memory)
    before_stage = result.schedule.stage_of_op
    moved = sum(before_stage.get(n) != s for n, s in rebalanced.schedule.stage_of_op.items())
    return OverridePrice(name, result, fixed, rebalanced, before_stage.get(name, 0),
                         _op_seconds(result, name), _op_seconds(fixed, name), moved)


def _op_seconds(result: PlanResult, name: str) -> float:
    return sum(result.cost.op_seconds(name).values())
