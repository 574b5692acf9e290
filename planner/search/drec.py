"""D-Rec, the double recursive search (DESIGN.md), and an improved variant.

Recursion one walks the machine's prime cuts, outermost level first. Recursion two walks the
operators: the critical ones (MatMul, Conv, embeddings, ...) in order of decreasing cost at the
current local sizes, each choosing the dimension to split at this cut (or none) that minimises
its own cost plus the redistribution with critical neighbours already decided; neighbours are
seen through the chains of layout-following operators that D-Rec folds away. The folded
operators then receive layouts by propagation, forward and backward, until nothing changes.

``plan_drec(cm, improved=False)`` is that algorithm as the thesis describes it. The default,
``improved=True``, fixes its two known weaknesses: (1) the heaviest operator decides before its
neighbours, so after each cut every operator is re-swept once everything around it is decided;
(2) one-operator-at-a-time choices cannot leave a whole cut unsplit (replicate across a slow
level), so each cut also tries whole-cut candidates (all replicated; all on the batch) and keeps
the cheapest; a final local polish with the full evaluator follows. If pure data parallelism
scores better than the result, that plan is returned and the notes say so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..cost import CostModel, Plan, Strategy
from ..ir import OpKind

Progress = Callable[[float, str], None] | None


@dataclass
class _Link:
    """A path from one critical operator's tensor to another's through folded operators."""

    src: str
    src_use: int
    dst: str
    dst_use: int
    factor_map: dict[int, int]  # flat factor of the source tensor -> flat factor of the destination
    nbytes: float
    requires_grad: bool


class _Search:
    def __init__(self, cm: CostModel, progress: Progress = None):
        self.cm = cm
        self.progress = progress
        ops = cm.graph.operators
        self.critical = [n for n in cm.planned if ops[n].kind is OpKind.COMPUTE]
        self.opaque = [n for n in cm.planned if ops[n].kind is OpKind.OPAQUE]
        self.folded = [n for n in cm.planned if ops[n].kind is OpKind.FOLLOW]
        self.links = self._links()
        self.trace: list[dict] = []

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
                    link = _Link(prod, out_idx, edge.consumer, edge.in_index, fmap, edge.nbytes, edge.requires_grad)
                    links[edge.consumer].append(link)
                    links[prod].append(link)
                    continue
                if ops[prod].kind is not OpKind.FOLLOW or depth >= 8:
                    continue
                step = _through(cm, prod, out_idx)
                for e in cm.in_edges[prod]:
                    inner = step.get(e.in_index)
                    if inner is None:
                        continue
                    composed = {x: fmap[y] for x, y in inner.items() if y in fmap}
                    stack.append((e.producer, e.out_index, composed, depth + 1))
        return links

    def link_seconds(self, link: _Link, strategies: dict[str, Strategy], override: tuple[str, Strategy]) -> float:
        cm = self.cm
        name, s = override
        sa = s if link.src == name else strategies[link.src]
        sb = s if link.dst == name else strategies[link.dst]
        la = tuple(link.factor_map.get(x, -1) if x >= 0 else -1 for x in cm.layout(link.src, link.src_use, sa))
        lb = cm.layout(link.dst, link.dst_use, sb)
        vec = cm.basis.zero()
        cm._add_redistribution(vec, link.nbytes, la, lb)
        if cm.mode == "train" and link.requires_grad:
            cm._add_redistribution(vec, link.nbytes, lb, la)
        return cm.basis.time(vec)

    # -- one cut --
    def choose(self, name: str, strategies: dict[str, Strategy], decided: set[str], t: int,
               use_links: bool, record: bool = False) -> str | None:
        """The choice at cut ``t`` minimising the operator's cost plus redistribution with the
        decided neighbours (through folded chains if ``use_links``, else along real edges)."""
        cm = self.cm
        prefix = strategies[name][:t]
        best, best_cost, rows = None, float("inf"), []
        for cand in cm.candidates(name, prefix):
            s = prefix + (cand,)
            own = cm.op_seconds(name, s)
            redist = 0.0
            if use_links:
                for link in self.links.get(name, ()):
                    other = link.dst if link.src == name else link.src
                    if other in decided:
                        redist += self.link_seconds(link, strategies, (name, s))
            else:
                for e in cm.in_edges[name]:
                    if e.producer in decided:
                        redist += cm.edge_seconds(e, strategies[e.producer], s)
                for e in cm.out_edges[name]:
                    if e.consumer in decided:
                        redist += cm.edge_seconds(e, s, strategies[e.consumer])
            total = own + redist
            if record:
                rows.append({"dim": cand, "op_seconds": own, "redistribution_seconds": redist, "total_seconds": total})
            if best_cost == float("inf") or total < best_cost * (1 - 1e-12):
                best, best_cost = cand, total
        if record:
            self.trace.append({"cut": t, "level": cm.cuts[t].level_name, "factor": cm.cuts[t].factor,
                               "operator": name, "candidates": rows, "chosen": best})
        return best

    def step(self, strategies: dict[str, Strategy], t: int, record: bool) -> None:
        """The thesis's step: critical operators by decreasing weight, then propagation."""
        cm = self.cm
        for n in self.opaque:
            strategies[n] = strategies[n][:t] + (None,)
        order = sorted(self.critical, key=lambda n: -cm.op_seconds(n, strategies[n][:t] + (None,)))
        decided = set(self.opaque)
        for n in order:
            strategies[n] = strategies[n][:t] + (self.choose(n, strategies, decided, t, True, record),)
            decided.add(n)
        self.propagate(strategies, t, decided)

    def propagate(self, strategies: dict[str, Strategy], t: int, decided: set[str]) -> None:
        """Folded operators take layouts from decided neighbours, forward then backward, to a fixed point."""
        cm = self.cm
        for n in self.folded:
            if len(strategies[n]) <= t:
                strategies[n] = strategies[n][:t] + (None,)
        forward = [n for n in cm.planned if n in set(self.folded)]
        for round_ in range(6):
            changed = False
            for n in forward if round_ % 2 == 0 else reversed(forward):
                choice = self.choose(n, strategies, decided, t, False)
                decided.add(n)
                if choice != strategies[n][t]:
                    strategies[n] = strategies[n][:t] + (choice,)
                    changed = True
            if not changed and round_ >= 1:
                break

    # -- improvements --
    def resweep(self, strategies: dict[str, Strategy], t: int, order: list[str], sweeps: int = 2) -> None:
        """Re-choose every operator's cut ``t`` with all its neighbours decided (real edges)."""
        everyone = set(self.cm.planned)
        for _ in range(sweeps):
            changed = False
            for n in order:
                choice = self.choose(n, strategies, everyone, t, False)
                if choice != strategies[n][t]:
                    strategies[n] = strategies[n][:t] + (choice,)
                    changed = True
            if not changed:
                break

    def prefix_seconds(self, strategies: dict[str, Strategy]) -> float:
        return self.cm.evaluate_prefix(strategies)

    def run(self, improved: bool) -> dict[str, Strategy]:
        cm = self.cm
        strategies: dict[str, Strategy] = {n: () for n in cm.planned}
        batch = cm.graph.batch_dims() if improved else {}
        n_cuts = len(cm.cuts)
        for t in range(n_cuts):
            if self.progress:
                self.progress(t / max(n_cuts, 1), f"cut {t + 1}/{n_cuts} ({cm.cuts[t].level_name}, x{cm.cuts[t].factor})")
            self.step(strategies, t, record=True)
            if not improved:
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


