"""Repeated layers of a model, found from its operator names or, when the names say nothing
(dynamo exports: ``node_linear_28``), from its structure.

:func:`find_layers` is the one entry: it returns a :class:`Layers` (a family name and the layer
index of each operator in a layer). Names are tried first (``layer12.attn.qkv``: family
``layer``, index 12); otherwise the operators, in the model's order, are read as a sequence of
structural fingerprints (:meth:`Operator.signature`: op type, dimensions, shapes, FLOPs, not the
name) and the longest run of repeated segments is taken as the layers: segments that start at
each occurrence of one fingerprint of an operator with weights, are equally long, and hold the
same operators. Operators before the first and after the last segment (embeddings, the head)
are in no layer.

Old exporters (``torch.onnx.export(dynamo=False)``) put a weight-only ``Identity`` (or a
``Constant``) before the operators that read a shared or tied weight; those do no work and
belong where they are read: :func:`weight_only` tells them, and :func:`find_layers` puts each in
the layer of its readers when they all lie in one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from planner.model.graph import OperatorGraph, OpKind, TensorRole


_LAYER_RE = re.compile(r"^(?P<family>.*?\D)(?P<index>\d+)(?P<rest>[./_:/\-].+)$")

#: the family name of layers found by structure
STRUCTURAL_FAMILY = "layer "

#: a segment must hold at least this many operators to count as a layer
MIN_LAYER_OPS = 3

#: repeated segments may differ in length by this fraction, and must share SIMILARITY of their operators
TOLERANCE, SIMILARITY = 0.2, 0.8


@dataclass
class Layers:
    """Repeated blocks: ``family`` (``layer`` from ``layer12.attn.qkv``) and each member operator's
    layer index; ``by`` says how they were found ("names", "structure", or "" when none)."""

    family: str | None
    index: dict[str, int] = field(default_factory=dict)  # operator -> layer index (members only)
    by: str = ""

    @property
    def count(self) -> int:
        return len(set(self.index.values()))

    @property
    def indices(self) -> list[int]:
        return sorted(set(self.index.values()))

    def block(self, name: str) -> str | None:
        i = self.index.get(name)
        return None if i is None else f"{self.family}{i}"


def layers_by_name(names: Iterable[str]) -> Layers:
    """The family of names with the most distinct indices (at least two layers of two operators
    on average), or no layers."""
    families: dict[str, dict[str, int]] = {}
    for n in names:
        m = _LAYER_RE.match(n)
        if m:
            families.setdefault(m.group("family"), {})[n] = int(m.group("index"))
    best, best_count = None, 1
    for fam, members in families.items():
        distinct = len(set(members.values()))
        if distinct >= 2 and len(members) >= 2 * distinct and distinct > best_count:
            best, best_count = fam, distinct
    return Layers(best, dict(families[best]) if best else {}, "names" if best else "")


def _weighted(graph: OperatorGraph, name: str) -> bool:
    return any(graph.tensors[u.tensor].role is TensorRole.PARAMETER for u in graph.operators[name].inputs)


def _similar(a: list[str], b: list[str]) -> bool:
    """Two segments hold (nearly) the same operators: 80% of the longer one in common."""
    common = sum((Counter(a) & Counter(b)).values())
    return common >= SIMILARITY * max(len(a), len(b))


def _segments(tokens: list[str], starts: list[int]) -> list[tuple[int, int]] | None:
    """Segments from each start to the next (the last as long as the median gap), moved back over
    the operators every segment has just before its start (a LayerNorm before the first weight);
    None when the gaps differ by more than a fifth or the segments hold different operators (an
    export may put an operator or two of shared work inside the first layer: they are tolerated)."""
    gaps = sorted(b - a for a, b in zip(starts, starts[1:]))
    d = gaps[len(gaps) // 2]
    if d < MIN_LAYER_OPS or gaps[0] < (1 - TOLERANCE) * d or gaps[-1] > (1 + TOLERANCE) * d:
        return None
    shift = 0
    while shift + 1 < gaps[0] and starts[0] - shift - 1 >= 0 and \
            len({tokens[p - shift - 1] for p in starts}) == 1:
        shift += 1
    ends = [*starts[1:], min(len(tokens) + shift, starts[-1] + d)]
    spans = [(p - shift, e - shift) for p, e in zip(starts, ends)]
    ref = tokens[spans[-2][0]:spans[-2][1]] if len(spans) > 2 else tokens[spans[0][0]:spans[0][1]]
    if not all(_similar(tokens[a:b], ref) for a, b in spans):
        return None
    return spans


def layers_by_structure(graph: OperatorGraph) -> Layers:
    """Layers as the longest run of similar segments of the model's operator sequence (see the
    module docstring); no layers when no fingerprint repeats that way."""
    order = [n for n, op in graph.operators.items() if op.kind is not OpKind.STATIC]
    tokens = [graph.operators[n].signature(graph.tensors) for n in order]
    where: dict[str, list[int]] = {}
    for i, (n, t) in enumerate(zip(order, tokens)):
        if _weighted(graph, n):
            where.setdefault(t, []).append(i)
    best, best_key = None, None
    for starts in where.values():
        spans = _segments(tokens, starts) if len(starts) >= 2 else None
        if spans is not None:
            key = (sum(b - a for a, b in spans), len(spans), -spans[0][0])
            if best_key is None or key > best_key:
                best, best_key = spans, key
    if best is None:
        return Layers(None)
    index = {order[k]: i for i, (a, b) in enumerate(best) for k in range(a, b)}
    return Layers(STRUCTURAL_FAMILY, index, "structure")


WEIGHT_ONLY_TYPES = ("Identity", "Constant")


def weight_only(graph: OperatorGraph, name: str) -> bool:
    """An ``Identity`` of weights or a ``Constant``: it reads nothing but parameters and does no work."""
    op = graph.operators[name]
    return op.op_type in WEIGHT_ONLY_TYPES and op.flops == 0 and all(
        graph.tensors[u.tensor].role is TensorRole.PARAMETER for u in op.inputs)


def _fold_weight_only(graph: OperatorGraph, layers: Layers) -> Layers:
    """Each weight-only operator in no layer joins the layer of its readers when they all lie in one."""
    for name in graph.operators:
        if name in layers.index or not weight_only(graph, name):
            continue
        readers = {layers.index.get(m) for m in graph.graph.successors(name)}
        if len(readers) == 1 and None not in readers:
            layers.index[name] = readers.pop()
    return layers


def find_layers(graph: OperatorGraph) -> Layers:
    """The model's repeated layers: by the operators' names when they carry layer indices, else
    by structure (:func:`layers_by_structure`); weight-only operators join their readers' layer."""
    by_name = layers_by_name(graph.operators)
    layers = by_name if by_name.count >= 2 else layers_by_structure(graph)
    return _fold_weight_only(graph, layers) if layers.count >= 2 else layers
