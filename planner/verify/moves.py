"""Redistribution moves: how a tensor goes from one layout (placements per mesh dimension) to
another at the volume the cost model prices, spelt out for DTensor one mesh dimension at a time.

**Driving DTensor.** Given a redistribution spanning several mesh dimensions, DTensor's own
planner may take a costlier route than the plan prices (it never picks an all-to-all, and
may all-reduce a dimension it cannot reduce-scatter in nesting order), so each is spelt out
as one-dimension steps: the cheapest path under the cost model's formulas
(:func:`plan_moves`, :func:`reduce_moves`). Two layout changes have no DTensor path at the
plan's volume and are marked for one c10d collective on the local shards instead (run by
:mod:`planner.verify.executor`): a renumbering of blocks across mesh dimensions (an
``"exchange"``: one ``all_to_all_single`` over all processes, each sending exactly what others
lack, the cost model's "fetch what you lack", priced by :func:`exchange_fraction`), and a
hierarchical all-reduce whose scatter axis cannot nest (a ``"hierarchical"`` step, run on the
flattened buffer). A move is ``(source placements, target placements, kind)``.

Plain data and arithmetic only: nothing here needs PyTorch.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math

from planner.plans.export import PARTIAL, REPLICATE, parse_placement, shard
from planner.verify.base import VerificationError

_parse = functools.lru_cache(maxsize=None)(parse_placement)


def reduce_moves(computed: list[str], post: list[str], shape: tuple[int, ...], sizes: list[int],
                 levels: list[int]) -> list[tuple[list[str], list[str], str]]:
    """Redistribution steps that all-reduce the ``Partial()`` mesh dims of ``computed`` into
    ``post`` the way ``hierarchical_all_reduce`` prices it: per machine level, innermost first,
    reduce-scatter over that level's partial dims, then all-reduce on the outermost level (a
    reduce-scatter and an all-gather when it has several cuts), then all-gather back, outer
    level to inner. Every step changes one mesh dimension (DTensor's own planner, given several
    at once, may all-reduce one of them instead). Each level scatters onto a tensor axis that
    divides evenly and whose existing shards are all on outer mesh dims (DTensor nests an axis's
    shards in mesh order); where there is none, the same collectives run on the flattened local
    buffer (a ``"hierarchical"`` step).
    """
    pdims = [i for i, p in enumerate(computed) if p == PARTIAL]
    if not pdims:
        return plan_moves(computed, post, shape, sizes)
    by_level: dict[int, list[int]] = {}
    for i in pdims:
        by_level.setdefault(levels[i], []).append(i)
    order = sorted(by_level, reverse=True)  # innermost level first
    inner, outer = order[:-1], order[-1]
    moves: list = []
    cur = list(computed)
    axes: dict[int, int] = {}
    for lv in inner + ([outer] if len(by_level[outer]) > 1 else []):
        dims = sorted(by_level[lv])
        axis = _scatter_axis(cur, shape, sizes, math.prod(sizes[i] for i in dims), dims)
        if axis is None:  # the same collectives on the flattened local buffer instead
            reduced = [REPLICATE if p == PARTIAL else p for p in computed]
            return [(list(computed), reduced, "hierarchical")] + plan_moves(reduced, post, shape, sizes)
        axes[lv] = axis
        for i in dims:  # outer mesh dim first: the shards nest in mesh order
            nxt = list(cur)
            nxt[i] = shard(axis)
            moves.append((cur, nxt, "redistribute"))
            cur = nxt
    if len(by_level[outer]) == 1:
        nxt = list(cur)
        nxt[by_level[outer][0]] = REPLICATE
        moves.append((cur, nxt, "redistribute"))
        cur = nxt
    for lv in ([outer] if len(by_level[outer]) > 1 else []) + list(reversed(inner)):
        for i in sorted(by_level[lv], reverse=True):  # innermost shard first
            nxt = list(cur)
            nxt[i] = REPLICATE
            moves.append((cur, nxt, "redistribute"))
            cur = nxt
    if cur != list(post):
        moves += plan_moves(cur, post, shape, sizes)
    return moves


def _scatter_axis(placements: list[str], shape, sizes, factor: int, dims: list[int]) -> int | None:
    """The tensor axis to reduce-scatter on over mesh ``dims``: its local size divisible by
    ``factor`` and any shards it already has on mesh dims before ``dims`` (DTensor nests a tensor
    axis's shards in mesh order); unsharded axes first, then the largest."""
    local = list(shape)
    last: dict[int, int] = {}
    for i, (p, n) in enumerate(zip(placements, sizes)):
        kind, a = parse_placement(p)
        if kind == "shard":
            local[a] //= n
            last[a] = max(last.get(a, -1), i)
    best = None
    for a, size in enumerate(local):
        if size % factor or last.get(a, -1) > min(dims):
            continue
        key = (a not in last, size)
        if best is None or key > best[0]:
            best = (key, a)
    return None if best is None else best[1]


def plan_moves(src: list[str], dst: list[str], shape, sizes: list[int]) -> list[tuple[list[str], list[str], str]]:
    """The cheapest sequence of one-mesh-dimension redistributions from ``src`` to ``dst``.

    DTensor's own planner never picks an all-to-all (it charges ``Shard(i) -> Shard(j)`` a
    penalty and all-gathers instead), so the plan's redistributions are spelt out step by step:
    a Dijkstra search over placements, each step changing one mesh dimension, priced per device
    with the cost model's formulas as a fraction of the tensor (all-gather ``(f-1)`` local
    shards, all-to-all ``(f-1)/f`` of the local shard, a slice of a replica free, reduce-scatter
    ``(f-1)/f`` and all-reduce ``2(f-1)/f`` of the local partial sum). Steps keep every tensor
    axis's shards nested in mesh order, the only order a plain ``Shard`` expresses, and every
    shard even. When a direct exchange is cheaper (or no such path exists), one ``"exchange"``.
    """
    src, dst = tuple(src), tuple(dst)
    if src == dst:
        return []
    best, back = _cheapest_paths(src, dst, shape, sizes)
    direct = exchange_fraction(src, dst, shape, sizes)
    if dst not in back or direct < best[dst] * (1 - 1e-9):
        return [(list(src), list(dst), "exchange")]
    path = [dst]
    while back[path[-1]] is not None:
        path.append(back[path[-1]])
    path.reverse()
    return [(list(a), list(b), "redistribute") for a, b in zip(path, path[1:])]


def _cheapest_paths(src: tuple, dst: tuple, shape, sizes: list[int]) -> tuple[dict, dict]:
    """Dijkstra from ``src`` until ``dst`` is settled: the best price found per state and the
    predecessor of every settled state (``None`` for ``src``)."""
    best = {src: 0.0}
    heap = [(0.0, 0, 0, src, None)]
    back: dict[tuple, tuple] = {}
    counter = 1
    while heap:
        cost, steps, _, state, prev = heapq.heappop(heap)
        if cost > best.get(state, math.inf) + 1e-15 or state in back:
            continue
        back[state] = prev
        if state == dst:
            break
        for nxt, price in _one_step(state, shape, sizes):
            c = cost + price
            if c < best.get(nxt, math.inf) - 1e-15:
                best[nxt] = c
                heapq.heappush(heap, (c, steps + 1, counter, nxt, state))
                counter += 1
    return best, back


def _shards(state, sizes: list[int]) -> tuple[float, dict[int, list[int]]]:
    """The local fraction of the tensor and, per sharded tensor axis, its mesh dims in order."""
    local = 1.0
    by_axis: dict[int, list[int]] = {}
    for i, p in enumerate(state):
        kind, a = _parse(p)
        if kind == "shard":
            local /= sizes[i]
            by_axis.setdefault(a, []).append(i)
    return local, by_axis


def _divisible(state, shape, sizes: list[int]) -> bool:
    _, by_axis = _shards(state, sizes)
    return all(shape[a] % math.prod(sizes[i] for i in ds) == 0 for a, ds in by_axis.items())


def _one_step(state: tuple, shape, sizes: list[int]):
    """Every state one mesh dimension away from ``state`` that keeps shards nested and even,
    with its price as a fraction of the tensor, in a fixed order."""
    local, by_axis = _shards(state, sizes)
    for i, p in enumerate(state):
        f = sizes[i]
        kind, a = _parse(p)
        if kind == "shard" and by_axis[a][-1] != i:
            continue  # only the innermost shard of an axis can change
        options = []
        if kind == "partial":
            options.append((REPLICATE, 2 * (f - 1) / f * local))
        elif kind == "shard":
            options.append((REPLICATE, (f - 1) * local))
        for b in range(len(shape)):
            if kind == "shard" and b == a:
                continue
            holders = [j for j in by_axis.get(b, []) if j != i]
            if holders and holders[-1] > i:
                continue  # would not be the innermost shard of axis b
            price = 0.0 if kind == "replicate" else (f - 1) / f * local
            options.append((shard(b), price))
        for placement, price in options:
            nxt = state[:i] + (placement,) + state[i + 1:]
            if placement != REPLICATE and not _divisible(nxt, shape, sizes):
                continue
            yield nxt, price


def blocks(shape, placements: list[str], sizes: list[int]) -> dict[tuple, list[tuple[int, int]]]:
    """Per mesh coordinate, the block of the tensor it holds: ``[(start, stop)]`` per axis
    (shards of an axis nested in mesh order, as DTensor lays them out)."""
    by_axis: dict[int, list[int]] = {}
    for i, p in enumerate(placements):
        kind, a = parse_placement(p)
        if kind == "shard":
            by_axis.setdefault(a, []).append(i)
    out = {}
    for coord in itertools.product(*(range(n) for n in sizes)):
        box = []
        for a, size in enumerate(shape):
            ds = by_axis.get(a, [])
            index, count = 0, 1
            for d in ds:
                index = index * sizes[d] + coord[d]
                count *= sizes[d]
            block = size // count
            box.append((index * block, (index + 1) * block))
        out[coord] = box
    return out


def overlap(a, b) -> list[tuple[int, int]] | None:
    """The intersection of two blocks (``[(start, stop)]`` per axis), or ``None`` when empty."""
    box = [(max(x0, y0), min(x1, y1)) for (x0, x1), (y0, y1) in zip(a, b)]
    return None if any(lo >= hi for lo, hi in box) else box


def exchange_fraction(src: list[str], dst: list[str], shape, sizes: list[int]) -> float:
    """Per-device bytes (as a fraction of the tensor) of a direct exchange from ``src`` to
    ``dst`` (one all-to-all over all devices): the worst device's part of its new block that it
    does not hold already. This is the volume the cost model's redistribution prices."""
    if any(parse_placement(p)[0] == "partial" for p in list(src) + list(dst)):
        return math.inf
    a, b = blocks(shape, src, sizes), blocks(shape, dst, sizes)
    total = math.prod(shape)
    worst = 0.0
    for coord, want in b.items():
        need = math.prod(hi - lo for lo, hi in want)
        own = overlap(a[coord], want)
        have = math.prod(hi - lo for lo, hi in own) if own else 0
        worst = max(worst, (need - have) / total)
    return worst


def local_shape(shape, placements: list[str], sizes: list[int]) -> list[int]:
    """The shape of one device's shard of a tensor of ``shape`` laid out as ``placements``."""
    out = list(shape)
    for p, n in zip(placements, sizes):
        kind, a = parse_placement(p)
        if kind == "shard":
            if out[a] % n:
                raise VerificationError(f"axis {a} of shape {tuple(shape)} does not split evenly in {n}")
            out[a] //= n
    return out

