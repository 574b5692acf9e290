"""The BSP cost model checked against numbers worked out by hand (arithmetic in the comments).

Machine used throughout (tests/models.py): two levels, outermost first,
    node: arity 2, B0 = 1e10 B/s (g0 = 1e-10 s/B), L0 = 1e-5 s
    gpu:  arity 2, B1 = 2e11 B/s (g1 = 5e-12 s/B), L1 = 2e-6 s
    F = 1e14 FLOP/s.
The cut schedule is (node x2, gpu x2). A strategy names the dim split at each cut.
A cost vector is (FLOPs, bytes at node, bytes at gpu, supersteps at node, supersteps at gpu).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost.model import CostModel
from planner.machine.tree import Device, Level, Machine

import models  # tests/models.py: pytest puts tests/ on sys.path
from models import B0, B1, F, L0, L1

G0, G1 = 1 / B0, 1 / B1  # 1e-10 and 5e-12 s/B


def seconds(flops, node_bytes, gpu_bytes, node_steps, gpu_steps):
    return flops / F + node_bytes * G0 + gpu_bytes * G1 + node_steps * L0 + gpu_steps * L1


# ---- 1. one MatMul, y[64,256] = x[64,128] @ w[128,256], on 2 nodes x 2 gpus -----------------

# Forward FLOPs: 2*m*k*n = 2*64*128*256 = 4,194,304. Train = 3x = 12,582,912.
# |w| = 128*256*4 = 131,072 B; |y| = 64*256*4 = 65,536 B. x is a graph input: no gradient.
#
# Rule: a split dim makes every tensor lacking it a partial sum (output y lacks k) or a replica
# (w lacks m: its gradient is all-reduced in the backward pass; x lacks n but has no gradient).
# Hierarchical all-reduce of S over {node: 2, gpu: 2}: gpu 2*(1/2)*S = S in 2 steps, then node
# 2*(1/2)*(S/2) = S/2 in 2 steps. Over a single level of factor 2: S bytes, 2 steps.
TRAIN = {
    # strategy: (FLOPs, node bytes, gpu bytes, node steps, gpu steps)
    (None, None): (12_582_912, 0, 0, 0, 0),  # replicated: no communication at all
    # m split 4: compute 12,582,912/4 = 3,145,728; w replicated over all 4 devices, full size
    # 131,072 B: gpu 131,072 B / 2 steps, node 65,536 B / 2 steps.
    ("m", "m"): (3_145_728, 65_536, 131_072, 2, 2),
    # n split 4: w and y are partitioned, x replicated but has no gradient: nothing to send.
    ("n", "n"): (3_145_728, 0, 0, 0, 0),
    # k split 4: y (65,536 B, m and n unsplit) is a partial sum all-reduced forward over both
    # levels: gpu 65,536 B / 2 steps, node 32,768 B / 2 steps. w has k: no gradient reduce.
    ("k", "k"): (3_145_728, 32_768, 65_536, 2, 2),
    # m at node, n at gpu: w (local 131,072/2 = 65,536 B, n split 2) has its gradient
    # all-reduced over the node pair: 2*(1/2)*65,536 = 65,536 B at node, 2 steps.
    ("m", "n"): (3_145_728, 65_536, 0, 2, 0),
    # n at node, m at gpu: the same 65,536 B local w, all-reduced over the gpu pair instead.
    ("n", "m"): (3_145_728, 0, 65_536, 0, 2),
    # k at node, m at gpu: y (local 65,536/2 = 32,768 B, m split 2) is a partial sum over the
    # node pair: 32,768 B, 2 steps at node. w (local 131,072/2 = 65,536 B, k split 2) lacks m:
    # gradient all-reduce over the gpu pair: 65,536 B, 2 steps at gpu.
    ("k", "m"): (3_145_728, 32_768, 65_536, 2, 2),
    # Beyond the list asked for:
    # k at node, n at gpu: y (local 65,536/2 = 32,768 B, n split 2) partial over the node pair:
    # 32,768 B, 2 steps at node; w has both k and n: no gradient reduce.
    ("k", "n"): (3_145_728, 32_768, 0, 2, 0),
    # m at node, k at gpu: w (local 131,072/2 = 65,536 B, k split 2) lacks m: 65,536 B, 2 steps
    # at node; y (local 65,536/2 = 32,768 B, m split 2) lacks k: 32,768 B, 2 steps at gpu.
    ("m", "k"): (3_145_728, 65_536, 32_768, 2, 2),
    # only the gpu cut splits k: compute 12,582,912/2 = 6,291,456; y (65,536 B) partial over the
    # gpu pair: 65,536 B, 2 steps.
    (None, "k"): (6_291_456, 0, 65_536, 0, 2),
}

# Infer: forward only (compute x1, 4,194,304 FLOPs / splits), no gradients; only the forward
# partial-sum all-reduces of y remain.
INFER = {
    (None, None): (4_194_304, 0, 0, 0, 0),
    ("m", "m"): (1_048_576, 0, 0, 0, 0),
    ("n", "n"): (1_048_576, 0, 0, 0, 0),
    ("k", "k"): (1_048_576, 32_768, 65_536, 2, 2),
    ("m", "n"): (1_048_576, 0, 0, 0, 0),
    ("n", "m"): (1_048_576, 0, 0, 0, 0),
    ("k", "m"): (1_048_576, 32_768, 0, 2, 0),
    ("k", "n"): (1_048_576, 32_768, 0, 2, 0),
    ("m", "k"): (1_048_576, 0, 32_768, 0, 2),
    (None, "k"): (2_097_152, 0, 65_536, 0, 2),
}


@pytest.fixture(scope="module")
def matmul_graph():
    return models.graph_of(models.matmul())


@pytest.fixture(scope="module")
def cm_train(matmul_graph):
    return CostModel(matmul_graph, models.two_level(), "train", bucket_mb=0)


@pytest.fixture(scope="module")
def cm_infer(matmul_graph):
    return CostModel(matmul_graph, models.two_level(), "infer")


def test_matmul_iteration_space(matmul_graph):
    op = matmul_graph.operators["mm"]
    assert op.dims == {"m": 64, "n": 256, "k": 128}
    assert op.flops == 4_194_304  # 2*64*128*256
    assert op.reduction_dims == {"k"}


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("strategy", list(TRAIN))
def test_matmul_op_cost_by_hand(mode, strategy, cm_train, cm_infer):
    cm = cm_train if mode == "train" else cm_infer
    flops, nb, gb, ns, gs = (TRAIN if mode == "train" else INFER)[strategy]
    cost = cm.op_cost("mm", strategy)
    # basis order: 1/F, g_node, g_gpu, L_node, L_gpu
    assert cost.compute == pytest.approx([flops, 0, 0, 0, 0], rel=1e-12)
    assert cost.communication == pytest.approx([0, nb, gb, ns, gs], rel=1e-12, abs=1e-9)
    expected = seconds(flops, nb, gb, ns, gs)
    assert cm.op_seconds("mm", strategy) == pytest.approx(expected, rel=1e-12)
    s = cm.evaluate({"mm": strategy}).seconds()
    assert s["compute"] == pytest.approx(flops / F, rel=1e-12)
    assert s["communication"] == pytest.approx(seconds(0, nb, gb, ns, gs), rel=1e-12, abs=1e-18)
    assert s["redistribution"] == 0
    assert s["total"] == pytest.approx(expected, rel=1e-12)


def test_matmul_worked_seconds(cm_train):
    # ('m','m') in seconds, written out: 3,145,728/1e14 = 3.145728e-8; 65,536*1e-10 = 6.5536e-6;
    # 131,072*5e-12 = 6.5536e-7; 2*1e-5 = 2e-5; 2*2e-6 = 4e-6.
    # Total 3.145728e-8 + 6.5536e-6 + 6.5536e-7 + 2e-5 + 4e-6 = 3.124041728e-5 s.
    assert cm_train.op_seconds("mm", ("m", "m")) == pytest.approx(3.124041728e-5, rel=1e-12)
    # ('k','m'): 3.145728e-8 + 32,768*1e-10 (3.2768e-6) + 65,536*5e-12 (3.2768e-7) + 2e-5 + 4e-6
    # = 2.763593728e-5 s.
    assert cm_train.op_seconds("mm", ("k", "m")) == pytest.approx(2.763593728e-5, rel=1e-12)


def test_hierarchical_all_reduce_over_a_level_of_four():
    # 2 nodes x 4 gpus: cuts (node 2, gpu 2, gpu 2). ('m','m','m'): w (131,072 B) replicated on
    # all 8. The two gpu cuts form ONE group of 4 (one all-reduce, not two):
    # gpu: 2*(3/4)*131,072 = 196,608 B, 2 steps; node: shard 131,072/4 = 32,768 B,
    # 2*(1/2)*32,768 = 32,768 B, 2 steps. Compute: 12,582,912/8 = 1,572,864 FLOPs.
    cm = CostModel(models.graph_of(models.matmul()), models.two_level(2, 4), bucket_mb=0)
    cost = cm.op_cost("mm", ("m", "m", "m"))
    assert cost.compute[0] == pytest.approx(1_572_864)
    assert cost.communication == pytest.approx([0, 32_768, 196_608, 2, 2])


def test_activation_input_gradient_is_all_reduced():
    # mm2 of the chain: y[64,32] = h[64,256] @ w2[256,32], h an activation that needs a gradient.
    # ('n','n'): h lacks n, so it is replicated over the 4 devices and its gradient (64*256*4 =
    # 65,536 B, m and k unsplit) is all-reduced: gpu 65,536 B / 2 steps, node 32,768 B / 2 steps.
    # w2 and y have n: partitioned. Compute 3 * 2*64*256*32 / 4 = 3 * 1,048,576 / 4 = 786,432.
    cm = CostModel(models.graph_of(models.two_matmuls()), models.two_level())
    cost = cm.op_cost("mm2", ("n", "n"))
    assert cost.compute[0] == pytest.approx(786_432)
    assert cost.communication == pytest.approx([0, 32_768, 65_536, 2, 2])
    # the graph input x of mm1 lacks n too, but has no gradient: nothing
    assert not cm.op_cost("mm1", ("n", "n")).communication.any()
    # inference: no gradients at all
    cm_inf = CostModel(models.graph_of(models.two_matmuls()), models.two_level(), "infer")
    assert not cm_inf.op_cost("mm2", ("n", "n")).communication.any()


def test_indivisible_strategy_is_refused(cm_train):
    from planner.cost.model import PlanError

    cm = CostModel(models.graph_of(models.matmul(m=6, k=8, n=8)), models.two_level())
    assert cm.assignment("mm", ("m", "m")) is None  # 6 = 2*3: the second 2 does not divide
    with pytest.raises(PlanError):
        cm.op_cost("mm", ("m", "m"))


# ---- 2. data-parallel gradient all-reduce on one level of p devices -------------------------

# MLP of two Gemm layers (tests/models.gemm_mlp([32, 64, 16], batch=64)):
#   W0 [32,64] = 2,048 params = 8,192 B;  b0 [64] = 64 params = 256 B
#   W1 [64,16] = 1,024 params = 4,096 B;  b1 [16] = 16 params =  64 B
#   total 3,152 params = 12,608 B (fp32).
# Data parallel: split m (batch) at every cut; every weight and bias lacks m, so each has its
# gradient all-reduced over all p devices: 2(p-1)/p * S * g + 2L per tensor, four tensors.
PARAM_BYTES = {"W0": 8_192, "b0": 256, "W1": 4_096, "b1": 64}


@pytest.mark.parametrize("p", [2, 4, 8])
def test_data_parallel_gradient_all_reduce(p):
    from planner.cost.baseline import data_parallel_strategies

    g = models.graph_of(models.gemm_mlp([32, 64, 16], batch=64))
    machine = models.one_level(p)
    cm = CostModel(g, machine, bucket_mb=0)
    plan = data_parallel_strategies(cm)
    assert plan == {"fc0": ("m",) * len(cm.cuts), "fc1": ("m",) * len(cm.cuts)}
    cost = cm.evaluate(plan)
    g1, l1 = 1 / models.B1, models.L1
    # per layer: fc0 carries W0 and b0, fc1 carries W1 and b1
    fc0 = 2 * (p - 1) / p * (8_192 + 256) * g1 + 2 * 2 * l1
    fc1 = 2 * (p - 1) / p * (4_096 + 64) * g1 + 2 * 2 * l1
    assert cost.op_seconds("fc0")["communication"] == pytest.approx(fc0, rel=1e-12)
    assert cost.op_seconds("fc1")["communication"] == pytest.approx(fc1, rel=1e-12)
    # the whole plan: 2(p-1)/p * 12,608 B * g + 4 * 2L  (one all-reduce per tensor)
    total_comm = 2 * (p - 1) / p * 12_608 * g1 + 8 * l1
    assert cost.seconds()["communication"] == pytest.approx(total_comm, rel=1e-12)
    assert cost.communication["fc0"][1] == pytest.approx(2 * (p - 1) / p * 8_448)  # bytes at the level
    # compute: 3 * (2*64*32*64 + 2*64*64*16) / p = 3 * (262,144 + 131,072) / p = 1,179,648 / p
    assert cost.seconds()["compute"] == pytest.approx(1_179_648 / p / F, rel=1e-12)
    # aligned batch layouts: nothing to redistribute
    assert cost.seconds()["redistribution"] == 0


# ---- 3. redistribution between two chained MatMuls ------------------------------------------

# mm1: h[64,256] = x[64,128] @ w1[128,256]; mm2: y[64,32] = h @ w2[256,32].
# |h| = 64*256*4 = 65,536 B. In mm1 h is indexed (m, n); in mm2 it is (m, k).
# h's flat factors: 0 = rows (64), 1 = columns (256). A layout gives, per cut, the flat factor
# split there (-1: none).
S_H = 65_536


@pytest.fixture(scope="module")
def chain_graph():
    return models.graph_of(models.two_matmuls())


def test_only_the_activation_edge_exists(chain_graph):
    cm = CostModel(chain_graph, models.two_level())
    # graph input x and parameters w1, w2 are boundaries: only h flows along an edge
    assert [(e.producer, e.consumer, e.tensor, e.nbytes) for e in cm.edges] == [("mm1", "mm2", "h", S_H)]
    assert cm.edges[0].requires_grad


def test_columns_to_rows_on_one_cut(chain_graph):
    # One level of 2. Producer splits h's columns (mm1 n), consumer its rows (mm2 m).
    # DESIGN: a = (1, 2), b = (2, 1) over (rows, cols): holds S/2, needs S/2, owns
    # S/prod(max(a,b)) = S/4, so it fetches S/2 - S/4 = S/4 = 16,384 B in one superstep.
    # Train: the gradient travels back (rows -> columns), the same S/4 again.
    m = models.one_level(2)
    cm = CostModel(chain_graph, m, "train")
    assert cm.redistribution_fractions((1,), (0,)) == pytest.approx((0.25,))
    assert cm.redistribution_fractions((0,), (1,)) == pytest.approx((0.25,))
    e = cm.edges[0]
    assert cm.layout("mm1", e.out_index, ("n",)) == (1,)
    assert cm.layout("mm2", e.in_index, ("m",)) == (0,)
    g, lat = 1 / models.B1, models.L1
    vec = cm.edge_cost(e, ("n",), ("m",))
    assert vec == pytest.approx([0, 2 * 16_384, 2])  # (1/F, g, L): both directions
    assert cm.edge_seconds(e, ("n",), ("m",)) == pytest.approx(2 * (16_384 * g + lat), rel=1e-12)
    red = cm.evaluate({"mm1": ("n",), "mm2": ("m",)}).redistribution
    assert red["mm2"] == pytest.approx([0, 32_768, 2]) and not red["mm1"].any()

    cm_inf = CostModel(chain_graph, m, "infer")
    assert cm_inf.edge_cost(cm_inf.edges[0], ("n",), ("m",)) == pytest.approx([0, 16_384, 1])


def test_same_dim_split_is_free(chain_graph):
    cm = CostModel(chain_graph, models.two_level())
    e = cm.edges[0]
    # both split the rows at the same cuts: every device already holds exactly what it needs
    assert not cm.edge_cost(e, ("m", "m"), ("m", "m")).any()
    # the producer splits h's columns (n) and the consumer splits its contracted k: the same axis
    assert not cm.edge_cost(e, ("n", "n"), ("k", "k")).any()


def test_node_split_to_gpu_split_across_levels(chain_graph):
    # 2 nodes x 2 gpus. Producer mm1 splits h's rows at the node cut: device (i, j) holds row
    # block i of 2. Consumer mm2 splits the rows at the gpu cut: device (i, j) needs block j.
    # Device (0, 1) holds block 0 and needs block 1: none of what it needs (worst device).
    # Block 1 lives only on node 1, so S/2 = 32,768 B crosses the node links; 1 superstep.
    # Backward (train), the gradient goes from "block j" to "block i": device (0, 1) holds
    # block 1 and needs block 0, which its node sibling (0, 0) holds: S/2 = 32,768 B over the
    # gpu links, 1 superstep, nothing across nodes.
    cm = CostModel(chain_graph, models.two_level(), "train")
    assert cm.redistribution_fractions((0, -1), (-1, 0)) == pytest.approx((0.5, 0.0))
    assert cm.redistribution_fractions((-1, 0), (0, -1)) == pytest.approx((0.0, 0.5))
    e = cm.edges[0]
    vec = cm.edge_cost(e, ("m", None), (None, "m"))
    assert vec == pytest.approx([0, 32_768, 32_768, 1, 1])
    expected = 32_768 * G0 + L0 + 32_768 * G1 + L1
    assert cm.edge_seconds(e, ("m", None), (None, "m")) == pytest.approx(expected, rel=1e-12)

    cm_inf = CostModel(chain_graph, models.two_level(), "infer")
    vec = cm_inf.edge_cost(cm_inf.edges[0], ("m", None), (None, "m"))
    assert vec == pytest.approx([0, 32_768, 0, 1, 0])  # forward only


def test_columns_then_rows_across_levels(chain_graph):
    # Producer splits columns at node (a: cols 2), consumer rows at gpu (b: rows 2).
    # Device (i, j) holds column block i and needs row block j: it owns the (j, i) quarter,
    # S/4, and misses S/2 - S/4 = S/4 = 16,384 B. Its node sibling (i, 1-j) holds the same
    # column block i, so the missing quarter (row j, column 1-i) is only on node 1-i:
    # 16,384 B over the node links.
    cm = CostModel(chain_graph, models.two_level(), "infer")
    assert cm.redistribution_fractions((1, -1), (-1, 0)) == pytest.approx((0.25, 0.0))


def test_refining_consumer_is_free_forward(chain_graph):
    # Producer splits rows at cut 0 (node); consumer splits rows at cuts 0 and 1: device (i, j)
    # holds block i of 2 and needs sub-block (i, j) of 4, inside what it holds: it just slices.
    cm_inf = CostModel(chain_graph, models.two_level(), "infer")
    e = cm_inf.edges[0]
    assert cm_inf.redistribution_fractions((0, -1), (0, 0)) == (0.0, 0.0)
    assert not cm_inf.edge_cost(e, ("m", None), ("m", "m")).any()
    # In training the gradient travels back from the finer layout to the coarser one: device
    # (i, j) holds gradient quarter (i, j) and needs the half i, whose other quarter is on its
    # node sibling: an all-gather within the node, (2-1)/2 * S/2 = S/4 = 16,384 B at gpu level.
    cm = CostModel(chain_graph, models.two_level(), "train")
    assert cm.redistribution_fractions((0, 0), (0, -1)) == pytest.approx((0.0, 0.25))
    assert cm.edge_cost(cm.edges[0], ("m", None), ("m", "m")) == pytest.approx([0, 0, 16_384, 0, 1])


def test_inputs_and_parameters_are_never_charged(chain_graph):
    # mm1 reads the graph input x and the parameter w1 in any layout without redistribution;
    # here mm1 wants x split on k (columns) and w1 on k (rows): nothing is charged anywhere,
    # and mm2 agrees with mm1's output layout (n of mm1 is k of mm2).
    cm = CostModel(chain_graph, models.two_level())
    cost = cm.evaluate({"mm1": ("k", "n"), "mm2": ("m", "k")})
    # mm2 needs h rows split at node and k (columns) at gpu; mm1 gives h full rows (k-split
    # partial sums are all-reduced) with columns split at gpu: mm2 slices -> free forward.
    # Backward: mm1 needs dh columns at gpu (all rows): device holds rows-half, missing half of
    # S/2: 16,384 B over the node links (the other row half is on the other node).
    assert not cost.redistribution["mm1"].any()
    assert cost.redistribution["mm2"] == pytest.approx([0, 16_384, 0, 1, 0])
    # a plan touching only the boundary tensors charges nothing
    single = CostModel(models.graph_of(models.matmul()), models.two_level())
    for s in TRAIN:
        assert not single.evaluate({"mm": s}).redistribution["mm"].any()


# ---- 4. sympy formulas ----------------------------------------------------------------------

@pytest.mark.parametrize("strategy", list(TRAIN))
def test_formula_matches_seconds(strategy, cm_train, cm_infer):
    for cm in (cm_train, cm_infer):
        expr = cm.op_formula("mm", strategy)
        value = float(expr.subs(cm.basis.substitutions()))
        assert value == pytest.approx(cm.op_seconds("mm", strategy), rel=1e-12)


@pytest.mark.parametrize("strategy,P", [((None, None), 1), (("m", "m"), 4), (("n", None), 2),
                                        (("k", "m"), 4), ((None, "n"), 2)])
def test_symbolic_dims_compute_term(strategy, P, cm_train):
    expr = cm_train.op_formula("mm", strategy, symbolic_dims=True)
    F_, g_node, g_gpu, L_node, L_gpu = cm_train.basis.symbols
    m, n, k = (sympy.Symbol(d, positive=True) for d in "mnk")
    compute = expr.subs({g_node: 0, g_gpu: 0, L_node: 0, L_gpu: 0})
    # train: 3 x forward 2*m*n*k, divided over P devices
    assert sympy.simplify(compute - 6 * m * n * k / (P * F_)) == 0


def test_symbolic_dims_full_formula(cm_train):
    # ('k','m'), by hand with symbols: compute 6mnk/(4F); y partial sum over the node pair,
    # local 4*m*n/2 = 2mn bytes -> 2*(1/2)*2mn = 2mn g_node + 2 L_node; w gradient over the gpu
    # pair, local 4*k*n/2 = 2kn -> 2kn g_gpu + 2 L_gpu.
    expr = cm_train.op_formula("mm", ("k", "m"), symbolic_dims=True)
    F_, g_node, g_gpu, L_node, L_gpu = cm_train.basis.symbols
    m, n, k = (sympy.Symbol(d, positive=True) for d in "mnk")
    hand = 6 * m * n * k / (4 * F_) + 2 * m * n * g_node + 2 * L_node + 2 * k * n * g_gpu + 2 * L_gpu
    assert sympy.simplify(expr - hand) == 0


# ---- 5. precision override --------------------------------------------------------------------

def test_bf16_halves_float_bytes(matmul_graph, chain_graph):
    m = models.two_level()
    fp32 = CostModel(matmul_graph, m, bucket_mb=0)
    bf16 = CostModel(matmul_graph, m, precision="bf16", bucket_mb=0)
    assert fp32.tensor_itemsize("w") == 4 and bf16.tensor_itemsize("w") == 2
    for s in TRAIN:
        a, b = fp32.op_cost("mm", s), bf16.op_cost("mm", s)
        assert b.compute == pytest.approx(a.compute)  # FLOPs do not depend on the bytes
        # bytes halve, supersteps stay
        assert b.communication[1:3] == pytest.approx(a.communication[1:3] / 2)
        assert b.communication[3:] == pytest.approx(a.communication[3:])
    # ('m','m') bf16: w is 128*256*2 = 65,536 B: gpu 65,536 B, node 32,768 B
    assert bf16.op_cost("mm", ("m", "m")).communication == pytest.approx([0, 32_768, 65_536, 2, 2])
    c32, c16 = CostModel(chain_graph, m), CostModel(chain_graph, m, precision="fp16")
    assert c32.edges[0].nbytes == 65_536 and c16.edges[0].nbytes == 32_768


def test_bad_mode_and_precision(matmul_graph):
    with pytest.raises(ValueError, match="mode"):
        CostModel(matmul_graph, models.two_level(), mode="training")
    with pytest.raises(ValueError, match="precision"):
        CostModel(matmul_graph, models.two_level(), precision="fp8")


# ---- 6. properties ----------------------------------------------------------------------------

ARITIES = [1, 2, 3, 4, 6, 8]


@st.composite
def machines(draw, max_levels=2):
    n = draw(st.integers(1, max_levels))
    levels = []
    for i in range(n):
        levels.append(Level(f"l{i}", draw(st.sampled_from(ARITIES)),
                            draw(st.sampled_from([1e9, 1e10, 1e11, 3e11])),
                            draw(st.sampled_from([0.0, 1e-6, 1e-5]))))
    flops = draw(st.sampled_from([1e12, 1e14]))
    return Machine("random", Device("dev", flops, 1e10), tuple(levels))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(machine=machines(), widths=st.lists(st.sampled_from([8, 16, 24, 48]), min_size=2, max_size=4),
       relu=st.booleans(), data=st.data())
def test_fully_split_compute_is_total_flops_over_P(machine, widths, relu, data):
    P = machine.num_devices
    batch = P * data.draw(st.sampled_from([1, 2]))  # the batch always divides P
    g = models.graph_of(models.gemm_mlp(widths, batch=batch, relu=relu))
    cm = CostModel(g, machine, "train")
    plan = {}
    for name in cm.planned:
        s = ()
        for _ in cm.cuts:
            options = [d for d in cm.candidates(name, s) if d is not None]
            assert options, f"{name}: no divisible dim at {s}"
            s += (data.draw(st.sampled_from(options)),)
        plan[name] = s
    cost = cm.evaluate(plan)
    assert cost.seconds()["compute"] == pytest.approx(3 * g.flops_forward / P / machine.device.peak_flops,
                                                      rel=1e-9)


@st.composite
def random_plans(draw, cm):
    plan = {}
    for name in cm.planned:
        s = ()
        for _ in cm.cuts:
            s += (draw(st.sampled_from(cm.candidates(name, s))),)
        plan[name] = s
    return plan


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(machine=machines(), mode=st.sampled_from(["train", "infer"]), factor=st.sampled_from([0.9, 0.5, 0.1]),
       data=st.data())
def test_cost_never_decreases_when_a_bandwidth_decreases(machine, mode, factor, data):
    g = models.graph_of(models.gemm_mlp([16, 48, 24, 8], batch=24, relu=True))
    cm = CostModel(g, machine, mode)
    plan = data.draw(random_plans(cm))
    level = data.draw(st.integers(0, len(machine.levels) - 1))
    slower = machine.with_level(level, bandwidth_Bps=machine.levels[level].bandwidth_Bps * factor)
    before = cm.total_seconds(plan)
    after = CostModel(g, slower, mode).total_seconds(plan)
    assert after >= before * (1 - 1e-12)


def test_total_vector_is_the_sum_of_terms(chain_graph):
    cm = CostModel(chain_graph, models.two_level())
    cost = cm.evaluate({"mm1": ("n", "m"), "mm2": ("m", "k")})
    s = cost.seconds()
    assert s["total"] == pytest.approx(s["compute"] + s["communication"] + s["redistribution"])
    assert cost.total_seconds == pytest.approx(s["total"])
    levels = cost.by_level()
    assert set(levels) == {"node", "gpu"}
    comm = sum(v["communication"] for v in levels.values())
    red = sum(v["redistribution"] for v in levels.values())
    assert comm == pytest.approx(s["communication"]) and red == pytest.approx(s["redistribution"])
    assert math.isclose(cost.basis.time(cost.total_vector), s["total"], rel_tol=1e-12)
    assert isinstance(cost.total_vector, np.ndarray)


# ---- found in review: convolution signatures, halo rows, formula symbols -------------------------

def _convs():
    from onnx import TensorProto, helper

    from models import _model, _weight
    from planner.onnx.importer import import_model
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16, 58, 58])
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="c0", kernel_shape=[1, 1]),
             helper.make_node("Conv", ["a", "w1"], ["b"], name="p0", kernel_shape=[3, 3]),  # 58 -> 56
             helper.make_node("Conv", ["b", "w2"], ["c"], name="p1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    y = helper.make_tensor_value_info("c", TensorProto.FLOAT, [8, 16, 56, 56])
    weights = [_weight("w0", [16, 16, 1, 1]), _weight("w1", [16, 16, 3, 3]), _weight("w2", [16, 16, 3, 3])]
    return import_model(_model("convs", nodes, [x], [y], weights))


def test_convolutions_with_different_input_sizes_are_costed_apart():
    # p0 reads 58x58, p1 56x56, both write 56x56: same dims, different input tensors
    graph = _convs()
    machine = models.one_level(2, 1e9, 0.0)
    cm = CostModel(graph, machine, "train")
    assert cm.info["p0"].signature != cm.info["p1"].signature
    s = ("oc",)
    cm.op_cost("p1", s)
    # p0's input a (8x16x58x58 fp32, needs a gradient) lacks oc: its gradient is all-reduced over 2:
    # 2*(1/2)*8*16*58*58*4 = 1,722,368 B
    assert cm.op_cost("p0", s).communication[1] == 8 * 16 * 58 * 58 * 4


def test_halo_of_a_strided_convolution_is_one_input_row():
    from onnx import TensorProto, helper

    from models import _model, _weight
    from planner.onnx.importer import import_model
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 16, 32, 32])
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    graph = import_model(_model("c", [node], [x], [y], [_weight("w", [16, 16, 3, 3])]))
    cm = CostModel(graph, models.one_level(2, 1e9, 0.0), "infer")
    # k=3, stride 2: (3-1)*1 + 1 - 2 = 1 input row of 8*16*64 fp32 values = 32,768 B, one superstep
    comm = cm.op_cost("c", ("o0",)).communication
    assert comm[1] == 8 * 16 * 64 * 4
    assert comm[2] == 1


def test_level_symbols_stay_apart_and_dims_do_not_capture_machine_symbols():
    import sympy
    from onnx import TensorProto, helper

    from models import _model, _weight
    from planner.onnx.importer import import_model
    machine = Machine.from_dict({"name": "m", "device": {"name": "d", "peak_flops": 1e12, "memory_bytes": 1e10},
                                 "levels": [{"name": "gpu-1", "arity": 2, "bandwidth_Bps": 1e9, "latency_s": 1e-6},
                                            {"name": "gpu_1", "arity": 2, "bandwidth_Bps": 1e11, "latency_s": 1e-6}]})
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [64, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 16])
    node = helper.make_node("Einsum", ["a", "w"], ["y"], name="e", equation="BF,FH->BH")
    graph = import_model(_model("e", [node], [a], [y], [_weight("w", [32, 16])]))
    cm = CostModel(graph, machine, "train")
    assert len({s.name for s in cm.basis.symbols}) == len(cm.basis.symbols)
    for s in [("B", "B"), ("F", "H")]:
        expected = cm.op_seconds("e", s)
        for symbolic in (False, True):
            expr = cm.op_formula("e", s, symbolic_dims=symbolic)
            if symbolic:
                expr = expr.subs({sympy.Symbol("B", positive=True): 64, sympy.Symbol("F'", positive=True): 32,
                                  sympy.Symbol("H", positive=True): 16})
            assert float(expr.subs(cm.basis.substitutions())) == pytest.approx(expected, rel=1e-12)


def test_gemm_bias_gets_a_whole_gradient_when_k_is_split():
    # y[32,16] = x[32,8] @ W[8,16] + b[16] (fp32), one level of 2, train, split k:
    # y is a partial sum: all-reduce of 32*16*4 = 2,048 B -> 2*(1/2)*2,048 = 2,048 B, 2 supersteps.
    # b lacks k but is added after the reduction: its gradient sum_m dy is whole on each device,
    # so nothing more (splitting m instead all-reduces dW (512 B) and db (64 B): 576 B, 4 supersteps).
    cm = CostModel(models.graph_of(models.gemm_mlp([8, 16], batch=32)), models.one_level(2), "train", bucket_mb=0)
    name = next(n for n in cm.planned if cm.graph.operators[n].op_type == "Gemm")
    comm = cm.op_cost(name, ("k",)).communication
    assert (comm[1], comm[2]) == (2 * (1 / 2) * 32 * 16 * 4, 2)
    comm = cm.op_cost(name, ("m",)).communication
    assert (comm[1], comm[2]) == (2 * (1 / 2) * (8 * 16 * 4 + 16 * 4), 4)
