"""Pure data parallelism: split the batch at every cut where it divides, replicate the rest."""

from __future__ import annotations

import time

from planner.cost.model import CostModel, Plan, Strategy


def data_parallel_strategies(cm: CostModel) -> dict[str, Strategy]:
    """The batch dimension of each operator (traced from the data inputs' leading axis) at every
    cut whose prime still divides it; operators without a batch dimension stay replicated."""
    batch = cm.graph.batch_dims()
    plan = {}
    for name in cm.planned:
        s: Strategy = ()
        dim = batch.get(name)
        for _ in cm.cuts:
            choice = dim if dim is not None and cm.assignment(name, s + (dim,)) is not None else None
            s = s + (choice,)
        plan[name] = s
    return plan


def plan_data_parallel(cm: CostModel) -> Plan:
    start = time.perf_counter()
    strategies = data_parallel_strategies(cm)
    return Plan(strategies, "data_parallel", time.perf_counter() - start)
