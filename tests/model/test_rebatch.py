"""``--batch N``: binds a symbolic batch, or re-binds the traced batch axis of a static export.

A static export's shape constants (Reshape targets) hold the exported batch; re-batching rewrites
them and re-infers every shape. The independent check is the same model exported with a symbolic
batch and bound to N: both must give the same shapes, FLOPs and parameters.
"""

from __future__ import annotations

import json

import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import models  # tests/models.py
from planner.onnx.rebinder import rebinder_for
from planner.onnx.importer import ModelImportError, import_model

from rebatch_models import E, N, block  # tests/rebatch_models.py



def single_sample() -> onnx.ModelProto:
    """x [1, E] @ W [E, N]: the only axis of size > 1 is summed over, so none can be the batch."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, E])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N])],
        [helper.make_tensor("W", TensorProto.FLOAT, [E, N], [0.0] * (E * N))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 9), st.integers(2, 7), st.integers(1, 64))
def test_rebatched_static_export_equals_the_symbolic_one(exported, s, batch):
    static = import_model(block(exported, s), {"batch": batch})
    symbolic = import_model(block(0, s, symbolic=True), {"batch": batch})
    assert static.tensors["x"].shape == (batch, s, E)
    for name in ("xf", "h", "h3", "y"):
        assert static.tensors[name].shape == symbolic.tensors[name].shape
    assert static.flops_forward == symbolic.flops_forward == 2 * batch * s * E * N + batch * s * N
    assert static.batch_symbol == "batch" and static.batch_size == batch


def test_rebatched_static_export_splits_into_micro_batches():
    g = import_model(block(4, 3), {"batch": 32})
    micro = rebinder_for(block(4, 3)).with_batch(g, 8)
    assert micro.tensors["y"].shape == (8, 3, N)
    assert micro.flops_forward * 4 == g.flops_forward


def test_static_export_without_batch_keeps_its_shapes():
    g = import_model(block(4, 3))
    assert g.tensors["x"].shape == (4, 3, E) and g.batch_axes == {"x": 0}


def test_no_batch_axis_is_refused_with_a_message():
    # batch 1 in the file: a size-1 axis carries no factor to trace
    with pytest.raises(ModelImportError, match="no batch axis can be traced"):
        import_model(single_sample(), {"batch": 8})


def test_cli_batch_on_a_static_export(tmp_path, capsys):
    path = tmp_path / "static.onnx"
    onnx.save(block(4, 3), path)
    code, out, err = models.run_cli(["inspect", str(path), "--batch", "64", "--json", str(tmp_path / "i.json")], capsys)
    assert code == 0, err
    assert "input        x 64x3x8" in out
    # FLOPs of 64 samples: 2*64*3*8*16 (MatMul) + 64*3*16 (Relu) = 49,152 + 3,072
    assert json.loads((tmp_path / "i.json").read_text())["flops_forward"] == 52_224


def test_cli_batch_equals_bind_on_a_symbolic_export(tmp_path, capsys):
    path = tmp_path / "sym.onnx"
    onnx.save(block(0, 3, symbolic=True), path)
    a = models.run_cli(["inspect", str(path), "--batch", "64"], capsys)
    b = models.run_cli(["inspect", str(path), "--bind", "batch=64"], capsys)
    assert a[0] == b[0] == 0 and a[1] == b[1]
    assert "input        x 64x3x8" in a[1]


@pytest.mark.parametrize("command", ["inspect", "plan", "evaluate"])
def test_cli_no_batch_axis_exits_2_with_one_line(tmp_path, capsys, command):
    path = tmp_path / "one.onnx"
    onnx.save(single_sample(), path)
    argv = [command, str(path), "--batch", "8"]
    if command != "inspect":
        argv += ["--machine", "machines/dgx_a100.yaml"]
    if command == "evaluate":
        argv += ["--plan", str(tmp_path / "absent.json")]
    code, out, err = models.run_cli(argv, capsys)
    if command == "evaluate":  # the plan file is read first
        assert code == 2
        return
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no batch axis can be traced" in lines[0] and "Traceback" not in err


def test_cli_batch_and_bind_disagree(tmp_path, capsys):
    path = tmp_path / "sym.onnx"
    onnx.save(block(0, 3, symbolic=True), path)
    code, out, err = models.run_cli(["inspect", str(path), "--batch", "64", "--bind", "batch=32"], capsys)
    assert code == 2 and "disagree" in err and len(err.strip().splitlines()) == 1


def test_plan_evaluate_export_with_batch_on_a_static_export(tmp_path, capsys):
    """The stage search runs on a re-batched static export: 2 stages x 4 micro-batches of 16."""
    path = tmp_path / "static.onnx"
    onnx.save(block(4, 3), path)
    plan = tmp_path / "plan.json"
    code, out, err = models.run_cli(["plan", str(path), "--batch", "64", "--machine", "machines/dgx_a100.yaml",
                                     "--pipeline-stages", "2", "--micro-batches", "4", "--json", str(plan)], capsys)
    assert code == 0, err
    data = json.loads(plan.read_text())
    assert data["bindings"] == {"batch": 64}
    assert data["pipeline"]["stages"] == 2 and data["pipeline"]["micro_batch_size"] == 16
    # evaluate --plan re-binds the recorded batch; --batch replaces it
    code, out, err = models.run_cli(["evaluate", str(path), "--plan", str(plan), "--machine",
                                     "machines/dgx_a100.yaml"], capsys)
    assert code == 0, err
    code, out, err = models.run_cli(["evaluate", str(path), "--plan", str(plan), "--batch", "128", "--machine",
                                     "machines/dgx_a100.yaml"], capsys)
    assert code == 0, err
    assert "of 32 samples per stage" in out
    code, out, err = models.run_cli(["export", str(plan), "--format", "dtensor", "--model", str(path),
                                     "--batch", "64"], capsys)
    assert code == 0, err


def test_app_static_upload_without_a_traceable_batch_has_no_batch_field():
    from explorer.cache import PlanCache
    from explorer.sources import upload_source

    data = single_sample().SerializeToString()
    assert PlanCache().symbolic_dims(upload_source("one.onnx", data), data) == []
