"""The batch traced through flattened (seq*batch) axes, transposes and at any input axis.

torch ``nn.MultiheadAttention`` is the real-export case: with ``batch_first=True`` the batch is
the inner factor of the flattened ``(seq*batch)`` rows of the output projection; with
``batch_first=False`` it enters on axis 1. Pure data parallelism must split every operator that
reads data along the batch (issue 10, item 3).
"""

from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import models  # tests/models.py
from planner.cost.model import CostModel
from planner.onnx.importer import import_model
from planner.model.rebatch import is_data_dependent
from planner.cost.baseline import data_parallel_strategies


def _flattened_model(s: int, b: int, e: int, n: int, batch_inner: bool = True, symbolic: bool = False):
    """x [S, B, E] (batch on axis 1) -> Reshape [S*B, E] -> MatMul W [E, N] -> Reshape [S, B, N];
    with ``batch_inner=False`` x is [B, S, E] (batch outer). Symbolic inputs name 'seq' and 'batch'."""
    in_shape = [s, b, e] if batch_inner else [b, s, e]
    names = ["seq", "batch", e] if batch_inner else ["batch", "seq", e]  # 'seq' first: found by name
    shape_in = names if symbolic else in_shape
    nodes = [
        helper.make_node("Shape", ["x"], ["sx"], name="shape", start=0, end=2),
        helper.make_node("Concat", ["sx", "n"], ["unflat"], name="cat", axis=0),
        helper.make_node("Reshape", ["x", "flat"], ["xf"], name="flatten"),
        helper.make_node("MatMul", ["xf", "W"], ["h"], name="mm"),
        helper.make_node("Reshape", ["h", "unflat"], ["y"], name="unflatten"),
    ]
    inits = [
        helper.make_tensor("flat", TensorProto.INT64, [2], [-1, e]),
        helper.make_tensor("W", TensorProto.FLOAT, [e, n], [0.0] * (e * n)),
        helper.make_tensor("n", TensorProto.INT64, [1], [n]),
    ]
    graph = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape_in)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_batch_inner_factor_of_flattened_rows_is_split_off():
    g = import_model(_flattened_model(6, 4, 8, 16, symbolic=True), {"seq": 6, "batch": 4})
    assert g.batch_symbol == "batch" and g.batch_axes == {"x": 1}
    mm = g.operators["mm"]
    # rows m = seq*batch = 24 with the batch inner: split into m (seq, 6) and m~b (batch, 4)
    assert mm.dims["m"] == 6 and mm.dims["m~b"] == 4
    assert mm.flops == 2 * 6 * 4 * 8 * 16  # unchanged
    assert g.batch_dims()["mm"] == "m~b"
    assert g.batch_dims()["unflatten"] is not None


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 9), st.sampled_from([2, 4, 8]), st.integers(1, 6), st.integers(1, 6), st.booleans())
def test_data_parallel_splits_every_operator_along_the_batch(s, b, e, n, inner):
    g = import_model(_flattened_model(s, b, e, n, batch_inner=inner, symbolic=True), {"seq": s, "batch": b})
    cm = CostModel(g, models.one_level(b), "train")
    plan = data_parallel_strategies(cm)
    assert all(None not in plan[op] for op in cm.planned), plan
    # the MatMul's local work is 1/b of its FLOPs: each device holds s rows of its own samples
    for op in cm.planned:
        dim = plan[op][0]
        assert g.operators[op].dims[dim] % b == 0


# ---- torch nn.MultiheadAttention, both layouts, both exporters ------------------------------------

B, S, E, HEADS = 2, 6, 32, 4


def _mha_exports(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.export import Dim

    class Block(torch.nn.Module):
        def __init__(self, batch_first):
            super().__init__()
            self.mha = torch.nn.MultiheadAttention(E, HEADS, batch_first=batch_first)
            self.fc = torch.nn.Linear(E, E)

        def forward(self, x):
            y, _ = self.mha(x, x, x, need_weights=False)
            return self.fc(y)

    paths = {}
    torch.manual_seed(0)
    for batch_first in (True, False):
        model = Block(batch_first).eval()
        b_axis, s_axis = (0, 1) if batch_first else (1, 0)
        x = torch.randn(*((B, S, E) if batch_first else (S, B, E)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            legacy = tmp_path / f"mha_bf{int(batch_first)}_legacy.onnx"
            torch.onnx.export(model, (x,), str(legacy), dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {b_axis: "batch", s_axis: "seq"}})
            dynamo = tmp_path / f"mha_bf{int(batch_first)}_dynamo.onnx"
            shapes = {"x": {b_axis: Dim("batch", min=2, max=4096), s_axis: Dim("seq", min=2, max=4096)}}
            torch.onnx.export(model, (x,), str(dynamo), dynamo=True, dynamic_shapes=shapes,
                              input_names=["x"], output_names=["y"], verbose=False)
            static = tmp_path / f"mha_bf{int(batch_first)}_static.onnx"
            torch.onnx.export(model, (x,), str(static), dynamo=False, input_names=["x"], output_names=["y"])
        paths[(batch_first, "legacy")] = legacy
        paths[(batch_first, "dynamo")] = dynamo
        paths[(batch_first, "static")] = static
    return paths


@pytest.fixture(scope="module")
def mha(tmp_path_factory):
    return _mha_exports(tmp_path_factory.mktemp("mha"))


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_mha_data_parallel_splits_every_data_operator(mha, batch_first, exporter):
    # the legacy exporter bakes the traced sequence length into the key/value reshapes: bind it
    g = import_model(mha[(batch_first, exporter)], {"batch": 8, "seq": S})
    assert g.batch_symbol == "batch"
    assert g.batch_axes == {"x": 0 if batch_first else 1}
    cm = CostModel(g, models.one_level(8), "train")
    plan = data_parallel_strategies(cm)
    data_ops = [op for op in cm.planned if is_data_dependent(g, op)]
    assert len(data_ops) > 15
    unsplit = [op for op in data_ops if None in plan[op]]
    assert unsplit == []
    # each split dimension is exactly the batch: 8 samples, one per device
    for op in data_ops:
        assert g.operators[op].dims[plan[op][0]] % 8 == 0


@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_static_export_batch_axis_is_traced(mha, batch_first):
    g = import_model(mha[(batch_first, "static")])
    assert g.batch_symbol is None
    # the sequence (also 6... and then 2 vs 6) is summed over by attention's P @ V: not the batch
    assert g.batch_axes == {"x": 0 if batch_first else 1}
    batch = g.batch_dims()
    assert all(batch[op] is not None for op in g.planned_operators() if is_data_dependent(g, op))


@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_static_export_rebatched_equals_the_dynamic_export(mha, batch_first, capsys):
    static = import_model(mha[(batch_first, "static")], {"batch": 16})
    dynamic = import_model(mha[(batch_first, "legacy")], {"batch": 16, "seq": S})
    assert static.tensors["x"].shape == dynamic.tensors["x"].shape == ((16, S, E) if batch_first else (S, 16, E))
    assert static.flops_forward == dynamic.flops_forward
    assert static.parameter_count == dynamic.parameter_count == 4 * E * E + 4 * E + E * E + E
    code, out, err = models.run_cli(["inspect", str(mha[(batch_first, "static")]), "--batch", "16"], capsys)
    assert code == 0, err
    assert f"input        x {'16x6x32' if batch_first else '6x16x32'}" in out
