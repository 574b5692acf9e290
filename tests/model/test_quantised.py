"""Quantised weights (planner.model.quantised): parameters with their true bits, frozen (no gradient).

Hand figures: an 8192 x 8192 INT4 weight is 8192^2 = 67,108,864 parameters of 4 bits each,
67,108,864 / 2 = 33,554,432 B = 32 MiB.
"""

from __future__ import annotations

import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import models  # tests/models.py
from planner.cli.main import main
from planner.cost.model import CostModel
from planner.cost.memory import memory_per_device
from planner.onnx.importer import import_model
from planner.cost.baseline import data_parallel_strategies


def _weight(name: str, elem_type: int, dims: list[int]) -> onnx.TensorProto:
    """A weight whose data lives in a file that does not exist: the planner reads shapes only."""
    t = TensorProto(name=name, data_type=elem_type, dims=dims)
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="absent.bin")
    return t


def dequantised_mlp(elem_type: int, k: int, n: int, batch: int = 4, scale_dims: list[int] | None = None):
    """y = x @ DequantizeLinear(W) + b with W [k, n] of ``elem_type``, a float bias b [n]."""
    scale = helper.make_tensor("scale", TensorProto.FLOAT, scale_dims or [], [0.1] * (scale_dims[0] if scale_dims else 1))
    nodes = [
        helper.make_node("DequantizeLinear", ["W", "scale"], ["Wf"], name="dq", **({"axis": 1} if scale_dims else {})),
        helper.make_node("MatMul", ["x", "Wf"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes, "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, n])],
        [_weight("W", elem_type, [k, n]), scale, helper.make_tensor("b", TensorProto.FLOAT, [n], [0.0] * n)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def matmul_integer(k: int = 64, n: int = 32, batch: int = 4):
    nodes = [
        helper.make_node("MatMulInteger", ["x", "W"], ["h"], name="mmi"),
        helper.make_node("Cast", ["h"], ["y"], name="cast", to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "qi",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [batch, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, n])],
        [_weight("W", TensorProto.INT8, [k, n])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_inspect_int4_8192_square(tmp_path, capsys):
    path = tmp_path / "int4.onnx"
    onnx.save(dequantised_mlp(TensorProto.INT4, 8192, 8192), path)
    assert main(["inspect", str(path), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    # W 67,108,864 INT4 + bias 8,192 fp32 (scale is a rank-0 constant)
    assert "67,117,056" in out
    g = import_model(path)
    w = g.tensors["W"]
    assert w.numel == 67_108_864 and w.nbytes == 33_554_432 == 32 * 2**20
    assert g.parameter_bytes == 33_554_432 + 4 * 8192
    assert "input        x 4x8192" in out


def test_inspect_int4_weight_alone_is_32_mib(tmp_path, capsys):
    model = dequantised_mlp(TensorProto.INT4, 8192, 8192)
    # drop the bias: the weight alone
    model.graph.node[2].input[1] = "zero_bias"
    del model.graph.initializer[2]  # b
    model.graph.initializer.append(helper.make_tensor("zero_bias", TensorProto.FLOAT, [], [0.0]))
    path = tmp_path / "w.onnx"
    onnx.save(model, path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "parameters   67,108,864\n" in out
    assert "weights      32 MiB (67,108,864 quantised parameters, frozen)" in out


@pytest.mark.parametrize("elem_type, bits", [
    (TensorProto.INT8, 8), (TensorProto.UINT8, 8), (TensorProto.INT4, 4), (TensorProto.UINT4, 4),
    (TensorProto.FLOAT4E2M1, 4), (TensorProto.INT2, 2), (TensorProto.UINT2, 2),
    (TensorProto.FLOAT8E4M3FN, 8), (TensorProto.FLOAT8E5M2, 8),
])
def test_every_quantised_type_is_a_parameter_with_its_bits(elem_type, bits):
    g = import_model(dequantised_mlp(elem_type, 64, 32))
    w = g.tensors["W"]
    assert w.role.value == "parameter" and w.frozen and not w.requires_grad
    assert w.nbytes == 64 * 32 * bits / 8
    assert g.parameter_count == 64 * 32 + 32


def test_per_channel_scales_belong_to_the_frozen_weight():
    g = import_model(dequantised_mlp(TensorProto.INT8, 64, 32, scale_dims=[32]))
    assert g.tensors["scale"].frozen and g.tensors["scale"].role.value == "parameter"
    assert g.parameter_count == 64 * 32 + 32 + 32


def test_matmul_integer_weight_is_a_parameter():
    g = import_model(matmul_integer())
    assert g.tensors["W"].role.value == "parameter" and g.tensors["W"].itemsize == 1
    assert g.parameter_count == 64 * 32
    assert g.tensors["x"].role.value == "input"  # a uint8 data input stays data


def test_frozen_weight_has_no_gradient_nor_optimizer_state():
    g = import_model(dequantised_mlp(TensorProto.INT4, 64, 32, batch=8))
    cm = CostModel(g, models.one_level(4), "train", "bf16")
    plan = data_parallel_strategies(cm)
    mem = memory_per_device(cm, plan)
    # W: 2,048 params at 4 bits = 1,024 B, kept at its bits whatever the training precision;
    # bias: 32 params at bf16 = 64 B, with a 64 B gradient and 12 B/param Adam state = 384 B
    assert mem.parameters == 1_024 + 64
    assert mem.gradients == 64
    assert mem.optimizer_state == 12 * 32
    # the only gradient all-reduced is the bias's: the MatMul has no parameter gradient to sync
    sync = cm.op_cost("mm", plan["mm"]).gradient_sync
    assert not sync.any()


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([(TensorProto.INT4, 4), (TensorProto.UINT2, 2), (TensorProto.INT8, 8),
                        (TensorProto.FLOAT4E2M1, 4)]),
       st.integers(1, 64), st.integers(1, 64))
def test_parameter_bytes_are_true_bits(type_bits, k, n):
    elem_type, bits = type_bits
    g = import_model(dequantised_mlp(elem_type, 2 * k, n))
    assert g.tensors["W"].nbytes * 8 == 2 * k * n * bits
    assert g.parameter_bytes == 2 * k * n * bits / 8 + 4 * n
