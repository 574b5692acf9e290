"""Re-binding a graph's batch without importing the model again: every number of the graph that
is linear in the batch is scaled, everything else is shared.

Which numbers are linear is read from two imports of the same model that differ only in the batch
(``base`` at batch ``b0``, ``probe`` at ``b1``): walking both graphs side by side, a number equal
in both is kept, a number ``x0``/``x1`` with ``x0 * b1 == x1 * b0`` (a shape axis, a dimension, an
atomic factor, FLOPs that carry the batch) becomes ``x0 * value / b0``, and anything else (a
different structure, a string or a set that differs, a number that grows otherwise) refuses, so
the caller imports instead. Batch 1 is always refused: size-1 axes have no atomic factors and are
never split, a structure no scaling reaches. ``tests/model/test_scale_batch.py`` compares the
scaled graphs with real re-imports on every sample model.
"""

from __future__ import annotations

import copy
from enum import Enum

import networkx as nx

from planner.model.graph import OperatorGraph

#: per-object caches (a signature, the graph's derived values and tables): made again, never scaled
CACHES = frozenset({"_signature", "_memo", "_derived_cache"})
FLOAT_TOLERANCE = 1e-12  # relative: FLOPs are products of sizes, rounded differently in another order


class _NotLinear(Exception):
    """A value of the graph that is not the same at both batches and not proportional to them."""


def scaled_graph(base: OperatorGraph, probe: OperatorGraph, value: int) -> OperatorGraph | None:
    """``base`` re-bound to batch ``value`` by scaling (see the module docstring), or None when
    the two imports do not show every difference to be linear in the batch."""
    symbol = base.batch_symbol
    if symbol is None or probe.batch_symbol != symbol or value < 2:
        return None
    b0, b1 = base.bindings.get(symbol), probe.bindings.get(symbol)
    rest = {k: v for k, v in base.bindings.items() if k != symbol}
    if not b0 or not b1 or b0 == b1 or min(b0, b1) < 2 or rest != {k: v for k, v in probe.bindings.items()
                                                                     if k != symbol}:
        return None
    if value in rest.values():  # equal sizes can merge factor boundaries: a coincidence scaling misses
        return None
    try:
        return _Scaler(b0, b1, value).walk(base, probe)
    except _NotLinear:
        return None


class _Scaler:
    def __init__(self, b0: int, b1: int, value: int):
        self.b0, self.b1, self.value = b0, b1, value

    def walk(self, a, b):
        """``a`` (at batch b0) scaled to the batch ``value``, knowing ``b`` (the same at b1);
        ``a`` itself where nothing in it changes."""
        if a is b:
            return a
        if type(a) is not type(b):
            raise _NotLinear(f"{type(a).__name__} against {type(b).__name__}")
        if isinstance(a, (bool, str, Enum, frozenset, set)) or a is None:
            if a != b:
                raise _NotLinear(repr(a)[:80])
            return a
        if isinstance(a, int):
            return self._int(a, b)
        if isinstance(a, float):
            return self._float(a, b)
        if isinstance(a, (tuple, list)):
            return self._sequence(a, b)
        if isinstance(a, dict):
            return self._dict(a, b)
        if isinstance(a, nx.DiGraph):
            if list(a.nodes) != list(b.nodes) or list(a.edges(data=True)) != list(b.edges(data=True)):
                raise _NotLinear("the wiring differs")
            return a
        if hasattr(a, "__dict__"):
            return self._object(a, b)
        raise _NotLinear(f"a {type(a).__name__} value")

    def _int(self, a: int, b: int) -> int:
        if a == b:
            return a
        if a * self.b1 != b * self.b0 or (a * self.value) % self.b0:
            raise _NotLinear(f"{a} at batch {self.b0}, {b} at batch {self.b1}")
        return a * self.value // self.b0

    def _float(self, a: float, b: float) -> float:
        if a == b:
            return a
        if abs(a * self.b1 - b * self.b0) > FLOAT_TOLERANCE * abs(b * self.b0):
            raise _NotLinear(f"{a} at batch {self.b0}, {b} at batch {self.b1}")
        return a * self.value / self.b0

    def _sequence(self, a, b):
        if len(a) != len(b):
            raise _NotLinear("sequences of different lengths")
        out = [self.walk(x, y) for x, y in zip(a, b)]
        if all(x is y for x, y in zip(out, a)):
            return a
        return type(a)(out)

    def _dict(self, a: dict, b: dict) -> dict:
        if list(a) != list(b):
            raise _NotLinear("dictionaries with different keys")
        out = {k: self.walk(v, b[k]) for k, v in a.items()}
        if all(out[k] is v for k, v in a.items()):
            return a
        return out

    def _object(self, a, b):
        da = {k: v for k, v in a.__dict__.items() if k not in CACHES}
        db = {k: v for k, v in b.__dict__.items() if k not in CACHES}
        if list(da) != list(db):
            raise _NotLinear(f"{type(a).__name__}s with different fields")
        changed = {}
        for k, v in da.items():
            w = self.walk(v, db[k])
            if w is not v:
                changed[k] = w
        if isinstance(a, OperatorGraph):  # a new graph: its caches are its own
            changed.setdefault("operators", da["operators"])
        if not changed:
            return a
        out = copy.copy(a)
        for k in CACHES:
            out.__dict__.pop(k, None)
        out.__dict__.update(changed)
        return out
