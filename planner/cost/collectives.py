"""BSP cost primitives of collective operations, kept apart from the search that uses them.

Each primitive returns, per machine level, the bytes ``h`` a device sends (or receives) and the
number of supersteps; the time is then ``h * g_l + n * L_l`` with ``g_l = 1 / bandwidth_l``.
Working in volumes rather than seconds is what makes every cost a vector over the machine basis.
"""

from __future__ import annotations

Traffic = dict[int, tuple[float, int]]  # level -> (bytes per device, supersteps)


def _add(traffic: Traffic, level: int, nbytes: float, steps: int) -> None:
    old_bytes, old_steps = traffic.get(level, (0.0, 0))
    traffic[level] = (old_bytes + nbytes, old_steps + steps)


def reduce_scatter(size_bytes: float, f: int) -> tuple[float, int]:
    """Reduce-scatter of ``S`` bytes over ``f`` devices: ``(f-1)/f * S`` bytes, one superstep.

    Derivation: each device ends with a 1/f shard of the sum; it must receive the other f-1
    devices' contributions to its shard, (f-1) * S/f bytes, and a ring or direct exchange does
    that in one BSP superstep (h-relation with h = (f-1)/f * S).
    """
    return (f - 1) / f * size_bytes, 1


def all_gather(size_bytes: float, f: int) -> tuple[float, int]:
    """All-gather into ``S`` bytes over ``f`` devices: ``(f-1)/f * S`` bytes, one superstep.

    Derivation: each device holds S/f and needs the other (f-1) shards.
    """
    return (f - 1) / f * size_bytes, 1


def all_reduce(size_bytes: float, f: int) -> tuple[float, int]:
    """All-reduce of ``S`` bytes over ``f`` devices = reduce-scatter + all-gather.

    ``2 * (f-1)/f * S`` bytes in two supersteps, so ``2(f-1)/f * S * g + 2L``.
    """
    rs_bytes, rs_steps = reduce_scatter(size_bytes, f)
    ag_bytes, ag_steps = all_gather(size_bytes, f)
    return rs_bytes + ag_bytes, rs_steps + ag_steps


def hierarchical_all_reduce(size_bytes: float, groups: dict[int, int]) -> Traffic:
    """All-reduce over a group that spans several machine levels (``{level: factor}``)."""
    return hierarchical_collectives(size_bytes, groups, 2)


def hierarchical_collectives(size_bytes: float, groups: dict[int, int], collectives: int) -> Traffic:
    """Reduce-scatters and all-gathers over a group that spans several machine levels.

    Recursively: reduce-scatter on the innermost level, all-reduce the remaining shard of
    ``S/f_inner`` bytes on the outer levels, all-gather back on the innermost level. The
    innermost level therefore carries ``2(f-1)/f * S`` bytes in two supersteps, and each outer
    level the same formula on a shard already divided by every inner factor. With one level this
    is exactly :func:`all_reduce`.

    ``collectives`` counts the reduce-scatters and all-gathers over the same group: 2 for an
    all-reduce (a forward partial sum that is recomputed is all-reduced twice: 4). Each one costs
    ``(f-1)/f`` of the shard at each level, in one superstep. (ZeRO-3's per-parameter gathers
    are priced by :func:`flat_collectives` instead.)
    """
    traffic: Traffic = {}
    shard = size_bytes
    for level in sorted((lv for lv, f in groups.items() if f > 1), reverse=True):  # innermost first
        f = groups[level]
        nbytes, steps = all_gather(shard, f)
        _add(traffic, level, collectives * nbytes, collectives * steps)
        shard /= f
    return traffic


def flat_collectives(size_bytes: float, groups: dict[int, int], collectives: int) -> Traffic:
    """Reduce-scatters and all-gathers run as one flat ring over the whole group.

    Every device moves ``(f-1)/f`` of the tensor per collective, ``f`` the whole group's size,
    and the ring is as fast as the slowest level it crosses (the outermost), so all of it is
    charged there. This is how ZeRO-3 implementations gather each parameter (one collective over
    the data-parallel group); ``bench/validate_megatron.py`` compares it with measurements.
    """
    size = 1
    for f in groups.values():
        size *= f
    if size <= 1:
        return {}
    nbytes, steps = all_gather(size_bytes, size)
    return {min(lv for lv, f in groups.items() if f > 1): (collectives * nbytes, collectives * steps)}


def point_to_point(nbytes: float) -> tuple[float, int]:
    """A pipeline stage sends ``nbytes`` to the next stage's matching device: one superstep."""
    return nbytes, 1


def halo_exchange(row_bytes: float, halo_rows: int) -> tuple[float, int]:
    """A spatial split exchanges ``halo_rows`` boundary rows with its neighbours in one superstep."""
    return row_bytes * halo_rows, 1
