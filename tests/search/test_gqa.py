"""Grouped-query attention under Megatron tensor parallelism (planner/search/megatron.py,
``_inside_a_head``), against hand arithmetic.

Model: the Llama-style sample's builder (sample_models/build.py ``_llama``) with two layers of
Llama-3-8B's shape: hidden 4,096, 32 query heads and 8 KV heads of 128, so the K and V projections
are 4,096 x 1,024 (not 4,096 x 4,096), SwiGLU FFN 14,336, vocabulary 128,256. bf16.
Machine: one level of 16 devices (an NVL16 domain: 100 GB/s, 1 µs), F = 1e15 FLOP/s.
Configurations: ``--tp t --pp 1 --dp 16/t``, micro-batch 1, sequence 128: each device computes one
sample. Up to t = 8 the K/V projection is split by KV heads; at t = 16 there are more ranks than KV
heads and Megatron replicates it: each pair of ranks holds the same KV head whole.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from planner.machine.tree import Machine
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.plans.parallelism import describe
from planner.search.configurations import evaluate_configuration

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("sample_models_build", REPO / "sample_models" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

HIDDEN, KV, HEAD_DIM, SEQ = 4096, 8, 128, 128
K_PROJ = HIDDEN * KV * HEAD_DIM  # 4,194,304 weights


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("gqa") / "llama_2l.onnx"
    path.write_bytes(build._llama("llama_2l", 2, HIDDEN, 32, KV, 14336, 128256, "two Llama-3-8B layers")
                     .SerializeToString())
    return str(path)


def _configuration(path: str, tp: int):
    machine = Machine.from_dict({"name": "nvl16", "device": {"name": "dev", "peak_flops": 1e15, "memory_bytes": 80e9},
                                 "levels": [{"name": "gpu", "arity": 16, "bandwidth_Bps": 1e11, "latency_s": 1e-6}]})
    graph = import_model(path, {"batch": 1, "seq": SEQ})
    return evaluate_configuration(graph, machine, tp, 1, 16 // tp, 1, 16 // tp,
                                  PlanOptions(algorithm="megatron", precision="bf16"), rebinder=rebinder_for(path))


@pytest.mark.parametrize("tp, kv_split", [(4, 4), (8, 8), (16, 8)])
def test_kv_projection_split_by_kv_heads_then_replicated(llama, tp, kv_split):
    r = _configuration(llama, tp)
    cm, plan = r.cost_model, r.plan.strategies
    for part in ("k", "v"):
        name = f"layer0.attn.{part}_proj"
        weight = next(i for i, u in enumerate(cm.info[name].uses) if u.is_parameter)
        # the GQA size, split by KV heads only: 4,194,304 x 2 bytes / min(t, 8)
        assert cm.local_bytes(name, weight, plan[name]) == K_PROJ * 2 / kv_split
        # computed whole for its KV head: 3 passes of 2 x 128 x 4,096 x 1,024 FLOPs / min(t, 8)
        assert r.cost.op_seconds(name)["compute"] == pytest.approx(3 * 2 * SEQ * K_PROJ / kv_split / 1e15)
    assert describe(r)["name"] == f"DP {16 // tp} x TP {tp} (column-row)" if tp < 16 else "TP 16 (column-row)"
    q = next(i for i, u in enumerate(cm.info["layer0.attn.q_proj"].uses) if u.is_parameter)
    assert cm.local_bytes("layer0.attn.q_proj", q, plan["layer0.attn.q_proj"]) == HIDDEN * HIDDEN * 2 / tp


@pytest.mark.parametrize("tp, gathered", [(4, 0), (8, 0), (16, 2 * SEQ * HEAD_DIM * 2)])
def test_replicated_kv_gradients_are_gathered_from_the_ranks_sharing_a_head(llama, tp, gathered):
    # at t = 16 each rank uses 2 of the 4 query heads its KV head is repeated for; the backward
    # pass brings the other rank's 2 heads of K and V gradient (2 x 128 x 128 x 2 bytes) back to
    # the replicated projection, once for K (at the scores) and once for V (at the context)
    r = _configuration(llama, tp)
    for consumer in ("layer0.attn.scores", "layer0.attn.context"):
        assert r.cost.redistribution[consumer][1] == gathered


def test_kv_weight_gradients_are_all_reduced_at_their_gqa_size(llama):
    # t = 4, d = 4: W_k's local gradient 4,194,304 x 2 / 4 bytes, all-reduced over the 4 data-parallel
    # ranks: 2 x 3/4 of it sent per device
    r = _configuration(llama, 4)
    sync = r.cost.gradient_sync["layer0.attn.k_proj"]
    assert sum(sync[1:1 + len(r.split.stage_machine.levels)]) == pytest.approx(2 * 3 / 4 * K_PROJ * 2 / 4)
    # t = 16, d = 1: the two copies of a KV head compute the same complete gradient: nothing to sum
    r16 = _configuration(llama, 16)
    assert not r16.cost.gradient_sync["layer0.attn.k_proj"][1:].any()


def test_memory_shows_the_replicated_kv_heads(llama):
    r = _configuration(llama, 16)
    # bf16 parameters per device at t = 16: per layer q, o 4,096^2 / 16, k, v 4,194,304 / 8 (replicated
    # pairs), gate, up, down 4,096 x 14,336 / 16, two norms 4,096 whole; the embedding padded to
    # 129,024 rows (a multiple of 128 x 16) / 16, the head 4,096 x 128,256 / 16, the final norm
    layer = 2 * HIDDEN**2 // 16 + 2 * K_PROJ // 8 + 3 * HIDDEN * 14336 // 16 + 2 * HIDDEN
    expected = 2 * (2 * layer + 129_024 * HIDDEN // 16 + HIDDEN * 128_256 // 16 + HIDDEN)
    assert r.memory.parameters == expected  # 188,391,424 bytes (2,097,152 more than K and V split 16 ways)
