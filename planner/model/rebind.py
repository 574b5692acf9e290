"""Re-binding a model's batch: the explicit :class:`Rebinder` the caller builds from the model and
hands to the searches that need the graph at another batch (one micro-batch of a pipeline, the
micro-batch of a hand-made configuration, a plan file's micro-batch when exporting it).

A graph carries no way back to its model: re-binding means importing the model again with the
batch dimension bound to another value, so whoever holds the model builds the Rebinder
(:func:`planner.onnx.rebinder.rebinder_for`) and passes it down, where a reader can follow it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from planner.model.graph import OperatorGraph
from planner.model.scale_batch import scaled_graph
from planner.options import ConfigError


REBOUND_GRAPHS_KEPT = 8  # graphs a Rebinder keeps (one per micro-batch size; a few MB each)


@dataclass(frozen=True)
class Rebinder:
    """Imports ``model`` again (with ``import_fn``, :func:`planner.onnx.importer.import_model`)
    with the batch dimension bound to another value and the other bindings kept."""

    model: Any  # the onnx.ModelProto the graphs were imported from
    name: str
    import_fn: Callable[[Any, dict[str, int], str], OperatorGraph]
    #: re-bind by scaling the numbers linear in the batch (:mod:`planner.model.scale_batch`) once a
    #: second batch has been imported; False imports every batch (the reference the tests use)
    scaling: bool = True
    #: the graphs already imported, by bindings (most recent last): a configuration search, a
    #: what-if change of the machine or a sweep over device counts asks for the same micro-batch
    #: sizes again; a graph is never modified once imported, so sharing it is safe
    _graphs: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def with_batch(self, graph: OperatorGraph, value: int) -> OperatorGraph:
        """The same model as ``graph`` with its batch dimension bound to ``value``."""
        if value == graph.bindings.get(graph.batch_symbol):
            return graph
        if graph.batch_symbol is None:
            raise ValueError("micro-batches need a model whose first input has a symbolic batch dimension "
                             "(axis 0 named, e.g. 'batch'); export the model with a dynamic batch axis")
        if getattr(graph, "vocabulary_padding", None):
            raise ValueError("re-bind the batch before padding the vocabulary: a re-imported graph is not padded")
        bindings = {**graph.bindings, graph.batch_symbol: value}
        key = tuple(sorted(bindings.items()))
        with self._lock:
            hit = self._graphs.get(key)
            if hit is not None:
                self._graphs.move_to_end(key)
                return hit
        rebound = self._scaled(graph, bindings, value) or self.import_fn(self.model, bindings, self.name)
        with self._lock:
            self._graphs[key] = rebound
            while len(self._graphs) > REBOUND_GRAPHS_KEPT:
                self._graphs.popitem(last=False)
        return rebound

    def _scaled(self, graph: OperatorGraph, bindings: dict[str, int], value: int) -> OperatorGraph | None:
        """``graph`` scaled to batch ``value`` against a kept import at another batch (the most
        recent with the same other bindings), or None (no such import, or not linear)."""
        if not self.scaling:
            return None
        symbol = graph.batch_symbol
        rest = {k: v for k, v in bindings.items() if k != symbol}
        with self._lock:
            probes = [g for g in reversed(self._graphs.values())
                      if g.batch_symbol == symbol and g.bindings.get(symbol) != graph.bindings.get(symbol)
                      and {k: v for k, v in g.bindings.items() if k != symbol} == rest]
        return scaled_graph(graph, probes[0], value) if probes else None


def micro_batch_graph(graph: OperatorGraph, micro_batches: int, rebinder: Rebinder | None) -> OperatorGraph:
    """The model bound to one of ``micro_batches`` micro-batches of its batch."""
    if micro_batches == 1:
        return graph
    if graph.batch_size is None:
        raise ConfigError(f"{micro_batches} micro-batches need a model whose first input has a symbolic batch "
                          "dimension (e.g. 'batch'); this one has a fixed batch: re-batch it with --batch N (the app's "
                          "batch field) or use 1 micro-batch")
    if graph.batch_size % micro_batches:
        raise ConfigError(f"{micro_batches} micro-batches do not divide the batch ({graph.batch_symbol}="
                          f"{graph.batch_size}); choose a divisor of it")
    return require_rebinder(rebinder).with_batch(graph, graph.batch_size // micro_batches)


def with_batch(graph: OperatorGraph, value: int, rebinder: Rebinder | None) -> OperatorGraph:
    """``graph`` itself when its batch is already ``value``, else re-bound by ``rebinder``."""
    if graph.batch_symbol is not None and value == graph.bindings.get(graph.batch_symbol):
        return graph
    return require_rebinder(rebinder).with_batch(graph, value)


def require_rebinder(rebinder: Rebinder | None) -> Rebinder:
    """The rebinder, or a ValueError that says the caller must pass one (a programming error)."""
    if rebinder is None:
        raise ValueError("re-binding the batch needs the model: pass rebinder=planner.onnx.rebinder.rebinder_for(model)")
    return rebinder
