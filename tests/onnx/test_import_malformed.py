"""Malformed models are refused in one line that names the bad part (issue 16, item 8, import part)."""

from __future__ import annotations

import os

import pytest
from onnx import TensorProto, helper

from models import run_cli
from planner.onnx.importer import ModelImportError, import_model

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _x(shape=(2, 3), name="x"):
    return helper.make_tensor_value_info(name, F, list(shape))


def _y(name="y"):
    return helper.make_tensor_value_info(name, F, None)


CASES = {
    "matmul_one_input": (
        [helper.make_node("MatMul", ["x"], ["y"], name="mm")], [_x()],
        r"node 'mm' \(MatMul\) is invalid: .*input size 1 not in range \[min=2, max=2\]"),
    "softmax_axis_99": (
        [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=99)], [_x()],
        r"node 'sm' \(Softmax\) is invalid: axis=99 is out of range for an input of rank 2 \(allowed -2\.\.1\)"),
    "transpose_bad_perm": (
        [helper.make_node("Transpose", ["x"], ["y"], name="tr", perm=[0, 0])], [_x()],
        r"node 'tr' \(Transpose\) is invalid: perm=\[0, 0\] is not a permutation of the input's 2 axes"),
    "transpose_perm_wrong_rank": (
        [helper.make_node("Transpose", ["x"], ["y"], name="tr", perm=[2, 0, 1])], [_x()],
        r"node 'tr' \(Transpose\) is invalid: perm=\[2, 0, 1\] is not a permutation of the input's 2 axes"),
    "einsum_rank_mismatch": (
        [helper.make_node("Einsum", ["x", "w"], ["y"], name="es", equation="ijk,jk->ik")], [_x(), _x((3, 4), "w")],
        r"node 'es' \(Einsum\) is invalid: equation 'ijk,jk->ik': input 0 has rank 2 but its term 'ijk' names 3 axes"),
    "einsum_term_count": (
        [helper.make_node("Einsum", ["x", "w"], ["y"], name="es", equation="ij->i")], [_x(), _x((3, 4), "w")],
        r"node 'es' \(Einsum\) is invalid: equation 'ij->i' has 1 input term\(s\) for 2 input\(s\)"),
    "einsum_output_letter": (
        [helper.make_node("Einsum", ["x", "w"], ["y"], name="es", equation="ij,jk->iz")], [_x(), _x((3, 4), "w")],
        r"node 'es' \(Einsum\) is invalid: equation 'ij,jk->iz': output letter\(s\) z appear in no input"),
    "unknown_op": (
        [helper.make_node("Frobnicate", ["x"], ["y"], name="fb")], [_x()],
        r"node 'fb' \(Frobnicate\) is invalid: 'Frobnicate' is not an operator of the ONNX standard"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_node_is_named(case):
    nodes, inputs, pattern = CASES[case]
    with pytest.raises(ModelImportError, match=pattern) as info:
        import_model(_model(nodes, inputs, [_y()]))
    assert "\n" not in str(info.value)


def test_valid_einsum_and_transpose_still_import():
    # ij,jk->ik on 2x3 and 3x4: 2*2*3*4 = 48 FLOPs; Transpose perm [1, 0] of 2x3 -> 3x2
    m = _model([helper.make_node("Einsum", ["x", "w"], ["e"], name="es", equation="ij,jk->ik"),
                helper.make_node("Transpose", ["e"], ["y"], name="tr", perm=[1, 0])],
               [_x(), _x((3, 4), "w")], [_y()])
    g = import_model(m)
    assert g.tensors["y"].shape == (4, 2)
    assert g.operators["es"].flops == 48


def test_malformed_node_on_the_cli_exits_2_with_one_line(tmp_path, capsys):
    nodes, inputs, _ = CASES["softmax_axis_99"]
    path = tmp_path / "bad.onnx"
    path.write_bytes(_model(nodes, inputs, [_y()]).SerializeToString())
    code, out, err = run_cli(["inspect", path], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and "node 'sm' (Softmax) is invalid: axis=99" in err


def test_duplicated_graph_output_is_refused():
    m = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_x()], [_y(), _y()])
    with pytest.raises(ModelImportError, match="the graph output 'y' is listed twice"):
        import_model(m)


@pytest.mark.parametrize("where", ["input", "initializer"])
def test_dimension_of_2_62_is_refused(where):
    big = 2**62
    if where == "input":
        m = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_x((big,))], [_y()])
        pattern = "graph input 'x' has a dimension of 4,611,686,018,427,387,904, above the bound of 1,099,511,627,776"
    else:
        m = _model([helper.make_node("Add", ["x", "w"], ["y"], name="a")], [_x((1,))], [_y()])
        w = TensorProto(name="w", data_type=F, dims=[big])
        m.graph.initializer.append(w)
        pattern = "initializer 'w' has a dimension of 4,611,686,018,427,387,904"
    with pytest.raises(ModelImportError, match=pattern):
        import_model(m.SerializeToString())


def test_dimension_at_the_bound_is_accepted():
    g = import_model(_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_x((2**40,))], [_y()]))
    assert g.tensors["y"].shape == (2**40,)


def test_product_of_dims_above_2_50_is_refused():
    # 2^40 x 2^11 = 2^51 elements > 2^50
    m = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_x((2**40, 2**11))], [_y()])
    with pytest.raises(ModelImportError, match=f"graph input 'x' has {2**51:,} elements, above the bound of {2**50:,}"):
        import_model(m)


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "directory"])
def test_model_path_that_is_not_a_regular_file(kind, tmp_path, capsys):
    if kind == "dev_zero":
        path, what = "/dev/zero", "a device"
    elif kind == "fifo":
        path, what = tmp_path / "pipe.onnx", "a FIFO (named pipe)"
        os.mkfifo(path)  # opening it for reading would block forever: it must not be opened
    else:
        path, what = tmp_path, "a directory"
    code, out, err = run_cli(["inspect", path], capsys)
    assert code == 2
    assert f"{path} is not a regular file: it is {what}" in err
    assert "not found" not in err and err.strip().count("\n") == 0
