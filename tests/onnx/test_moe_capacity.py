"""``--moe-capacity-factor F`` rewrites the capacity a dropping MoE implementation computes,
``C = ceil(s x k x F / E)`` tokens per expert and sequence (planner/onnx/capacity.py); the
experts' compute and the dispatched tokens (the all-to-all's bytes) follow, worked out by hand."""

from __future__ import annotations

import pytest

from moe_models import MIXTRAL, write
from planner.cost.moe import dispatch_bytes, expert_dims
from planner.onnx.capacity import CapacityFactorError, with_capacity_factor
from planner.onnx.importer import import_model, load_model_proto

BATCH, SEQ, E, K, HIDDEN, FFN = 2, 16, 8, 2, MIXTRAL["hidden"], MIXTRAL["ffn"]


@pytest.fixture(scope="module")
def proto(tmp_path_factory):
    return load_model_proto(write(tmp_path_factory.mktemp("moe"), "mixtral_8x7b", **MIXTRAL))


@pytest.mark.parametrize("factor, capacity", [(1.0, 4), (1.25, 5), (1.5, 6), (0.5, 2), (1.1, 5)])
def test_the_experts_compute_the_capacity_factor_says(proto, factor, capacity):
    # ceil(16 x 2 x F / 8): 4, 5, 6, 2 and ceil(4.4) = 5 tokens per expert and sequence
    graph = import_model(with_capacity_factor(proto, factor), {"batch": BATCH, "seq": SEQ})
    experts = expert_dims(graph)
    assert len(experts) == 6  # gate, up, down of 2 layers
    # 2 layers x 3 matmuls x 2 FLOPs x (batch 2 x 8 experts x C tokens) x hidden 64 x FFN 96
    assert sum(graph.operators[n].flops for n in experts) == 2 * 3 * 2 * (BATCH * E * capacity) * HIDDEN * FFN
    dispatched = [graph.tensors[u.tensor] for n in experts for u in graph.operators[n].inputs
                  if graph.tensors[u.tensor].shape[-1] == HIDDEN and len(graph.tensors[u.tensor].shape) == 4]
    assert dispatched and all(tuple(t.shape) == (BATCH, E, capacity, HIDDEN) for t in dispatched)


def test_the_dispatched_bytes_are_the_all_to_all_formula_when_the_capacity_is_whole(proto):
    # F = 1.5: 16 x 2 x 1.5 / 8 = 6 exactly, so the dispatched tensor [2, 8, 6, 64] is the all-to-all's
    # tokens x k x hidden x F elements (planner.cost.moe.dispatch_bytes, 1 byte per element here)
    graph = import_model(with_capacity_factor(proto, 1.5), {"batch": BATCH, "seq": SEQ})
    dispatched = graph.operators["layer0.moe.experts.gate_proj"].inputs[0].tensor
    elements = 1
    for size in graph.tensors[dispatched].shape:
        elements *= size
    assert elements == dispatch_bytes(BATCH * SEQ, K, HIDDEN, 1, 1.5) == 2 * 8 * 6 * 64


def test_the_model_itself_is_unchanged(proto):
    before = proto.SerializeToString()
    with_capacity_factor(proto, 2.0)
    assert proto.SerializeToString() == before


@pytest.mark.parametrize("factor", [0, -1.0, float("inf"), float("nan"), True, "1"])
def test_a_bad_factor_is_refused(proto, factor):
    with pytest.raises(CapacityFactorError, match="must be a number above 0"):
        with_capacity_factor(proto, factor)


def test_a_model_without_a_capacity_is_refused():
    with pytest.raises(CapacityFactorError, match="no expert capacity to set"):
        with_capacity_factor(load_model_proto("sample_models/llama3_8b.onnx"), 1.25)


@pytest.mark.parametrize("error", [IndexError("list index out of range"), TypeError("not a tensor"),
                                   ZeroDivisionError("division by zero")])
def test_an_unusual_constant_is_a_message_not_a_traceback(proto, monkeypatch, error):
    """A review found that a Constant without a tensor attribute, or a zero-width router, escaped
    as a Python error (the CLI catches only PlannerError): whatever reading the capacity raises is
    one CapacityFactorError that says what to do."""
    from planner.onnx import capacity

    def broken(model):
        raise error

    monkeypatch.setattr(capacity, "_capacity_sites", broken)
    with pytest.raises(CapacityFactorError, match=r"^--moe-capacity-factor: the model's expert capacity could not "
                                                  r"be read \(" + type(error).__name__ + r": .*drop --moe-capacity"):
        with_capacity_factor(proto, 1.5)
