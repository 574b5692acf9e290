"""Redistribution is charged once per (tensor, target layout), not once per consumer edge.

A tensor read by several consumers that need it in the same layout is converted once and the
converted copy is shared (and in training their gradients are summed in that layout and sent
back once); a consumer needing another layout pays its own conversion. The evaluator, the
searches' local choices (D-Rec) and the integer program (exact, drec+'s blocks) all use this
rule; :func:`charged_edges` is the evaluator's.
"""

from __future__ import annotations

from collections.abc import Iterator


def charged_edges(cm, strategies: dict) -> Iterator[tuple]:
    """``(edge, producer layout, consumer layout)`` for the first edge of each (tensor, consumer
    layout): the ones that pay a redistribution under ``strategies`` (whole or prefix plans)."""
    seen = set()
    for e in cm.edges:
        la = cm.layout(e.producer, e.out_index, strategies[e.producer])
        lb = cm.layout(e.consumer, e.in_index, strategies[e.consumer])
        key = (e.tensor, lb)
        if key in seen:
            continue
        seen.add(key)
        yield e, la, lb


def consumers_by_tensor(cm) -> dict[str, list]:
    """Per tensor, the edges that read it (in the evaluator's order)."""
    out: dict[str, list] = {}
    for e in cm.edges:
        out.setdefault(e.tensor, []).append(e)
    return out
