"""Communication overlapped with compute (planner/cost/overlap.py) against hand-worked timelines."""

from __future__ import annotations

import pytest

import models  # tests/models.py
from planner.cost.baseline import data_parallel_strategies
from planner.cost.model import CostModel
from planner.cost.overlap import Overlaps, Split, bucket_timeline, exposed_split, timeline
from planner.cost.schedule import price_schedule
from planner.machine.split import split_machine
from planner.machine.tree import Device, Level, Machine

F = 1e14
BW, LAT = 1e10, 1e-5
MS = 1e-3


# ---- the timelines, by hand ----------------------------------------------------------------

def test_two_buckets_the_second_waits_for_the_first():
    # backward: layer B (2 ms) then layer A (2 ms); B's bucket all-reduce takes 3 ms, A's 1 ms.
    # B's bucket is full at 2 ms and runs 2-5 ms; A's is full at 4 ms (the end of the pass) but the
    # stream is busy until 5 ms: it runs 5-6 ms. Exposed: 6 - 4 = 2 ms; hidden: 4 - 2 = 2 ms.
    split = bucket_timeline([2 * MS, 2 * MS], [3 * MS, 1 * MS], [25e6, 25e6], 25e6)
    assert split.exposed == pytest.approx(2 * MS) and split.hidden == pytest.approx(2 * MS)
    # not overlapped: all 4 ms after the pass
    plain = bucket_timeline([2 * MS, 2 * MS], [3 * MS, 1 * MS], [25e6, 25e6], 25e6, overlapped=False)
    assert plain == Split(0.0, 4 * MS)


def test_a_bucket_larger_than_the_gradients_closes_only_at_the_end_and_hides_nothing():
    # both layers' 25 MB gradients fill one 100 MB bucket, which closes when the pass ends
    split = bucket_timeline([2 * MS, 2 * MS], [3 * MS, 1 * MS], [25e6, 25e6], 100e6)
    assert split == Split(0.0, 4 * MS)


def test_the_embedding_groups_all_reduce_follows_the_last_bucket():
    split = bucket_timeline([2 * MS, 2 * MS], [1 * MS, 1 * MS], [25e6, 25e6], 25e6, tail=0.5 * MS)
    # B's bucket 2-3 ms, A's 4-5 ms, then the tail 5-5.5 ms: 1.5 ms exposed of 2.5 ms
    assert split.exposed == pytest.approx(1.5 * MS) and split.hidden == pytest.approx(1 * MS)


def test_prefetch_one_layer_ahead():
    # three layers of 2 ms compute, each needing a 1 ms gather: the first is exposed (0-1 ms),
    # the second is issued when the first layer starts (1-2 ms) and is ready before it ends, and
    # so on: the pass ends at 1 + 3 * 2 = 7 ms; 1 ms exposed, 2 ms hidden
    items = [(1 * MS, 2 * MS, 0.0)] * 3
    assert timeline(items) == pytest.approx(7 * MS)
    assert exposed_split(items, True) == Split(pytest.approx(2 * MS), pytest.approx(1 * MS))
    assert exposed_split(items, False) == Split(0.0, pytest.approx(3 * MS))


def test_a_gather_longer_than_the_compute_is_exposed_by_the_difference():
    # gathers 3 ms, compute 1 ms: gathers back to back end at 3, 6, 9 ms; each layer runs just
    # after its gather: the pass ends at 10 ms; exposed 10 - 3 = 7 ms of the 9 ms of gathers
    items = [(3 * MS, 1 * MS, 0.0)] * 3
    assert timeline(items) == pytest.approx(10 * MS)
    assert exposed_split(items, True).exposed == pytest.approx(7 * MS)


def test_reduce_scatters_queue_behind_the_next_gather():
    # backward of two layers (2 ms each), gather 1 ms, reduce-scatter 1 ms each:
    # gather0 0-1, layer0 1-3; gather1 issued at 1: 1-2; rs0 after layer0: 3-4;
    # layer1 3-5; rs1 5-6. End 6 ms, compute 4 ms: 2 ms exposed of 4 ms
    items = [(1 * MS, 2 * MS, 1 * MS)] * 2
    assert timeline(items) == pytest.approx(6 * MS)


# ---- in the schedule --------------------------------------------------------------------------

def _two_layers(overlaps: Overlaps, zero: int = 0, bucket_mb: float = 64 * 64 * 4 / 1e6):
    """tests/models.gemm_mlp: fc0, fc1, x[256, 64] @ W[64, 64] fp32, data parallel over 2 nodes."""
    graph = models.graph_of(models.gemm_mlp([64] * 3, batch="batch", bias=False), batch=256)
    machine = Machine("m", Device("d", F, 80e9), (Level("node", 2, BW, LAT),))
    split = split_machine(machine, 1)
    cm = CostModel(graph, split.stage_machine, "train", zero=zero, bucket_mb=bucket_mb)
    cm.overlap = overlaps
    return price_schedule(cm, data_parallel_strategies(cm), split, 1), cm


