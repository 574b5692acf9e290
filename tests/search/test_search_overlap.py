"""The search prices the gradient sync as the engines overlap it (--overlap-gradient-sync).

Three Gemm layers x[1024, 256] @ W[256, 256] (fp32, tests/models.gemm_mlp) on 4 nodes at 1e12
FLOP/s, links 1e9 B/s and 1 µs. Replicated: 3 x (3 x 2 x 1024 x 256^2) / 1e12 = 1.208 ms, no
communication. Data parallel over 2 nodes: half the compute, 0.604 ms, and per layer an all-reduce
of W's gradient over 2: 262,144 B / 1e9 + 2 µs = s = 264.1 µs. Without overlap that is 0.604 +
3 s = 1.396 ms, worse than replicated. Overlapped bucket by bucket (one bucket per layer), each
layer's backward is L = 0.604 / 3 x 2/3 = 134.2 µs: the first bucket is ready at L, the three
all-reduces then run back to back (s > L) and end at L + 3 s, the pass at 3 L: exposed
3 s - 2 L = 0.524 ms, so 1.128 ms, better than replicated.
"""

from __future__ import annotations

import pytest

import models  # tests/models.py
from planner.api import plan_model
from planner.machine.tree import Device, Level, Machine
from planner.options import PlanOptions

COMPUTE = 3 * 3 * 2 * 1024 * 256 * 256 / 1e12
S = 262144 / 1e9 + 2e-6


def _plan(overlap: bool):
    graph = models.graph_of(models.gemm_mlp([256] * 4, batch="batch", bias=False), batch=1024)
    machine = Machine("m", Device("d", 1e12, 80e9), (Level("node", 4, 1e9, 1e-6),))
    return plan_model(graph, machine, PlanOptions(algorithm="drec+", pipeline_stages=1, micro_batches=1,
                                                  recompute="none", zero=0, overlap_gradient_sync=overlap,
                                                  bucket_mb=0))


def test_without_overlap_the_search_keeps_the_layers_replicated():
    result = _plan(False)
    assert result.total_seconds == pytest.approx(COMPUTE, rel=1e-9)
    assert all(all(d is None for d in s) for s in result.plan.strategies.values())


def test_with_overlap_the_search_splits_the_batch_over_two_nodes():
    result = _plan(True)
    layer_backward = COMPUTE / 2 / 3 * 2 / 3
    assert result.total_seconds == pytest.approx(COMPUTE / 2 + 3 * S - 2 * layer_backward, rel=1e-9)
    assert {s for s in result.plan.strategies.values()} == {("m", None)}
