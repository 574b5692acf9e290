"""Context parallelism's ring and zig-zag assignment against hand counts."""

from __future__ import annotations

import pytest

from planner.cost.context_parallel import (causal_pairs, in_flight_bytes, rank_positions, ring_cost,
                                           zigzag_chunks)


def test_zigzag_chunks_pair_the_ends():
    # 4 ranks, 8 chunks: rank 0 holds the first and the last, rank 3 the two middle ones
    assert [zigzag_chunks(r, 4) for r in range(4)] == [(0, 7), (1, 6), (2, 5), (3, 4)]


def test_causal_work_equal_under_zigzag_by_counting():
    # sequence 16 over 4 ranks: chunks of 2 tokens. Rank 0 holds positions 0,1 and 14,15: a query at
    # position p sees p + 1 keys, so 1 + 2 + 15 + 16 = 34; rank 1: 3 + 4 + 13 + 14 = 34; rank 2:
    # 5 + 6 + 11 + 12 = 34; rank 3: 7 + 8 + 9 + 10 = 34. The total is 16 x 17 / 2 = 136 = 4 x 34.
    assert rank_positions(0, 4, 16) == [0, 1, 14, 15]
    assert causal_pairs(4, 16) == [34, 34, 34, 34]
    # brute force over the whole mask, on a longer sequence
    seq, ranks = 48, 3
    work = [sum(1 for q in rank_positions(r, ranks, seq) for k in range(seq) if k <= q) for r in range(ranks)]
    assert len(set(work)) == 1 and sum(work) == seq * (seq + 1) // 2


def test_causal_work_unequal_under_contiguous_chunks():
    # contiguous chunks of 4: rank r holds 4r .. 4r + 3, work sum(p + 1) = 16 r + 10
    assert causal_pairs(4, 16, zigzag=False) == [10, 26, 42, 58]
    assert sum(causal_pairs(4, 16, zigzag=False)) == 136


def test_ring_fully_hidden_when_blocks_outlast_transfers():
    # 4 ranks, a K/V block of 100 MB over 50 GB/s with 10 us latency: 2 ms + 10 us per transfer.
    # Forward blocks of 5 ms hide each of the 3 transfers; backward blocks of 10 ms hide the K/V
    # ahead plus the dK/dV behind (4 ms + 10 us); the last dK/dV hop home is exposed: 2.01 ms.
    ring = ring_cost(4, 5e-3, 10e-3, 100e6, 50e9, 10e-6)
    assert ring.transfer == pytest.approx(2.01e-3)
    assert ring.forward_exposed == 0.0
    assert ring.backward_exposed == pytest.approx(2.01e-3)
    assert ring.compute == pytest.approx(4 * 15e-3)
    assert ring.seconds == pytest.approx(60e-3 + 2.01e-3)


def test_ring_exposed_where_transfers_outlast_blocks():
    # the same ring with blocks of 0.5 ms forward and 1 ms backward:
    # forward: 3 x (2.01 - 0.5) = 4.53 ms;
    # backward: step 0 sends K/V only (2.01 - 1 = 1.01), steps 1 and 2 K/V and dK/dV (200 MB:
    # 4.01 - 1 = 3.01 each), step 3 dK/dV only (1.01), then the last hop 2.01: 10.05 ms
    ring = ring_cost(4, 0.5e-3, 1e-3, 100e6, 50e9, 10e-6)
    assert ring.forward_exposed == pytest.approx(4.53e-3)
    assert ring.backward_exposed == pytest.approx(1.01e-3 + 2 * 3.01e-3 + 1.01e-3 + 2.01e-3)
    assert ring.seconds == pytest.approx(4 * 1.5e-3 + 4.53e-3 + 10.05e-3)


def test_ring_of_one_rank_and_inference():
    assert ring_cost(1, 1e-3, 2e-3, 100e6, 50e9, 10e-6).exposed == 0.0
    infer = ring_cost(2, 0.5e-3, 1e-3, 100e6, 50e9, 10e-6, train=False)
    assert infer.forward_exposed == pytest.approx(1.51e-3) and infer.backward_exposed == 0.0
    assert infer.seconds == pytest.approx(2 * 0.5e-3 + 1.51e-3)


def test_in_flight_buffers():
    # forward: the block computed on and the one arriving; backward adds the travelling dK/dV pair
    assert in_flight_bytes(8e6) == 32e6
    assert in_flight_bytes(8e6, train=False) == 16e6
