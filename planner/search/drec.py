"""D-Rec, the double recursive search (README, "Search algorithms"), and an improved variant.

Recursion one walks the machine's prime cuts, outermost level first. Recursion two walks the
operators: the critical ones (MatMul, Conv, embeddings, ...) in order of decreasing cost at the
current local sizes, each choosing the dimension to split at this cut (or none) that minimises
its own cost plus the redistribution with critical neighbours already decided; neighbours are
seen through the chains of layout-following operators that D-Rec folds away. The folded
operators then receive layouts by propagation, forward and backward, until nothing changes.

``plan_drec(cm, improved=False)`` is that algorithm as the thesis describes it. The default,
``improved=True`` (``drec+``), addresses its two known weaknesses:

1. the heaviest operator decides before its neighbours: the result is polished with the full
   evaluator (each operator re-chooses one cut at a time once everything around it is decided,
   while the plan's true cost falls); on small graphs every cut is also re-swept as it is made;
2. one-operator-at-a-time choices cannot leave a whole cut unsplit (replicate across a slow
   level): on small graphs each cut also tries whole-cut candidates (all replicated, all on the
   batch), the thesis's result and the data-parallel plan are polished as further starting
   points, and the best is re-optimised one cut (or two cuts) at a time jointly for all
   operators (the exact search's integer program restricted to those cuts).

If pure data parallelism scores at least as well as the result, that plan is returned and the
notes say so. ``bench/quality.py`` measures each variant against the exact optimum.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from planner.cost.model import CostModel, Plan, Strategy
from planner.model.graph import OpKind
from planner.cost.redistribution import consumers_by_tensor

Progress = Callable[[float, str], None] | None


@dataclass
class _Link:
    """A path from one critical operator's tensor to another's through folded operators."""

    src: str
    src_use: int
    dst: str
    dst_use: int
    factor_map: "_FrozenMap"  # flat factor of the source tensor -> flat factor of the destination
    nbytes: float
    requires_grad: bool


class _FrozenMap(dict):
    """A factor map that can be part of a memo key (never modified once built)."""

    def __hash__(self):
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = self.__dict__["_hash"] = hash(tuple(sorted(self.items())))
        return cached


MAX_FOLDED_CHAIN = 8  # critical neighbours further apart than this many folded operators are not linked
SMALL_GRAPH_OPS = 400  # up to this many operators, drec+ adds multi-start and exact per-cut blocks
BLOCK_BUDGET_VARIABLES = 60_000  # integer-program variables drec+ may spend on exact blocks of cuts
MAX_CUTS_FOR_PAIRS = 6  # blocks of two cuts are tried on machines with at most this many cuts
MAX_OPS_FOR_PAIRS = 100  # ... and graphs with at most this many planned operators
TRIAL_MARGIN = 1.5  # a whole-cut candidate is re-swept only if it starts within 50% of the best


class DRecSearch:
    """The state of one D-Rec run: strategies per cut, the contracted graph, the decision trace
    and a memo of choices (the baselines and the plan reader reuse its propagation)."""

    def __init__(self, cm: CostModel, progress: Progress = None, incremental: bool = True, size: int | None = None):
        self.cm = cm
        # the operator count the small-graph rules go by: the full graph's when ``cm`` prices a
        # folded one (planner.model.blocks), so that folding never changes the algorithm
        self.size = len(cm.planned) if size is None else size
        # re-make a choice only when something it depends on moved (False: re-make every choice,
        # the reference the tests compare the incremental search with)
        self.incremental = incremental
        self.progress = progress
        ops = cm.graph.operators
        self.critical = [n for n in cm.planned if ops[n].kind is OpKind.COMPUTE]
        self.opaque = [n for n in cm.planned if ops[n].kind is OpKind.OPAQUE]
        self.folded = [n for n in cm.planned if ops[n].kind is OpKind.FOLLOW]
        self.links = self._links()
        self.edge_refs: dict[str, list[tuple]] = {n: [] for n in cm.planned}
        self.readers = consumers_by_tensor(cm)  # a tensor pays once per consumer layout
        for e in cm.edges:  # (neighbour, its use, bytes, gradient, this op is the source, this op's use, tensor)
            self.edge_refs[e.consumer].append((e.producer, e.out_index, e.nbytes, e.requires_grad, False, e.in_index,
                                               e.tensor))
            self.edge_refs[e.producer].append((e.consumer, e.in_index, e.nbytes, e.requires_grad, True, e.out_index,
                                               e.tensor))
        self.trace: list[dict] = []
        self._memo: dict = {}
        self._layouts: dict = {}  # (operator, use, strategy prefix) -> layout, as cm.layout gives it
        self.signature = {n: cm.info[n].signature for n in cm.planned}
        self.dependants = self._dependants()

    def _dependants(self) -> dict[str, frozenset[str]]:
        """For each operator, the operators whose choice along real edges depends on its layout or
        on whether it is decided: its neighbours, and the other readers of the tensors it reads
        (they share a conversion). The relation is symmetric; a choice is re-made only when one
        of these moved, which keeps the result exactly that of re-making every choice."""
        out: dict[str, set[str]] = {n: set() for n in self.cm.planned}
        for n, refs in self.edge_refs.items():
            for other, _, _, _, is_src, _, tensor in refs:
                out[n].add(other)
                if not is_src:
                    out[n].update(e.consumer for e in self.readers[tensor])
        for n in out:
            out[n].discard(n)
        return {n: frozenset(d) for n, d in out.items()}

    # -- the contracted graph --
    def _links(self) -> dict[str, list[_Link]]:
        """For each critical operator, its links to critical neighbours through folded chains."""
        cm = self.cm
        ops = cm.graph.operators
        links: dict[str, list[_Link]] = {n: [] for n in self.critical}
        critical = set(self.critical)
        for edge in cm.edges:
            if edge.consumer not in critical:
                continue
            # walk backwards from this input through folded producers
            stack = [(edge.producer, edge.out_index, _identity(cm, edge.consumer, edge.in_index), 0)]
            while stack:
                prod, out_idx, fmap, depth = stack.pop()
                if prod in critical:
                    link = _Link(prod, out_idx, edge.consumer, edge.in_index, _FrozenMap(fmap), edge.nbytes,
                                 edge.requires_grad)
                    links[edge.consumer].append(link)
                    links[prod].append(link)
                    continue
                if ops[prod].kind is not OpKind.FOLLOW or depth >= MAX_FOLDED_CHAIN:
                    continue
                step = _through(cm, prod, out_idx)
                for e in cm.in_edges[prod]:
                    inner = step.get(e.in_index)
                    if inner is None:
                        continue
                    composed = {x: fmap[y] for x, y in inner.items() if y in fmap}
                    stack.append((e.producer, e.out_index, composed, depth + 1))
        return links

    # -- one cut --
    def choose(self, name: str, strategies: dict[str, Strategy], decided: set[str], t: int,
               use_links: bool, record: bool = False) -> str | None:
        """The choice at cut ``t`` minimising the operator's cost plus redistribution with the
        decided neighbours (through folded chains if ``use_links``, else along real edges)."""
        prefix = strategies[name][:t]
        options = lambda: [prefix + (c,) for c in self.cm.candidates(name, prefix)]  # noqa: E731
        return self.best_of(name, options, strategies, decided, t + 1, use_links, ("cut", prefix), record)[t]

    def best_of(self, name: str, options: Callable[[], list[Strategy]], strategies: dict[str, Strategy], decided,
                length: int, use_links: bool, memo_tag, record: bool = False) -> Strategy:
        """The option (from ``options()``, called only when the memo misses) with the lowest own
        cost plus redistribution with decided neighbours.

        Memoised on what the answer depends on (the operator's structure, the options and the
        decided neighbours' layouts over the first ``length`` cuts), so the identical layers of
        a deep model cost one evaluation.
        """
        cm = self.cm
        neighbours = self._neighbour_state(name, strategies, decided, length, use_links)
        key = (self.signature[name], memo_tag, use_links, neighbours)
        hit = self._memo.get(key)
        if hit is not None:
            best, rows = hit
            if record:
                self._record(name, length - 1, rows, best)
            return best
        best, best_cost, rows = None, float("inf"), []
        for s in options():
            own = cm.op_seconds(name, s)
            redist = 0.0
            for nbytes, grad, other_layout, mine_is_src, use_index, fmap, paid in neighbours:
                mine = cm.layout(name, use_index, s)
                if mine in paid:  # another consumer of the tensor takes it in this layout: shared
                    continue
                if mine_is_src:
                    la = mine if fmap is None else tuple(fmap.get(x, -1) if x >= 0 else -1 for x in mine)
                    redist += cm.redistribution_seconds(nbytes, la, other_layout, grad)
                else:
                    redist += cm.redistribution_seconds(nbytes, other_layout, mine, grad)
            total = own + redist
            rows.append({"dim": s[length - 1], "op_seconds": own, "redistribution_seconds": redist,
                         "total_seconds": total})
            if best_cost == float("inf") or total < best_cost * (1 - 1e-12):
                best, best_cost = s, total
        self._memo[key] = (best, rows)
        if record:
            self._record(name, length - 1, rows, best)
        return best

    def _record(self, name: str, t: int, rows: list[dict], best: Strategy) -> None:
        cut = self.cm.cuts[t]
        self.trace.append({"cut": t, "level": cut.level_name, "factor": cut.factor, "operator": name,
                           "candidates": rows, "chosen": best[t]})

    def _neighbour_state(self, name, strategies, decided, length, use_links) -> tuple:
        """The decided neighbours' layouts over the first ``length`` cuts, as hashable tuples.

        Each entry: (bytes, needs gradient, the neighbour's layout in the coordinates of the
        destination tensor, whether this operator is the source, this operator's use index,
        the factor map applied to this operator's layout when it is the source).
        """
        cm = self.cm
        state = []
        if use_links:
            for link in self.links.get(name, ()):
                other = link.dst if link.src == name else link.src
                if other not in decided:
                    continue
                so = strategies[other][:length]
                if link.src == name:
                    state.append((link.nbytes, link.requires_grad, cm.layout(other, link.dst_use, so),
                                  True, link.src_use, link.factor_map, ()))
                else:
                    src = cm.layout(other, link.src_use, so)
                    mapped = tuple(link.factor_map.get(x, -1) if x >= 0 else -1 for x in src)
                    state.append((link.nbytes, link.requires_grad, mapped, False, link.dst_use, None, ()))
            state = list(dict.fromkeys(state))  # consumers of one output in one layout: paid once
        else:
            layouts, layout = self._layouts, cm.layout  # the hot path: one dict look-up per neighbour
            for other, other_use, nbytes, grad, is_src, my_use, tensor in self.edge_refs[name]:
                if other in decided:
                    s = strategies[other]
                    if len(s) != length:
                        s = s[:length]
                    key = (other, other_use, s)
                    held = layouts.get(key)
                    if held is None:
                        held = layouts[key] = layout(other, other_use, s)
                    paid = () if is_src else self._paid_layouts(name, tensor, strategies, decided, length)
                    state.append((nbytes, grad, held, is_src, my_use, None, paid))
        return tuple(dict.fromkeys(state))  # consumers of one output in one layout: paid once

    def _paid_layouts(self, name: str, tensor: str, strategies, decided, length: int) -> tuple:
        """The layouts the other decided consumers of ``tensor`` take it in (their conversion is
        shared, so this operator pays nothing to take it in one of them)."""
        readers = self.readers[tensor]
        if len(readers) == 1:  # only this operator reads it
            return ()
        out = set()
        layouts, layout = self._layouts, self.cm.layout
        for e in readers:
            other = e.consumer
            if other != name and other in decided:
                s = strategies[other]
                if len(s) != length:
                    s = s[:length]
                key = (other, e.in_index, s)
                held = layouts.get(key)
                if held is None:
                    held = layouts[key] = layout(other, e.in_index, s)
                out.add(held)
        return tuple(sorted(out))

    def step(self, strategies: dict[str, Strategy], t: int, record: bool, backward: bool = True) -> None:
        """The thesis's step: critical operators by decreasing weight, then propagation."""
        cm = self.cm
        for n in self.opaque:
            strategies[n] = strategies[n][:t] + (None,)
        order = sorted(self.critical, key=lambda n: -cm.op_seconds(n, strategies[n][:t] + (None,)))
        decided = set(self.opaque)
        for n in order:
            strategies[n] = strategies[n][:t] + (self.choose(n, strategies, decided, t, True, record),)
            decided.add(n)
        self.propagate(strategies, t, decided, backward)

    def propagate(self, strategies: dict[str, Strategy], t: int, decided: set[str], backward: bool = True,
                  followers: list[str] | None = None) -> None:
        """Folded operators (or ``followers``, in topological order) take layouts from decided
        neighbours: a forward pass, a backward pass, then the followers next to whatever
        changed, to a fixed point."""
        followers = self.folded if followers is None else followers
        for n in followers:
            if len(strategies[n]) <= t:
                strategies[n] = strategies[n][:t] + (None,)
        passes = [followers, followers[::-1]] if backward else [followers]
        self._relax(strategies, t, decided, passes, set(followers))

    def _relax(self, strategies: dict[str, Strategy], t: int, decided: set[str], passes: list[list[str]],
               allowed: set[str]) -> None:
        """Re-choose cut ``t`` for the operators of each pass in order, then for the ``allowed``
        neighbours of every operator that changed, until nothing changes (bounded work)."""
        g = self.cm.graph.graph
        deps = self.dependants
        settled: set[str] = set()  # chosen in this call, and nothing it depends on has moved since

        def visit(n) -> bool:
            if n in settled:  # the same neighbour state as last time: the same choice, already made
                return False
            choice = self.choose(n, strategies, decided, t, False)
            if self.incremental:
                settled.add(n)
            if n not in decided:
                decided.add(n)
                settled.difference_update(deps[n])
            if choice != strategies[n][t]:
                strategies[n] = strategies[n][:t] + (choice,)
                settled.difference_update(deps[n])
                return True
            return False

        work = set()
        for order in passes:
            for n in order:
                if visit(n):
                    work.update(m for m in g.predecessors(n) if m in allowed)
                    work.update(m for m in g.successors(n) if m in allowed)
        budget = 4 * len(allowed)
        while work and budget > 0:
            n = work.pop()
            budget -= 1
            if visit(n):
                work.update(m for m in g.predecessors(n) if m in allowed)
                work.update(m for m in g.successors(n) if m in allowed)

    # -- improvements --
    def resweep(self, strategies: dict[str, Strategy], t: int, order: list[str]) -> None:
        """Re-choose every operator's cut ``t`` with all its neighbours decided (real edges)."""
        everyone = set(self.cm.planned)
        self._relax(strategies, t, set(everyone), [order], everyone)

    def run(self, improved: bool) -> dict[str, Strategy]:
        cm = self.cm
        strategies: dict[str, Strategy] = {n: () for n in cm.planned}
        batch = cm.graph.batch_dims() if improved else {}
        n_cuts = len(cm.cuts)
        # Per-cut re-sweeps and whole-cut candidates are judged on the cost of the cuts decided
        # so far; on deep models that misleads more than it helps (bench/quality.py), so they
        # run on small graphs only, and deep ones rely on the final polish with the full cost.
        sweep_cuts = improved and self.size <= SMALL_GRAPH_OPS
        for t in range(n_cuts):
            if self.progress:
                self.progress(t / max(n_cuts, 1), f"cut {t + 1}/{n_cuts} ({cm.cuts[t].level_name}, x{cm.cuts[t].factor})")
            # a re-sweep of everything follows, which subsumes propagation's backward pass
            self.step(strategies, t, record=True, backward=not sweep_cuts)
            if not sweep_cuts:
                continue
            order = self.critical + self.folded
            self.resweep(strategies, t, order)
            best = dict(strategies)
            best_cost = cm.evaluate_prefix(best)
            for whole in ("replicate", "batch"):
                trial = {n: s[:t] for n, s in strategies.items()}
                for n in cm.planned:
                    choice = None
                    if whole == "batch" and batch.get(n) is not None:
                        if cm.assignment(n, trial[n] + (batch[n],)) is not None:
                            choice = batch[n]
                    trial[n] = trial[n] + (choice,)
                if cm.evaluate_prefix(trial) > TRIAL_MARGIN * best_cost:
                    continue  # hopeless as it stands: not worth a re-sweep
                self.resweep(trial, t, order)
                cost = cm.evaluate_prefix(trial)
                if cost < best_cost * (1 - 1e-9):
                    best, best_cost = trial, cost
            strategies = best
        if self.progress:
            self.progress(1.0, "done")
        return strategies


def _identity(cm: CostModel, name: str, use_index: int) -> dict[int, int]:
    flat = cm.info[name].uses[use_index].flat
    return {x: x for x in set(flat.values())}


def _through(cm: CostModel, name: str, out_index: int) -> dict[int, dict[int, int]]:
    """For a folded operator, per input use: flat factor of the input -> flat factor of the output."""
    info = cm.info[name]
    out_flat = info.uses[out_index].flat
    maps = {}
    for i, use in enumerate(info.uses):
        if use.is_output:
            continue
        maps[i] = {x: out_flat[key] for key, x in use.flat.items() if key in out_flat}
    return maps


def single_changes(cm: CostModel, name: str, strategy: Strategy) -> list[Strategy]:
    """The strategy itself and every valid strategy that differs from it at one cut."""
    out = [strategy]
    for t in range(len(strategy)):
        for cand in cm.candidates(name, strategy[:t]):
            if cand != strategy[t]:
                s = strategy[:t] + (cand,) + strategy[t + 1:]
                if cm.assignment(name, s) is not None:
                    out.append(s)
    return out


def polish(search: DRecSearch, strategies: dict[str, Strategy], max_rounds: int = 10) -> dict[str, Strategy]:
    """Local search with the full evaluator: move one operator's choice at one cut at a time
    while that lowers the plan's cost (only its own cost and its edges change, so each move is
    a local comparison, memoised across identical layers)."""
    cm = search.cm
    plan = dict(strategies)
    everyone = set(cm.planned)
    n_cuts = len(cm.cuts)
    stale = set(cm.planned)  # operators whose neighbourhood moved since they last chose
    for _ in range(max_rounds):
        changed = False
        for n in cm.planned:
            if n not in stale:  # nothing it depends on moved: it would keep its strategy
                continue
            stale.discard(n)
            best = search.best_of(n, lambda n=n: single_changes(cm, n, plan[n]), plan, everyone, n_cuts, False,
                                  ("polish", plan[n]))
            if best != plan[n]:
                plan[n], changed = best, True
                stale.add(n)
                stale.update(search.dependants[n])
            if not search.incremental:
                stale.add(n)
        if not changed:
            break
    return plan


def _cut_blocks(n_cuts: int, n_ops: int) -> list[tuple[int, ...]]:
    """Single cuts, then pairs of cuts when there are few cuts and operators (a pair lets two
    operators trade dimensions across two cuts, which no single-cut move reaches)."""
    singles = [(t,) for t in range(n_cuts)]
    if n_cuts > MAX_CUTS_FOR_PAIRS or n_ops > MAX_OPS_FOR_PAIRS:
        return singles
    return singles + [(a, b) for a in range(n_cuts) for b in range(a + 1, n_cuts)]


def block_optimise(cm: CostModel, strategies: dict[str, Strategy], budget: list[int], max_rounds: int = 2,
                   max_variables: int = 40_000) -> dict[str, Strategy]:
    """Re-decide one block of cuts (one cut, or two) for all operators jointly, the rest fixed.

    Each block is the exact search's integer program restricted to the alternatives at those
    cuts (a handful per operator), so it is solved exactly and quickly. Moves are accepted only
    when the whole plan gets cheaper, so this never makes a plan worse. The work is bounded by
    ``budget[0]``, the integer-program variables left to spend (deterministic, unlike a time
    limit); deep models (more than ``SMALL_GRAPH_OPS`` operators)
    are left as they are.
    """
    from planner.search.exact import SearchTooLargeError, solve

    plan = dict(strategies)
    if len(cm.planned) > SMALL_GRAPH_OPS:
        return plan
    best = cm.total_seconds(plan)
    for _ in range(max_rounds):
        improved = False
        for block in _cut_blocks(len(cm.cuts), len(cm.planned)):
            options = {n: _block_alternatives(cm, n, plan[n], block) for n in cm.planned}
            try:
                trial, _, size = solve(cm, options, max_variables=min(max_variables, budget[0]), time_limit_s=30.0)
            except SearchTooLargeError:
                continue
            budget[0] -= size
            cost = cm.total_seconds(trial)
            if cost < best * (1 - 1e-9):
                plan, best, improved = trial, cost, True
        if not improved:
            break
    return plan


def _block_alternatives(cm: CostModel, name: str, strategy: Strategy, block: tuple[int, ...]) -> list[Strategy]:
    """Every valid strategy equal to ``strategy`` outside the cuts of ``block``."""
    options = [strategy]
    for t in block:
        options = [s[:t] + (c,) + s[t + 1:] for s in options for c in cm.candidates(name, s[:t])]
    valid = [s for s in dict.fromkeys(options) if cm.assignment(name, s) is not None]
    return valid or [strategy]


def plan_drec(cm: CostModel, improved: bool = True, progress: Progress = None,
              data_parallel: dict[str, Strategy] | None = None,
              hints: list[dict[str, Strategy]] | None = None, incremental: bool = True,
              size: int | None = None, total: Callable[[dict[str, Strategy]], float] | None = None) -> Plan:
    """Run D-Rec (``improved=False``: as the thesis describes it) and return the plan.

    ``search_seconds`` counts the search alone. The improved search polishes its result and
    the data-parallel plan (and, on graphs of at most ``SMALL_GRAPH_OPS`` planned operators,
    the thesis's result; and any ``hints``, plans of the same graph and machine schedule such as
    the one before a what-if change, so that a faster machine never gets a slower plan than
    the hint) and keeps the cheapest. ``incremental`` False re-makes every choice at every pass
    instead of only those whose neighbourhood moved: the same plan, slower (the reference). The data-parallel
    plan (if given) is returned unchanged when nothing beats it, and the notes say so.
    On a folded graph (:mod:`planner.search.folded`) ``size`` is the full graph's operator count
    (the small-graph rules go by it) and ``total`` prices a plan of the folded graph on the full one.
    """
    start = time.perf_counter()
    if not cm.cuts:  # one device: nothing to split
        return Plan({n: () for n in cm.planned}, "drec+" if improved else "drec", time.perf_counter() - start)
    search = DRecSearch(cm, progress, incremental, size)
    total = total or cm.total_seconds
    strategies = search.run(improved)
    notes = []
    if improved:
        small = search.size <= SMALL_GRAPH_OPS
        starts = [strategies]
        if small:
            starts.append(DRecSearch(cm, incremental=incremental).run(False))
        if data_parallel is not None:
            starts.append(dict(data_parallel))
        for hint in hints or []:  # e.g. the plan of the machine before a what-if change
            if set(hint) == set(cm.planned) and all(cm.assignment(n, s) is not None for n, s in hint.items()):
                starts.append(dict(hint))
        polished = [polish(search, s) for s in starts]
        costs = [total(s) for s in polished]
        strategies = polished[costs.index(min(costs))]
        if small:
            strategies = block_optimise(cm, strategies, [BLOCK_BUDGET_VARIABLES])
        if data_parallel is not None and total(data_parallel) <= total(strategies):
            notes.append("pure data parallelism scores at least as well as every D-Rec result on this model and "
                         "machine: the data-parallel plan is returned")
            strategies = dict(data_parallel)
    elapsed = time.perf_counter() - start
    return Plan(strategies, "drec+" if improved else "drec", elapsed, notes, search.trace)
