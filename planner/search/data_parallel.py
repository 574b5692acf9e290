"""Pure data parallelism as a search result: the layout of :mod:`planner.cost.baseline` as a plan."""

from __future__ import annotations

import time

from planner.cost.baseline import data_parallel_strategies
from planner.cost.model import CostModel, Plan


def plan_data_parallel(cm: CostModel) -> Plan:
    start = time.perf_counter()
    strategies = data_parallel_strategies(cm)
    return Plan(strategies, "data_parallel", time.perf_counter() - start)
