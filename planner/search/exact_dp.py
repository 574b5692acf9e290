"""The exact optimum by dynamic programming over layouts, for graphs whose operators and tensors
form a forest (chains, and trees such as a trunk with several heads).

The plan's cost (:meth:`CostModel.total_seconds`) is a sum of one term per operator
(``op_seconds``, a function of its strategy) and one term per tensor: the redistribution paid
once per distinct layout its consumers take it in (``planner.cost.redistribution``), a function
of the producer's layout ``a`` and the set of consumer layouts. Seen as a graph whose nodes are
operators and tensors (a tensor linked to its producer and each consumer), a chain or a tree has
no cycle, so rooting each component at an operator and eliminating leaves first is exact:

    V_n(s) = op_seconds(n, s) + sum over n's child tensors t of m_t(layout of t under s)

A child tensor ``t`` that ``n`` produces, read by children ``c_1..c_k``, sends
``m_t(a) = min over partitions P of {c_i} of sum_{block B in P} min_b [r(a, b) + sum_{c in B} g_c(b)]``,
with ``g_c(b) = min {V_c(s) : s gives t the layout b}``: the consumers sharing one layout pay one
redistribution (the minimum over partitions is exact because a partition whose blocks happen to
choose the same layout only over-counts). A child tensor that ``n`` consumes alone, produced by
child ``p``, sends ``m_t(b) = min_a [g_p(a) + r(a, b)]``. Both minima scan the candidate layouts
in increasing ``g`` and stop when ``g`` alone reaches the best found (``r >= 0``, and
``r(x, x) = 0``), which keeps them far below the full tables of layout pairs.

Sequence parallelism's reduce-scatter discount couples a partial sum with every consumer's
layout; the dynamic program does not model it, so :func:`dp_applies` leaves such cost models to
the integer program (``planner.search.exact``), as it does graphs with a cycle.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from planner.cost.model import CostModel, Strategy
from planner.cost.baseline import data_parallel_strategies
from planner.search.exact_prune import SLACK, op_values, prune, upper_bound
from planner.search.exact_tables import seconds

TABLE_CELLS = 200_000  # layout pairs priced per numpy table (memory: a few arrays of this size)
TOP_SOURCES = 8  # sources priced against every target first, to bound the scans
TABLE_ROWS = 32  # target layouts per table: few, so that each is scanned only as far as its own bound
MAX_CONSUMERS = 5  # a tensor read by more operators than this is left to the integer program (Bell(5) = 52)


@dataclass
class _Tensor:
    """One tensor of the forest: its producer's use and each consumer's (operator, use index)."""

    name: str
    producer: str
    out_index: int
    nbytes: float
    requires_grad: bool
    consumers: list[tuple[str, int]] = field(default_factory=list)

    @property
    def members(self) -> list[str]:
        return [self.producer] + [c for c, _ in self.consumers]


def forest(cm: CostModel) -> dict[str, _Tensor] | None:
    """The tensors linking planned operators, or None when operators and tensors contain a cycle
    (a residual connection, an operator reading one tensor twice) or a tensor has too many readers."""
    tensors: dict[str, _Tensor] = {}
    for e in cm.edges:
        t = tensors.setdefault(e.tensor, _Tensor(e.tensor, e.producer, e.out_index, e.nbytes, e.requires_grad))
        t.consumers.append((e.consumer, e.in_index))
    parent = {n: n for n in cm.planned}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for t in tensors.values():
        if len(t.consumers) > MAX_CONSUMERS:
            return None
        for c, _ in t.consumers:
            a, b = find(t.producer), find(c)
            if a == b:
                return None
            parent[a] = b
    return tensors


def dp_applies(cm: CostModel) -> bool:
    """Whether :func:`plan_dp` solves this cost model exactly (a forest, no sequence parallelism)."""
    if cm.sequence_parallel:
        return False
    tensors = forest(cm)
    return tensors is not None and _rooting(cm, tensors) is not None


def _rooting(cm: CostModel, tensors: dict[str, _Tensor]):
    """An order to eliminate operators (children before parents) and, per operator, the tensor
    linking it to its parent (None for a root). A tensor read by several operators must hang
    below its producer; a root is sought per component so that this holds, else None."""
    links: dict[str, list[_Tensor]] = {n: [] for n in cm.planned}
    for t in tensors.values():
        for m in t.members:
            links[m].append(t)
    seen: set[str] = set()
    order: list[tuple[str, _Tensor | None]] = []
    for start in cm.planned:
        if start in seen:
            continue
        component = _component(start, links)
        for root in component:
            visit = _visit(root, links)
            if all(up is None or len(up.consumers) == 1 or up.producer != n for n, up in visit):
                break
        else:
            return None
        seen.update(component)
        order.extend(reversed(visit))
    return order


def _component(start: str, links) -> list[str]:
    out, stack, seen = [], [start], {start}
    while stack:
        n = stack.pop()
        out.append(n)
        for t in links[n]:
            for m in t.members:
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
    return out


def _visit(root: str, links) -> list[tuple[str, _Tensor | None]]:
    """Operators from ``root`` outwards (parents before children), each with its parent tensor."""
    out, stack, seen = [], [(root, None)], {root}
    while stack:
        n, up = stack.pop()
        out.append((n, up))
        for t in links[n]:
            if t is up:
                continue
            for m in t.members:
                if m not in seen:
                    seen.add(m)
                    stack.append((m, t))
    return out


@dataclass
class _Table:
    """One operator's strategies with their subtree values ``V`` (numpy) and, per child tensor,
    how each strategy's layout of it indexes the tensor's message."""

    strategies: list[Strategy]
    values: np.ndarray
    choices: list = field(default_factory=list)  # per child tensor: (tensor, per-layout choice of the children)


def _layouts(cm: CostModel, name: str, use: int, strategies: list[Strategy]) -> tuple[list, np.ndarray]:
    """The distinct layouts the strategies give one use, and each strategy's index among them."""
    index: dict[tuple, int] = {}
    of = np.fromiter((index.setdefault(cm.layout(name, use, s), len(index)) for s in strategies), dtype=np.int64,
                     count=len(strategies))
    return list(index), of


