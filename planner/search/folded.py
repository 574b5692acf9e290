"""The searches of one configuration on the folded graph: repeated layers planned once.

:func:`plan_stage` is what the configuration search runs for one stage machine and micro-batch:
the algorithm asked for and, for ``drec+``, the Megatron layout with sequence parallelism beside
it (:func:`planner.search.megatron.sequence_parallel_candidate`). With ``fold`` (the default) and
a deep graph (more than ``SMALL_GRAPH_OPS`` planned operators) with a run of identical layers
(:mod:`planner.model.blocks`), D-Rec, drec+ and the Megatron-SP layout run on the folded graph,
whose middle copies are left out: every choice they make is local (an operator's own cost and its
redistribution with its neighbours), and the copies have the same neighbours, so the choices are
those of the full graph. Wherever a search compares whole plans (drec+'s starting points, the
data-parallel plan, the Megatron-SP candidate) the folded plan is unfolded and priced by the
ordinary evaluator on the full graph; the returned plan is the unfolded one, so the result the
configuration search prices is exact and in the usual form. ``fold=False`` is the full search,
the reference the tests compare the folded one with; small graphs, graphs without repeated
layers and the other algorithms always take it.
"""

from __future__ import annotations

from collections.abc import Callable

from planner.cost.baseline import data_parallel_strategies
from planner.cost.model import CostModel, Plan, Strategy
from planner.model.blocks import Folded, folded_graph
from planner.search.drec import SMALL_GRAPH_OPS, plan_drec
from planner.search.megatron import plan_megatron, sequence_parallel_candidate
from planner.search.registry import search

Progress = Callable[[float, str], None] | None
FOLDED_ALGORITHMS = ("drec", "drec+")


def folding_of(cm: CostModel, algorithm: str, fold: bool = True) -> Folded | None:
    """The folded graph a search of ``cm`` with ``algorithm`` runs on, or None (the full search)."""
    if not fold or algorithm not in FOLDED_ALGORITHMS or len(cm.planned) <= SMALL_GRAPH_OPS:
        return None
    return folded_graph(cm.graph)


def twin(cm: CostModel, graph) -> CostModel:
    """A cost model of ``graph`` with ``cm``'s machine and options (the folded graph's)."""
    other = CostModel(graph, cm.machine, cm.mode, cm.precision, cm.recompute, cm.zero, cm.micro_batches,
                      cm.bucket_bytes / 1e6)
    other.sequence_parallel = cm.sequence_parallel
    other.overlap = cm.overlap
    return other


def search_folded(cm: CostModel, algorithm: str, progress: Progress = None,
                  hints: list[dict[str, Strategy]] | None = None, fold: bool = True) -> Plan:
    """``algorithm`` on ``cm``: on its folded graph when there is one (see the module docstring),
    the plan unfolded to every operator of ``cm``; else :func:`planner.search.registry.search`."""
    return _search(cm, algorithm, progress, hints, fold)[0]


def _search(cm: CostModel, algorithm: str, progress: Progress, hints, fold: bool) -> tuple[Plan, float | None]:
    """:func:`search_folded` and the plan's price on ``cm`` when the folded search computed it."""
    folded = folding_of(cm, algorithm, fold)
    if folded is None:
        return search(cm, algorithm, progress, hints), None
    small = twin(cm, folded.graph)
    order = cm.planned
    prices: dict[tuple, float] = {}  # folded plan -> its price on the full graph (each priced once)

    def total(strategies: dict[str, Strategy]) -> float:
        key = tuple(strategies.values())
        if key not in prices:
            prices[key] = cm.total_seconds(folded.unfold(strategies, order))
        return prices[key]

    if algorithm == "drec":
        plan = plan_drec(small, improved=False, progress=progress, size=len(order))
    else:
        plan = plan_drec(small, improved=True, progress=progress, data_parallel=data_parallel_strategies(small),
                         hints=[folded.fold(h) for h in hints or []] or None, size=len(order), total=total)
    seconds = prices.get(tuple(plan.strategies.values()))
    plan.strategies = folded.unfold(plan.strategies, order)
    plan.trace = _unfolded_trace(plan.trace, folded)
    return plan, seconds


def _unfolded_trace(trace: list[dict], folded: Folded) -> list[dict]:
    """The decision trace with each representative's decisions repeated for its left-out copies
    (they would have made the same), so that every operator's decisions can be shown."""
    copies: dict[str, list[str]] = {}
    for copy_name, rep in folded.source.items():
        copies.setdefault(rep, []).append(copy_name)
    return [entry if name == entry["operator"] else {**entry, "operator": name}
            for entry in trace for name in (entry["operator"], *copies.get(entry["operator"], ()))]


def plan_stage(cm: CostModel, algorithm: str, progress: Progress = None,
               hints: list[dict[str, Strategy]] | None = None, fold: bool = True) -> tuple[Plan, CostModel]:
    """The plan of one stage machine and micro-batch (and the cost model that prices it): the
    search, then for drec+ the Megatron-SP candidate (laid out on the folded graph too)."""
    plan, seconds = _search(cm, algorithm, progress, hints, fold)
    if algorithm != "drec+":
        return plan, cm
    folded = folding_of(cm, algorithm, fold)
    if folded is None:
        return sequence_parallel_candidate(cm, plan)

    def layout(sp: CostModel) -> Plan:
        candidate = plan_megatron(twin(sp, folded.graph))
        candidate.strategies = folded.unfold(candidate.strategies, sp.planned)
        return candidate

    return sequence_parallel_candidate(cm, plan, layout, seconds)
