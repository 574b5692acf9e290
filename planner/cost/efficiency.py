"""Shape-aware compute efficiency: the fraction of the device's ceiling one matrix multiply reaches.

A GPU runs a matrix multiply ``C[m, n] = A[m, k] B[k, n]`` (times a batch of independent
products) as output tiles of ``tile_rows x tile_cols``, one tile per streaming multiprocessor at a
time, in waves. Two things keep it below the rate large kernels reach (the device's
``compute_efficiency``, the one calibrated ceiling per device family):

* **tile quantisation**: ``m`` and ``n`` are padded up to whole tiles, so the useful share of the
  work is ``m n / (ceil(m / tr) tr ceil(n / tc) tc)``; a dimension thinner than the tile gets a
  tile side of its next power of two (at least 16, the tensor-core instruction's), as cuBLAS
  picks narrow tiles for thin shapes;
* **wave quantisation**: ``T = batch ceil(m / tr) ceil(n / tc)`` tiles run in ``ceil(T / SMs)``
  waves and the last one may be partly idle: ``T / (ceil(T / SMs) SMs)``.

The operator's efficiency is ``ceiling x tile x wave`` (:func:`quantisation` is the product of the
last two); the memory roofline is applied after it (``planner.cost.model.CostModel._work``), so
thin shapes (a GEMV-like product, a small batch) go memory bound. In the symbolic cost the
quantisation is a per-operator coefficient on the ``1/F`` term: an operator's compute is
``passes x FLOPs / (splits x q) x 1/F`` with ``F = peak x ceiling`` (or the memory traffic's
``bytes x F / B`` when that is larger), so every search sees it through the same cost vectors.

Which dimension is which comes from the operator's iteration space: output dimensions indexed by
the first input only are the rows ``m`` (a linear layer's batch and sequence fold into them, as
cuBLAS runs ``[b, s, h] x [h, n]`` as one ``(b s) x n`` product), those indexed by the second input
only the columns ``n``, those indexed by both the batch of independent products (attention's
heads). Only matrix products (``MatMul``, ``Gemm``, ``Einsum``) are quantised; a device without the
tile and multiprocessor fields, and every other operator, gets ``q = 1``.
"""

from __future__ import annotations

import math

MATRIX_PRODUCTS = ("MatMul", "Gemm", "Einsum")


MIN_TILE = 16  # the tensor-core instruction's side (mma m16n8k16): no tile is thinner


def tile_side(size: int, tile: int) -> int:
    """The tile side a kernel uses along a dimension of ``size``: the device's tile, or for a
    thinner dimension the next power of two (at least :data:`MIN_TILE`), as cuBLAS picks narrower
    tiles for thin shapes rather than pad a 1-row product to 256 rows."""
    return min(tile, max(MIN_TILE, 1 << max(0, size - 1).bit_length()))


def tile_quantisation(m: int, n: int, tile_rows: int, tile_cols: int) -> float:
    """Useful over padded work of one ``m x n`` output in ``tile_rows x tile_cols`` tiles."""
    tr, tc = tile_side(m, tile_rows), tile_side(n, tile_cols)
    return m * n / (math.ceil(m / tr) * tr * math.ceil(n / tc) * tc)


def wave_quantisation(tiles: int, multiprocessors: int) -> float:
    """Busy over available multiprocessor slots when ``tiles`` run in whole waves."""
    return tiles / (math.ceil(tiles / multiprocessors) * multiprocessors)


def quantisation(batch: int, m: int, n: int, tile_rows: int, tile_cols: int, multiprocessors: int) -> float:
    """Tile x wave quantisation of ``batch`` independent ``m x n`` outputs: the operator's
    efficiency as a fraction of the ceiling (1 at most)."""
    tiles = batch * math.ceil(m / tile_side(m, tile_rows)) * math.ceil(n / tile_side(n, tile_cols))
    return tile_quantisation(m, n, tile_rows, tile_cols) * wave_quantisation(tiles, multiprocessors)


def gemm_shape(op, split: dict[str, int]) -> tuple[int, int, int] | None:
    """``(batch, m, n)`` of the matrix product's local output under ``split`` (dimension ->
    devices it is split over), or None when ``op`` is not a two-operand matrix product."""
    if op.op_type not in MATRIX_PRODUCTS or len(op.inputs) < 2 or not op.outputs or not op.reduction_dims:
        return None
    first, second = op.inputs[0].dims(), op.inputs[1].dims()
    sizes = {"batch": 1, "m": 1, "n": 1}
    for d in op.outputs[0].dims():
        role = "batch" if d in first and d in second else "m" if d in first else "n" if d in second else "batch"
        sizes[role] *= max(1, op.dims[d] // split.get(d, 1))
    return sizes["batch"], sizes["m"], sizes["n"]


def operator_quantisation(device, op, split: dict[str, int]) -> float:
    """``q`` of one operator on ``device`` under ``split``: 1 for anything but a matrix product,
    or on a device without tile and multiprocessor fields."""
    if device.multiprocessors is None:
        return 1.0
    shape = gemm_shape(op, split)
    if shape is None:
        return 1.0
    return quantisation(*shape, device.tile_rows, device.tile_cols, device.multiprocessors)


def describe(device, op, split: dict[str, int]) -> dict | None:
    """The quantisation of one matrix product spelt out for people (the Cost page, ``plan --json``):
    its local ``batch``, ``m``, ``n``, the tile sides used, the tiles and waves, the two factors,
    their product ``q`` and the efficiency ``ceiling x q``; None for anything else or on a device
    without the tile and multiprocessor fields."""
    shape = gemm_shape(op, split) if device.multiprocessors is not None else None
    if shape is None:
        return None
    batch, m, n = shape
    tr, tc = tile_side(m, device.tile_rows), tile_side(n, device.tile_cols)
    tiles = batch * math.ceil(m / tr) * math.ceil(n / tc)
    tile_q = tile_quantisation(m, n, device.tile_rows, device.tile_cols)
    wave_q = wave_quantisation(tiles, device.multiprocessors)
    return {"batch": batch, "m": m, "n": n, "tile": (tr, tc), "tiles": tiles,
            "waves": math.ceil(tiles / device.multiprocessors), "multiprocessors": device.multiprocessors,
            "tile_quantisation": tile_q, "wave_quantisation": wave_q, "q": tile_q * wave_q,
            "efficiency": device.compute_efficiency * tile_q * wave_q}
