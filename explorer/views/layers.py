"""Repeated layers found from operator names (``layer12.attn.qkv``: family ``layer``, index 12),
and the per-operator facts every table shows (parameters, dimensions)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from planner.model.graph import OperatorGraph, TensorRole


_LAYER_RE = re.compile(r"^(?P<family>.*?\D)(?P<index>\d+)(?P<rest>[./_:/\-].+)$")


@dataclass
class Layers:
    """Repeated blocks found from operator names (``layer12.attn.qkv`` -> family 'layer', index 12)."""

    family: str | None
    index: dict[str, int]  # operator -> layer index (operators of the family only)

    @property
    def count(self) -> int:
        return len(set(self.index.values()))

    @property
    def indices(self) -> list[int]:
        return sorted(set(self.index.values()))

    def block(self, name: str) -> str | None:
        i = self.index.get(name)
        return None if i is None else f"{self.family}{i}"


def find_layers(names: Iterable[str]) -> Layers:
    """The family of names with the most distinct indices (at least two layers of two operators
    on average); uploaded models with other naming simply have no layers."""
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
    return Layers(best, dict(families[best]) if best else {})


_LAYERS_CACHE: dict[int, tuple[OperatorGraph, Layers]] = {}


def layers_of(graph: OperatorGraph) -> Layers:
    hit = _LAYERS_CACHE.get(id(graph))
    if hit is None or hit[0] is not graph:
        hit = (graph, find_layers(graph.operators))
        if len(_LAYERS_CACHE) > 16:
            _LAYERS_CACHE.clear()
        _LAYERS_CACHE[id(graph)] = hit
    return hit[1]


def op_parameters(graph: OperatorGraph, name: str) -> int:
    return sum(graph.tensors[u.tensor].numel for u in graph.operators[name].inputs
               if graph.tensors[u.tensor].role is TensorRole.PARAMETER)


def dims_text(dims: dict[str, int]) -> str:
    return " ".join(f"{d}={s}" for d, s in dims.items())