def polish(cm: CostModel, strategies: dict[str, Strategy], max_rounds: int = 2, budget: int = 200_000) -> dict[str, Strategy]:
    """Local search with the full evaluator: change one operator's choice at one cut at a time
    while that lowers the plan's cost (only the operator's own cost and edges change)."""
    plan = dict(strategies)
    n_cuts = len(cm.cuts)
    work = 0
    for _ in range(max_rounds):
        changed = False
        for n in cm.planned:
            current = cm.local_seconds(n, plan)
            for t in range(n_cuts):
                for cand in cm.candidates(n, plan[n][:t]):
                    if cand == plan[n][t]:
                        continue
                    s = plan[n][:t] + (cand,) + plan[n][t + 1:]
                    if cm.assignment(n, s) is None:
                        continue
                    work += 1
                    cost = cm.local_seconds(n, plan, s)
                    if cost < current * (1 - 1e-9):
                        plan[n], current, changed = s, cost, True
                if work > budget:
                    return plan
        if not changed:
            break
    return plan


def plan_drec(cm: CostModel, improved: bool = True, progress: Progress = None,
              data_parallel: dict[str, Strategy] | None = None) -> Plan:
    """Run D-Rec (``improved=False``: as the thesis describes it) and return the plan.

    ``search_seconds`` counts the search alone. With ``improved``, the data-parallel plan (if
    given) is returned instead when it scores better, and the notes say so.
    """
    start = time.perf_counter()
    search = _Search(cm, progress)
    strategies = search.run(improved)
    notes = []
    if improved:
        strategies = polish(cm, strategies)
    elapsed = time.perf_counter() - start
    name = "drec+" if improved else "drec"
    if improved and data_parallel is not None:
        if cm.total_seconds(data_parallel) < cm.total_seconds(strategies) * (1 - 1e-9):
            notes.append("pure data parallelism scores better than the D-Rec result on this model and machine: "
                         "the data-parallel plan is returned")
            strategies = dict(data_parallel)
    return Plan(strategies, name, elapsed, notes, search.trace)
