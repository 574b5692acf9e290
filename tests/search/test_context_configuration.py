"""A hand-made configuration with context parallelism (planner/search/context_parallel.py) against
hand counts.

Model: two Llama-3-8B-shaped layers (hidden 4,096, 32 query heads and 8 KV heads of 128), bf16,
sequence 256. Machine: one level of 16 devices (100 GB/s, 1 µs), F = 1e15 FLOP/s.
``--tp 4 --dp 2 --cp 2``: each rank holds one sample's 128 of the 256 tokens and 2 of the 8 KV heads.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from planner.api import plan_model
from planner.cost.activations import attention_core
from planner.machine.tree import Machine
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import ConfigError, PlanOptions
from planner.plans.parallelism import describe
from planner.search.configurations import evaluate_configuration
from planner.search.context_parallel import context_layouts, evaluate_context_configuration, ring_layers

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("sample_models_build", REPO / "sample_models" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

SEQ = 256
OPTIONS = PlanOptions(algorithm="megatron", precision="bf16")
MACHINE = Machine.from_dict({"name": "nvl16", "device": {"name": "dev", "peak_flops": 1e15, "memory_bytes": 80e9},
                             "levels": [{"name": "gpu", "arity": 16, "bandwidth_Bps": 1e11, "latency_s": 1e-6}]})


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cp") / "llama_2l.onnx"
    path.write_bytes(build._llama("llama_2l", 2, 4096, 32, 8, 14336, 128256, "two Llama-3-8B layers")
                     .SerializeToString())
    return str(path)


def _cp(path: str, seq: int = SEQ, tp: int = 4, dp: int = 2, cp: int = 2):
    graph = import_model(path, {"batch": 1, "seq": seq})
    return evaluate_context_configuration(graph, MACHINE, tp, 1, dp, cp, 1, dp, OPTIONS, rebinder=rebinder_for(path))


@pytest.fixture(scope="module")
def with_cp(llama):
    return _cp(llama)


def test_named_context_parallel(with_cp):
    described = describe(with_cp)
    assert described["name"] == "DP 2 x TP 4 (column-row) x CP 2"
    # the 16 GPUs: 4 data x 4 tensor; of the 4 data ranks, the innermost 2 are the context-parallel ones
    assert [(lv["level"], lv["name"]) for lv in described["levels"]] == [
        ("gpu (data)", "DP 2 x CP 2"), ("gpu (tensor)", "TP 4 (column-row)")]


def test_ring_blocks_are_the_un_repeated_kv_heads(with_cp):
    layers = ring_layers(with_cp)
    assert len(layers) == 2  # one ring per attention layer
    # K and V of 128 tokens x 2 KV heads x 128 x 2 bytes each (not the 8 query heads they are repeated to)
    assert all(layer.block_bytes == 2 * 128 * 2 * 128 * 2 for layer in layers)


def test_ring_computes_half_the_attention_of_the_whole_sequence(llama, with_cp):
    # second method: --tp 4 --dp 4 without CP, each rank one sample's whole sequence. Under CP 2 a rank
    # computes its 128 queries against all 256 keys in 2 blocks of 128 x 128: half the scores
    whole = evaluate_configuration(import_model(llama, {"batch": 4, "seq": SEQ}), MACHINE, 4, 1, 4, 1, 4, OPTIONS,
                                   rebinder=rebinder_for(llama))
    cm = whole.cost_model
    per_rank = sum(cm.basis.time(whole.cost.compute[n]) for n in attention_core(cm))
    ring = sum(2 * layer.core_seconds for layer in ring_layers(with_cp))  # C blocks each
    assert ring == pytest.approx(per_rank / 2)


def test_ring_adds_the_blocks_and_the_exposed_transfers(llama, with_cp):
    # the s / C plan alone (what the ring is added to): 2 x 4 x 2 ranks on 128 tokens
    short = evaluate_configuration(import_model(llama, {"batch": 4, "seq": SEQ // 2}), MACHINE, 4, 1, 4, 1, 4, OPTIONS,
                                   rebinder=rebinder_for(llama))
    transfer = 131072 / 1e11 + 1e-6  # one K/V block over the level: 2.31 µs
    added = 0.0
    for layer in ring_layers(with_cp):
        fwd, bwd = layer.core_seconds / 3, 2 * layer.core_seconds / 3
        exposed = max(0.0, transfer - fwd) + max(0.0, transfer - bwd) * 2 + transfer  # C = 2: one of each
        added += layer.core_seconds + exposed  # one more block
    assert with_cp.total_seconds == pytest.approx(short.total_seconds + added)


def test_activations_fall_with_context_parallelism(llama, with_cp):
    # the same 16 ranks without CP (TP 4 x DP 4, a sample each) keep the whole sequence's activations
    whole = evaluate_configuration(import_model(llama, {"batch": 4, "seq": SEQ}), MACHINE, 4, 1, 4, 1, 4, OPTIONS,
                                   rebinder=rebinder_for(llama))
    assert with_cp.memory.activations < 0.75 * whole.memory.activations


def test_sequence_must_split_into_2c_chunks(llama):
    with pytest.raises(ConfigError, match="multiple of 2 x 4 = 8"):
        _cp(llama, seq=260, tp=2, dp=2, cp=4)


def test_devices_must_be_the_product(llama):
    with pytest.raises(ConfigError, match="--tp x --pp x --dp x --cp = 4 x 1 x 2 x 4 = 32"):
        _cp(llama, cp=4)


# ---- context parallelism in the configuration search ------------------------------------------------

FOUR_BY_EIGHT = Machine.from_dict({"name": "4x8", "device": {"name": "dev", "peak_flops": 1e15, "memory_bytes": 80e9},
                                   "levels": [{"name": "node", "arity": 4, "bandwidth_Bps": 5e10, "latency_s": 1e-5},
                                              {"name": "gpu", "arity": 8, "bandwidth_Bps": 4.5e11, "latency_s": 5e-6}]})


def test_context_layouts_by_hand():
    # TP 8 inside a node; outside it 4 devices: 1 stage x CP 2 x DP 2, 1 x CP 4 x DP 1, 2 stages x CP 2
    assert context_layouts(FOUR_BY_EIGHT, 16384, 32, 4) == [(8, 1, 2, 2), (8, 1, 1, 4), (8, 2, 1, 2)]
    # a batch of 1 leaves no data parallelism: CP 2 needs 2 replicas of it
    assert context_layouts(FOUR_BY_EIGHT, 16384, 32, 1) == [(8, 1, 1, 4), (8, 2, 1, 2)]
    assert context_layouts(FOUR_BY_EIGHT, 16384, 12, 4) == []  # 8 does not divide 12 heads


@pytest.fixture(scope="module")
def small_llama(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cp_small") / "llama_small.onnx"
    path.write_bytes(build._llama("llama_small", 2, 1024, 16, 4, 2816, 32000, "two small Llama layers")
                     .SerializeToString())
    return str(path)


def test_search_keeps_the_best_context_parallel_layout(small_llama):
    graph = import_model(small_llama, {"batch": 4, "seq": 8192})
    options = PlanOptions(precision="bf16", recompute="none", zero=0)
    found = plan_model(graph, FOUR_BY_EIGHT, options, rebinder=rebinder_for(small_llama))
    assert "context parallelism tried (sequence 8,192): 3 configuration(s)" in found.notes[-1]
    for tensor, pipeline, data, context in context_layouts(FOUR_BY_EIGHT, 8192, 16, 4):
        hand = evaluate_context_configuration(graph, FOUR_BY_EIGHT, tensor, pipeline, data, context, 1, 4,
                                              replace(options, algorithm="megatron"),
                                              rebinder=rebinder_for(small_llama))
        assert hand.memory.fits
        assert found.total_seconds <= hand.total_seconds * (1 + 1e-9)


def test_short_sequences_that_fit_are_not_tried_with_context_parallelism(small_llama):
    graph = import_model(small_llama, {"batch": 4, "seq": 1024})
    found = plan_model(graph, FOUR_BY_EIGHT, PlanOptions(precision="bf16"), rebinder=rebinder_for(small_llama))
    assert not any("context parallelism tried" in note for note in found.notes)


def test_a_search_layout_is_imported_once_and_priced_as_evaluate_prices_it(small_llama):
    """The search's layouts (climb_context) import the model once, at s / C and one sample per
    data-parallel rank, and price exactly what ``evaluate --cp`` prices (which imports it at s / C,
    then re-binds the batch)."""
    from planner.search.context_parallel import climb_context

    graph = import_model(small_llama, {"batch": 4, "seq": 8192})
    options = PlanOptions(precision="bf16", recompute="none", zero=0)
    rebinder = rebinder_for(small_llama)
    imports = []
    counting = replace(rebinder, import_fn=lambda *args: imports.append(args[1]) or rebinder.import_fn(*args))
    for layout in context_layouts(FOUR_BY_EIGHT, 8192, 16, 4):
        imports.clear()
        searched = climb_context(graph, FOUR_BY_EIGHT, options, counting, layout, "seq", 8192, (1.0, None))
        tensor, pipeline, data, context = layout
        assert imports == [{"batch": data * context, "seq": 8192 // context}]
        hand = evaluate_context_configuration(graph, FOUR_BY_EIGHT, tensor, pipeline, data, context, 1, 4,
                                              replace(options, algorithm="megatron"), rebinder=rebinder)
        assert searched.total_seconds == pytest.approx(hand.total_seconds, rel=1e-12)
        assert searched.memory.peak == pytest.approx(hand.memory.peak, rel=1e-12)
