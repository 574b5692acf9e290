"""Pure data parallelism as a layout: the yardstick every plan is compared with.

:func:`data_parallel_strategies` splits the batch at every cut where it divides and replicates the
rest; :func:`data_parallel_baseline` prices it (time and memory per device). The search that
returns it as a plan is :mod:`planner.search.data_parallel`.
"""

from __future__ import annotations

from planner.cost.memory import MemoryReport, memory_per_device
from planner.cost.model import CostModel, Strategy
from planner.cost.overlap import NO_OVERLAP
from planner.cost.schedule import price_schedule
from planner.machine.split import split_machine


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


def data_parallel_baseline(cm: CostModel, optimizer: str) -> tuple[float, MemoryReport]:
    """Pure data parallelism on ``cm``'s graph and machine: its time (one stage, one micro-batch,
    with ``cm``'s overlaps, as every plan is priced) and its memory per device."""
    strategies = data_parallel_strategies(cm)
    if cm.overlap == NO_OVERLAP or cm.mode != "train":
        return cm.total_seconds(strategies), memory_per_device(cm, strategies, optimizer)
    schedule = price_schedule(cm, strategies, split_machine(cm.machine, 1), 1, optimizer=optimizer)
    return schedule.iteration_seconds, schedule.memory[0]