def _best_by_layout(values: np.ndarray, of: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per layout, the lowest value among the strategies giving it and which strategy that is."""
    order = np.lexsort((values, of))
    first = np.ones(len(order), dtype=bool)
    first[1:] = of[order][1:] != of[order][:-1]
    best_idx = np.full(n, -1, dtype=np.int64)
    best_idx[of[order][first]] = order[first]
    return values[best_idx], best_idx


def _scan(price, targets: list, sources: list, g: np.ndarray, floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """For each target layout x: ``min_y g[y] + price(x, y)`` over the source layouts and its argmin.

    ``price`` takes arrays of layouts (targets x 1 x cuts, 1 x sources x cuts) and returns the
    table; prices are >= 0, ``price(x, x) = 0`` and ``price(x, y) >= floor`` for ``y != x``. A
    first answer for every target comes from itself as a source and the few cheapest sources;
    then only the sources with ``g`` below that answer minus ``floor`` can do better, and are
    priced in tables of targets with similar answers."""
    order = np.argsort(g, kind="stable")
    g_sorted = g[order]
    position = {y: i for i, y in enumerate(sources)}
    cuts = len(targets[0])
    x_arr = np.array(targets, dtype=np.int64).reshape(len(targets), cuts)
    y_arr = np.array(sources, dtype=np.int64).reshape(len(sources), cuts)[order]
    out = np.array([g[position[x]] if x in position else np.inf for x in targets])
    arg = np.array([position.get(x, -1) for x in targets], dtype=np.int64)
    top = min(len(sources), TOP_SOURCES)
    _improve(out, arg, np.arange(len(targets)), g_sorted[None, :top] + price(x_arr[:, None, :], y_arr[None, :top]),
             order)
    by_bound = np.argsort(out, kind="stable")  # targets with similar answers share a table
    lo = 0
    while lo < len(targets):
        keep = int(np.searchsorted(g_sorted, out[by_bound[lo]] - floor, side="right"))
        step = max(1, min(TABLE_ROWS, TABLE_CELLS // max(keep, 1)))
        rows = by_bound[lo:lo + step]
        keep = int(np.searchsorted(g_sorted, out[rows].max() - floor, side="right"))
        if keep > top:
            _improve(out, arg, rows, g_sorted[None, top:keep] + price(x_arr[rows, None, :], y_arr[None, top:keep]),
                     order[top:])
        lo += step
    return out, arg


def _improve(out: np.ndarray, arg: np.ndarray, rows: np.ndarray, table: np.ndarray, columns: np.ndarray) -> None:
    """Lower ``out[rows]`` to the table's row minima where they are lower (``arg``: the source)."""
    best = np.argmin(table, axis=1)
    value = table[np.arange(len(rows)), best]
    better = value < out[rows]
    out[rows[better]] = value[better]
    arg[rows[better]] = columns[best[better]]


def _partitions(items: list) -> list[list[list]]:
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    out = []
    for p in _partitions(rest):
        out.append([[first]] + p)
        for i in range(len(p)):
            out.append(p[:i] + [[first] + p[i]] + p[i + 1:])
    return out


def plan_dp(cm: CostModel, plans: tuple[dict[str, Strategy], ...] = ()) -> tuple[dict[str, Strategy], float]:
    """The cheapest plan of a forest-shaped cost model (:func:`dp_applies`) and its cost as the
    dynamic program adds it up (equal to ``cm.total_seconds`` of the plan, up to rounding).

    The strategies no plan as cheap as a known one can use are dropped first
    (:mod:`planner.search.exact_prune`): the data-parallel plan, the replicated one and ``plans``
    (e.g. drec+'s) bound the optimum from above."""
    from planner.search.exact import all_strategies

    tensors = forest(cm)
    order = _rooting(cm, tensors) if tensors is not None else None
    if order is None:
        raise ValueError("plan_dp needs operators and tensors without a cycle (see dp_applies)")
    up = dict(order)
    options = {n: all_strategies(cm, n) for n in cm.planned}
    values = {n: op_values(cm, n, options[n]) for n in cm.planned}
    bound = upper_bound(cm, [data_parallel_strategies(cm), cm.complete({})] + list(plans))
    options, values = prune(options, values, bound)
    floors = {n: float(v.min()) for n, v in values.items()}
    below: dict[str, float] = {}  # per operator, the floors of its subtree's operators
    tables: dict[str, _Table] = {}
    for n, parent_tensor in order:  # children before parents
        table = _Table(options[n], values[n])
        below[n] = floors[n]
        for t in tensors.values():
            if t is parent_tensor or n not in t.members:
                continue
            below[n] += sum(below[m] for m in t.members if m != n)
            if t.producer == n:
                _absorb_consumers(cm, t, n, table, tables)
            else:
                _absorb_producer(cm, t, n, table, tables)
        tables[n] = _cut(table, bound * (1 + SLACK) - (sum(floors.values()) - below[n]))
    chosen: dict[str, int] = {}
    total = 0.0
    for n, parent_tensor in reversed(order):  # parents before children
        table = tables[n]
        if up[n] is None:
            chosen[n] = int(np.argmin(table.values))
            total += float(table.values[chosen[n]])
        for of, picks in table.choices:
            chosen.update(picks[of[chosen[n]]])
    return {n: tables[n].strategies[chosen[n]] for n in cm.planned}, total


def _cut(table: _Table, limit: float) -> _Table:
    """Drop the strategies whose subtree value exceeds ``limit``: the bound minus the floors of the
    operators outside the subtree. ``V_n(s)`` is the least cost of the subtree's operators and
    tensors with ``n`` at ``s``; every other operator costs at least its floor and the tensor above
    at least 0, so a plan with ``n`` at such an ``s`` costs more than the known plan's bound and is
    not optimal. Parents then scan fewer source layouts. The lowest value is always kept."""
    keep = table.values <= max(limit, float(table.values.min()))
    if keep.all():
        return table
    index = np.flatnonzero(keep)
    return _Table([table.strategies[i] for i in index], table.values[index],
                  [(of[index], picks) for of, picks in table.choices])


def _floor(cm: CostModel, t: _Tensor) -> float:
    """The least a tensor's redistribution between two different layouts costs: in training, a
    tensor with a gradient moves one way or the other (two layouts each a refinement of the other
    are equal), paying at least one level's latency; otherwise it may be a free slice."""
    return min(cm._latencies) if cm.mode == "train" and t.requires_grad and cm._latencies else 0.0


def _by_layout(cm: CostModel, name: str, use: int, table: _Table):
    """A child's layouts of one use, the best subtree value per layout and the strategy giving it."""
    layouts, of = _layouts(cm, name, use, table.strategies)
    g, arg = _best_by_layout(table.values, of, len(layouts))
    return layouts, g, arg


def _absorb_producer(cm: CostModel, t: _Tensor, n: str, table: _Table, tables: dict[str, _Table]) -> None:
    """``n`` reads ``t`` (its only reader) from its child, the producer: add ``min_a g_p(a) + r(a, b)``."""
    use = t.consumers[0][1]
    targets, of = _layouts(cm, n, use, table.strategies)
    sources, g, arg = _by_layout(cm, t.producer, t.out_index, tables[t.producer])
    m, pick = _scan(lambda b, a: seconds(cm, t.nbytes, t.requires_grad, a, b), targets, sources, g,
                    _floor(cm, t))
    table.values = table.values + m[of]
    table.choices.append((of, [{t.producer: int(arg[pick[x]])} for x in range(len(targets))]))


def _absorb_consumers(cm: CostModel, t: _Tensor, n: str, table: _Table, tables: dict[str, _Table]) -> None:
    """``n`` produces ``t`` for its children, the consumers: add the cheapest partition of them into
    groups sharing one layout, each group paying one redistribution (module docstring)."""
    targets, of = _layouts(cm, n, t.out_index, table.strategies)
    r = lambda a, b: seconds(cm, t.nbytes, t.requires_grad, a, b)  # noqa: E731
    readers = [c for c, _ in t.consumers]
    child = {c: _by_layout(cm, c, use, tables[c]) for c, use in t.consumers}
    blocks = {}
    for size in range(1, len(readers) + 1):
        for block in itertools.combinations(readers, size):
            position = [{y: i for i, y in enumerate(child[c][0])} for c in block]
            sources = [y for y in child[block[0]][0] if all(y in p for p in position)]
            g = np.array([sum(child[c][1][p[y]] for c, p in zip(block, position)) for y in sources])
            h, pick = _scan(r, targets, sources, g, _floor(cm, t)) if sources else (np.full(len(targets), np.inf), None)
            blocks[block] = (h, pick, sources, position)
    partitions = [[tuple(sorted(b, key=readers.index)) for b in p] for p in _partitions(readers)]
    totals = np.array([sum(blocks[b][0] for b in p) for p in partitions])
    best = np.argmin(totals, axis=0)
    table.values = table.values + totals[best, np.arange(len(targets))][of]
    picks = []
    for x in range(len(targets)):
        pick = {}
        for block in partitions[best[x]]:
            _, chosen, sources, position = blocks[block]
            y = sources[chosen[x]]
            for c, p in zip(block, position):
                pick[c] = int(child[c][2][p[y]])
        picks.append(pick)
    table.choices.append((of, picks))
