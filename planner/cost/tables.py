"""The cost model's per-operator tables: what it knows of each planned operator (its uses,
layouts' flat factors, signature), the activation edges, and the attention core selective
recomputation recomputes.

They depend on the graph and on the mode, precision and gradient bucket, never on the machine,
so the cost models of one graph on several machines (the stage counts of a configuration search,
the explorer's what-ifs and device sweeps) share them through
:meth:`planner.model.graph.OperatorGraph.memo`.
"""

from __future__ import annotations

from planner.cost import activations


def graph_tables(cm) -> tuple:
    """Build ``cm``'s tables (set on it, and returned as ``planned, info, edges, in_edges,
    selective_ops`` for the next cost models of the same graph and options)."""
    cm.planned = cm.graph.planned_operators()
    cm.info = {n: cm._op_info(cm.graph.operators[n]) for n in cm.planned}
    cm.edges = cm._edges()
    cm.in_edges = {n: [] for n in cm.planned}
    for e in cm.edges:
        cm.in_edges[e.consumer].append(e)
    activations.mark_attention_core(cm)  # what selective recomputation recomputes: cm.selective_ops
    return cm.planned, cm.info, cm.edges, cm.in_edges, cm.selective_ops
