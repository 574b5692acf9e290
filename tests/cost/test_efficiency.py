"""Shape-aware compute efficiency (planner/cost/efficiency.py) against hand-worked shapes.

Tile quantisation: useful over padded output, ``m n / (ceil(m/tr) tr ceil(n/tc) tc)``; wave
quantisation: ``T / (ceil(T / SMs) SMs)`` with ``T`` the tiles. Every expected figure below is
worked out in its comment.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models  # tests/models.py
from planner.cost.efficiency import gemm_shape, quantisation, tile_quantisation, wave_quantisation
from planner.cost.model import CostModel
from planner.machine.tree import Device, Level, Machine
from sample_models.synthetic import gpt_decoder


def test_square_4096_on_108_sms_in_128_tiles_runs_ten_waves_the_last_52_of_108_full():
    # 4096/128 = 32 tiles a side, 1024 tiles, no padding; ceil(1024/108) = 10 waves = 1080 slots,
    # the last wave 1024 - 9*108 = 52 tiles of 108
    assert tile_quantisation(4096, 4096, 128, 128) == 1.0
    assert wave_quantisation(1024, 108) == pytest.approx(1024 / 1080)
    assert quantisation(1, 4096, 4096, 128, 128, 108) == pytest.approx(1024 / 1080)  # 0.948


def test_megatron_175b_qkv_under_tensor_parallel_8_in_256x128_tiles():
    # s b = 2048 rows, 3 h / t = 3 * 12288 / 8 = 4608 columns: 8 x 36 = 288 tiles, 3 waves of 108
    # = 324 slots: 288/324 = 8/9
    assert quantisation(1, 2048, 4608, 256, 128, 108) == pytest.approx(8 / 9)


def test_tile_padding_of_a_ragged_shape():
    # 300 x 200 in 256 x 128 tiles: 2 x 2 tiles padded to 512 x 256: 60,000 / 131,072; 4 tiles on
    # 108 SMs: one wave with 4 of 108 busy
    assert tile_quantisation(300, 200, 256, 128) == pytest.approx(60_000 / 131_072)
    assert quantisation(1, 300, 200, 256, 128, 108) == pytest.approx(60_000 / 131_072 * 4 / 108)


def test_batched_products_share_the_waves():
    # 12 heads of 2048 x 2048 in 256 x 128 tiles: 12 x 8 x 16 = 1536 tiles, ceil(1536/108) = 15
    # waves = 1620 slots
    assert quantisation(12, 2048, 2048, 256, 128, 108) == pytest.approx(1536 / 1620)


def test_a_thin_dimension_gets_a_narrow_tile():
    # one row: the tile side is 16 (next power of two of 1, at least 16), so 1 x 4096 pads to
    # 16 x 4096 (1/16) in 32 tiles of 16 x 128, one wave with 32 of 108 busy
    assert quantisation(1, 1, 4096, 256, 128, 108) == pytest.approx(1 / 16 * 32 / 108)
    # 100 rows: side 128 (next power of two), padded to 128: 100/128 in a 256-row device tile
    assert tile_quantisation(100, 128, 256, 128) == pytest.approx(100 / 128)


@settings(max_examples=300, deadline=None)
@given(batch=st.integers(1, 64), m=st.integers(1, 20_000), n=st.integers(1, 20_000),
       rows=st.sampled_from([64, 128, 256]), cols=st.sampled_from([64, 128, 256]), sms=st.integers(1, 200))
def test_quantisation_is_a_fraction_so_efficiency_never_exceeds_the_ceiling(batch, m, n, rows, cols, sms):
    q = quantisation(batch, m, n, rows, cols, sms)
    assert 0 < q <= 1


def _gpt_graph():
    return models.graph_of(gpt_decoder(1, 256, 4, 1024, 1000, 128), batch=2, seq=128)


def test_linear_layers_fold_batch_and_sequence_into_rows_attention_batches_its_heads():
    g = _gpt_graph()
    # qkv: [b, s, h] x [h, 3h]: rows b s = 2 x 128 = 256, columns 768
    assert gemm_shape(g.operators["layer0.attn.qkv"], {}) == (1, 256, 768)
    # split the columns 2 ways (column parallel): 384 local columns
    assert gemm_shape(g.operators["layer0.attn.qkv"], {"n": 2}) == (1, 256, 384)
    # scores: [b, a, s, d] x [b, a, d, s]: batch b a = 8 products of 128 x 128
    assert gemm_shape(g.operators["layer0.attn.scores"], {}) == (8, 128, 128)
    assert gemm_shape(g.operators["layer0.ln_1"], {}) is None  # not a matrix product


def _device(**extra):
    return Device("gpu", 312e12, 80e9, compute_efficiency=0.75, **extra)


def _one_gpu(**extra):
    return Machine("one", _device(**extra), (Level("gpu", 1, 300e9, 5e-6),))


def test_matmul_compute_is_its_flops_over_the_quantisation_on_the_1_over_f_term():
    # 64 x 128 x 256 MatMul (tests/models.matmul), tiles 256 x 128 on 108 SMs: rows 64 take a
    # 64-row tile, columns 256 two 128-column tiles: no padding, 2 tiles in one wave of 108:
    # q = 2/108. Training: 3 passes of 2*64*128*256 = 4,194,304 FLOPs, divided by q.
    graph = models.graph_of(models.matmul())
    plain = CostModel(graph, _one_gpu(), "train")
    tiled = CostModel(graph, _one_gpu(tile_rows=256, tile_cols=128, multiprocessors=108), "train")
    assert plain.op_cost("mm", (None,)).compute[0] == pytest.approx(3 * 4_194_304)
    assert tiled.op_cost("mm", (None,)).compute[0] == pytest.approx(3 * 4_194_304 * 108 / 2)
    assert tiled.quantisation("mm", {}) == pytest.approx(2 / 108)


def test_a_gemv_goes_memory_bound():
    # x[1, 4096] @ W[4096, 4096] in fp32, inference: 2*4096*4096 = 33,554,432 FLOPs; q = 1/16 *
    # 32/108 (thin-row test above) = 0.01852, so 33,554,432 / q = 1.812e9 FLOP-equivalents, at
    # F = 312e12 x 0.75 = 2.34e14: 7.74 µs. Memory: W 4096*4096*4 = 67,108,864 bytes + x 16,384 +
    # y 16,384 = 67,141,632 bytes at 2.039e12 B/s: 32.93 µs, the larger: memory bound.
    graph = models.graph_of(models.matmul(m=1, k=4096, n=4096))
    cm = CostModel(graph, _one_gpu(tile_rows=256, tile_cols=128, multiprocessors=108,
                                   memory_bandwidth_Bps=2.039e12), "infer")
    seconds = cm.op_seconds("mm", (None,))
    assert seconds == pytest.approx(67_141_632 / 2.039e12)  # 32.93 µs
    flops_seconds = 33_554_432 / (1 / 16 * 32 / 108) / (312e12 * 0.75)
    assert flops_seconds == pytest.approx(7.74e-6, rel=1e-3) and flops_seconds < seconds


def test_formula_carries_the_quantisation_as_a_coefficient_on_one_over_f():
    import sympy

    graph = models.graph_of(models.matmul())
    cm = CostModel(graph, _one_gpu(tile_rows=256, tile_cols=128, multiprocessors=108), "train")
    formula = cm.op_formula("mm", (None,))
    F = cm.basis.symbols[0]
    # 3 * 4,194,304 * 108 / 2 = 679,477,248 FLOP-equivalents over F
    assert sympy.simplify(formula - sympy.Integer(679_477_248) / F) == 0
    assert math.isclose(float(formula.subs(F, 312e12 * 0.75)), cm.op_seconds("mm", (None,)), rel_tol=1e-12)
