"""Repeated layers folded: a graph with the middle copies of a run of identical layers left out.

:func:`fold_layers` owns the folding. It finds the layers (:func:`planner.model.layers.find_layers`)
and gives each a structural hash (:func:`layer_hashes`): every operator's structural fingerprint
(:meth:`Operator.signature`: op type, dimensions, factors, shapes, FLOPs) and the wiring of every
input relative to the layer (an operator of the same layer by position and output, an operator of
the previous layer by position and output, or a named tensor from outside the layers). Consecutive
layers with equal hashes are copies of one another, wired the same way to their predecessor.

Of a run of ``m`` such copies the folded graph keeps the first ``KEEP_HEAD`` copies and the last
``KEEP_TAIL``; the last kept head copy is the *representative* of the ``m - KEEP_HEAD - KEEP_TAIL``
copies left out (its multiplicity is one more than that), and the first tail copy is re-wired to
read the representative's outputs where it read those of the copy before it. The copy-to-copy boundary is
therefore priced inside the folded graph (representative -> first tail copy) exactly as between any two
copies. A plan of the folded graph unfolds (:meth:`Folded.unfold`) by giving every left-out copy
the representative's strategies; it is then priced by the ordinary evaluator on the full graph,
so the reported cost is exact. Layers read from elsewhere than the next layer (a skip across
layers) are never folded, and a model without such a run is not folded (None).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from planner.model.graph import OperatorGraph, TensorUse
from planner.model.layers import find_layers

#: copies of a run kept explicit before the representative's stand-ins (the representative is the
#: last of them) and after them: the search's choices settle into a period a few layers away from
#: either end of a stack (tests/model/test_blocks.py shows where), so ends are planned as they are
KEEP_HEAD, KEEP_TAIL = 6, 4


@dataclass
class Folded:
    """A folded graph and how to unfold its plans: ``source`` maps each left-out operator to the
    representative operator whose strategy it takes; ``multiplicity`` is how many operators of
    the full graph each folded operator stands for (1 outside the representatives)."""

    graph: OperatorGraph
    full: OperatorGraph
    source: dict[str, str] = field(default_factory=dict)
    multiplicity: dict[str, int] = field(default_factory=dict)

    def unfold(self, strategies: dict, order: list[str]) -> dict:
        """A plan of the full graph (in ``order``, its planned operators) from one of the folded graph."""
        return {n: strategies[self.source.get(n, n)] for n in order}

    def fold(self, strategies: dict) -> dict:
        """The folded graph's part of a plan of the full graph (a hint, the data-parallel plan)."""
        return {n: strategies[n] for n in self.graph.operators if n in strategies}


def _layer_members(graph: OperatorGraph) -> list[list[str]]:
    """Each layer's operators in the model's order; [] when the layers are not contiguous runs."""
    layers = find_layers(graph)
    if layers.count < 2:
        return []
    members: dict[int, list[str]] = {}
    for n in graph.operators:
        i = layers.index.get(n)
        if i is not None:
            members.setdefault(i, []).append(n)
    return [members[i] for i in sorted(members)]


def layer_hashes(graph: OperatorGraph, members: list[list[str]]) -> list[str]:
    """The structural hash of each layer (see the module docstring)."""
    where = {n: (i, p) for i, ops in enumerate(members) for p, n in enumerate(ops)}
    hashes = []
    for i, ops in enumerate(members):
        parts = []
        for n in ops:
            op = graph.operators[n]
            wires = []
            for use in op.inputs:
                producer = graph.tensors[use.tensor].producer
                at = where.get(producer) if producer is not None else None
                out = _output_index(graph, producer, use.tensor) if producer is not None else -1
                if at is not None and at[0] == i:
                    wires.append(f"self:{at[1]}:{out}")
                elif at is not None and at[0] == i - 1:
                    wires.append(f"prev:{at[1]}:{out}")
                elif at is not None:
                    wires.append(f"layer{at[0]}:{at[1]}:{out}")  # from further back: never equal
                elif graph.tensors[use.tensor].role.value == "parameter":
                    wires.append("parameter")  # each layer's own weight (its shape is in the signature)
                else:
                    wires.append(f"tensor:{use.tensor}")
            parts.append(f"{op.signature(graph.tensors)}<{','.join(wires)}>")
        hashes.append(hashlib.sha1("|".join(parts).encode()).hexdigest()[:16])
    return hashes


def _output_index(graph: OperatorGraph, producer: str, tensor: str) -> int:
    return next(k for k, u in enumerate(graph.operators[producer].outputs) if u.tensor == tensor)


def _runs(hashes: list[str]) -> list[tuple[int, int]]:
    """Maximal runs [a, b] of consecutive layers with one hash, long enough to leave copies out."""
    runs, a = [], 0
    for k in range(1, len(hashes) + 1):
        if k == len(hashes) or hashes[k] != hashes[a]:
            if k - a >= KEEP_HEAD + KEEP_TAIL + 1:
                runs.append((a, k - 1))
            a = k
    return runs


def _read_only_by_next(graph: OperatorGraph, members: list[list[str]], a: int, b: int) -> bool:
    """The layers a..b-1 are read only by themselves and the next layer (no skip across layers)."""
    layer_of = {n: i for i, ops in enumerate(members) for n in ops}
    for i in range(a, b):
        for n in members[i]:
            for s in graph.graph.successors(n):
                if layer_of.get(s) not in (i, i + 1):
                    return False
    return True


def fold_layers(graph: OperatorGraph) -> Folded | None:
    """The folded graph of ``graph``, or None when no run of identical layers is long enough."""
    members = _layer_members(graph)
    if not members:
        return None
    hashes = layer_hashes(graph, members)
    runs = [(a, b) for a, b in _runs(hashes) if _read_only_by_next(graph, members, a, b)]
    if not runs:
        return None
    dropped: set[str] = set()
    source: dict[str, str] = {}
    multiplicity: dict[str, int] = {}
    renamed: dict[str, str] = {}  # tensor of a left-out copy -> the representative's tensor
    for a, b in runs:
        rep, tail = a + KEEP_HEAD - 1, b - KEEP_TAIL + 1  # tail: the first copy kept after the left-out ones
        for p, n in enumerate(members[rep]):
            multiplicity[n] = tail - rep
            for j in range(rep + 1, tail):
                other = members[j][p]
                dropped.add(other)
                source[other] = n
            before = graph.operators[members[tail - 1][p]]
            for k, use in enumerate(before.outputs):
                renamed[use.tensor] = graph.operators[n].outputs[k].tensor
    operators = {}
    for n, op in graph.operators.items():
        if n in dropped:
            continue
        if any(u.tensor in renamed for u in op.inputs):
            op = replace(op, inputs=[TensorUse(renamed.get(u.tensor, u.tensor), u.axes, u.loose) for u in op.inputs])
        operators[n] = op
    used = {u.tensor for op in operators.values() for u in op.uses()}
    tensors = {t: v for t, v in graph.tensors.items() if t in used or t in graph.inputs or t in graph.outputs}
    folded = replace(graph, operators=operators, tensors=tensors, inputs=[t for t in graph.inputs if t in used])
    folded.__dict__.pop("_memo", None)
    folded.__dict__.pop("_derived_cache", None)
    folded.build_edges()
    return Folded(folded, graph, source, multiplicity)


def folded_graph(graph: OperatorGraph) -> Folded | None:
    """:func:`fold_layers` of ``graph``, computed once per graph."""
    return graph.memo("folded layers", None, lambda: fold_layers(graph))
