"""Binding a model's batch to one micro-batch of it (the graph of one pipeline micro-batch)."""

from __future__ import annotations

from planner.model.graph import OperatorGraph
from planner.options import ConfigError


def micro_batch_graph(graph: OperatorGraph, micro_batches: int) -> OperatorGraph:
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
    return graph.with_batch(graph.batch_size // micro_batches)

