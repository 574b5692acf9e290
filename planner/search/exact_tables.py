"""Redistribution prices for whole tables of layout pairs at once (numpy), for the exact dynamic
program: the same rule as :meth:`planner.cost.model.CostModel.redistribution_fractions`, applied
to arrays of layouts instead of one pair at a time.

Per machine level ``l`` and flat factor ``f``, with ``sa`` the producer's cuts splitting ``f`` at
levels ``<= l`` and ``sb`` the consumer's cuts splitting ``f``: the device already holds all it
needs for ``f`` when ``sa`` is a prefix of ``sb`` (the two agree on every cut up to the last of
``sa``), ``1/prod(extra)`` of it when ``sb`` is a prefix of ``sa`` (they agree up to the last of
``sb``; the extra cuts are ``sa``'s beyond it), and nothing otherwise.
"""

from __future__ import annotations

import numpy as np

from planner.cost.model import CostModel


def _agree_up_to(differ: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Whether two boolean rows agree on every cut up to the last cut ``mask`` marks (true when
    ``mask`` marks none)."""
    n = mask.shape[-1]
    last = np.where(mask.any(axis=-1), n - 1 - np.argmax(mask[..., ::-1], axis=-1), -1)
    upto = np.arange(n) <= last[..., None]
    return ~(differ & upto).any(axis=-1)


def fractions(cm: CostModel, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """Per level, the fraction of the tensor each device fetches to go from ``la`` to ``lb``
    (broadcast arrays of layouts, last axis the cuts); the result's last axis is the levels."""
    la, lb = np.broadcast_arrays(la, lb)
    p = np.array(cm.cut_factor, dtype=float)
    level = np.array(cm.cut_level)
    need = np.prod(np.where(lb >= 0, 1.0 / p, 1.0), axis=-1)
    factors = np.unique(np.concatenate([la[la >= 0], lb[lb >= 0]]))
    out = np.zeros(la.shape[:-1] + (cm.num_levels,))
    prev_missing = np.zeros(la.shape[:-1])
    for lv in range(cm.num_levels):
        owned = np.ones(la.shape[:-1])
        for f in factors:
            ma = (la == f) & (level <= lv)
            mb = lb == f
            differ = ma != mb
            a_in_b = _agree_up_to(differ, ma)
            b_in_a = _agree_up_to(differ, mb)
            extra = np.prod(np.where(ma & ~mb, p, 1.0), axis=-1)
            owned = np.where(a_in_b, owned, np.where(b_in_a, owned / extra, 0.0))
        missing = need * (1.0 - owned)
        out[..., lv] = np.maximum(0.0, missing - prev_missing)
        prev_missing = np.maximum(prev_missing, missing)
    return out


def seconds(cm: CostModel, nbytes: float, requires_grad: bool, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """:meth:`CostModel.redistribution_seconds` over broadcast arrays of layout pairs."""
    gaps = np.array(cm._gaps)
    latencies = np.array(cm._latencies)

    def one_way(a, b):
        frac = fractions(cm, a, b)
        return (frac * gaps).sum(axis=-1) * nbytes + np.where(frac > 0, latencies, 0.0).sum(axis=-1)

    total = one_way(la, lb)
    if cm.mode == "train" and requires_grad:
        total = total + one_way(lb, la)
    return total
