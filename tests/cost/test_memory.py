"""Per-device memory (planner.cost.memory) against hand computation.

Model: tests/models.gemm_mlp([32, 64, 16], batch=64, relu=True) =
    fc0: Gemm x[64,32] @ W0[32,64] + b0[64] -> h0[64,64]
    relu0: h0 -> r0[64,64]
    fc1: Gemm r0[64,64] @ W1[64,16] + b1[16] -> y[64,16]
Parameters: W0 2,048 + b0 64 + W1 1,024 + b1 16 = 3,152 (12,608 B in fp32).
Machine: one level of 4 devices (two cuts of 2).
"""

from __future__ import annotations

import pytest

import models  # tests/models.py: pytest puts tests/ on sys.path
from planner.cost.model import CostModel
from planner.cost.memory import memory_per_device, optimizer_bytes_per_parameter
from planner.cost.baseline import data_parallel_strategies

PARAMS = 3_152


def cost_model(mode="train", precision=None, memory=models.MEMORY):
    g = models.graph_of(models.gemm_mlp([32, 64, 16], batch=64, relu=True))
    return CostModel(g, models.one_level(4, memory=memory), mode, precision)


def test_data_parallel_fp32_adam():
    cm = cost_model()
    plan = data_parallel_strategies(cm)
    assert plan == {"fc0": ("m", "m"), "relu0": ("d0", "d0"), "fc1": ("m", "m")}
    mem = memory_per_device(cm, plan)
    # data parallel: every parameter is replicated at full size, 3,152 * 4 = 12,608 B
    assert mem.parameters == 12_608
    assert mem.gradients == 12_608
    # Adam in fp32: two fp32 moments = 8 B/param -> 25,216 B
    assert mem.optimizer_state == 8 * PARAMS == 25_216
    # activations that need a gradient, at local size (batch / 4 = 16 rows):
    # h0 16*64*4 = 4,096; r0 16*64*4 = 4,096; y 16*16*4 = 1,024, plus the float input x kept for
    # dW0 = x^T dh0: 16*32*4 = 2,048 -> 11,264 B
    assert mem.activations == 11_264
    assert mem.peak == 12_608 + 12_608 + 25_216 + 11_264 == 61_696
    assert mem.fits and mem.shortfall_bytes == 0


def test_data_parallel_sgd_fp32():
    cm = cost_model()
    mem = memory_per_device(cm, data_parallel_strategies(cm), optimizer="sgd")
    assert mem.optimizer_state == 4 * PARAMS  # one fp32 momentum: 12,608 B


def test_bf16_adam_is_16_bytes_per_parameter():
    cm = cost_model(precision="bf16")
    mem = memory_per_device(cm, data_parallel_strategies(cm))
    # weights and gradients 2 B each: 6,304 B each; Adam mixed precision: fp32 master copy 4 +
    # two fp32 moments 8 = 12 B/param = 37,824 B; 2 + 2 + 12 = 16 B per parameter in all.
    assert mem.parameters == 2 * PARAMS == 6_304
    assert mem.gradients == 6_304
    assert mem.optimizer_state == 12 * PARAMS == 37_824
    assert mem.parameters + mem.gradients + mem.optimizer_state == 16 * PARAMS
    # activations at 2 B: h0 and r0 16*64*2 = 2,048 each; the output y as the loss keeps it, in
    # fp32: 16*16*4 = 1,024; + the bf16 input x kept for dW0: 16*32*2 = 1,024
    assert mem.activations == 2 * 2_048 + 1_024 + 1_024
    assert optimizer_bytes_per_parameter("adam", 2) == 12
    assert optimizer_bytes_per_parameter("adam", 4) == 8
    assert optimizer_bytes_per_parameter("sgd", 2) == 8
    with pytest.raises(ValueError):
        optimizer_bytes_per_parameter("lamb", 4)


def test_tensor_parallel_divides_weight_memory():
    cm = cost_model()
    # fc0 column-parallel over all 4 (n split 4), relu follows on its columns, fc1 row-parallel
    # (k split 4).
    plan = {"fc0": ("n", "n"), "relu0": ("d1", "d1"), "fc1": ("k", "k")}
    mem = memory_per_device(cm, plan)
    # W0 8,192/4 = 2,048; b0 256/4 = 64; W1 4,096/4 = 1,024 (rows split); b1 lacks k: full 64 B
    assert mem.parameters == 2_048 + 64 + 1_024 + 64 == 3_200
    assert mem.gradients == 3_200
    assert mem.optimizer_state == 3_200 / 4 * 8 == 6_400
    # h0, r0: 64*64*4/4 = 4,096 each; y lacks k (a partial sum, then all-reduced): full
    # 64*16*4 = 4,096 -> 12,288 B
    # + the input x, replicated under tensor parallelism: 64*32*4 = 8,192
    assert mem.activations == 12_288 + 8_192


def test_infer_has_no_gradients_nor_optimizer_state():
    cm = cost_model(mode="infer")
    mem = memory_per_device(cm, data_parallel_strategies(cm))
    assert mem.parameters == 12_608
    assert mem.gradients == 0 and mem.optimizer_state == 0
    # the largest one-operator working set, at local sizes (16 rows):
    # fc0: x 16*32*4 = 2,048 + h0 4,096 = 6,144; relu0: h0 + r0 = 8,192; fc1: r0 4,096 + y 1,024
    # = 5,120 -> 8,192 B
    assert mem.activations == 8_192
    assert mem.peak == 12_608 + 8_192


def test_fits_and_shortfall():
    cm = cost_model(memory=1_000)
    mem = memory_per_device(cm, data_parallel_strategies(cm))
    assert mem.capacity == 1_000
    assert not mem.fits
    assert mem.shortfall_bytes == 61_696 - 1_000 == 60_696
    d = mem.to_dict()
    assert d["fits"] is False and d["shortfall_bytes"] == 60_696 and d["peak"] == 61_696
    exact = cost_model(memory=61_696)
    mem = memory_per_device(exact, data_parallel_strategies(exact))
    assert mem.fits and mem.shortfall_bytes == 0


def test_replicated_plan_counts_everything_once():
    cm = cost_model()
    mem = memory_per_device(cm, {})  # everything replicated
    assert mem.parameters == 12_608
    # full activations: h0 16,384 + r0 16,384 + y 4,096 = 36,864
    # + the input x: 64*32*4 = 8,192
    assert mem.activations == 36_864 + 8_192
