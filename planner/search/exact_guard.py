"""The exact search's size guard: how many full strategies each operator has, counted without
listing them, and the bound above which :func:`planner.api.plan_model` refuses the exact search
before starting it (the command line and the explorer alike)."""

from __future__ import annotations

from planner.cost.model import CostModel
from planner.search.exact import SearchTooLargeError


#: On a graph with cycles the exact search is an integer program over every strategy of every
#: operator; it is started only when the operators have at most this many strategies in total (a few
#: seconds to solve).
EXACT_MAX_STRATEGIES = 20_000
#: On a chain or a tree it is a dynamic program (:mod:`planner.search.exact_dp`), whose work grows with
#: the strategies and the layouts of each tensor (less what :mod:`planner.search.exact_prune` drops):
#: this many strategies in total (the 12-operator CNN chain on 64 devices has 213,000).
EXACT_DP_MAX_STRATEGIES = 250_000


def count_strategies(cm: CostModel, name: str, cap: int) -> int:
    """How many full strategies an operator has (stops counting above ``cap``).

    Counts without listing them: after a prefix, which dimensions can still be split depends only
    on the primes each dimension has taken so far, in order, so prefixes are merged by that.
    """
    states: dict[tuple, tuple[tuple, int]] = {(): ((), 1)}
    for cut in cm.cuts:
        nxt: dict[tuple, tuple[tuple, int]] = {}
        for rep, count in states.values():
            for c in cm.candidates(name, rep):
                prefix = rep + (c,)
                key = tuple(sorted(
                    (d, tuple(cm.cuts[i].factor for i, x in enumerate(prefix) if x == d))
                    for d in set(x for x in prefix if x is not None)
                ))
                old = nxt.get(key)
                nxt[key] = (prefix, count + (old[1] if old else 0))
        states = nxt
        if sum(c for _, c in states.values()) > cap:
            return cap + 1
    return sum(c for _, c in states.values())


def exact_feasible(cm: CostModel, limit: int = EXACT_MAX_STRATEGIES) -> bool:
    """Whether the operators of ``cm`` have at most ``limit`` strategies in total."""
    total = 0
    for n in cm.planned:
        total += count_strategies(cm, n, limit - total)
        if total > limit:
            return False
    return True


def require_exact_feasible(cm: CostModel) -> None:
    """Raise SearchTooLargeError unless the graph is small enough for the exact search.

    Counting is cheap; listing every strategy of every operator (what :func:`plan_exact` solves
    over) on a CNN over 512 devices is not.
    """
    from planner.search.exact_dp import dp_applies

    bound = EXACT_DP_MAX_STRATEGIES if dp_applies(cm) else EXACT_MAX_STRATEGIES
    if not exact_feasible(cm, bound):
        raise SearchTooLargeError(
            f"too large for this graph: more than {bound:,} strategies (the exact search's bound) "
            f"over {len(cm.planned)} operators on {cm.machine.num_devices} devices; the exact search is for small "
            "graphs and machines (e.g. the mlp sample on dgx_a100)")
