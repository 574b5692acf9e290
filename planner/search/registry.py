"""The algorithm registry: each name :data:`planner.options.ALGORITHMS` offers, mapped to the search
that implements it, and :func:`search`, which runs one on a cost model.

Every search takes ``(cost model, progress, hints)`` and returns a :class:`planner.cost.model.Plan`;
the ones that cannot use progress reports or hints ignore them.
"""

from __future__ import annotations

from collections.abc import Callable

from planner.cost.baseline import data_parallel_strategies
from planner.cost.model import CostModel, Plan, Strategy
from planner.options import ALGORITHMS, OptionsError
from planner.search.data_parallel import plan_data_parallel
from planner.search.drec import plan_drec
from planner.search.megatron import plan_megatron

Progress = Callable[[float, str], None] | None
Hints = list[dict[str, Strategy]] | None


def _drec_plus(cm: CostModel, progress: Progress, hints: Hints) -> Plan:
    """The improved D-Rec, which also starts from data parallelism and from the ``hints``."""
    return plan_drec(cm, improved=True, progress=progress, data_parallel=data_parallel_strategies(cm), hints=hints)


def _drec(cm: CostModel, progress: Progress, hints: Hints) -> Plan:
    return plan_drec(cm, improved=False, progress=progress)


def _exact(cm: CostModel, progress: Progress, hints: Hints) -> Plan:
    from planner.search.exact import plan_exact  # scipy: imported only when asked for

    return plan_exact(cm)


SEARCHES: dict[str, Callable[[CostModel, Progress, Hints], Plan]] = {
    "drec+": _drec_plus,
    "drec": _drec,
    "data_parallel": lambda cm, progress, hints: plan_data_parallel(cm),
    "exact": _exact,
    "megatron": lambda cm, progress, hints: plan_megatron(cm),
}
assert set(SEARCHES) == set(ALGORITHMS), "every algorithm the options offer has a search, and no other"


def search(cm: CostModel, algorithm: str, progress: Progress = None, hints: Hints = None) -> Plan:
    """Run one algorithm on a cost model; ``drec+`` also starts from the ``hints`` (plans of the
    same graph, e.g. the plan before a what-if change)."""
    if algorithm not in SEARCHES:
        raise OptionsError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
    return SEARCHES[algorithm](cm, progress, hints)
