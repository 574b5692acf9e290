"""Gather-like operators (Gather, GatherND, GatherElements, ScatterND, ScatterElements) are data
movement: 0 FLOPs, priced by the bytes they move (a gather reads only the rows it outputs)."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

import models  # tests/models.py
from planner.cost.model import CostModel
from planner.machine.tree import Device, Level, Machine
from planner.onnx.importer import import_model

BW = 2e12  # device memory bytes/s
T, H, K = 64, 32, 16  # tokens, hidden, rows gathered


def _machine():
    return Machine("m", Device("dev", 1e14, 80e9, memory_bandwidth_Bps=BW), (Level("gpu", 2, 1e11, 1e-6),))


def _model(node, idx_shape, out_shape, data_is_weight=False):
    inits = [helper.make_tensor("data", TensorProto.FLOAT, [T, H], [0.0] * (T * H))] if data_is_weight else []
    inputs = [helper.make_tensor_value_info("idx", TensorProto.INT64, idx_shape)]
    if not data_is_weight:
        inputs.insert(0, helper.make_tensor_value_info("data", TensorProto.FLOAT, [T, H]))
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


GATHER = _model(helper.make_node("Gather", ["data", "idx"], ["y"], name="op", axis=0), [K], [K, H])
GATHER_ND = _model(helper.make_node("GatherND", ["data", "idx"], ["y"], name="op"), [K, 1], [K, H])
EMBEDDING = _model(helper.make_node("Gather", ["data", "idx"], ["y"], name="op", axis=0), [K], [K, H], True)
GATHER_ELEMENTS = _model(helper.make_node("GatherElements", ["data", "idx"], ["y"], name="op", axis=0), [K, H], [K, H])


@pytest.mark.parametrize("model", [GATHER, GATHER_ND, EMBEDDING, GATHER_ELEMENTS], ids=["gather", "gathernd", "embedding", "elements"])
def test_gathers_count_no_flops(model):
    assert import_model(model).flops_forward == 0


@pytest.mark.parametrize("model, idx_bytes", [(GATHER, K * 8), (GATHER_ND, K * 1 * 8), (EMBEDDING, K * 8)])
def test_gather_priced_by_rows_moved(model, idx_bytes):
    cm = CostModel(import_model(model), _machine(), "infer")
    # reads the indices and writes the K rows it outputs (K * H * 4 B), not the whole table
    moved = idx_bytes + K * H * 4
    assert cm.basis.time(cm.op_cost("op", (None,)).compute) == pytest.approx(moved / BW, rel=1e-12)


def test_gather_and_gathernd_exports_agree():
    """The two exporters' token gather of an MoE (Gather vs GatherND) cost the same."""
    a = CostModel(import_model(GATHER), _machine(), "train")
    b = CostModel(import_model(GATHER_ND), _machine(), "train")
    assert a.graph.flops_forward == b.graph.flops_forward == 0
    ta = a.basis.time(a.op_cost("op", (None,)).compute)
    tb = b.basis.time(b.op_cost("op", (None,)).compute)
    assert ta == pytest.approx(tb)


def test_scatter_nd_counts_no_flops():
    node = helper.make_node("ScatterND", ["data", "idx", "upd"], ["y"], name="op", reduction="add")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [T, H]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [K, 1]),
         helper.make_tensor_value_info("upd", TensorProto.FLOAT, [K, H])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [T, H])])
    g = import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert g.flops_forward == 0


def test_scatter_elements_with_reduction_counts_no_flops():
    node = helper.make_node("ScatterElements", ["data", "idx", "upd"], ["y"], name="op", axis=0, reduction="add")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [T, H]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [K, H]),
         helper.make_tensor_value_info("upd", TensorProto.FLOAT, [K, H])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [T, H])])
    g = import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert g.flops_forward == 0
