"""The all-to-all of expert parallelism, priced per machine level like the other collectives.

An expert-parallel group of ``E`` devices may span several levels (``{level: factor}``, the
product ``E``). Each device holds ``S`` bytes of routed tokens, spread evenly over the group's
``E`` devices (itself included, whose share stays put). A destination that first differs from
the sender at level ``l`` is reached over level ``l``'s links. With the levels ordered outermost
first, factors ``f_0, f_1, ...``, the destinations that first differ at level ``j`` are
``(f_j - 1) x f_{j+1} x ...`` of the ``E``, so level ``j`` carries

    ``S x (f_j - 1) / (f_0 x ... x f_j)``

bytes in one superstep (a direct exchange: an h-relation). Summed over the levels this is
``S x (E - 1) / E``, the fraction leaving the device. Example, 2 nodes x 4 GPUs (E = 8): the node
level carries ``S/2`` (the other node's 4 of 8 destinations), the GPU level ``3S/8``.

The redistribution rule of :mod:`planner.cost.model` prices the same exchange when a tensor
holding both a token axis and an expert axis goes from token-split (as dispatched) to
expert-split (as the experts compute it): :mod:`planner.cost.moe` relies on that, and
``tests/cost/test_alltoall.py`` checks the two against each other and against the hand count.
"""

from __future__ import annotations

from planner.cost.collectives import Traffic


def all_to_all_fractions(groups: dict[int, int]) -> dict[int, float]:
    """Per level of the group, the fraction of a device's routed bytes that crosses it."""
    fractions: dict[int, float] = {}
    outer = 1
    for level in sorted(lv for lv, f in groups.items() if f > 1):  # outermost first
        f = groups[level]
        outer *= f
        fractions[level] = (f - 1) / outer
    return fractions


def all_to_all(size_bytes: float, groups: dict[int, int]) -> Traffic:
    """One all-to-all of ``size_bytes`` per device over ``groups``: bytes and one superstep per level."""
    return {level: (frac * size_bytes, 1) for level, frac in all_to_all_fractions(groups).items()}