def test_bucket_by_bucket_in_the_schedule_two_buckets_by_hand():
    # each layer: 128 samples per node, 3 x 2 x 128 x 64 x 64 = 3.15 MFLOP: 31.5 ns forward and
    # backward, 2/3 of it in the backward pass: L = 20.97 µs; its gradient (16,384 bytes, one
    # 16,384-byte bucket) is all-reduced over 2 nodes: 16,384 / 1e10 + 2 x 10 µs = s = 21.64 µs.
    # fc1's bucket: L .. L + s; fc0's is ready at 2L but waits: L + s .. L + 2s. Exposed L + 2s - 2L.
    layer = 3 * 2 * 128 * 64 * 64 / F
    backward = layer * 2 / 3
    s = 16384 / BW + 2 * LAT
    on, _ = _two_layers(Overlaps(gradient_sync=True))
    off, _ = _two_layers(Overlaps())
    assert on.gradient_sync_seconds == pytest.approx([2 * s - backward], rel=1e-12)
    assert off.gradient_sync_seconds == pytest.approx([2 * s], rel=1e-12)
    assert on.iteration_seconds == pytest.approx(2 * layer + 2 * s - backward, rel=1e-12)
    assert on.timing[0].sync.hidden == pytest.approx(backward, rel=1e-12)


def test_zero3_gathers_prefetched_in_the_schedule():
    # ZeRO-3 over 2 nodes: per layer and pass, a flat all-gather (and in the backward a
    # reduce-scatter) of half the 16,384-byte weight: g = 8,192 / 1e10 + 10 µs = 10.82 µs.
    # Forward: gather0 exposed, gather1 (10.82) hidden behind fc0's forward (10.49 µs) but for
    # 0.33 µs; backward the same, plus the two reduce-scatters: compute with the timeline.
    layer = 3 * 2 * 128 * 64 * 64 / F
    g = 8192 / BW + LAT
    fwd, bwd = layer / 3, layer * 2 / 3
    forward = timeline([(g, fwd, 0.0), (g, fwd, 0.0)])  # 2g + fwd: the second gather outlasts fc0
    backward = timeline([(g, bwd, g), (g, bwd, g)])
    assert forward == pytest.approx(2 * g + fwd)
    on, _ = _two_layers(Overlaps(parameter_prefetch=True), zero=3)
    off, _ = _two_layers(Overlaps(), zero=3)
    assert off.stage_seconds == pytest.approx([2 * layer + 6 * g], rel=1e-12)
    assert on.stage_seconds == pytest.approx([forward + backward], rel=1e-12)
    assert on.timing[0].gathers.hidden == pytest.approx(2 * layer + 6 * g - forward - backward, rel=1e-12)


def test_pipeline_sends_overlapped_with_compute():
    # 2 stages of one node each, fc0 | fc1, 128 samples... the whole batch of 256 on one device:
    # a stage computes 3 x 2 x 256 x 64 x 64 / F = 62.9 ns per micro-batch and sends 256 x 64 x 4 =
    # 65,536 bytes: 16.55 µs. Overlapped, the slot is the larger of the two.
    graph = models.graph_of(models.gemm_mlp([64] * 3, batch="batch", bias=False), batch=256)
    machine = Machine("m", Device("d", F, 80e9), (Level("node", 2, BW, LAT),))
    split = split_machine(machine, 2)
    layer = 3 * 2 * 256 * 64 * 64 / F
    send = 65536 / BW + LAT
    for overlapped, slot in ((False, layer + send), (True, send)):
        cm = CostModel(graph, split.stage_machine, "train", bucket_mb=0)
        cm.overlap = Overlaps(pipeline_sends=overlapped)
        sched = price_schedule(cm, {}, split, 4)
        assert sched.stage_seconds == pytest.approx([slot, slot], rel=1e-12)
        assert sched.timing[0].sends.hidden == pytest.approx(layer if overlapped else 0.0, rel=1e-12)


def test_an_operator_with_nothing_to_gather_does_not_wait_for_a_reduce():
    # three 1 ms operators; the second's 3 ms reduce runs 2-5 ms while the third computes 2-3 ms
    assert timeline([(0.0, 1 * MS, 0.0), (0.0, 1 * MS, 3 * MS), (0.0, 1 * MS, 0.0)]) == pytest.approx(5 * MS)


def test_the_search_sees_the_overlap_operator_by_operator():
    # fc1 under data parallelism: its sync s = 21.64 µs is hidden up to its own backward compute
    # L = 20.97 µs (one micro-batch): the search's price of the operator drops by L
    _, on = _two_layers(Overlaps(gradient_sync=True))
    _, off = _two_layers(Overlaps())
    plan = data_parallel_strategies(off)
    layer = 3 * 2 * 128 * 64 * 64 / F
    s = 16384 / BW + 2 * LAT
    assert off.op_seconds("fc1", plan["fc1"]) == pytest.approx(layer + s, rel=1e-12)
    assert on.op_seconds("fc1", plan["fc1"]) == pytest.approx(layer + s - layer * 2 / 3, rel=1e-12)
    assert on.total_seconds(plan) == pytest.approx(2 * (layer + s - layer * 2 / 3), rel=1e-12)
