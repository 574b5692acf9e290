"""The registry of per-operator rules (planner.onnx.rules): coverage, the fallback, and OpSpecs by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from onnx import helper

from op_zoo import CASES
from planner.model.graph import OpKind
from planner.onnx.importer import import_model
from planner.onnx.rules import REGISTRY, NodeContext, OpSpec, RuleError, Static, rule, supported_op_types

# Every op type the importer handled before the registry (its if/elif dispatch, its ``_op_*``
# methods and ``supported_op_types()``), listed from the old importer.py.
OLD_DISPATCH = {
    'Abs', 'Acos', 'Add', 'And', 'ArgMax', 'ArgMin', 'Asin', 'Atan', 'AveragePool', 'BatchNormalization',
    'BiasGelu', 'BitShift', 'Cast', 'CastLike', 'Ceil', 'Celu', 'Clip', 'Concat', 'Constant', 'ConstantOfShape',
    'Conv', 'ConvTranspose', 'Cos', 'Cosh', 'CumSum', 'DequantizeLinear', 'Div', 'Dropout', 'Einsum', 'Elu',
    'Equal', 'Erf', 'Exp', 'Expand', 'EyeLike', 'FastGelu', 'Flatten', 'Floor', 'Gather', 'GatherElements',
    'GatherND', 'Gelu', 'Gemm', 'GlobalAveragePool', 'GlobalLpPool', 'GlobalMaxPool', 'Greater',
    'GreaterOrEqual', 'GroupNormalization', 'HardSigmoid', 'HardSwish', 'Identity', 'InstanceNormalization',
    'IsInf', 'IsNaN', 'LayerNormalization', 'LeakyRelu', 'Less', 'LessOrEqual', 'Log', 'LogSoftmax', 'LpPool',
    'MatMul', 'Max', 'MaxPool', 'Mean', 'Min', 'Mish', 'Mod', 'Mul', 'Neg', 'Not', 'Or', 'PRelu', 'Pad', 'Pow',
    'QuantizeLinear', 'QuickGelu', 'RMSNormalization', 'RandomNormal', 'RandomUniform', 'Range', 'Reciprocal',
    'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean', 'ReduceMin',
    'ReduceProd', 'ReduceSum', 'ReduceSumSquare', 'Relu', 'Reshape', 'Round', 'ScatterElements', 'ScatterND',
    'Selu', 'Shape', 'Sigmoid', 'Sign', 'SimplifiedLayerNormalization', 'Sin', 'Sinh', 'Size', 'Slice',
    'Softmax', 'Softplus', 'Softsign', 'Split', 'Sqrt', 'Squeeze', 'Sub', 'Sum', 'Tan', 'Tanh',
    'ThresholdedRelu', 'Tile', 'TopK', 'Transpose', 'Trilu', 'Unsqueeze', 'Where', 'Xor',
}
# Handled by the importer itself (declared in the registry, no rule function).
IMPORTER_HANDLED = {"Constant", "Shape", "Size"}


def test_the_registry_covers_every_op_type_the_old_dispatch_handled():
    assert len(OLD_DISPATCH) == 125
    assert supported_op_types() == OLD_DISPATCH
    for op_type in OLD_DISPATCH - IMPORTER_HANDLED:
        assert REGISTRY.get(op_type).fn is not None, op_type
    for op_type in IMPORTER_HANDLED:
        assert REGISTRY.get(op_type).fn is None


def test_static_policies():
    assert REGISTRY.static_policy("Constant") is Static.CONSTANT
    assert REGISTRY.static_policy("Shape") is REGISTRY.static_policy("Size") is Static.ALWAYS
    for op_type in ("ConstantOfShape", "Range", "RandomNormal", "RandomUniform", "EyeLike"):
        assert REGISTRY.static_policy(op_type) is Static.SOURCE
    assert REGISTRY.static_policy("MatMul") is Static.INPUTS
    assert REGISTRY.static_policy("NoSuchOp") is Static.INPUTS  # an unknown op: static when its inputs are


def test_an_op_type_registers_once():
    with pytest.raises(ValueError, match="MatMul already has a rule"):
        rule("MatMul")(lambda ctx: None)
    assert REGISTRY.get("MatMul").fn.__name__ == "matmul"


@pytest.mark.parametrize("label,model", [c for c in CASES if not c[0].startswith(("Unknown", "Malformed", "RuleError"))],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_zoo_case_is_described_by_its_rule(label, model):
    graph = import_model(model)
    assert graph.unsupported_op_types == [] and graph.warnings == []
    assert all(op.kind is not OpKind.OPAQUE for op in graph.operators.values())


def _zoo(label):
    return dict(CASES)[label]


def test_an_unregistered_op_type_takes_the_fallback():
    # Frobnicate (com.example) and Twiddle have no rule: opaque, every dim unsplittable, reported once
    graph = import_model(_zoo("Unknown_ops"))
    assert "Twiddle" not in REGISTRY and "Frobnicate" not in REGISTRY
    assert graph.unsupported_op_types == ["Twiddle", "com.example.Frobnicate"]
    assert graph.warnings == ["unsupported op types (planned as replicated, opaque operators): "
                              "Twiddle, com.example.Frobnicate"]
    twiddle = graph.operators["twiddle"]
    assert twiddle.kind is OpKind.OPAQUE and twiddle.flops == 0
    # one dim per axis of every tensor, input then output: i0_0.. for [2, 3, 4], o0_0.. for [2, 3, 4]
    assert twiddle.dims == {"i0_0": 2, "i0_1": 3, "i0_2": 4, "o0_0": 2, "o0_1": 3, "o0_2": 4}
    assert twiddle.fixed_dims == frozenset(twiddle.dims) and twiddle.splittable_dims() == []
    assert twiddle.inputs[0].axes == (("i0_0",), ("i0_1",), ("i0_2",))
    assert graph.operators["relu"].kind is OpKind.FOLLOW


def test_a_registered_rule_that_cannot_apply_is_opaque_but_not_unsupported():
    malformed = import_model(_zoo("Malformed_Gemm"))  # Gemm with one input: the rule raises IndexError
    assert malformed.operators["gemm"].kind is OpKind.OPAQUE
    assert malformed.unsupported_op_types == []
    assert malformed.warnings == ["node 'gemm' (Gemm) does not match its op type's definition "
                                  "(IndexError: list index out of range); planned as opaque (replicated)"]
    runtime = import_model(_zoo("RuleError_CumSum_runtime_axis"))  # the axis is a graph input
    assert runtime.operators["cumsum"].kind is OpKind.OPAQUE
    assert runtime.warnings == ["node 'cumsum' (CumSum): needs the constant value of 'ax', which is computed "
                                "at run time; planned as opaque (replicated)"]


def _ctx(op_type, in_shapes, out_shapes, attrs=None, consts=None, opset=17, params=()):
    ins = [f"in{k}" for k in range(len(in_shapes))]
    outs = [f"out{k}" for k in range(len(out_shapes))]
    node = helper.make_node(op_type, ins, outs)
    return NodeContext(node, ins, outs, in_shapes, out_shapes, attrs or {}, opset, consts or {}, frozenset(params))


def _spec(op_type, *args, **kwargs) -> OpSpec:
    return REGISTRY.get(op_type).fn(_ctx(op_type, *args, **kwargs))


def test_rules_return_a_frozen_opspec():
    spec = _spec("Gemm", [(3, 4), (5, 4)], [(3, 5)], {"transB": 1})
    assert isinstance(spec, OpSpec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.flops = 0
    # y[3,5] = a[3,4] @ b[5,4]^T: 3*5 outputs, 4 multiply-adds each = 2*3*5*4 FLOPs
    assert spec.flops == 120 and spec.kind is OpKind.COMPUTE
    assert spec.dims == {"m": 3, "n": 5, "k": 4} and spec.reduction == {"k"}
    assert spec.in_axes == [[("m",), ("k",)], [("n",), ("k",)]]


def test_conv_spec_by_hand():
    # x[2,4,8,8], w[6,4,3,3], stride 2, pad 1 -> y[2,6,4,4]: each output takes 4*3*3 multiply-adds
    spec = _spec("Conv", [(2, 4, 8, 8), (6, 4, 3, 3)], [(2, 6, 4, 4)], {"strides": [2, 2]})
    assert spec.flops == 2 * (2 * 6 * 4 * 4) * (4 * 3 * 3)
    assert spec.halo == {"o0": 1, "o1": 1}  # (k-1)*dilation + 1 - stride = 2 + 1 - 2
    assert spec.fixed == {"r0", "r1"} and spec.reduction == {"ic", "r0", "r1"}
    assert spec.loose_in == {0: frozenset({2, 3})}


def test_gather_from_a_weight_is_an_embedding():
    table = _spec("Gather", [(10, 4), (2, 7)], [(2, 7, 4)], params=["in0"])
    assert table.kind is OpKind.COMPUTE and table.fixed == frozenset() and table.reduction == {"v"}
    rows = _spec("Gather", [(10, 4), (2, 7)], [(2, 7, 4)])
    assert rows.kind is OpKind.FOLLOW and rows.fixed == {"v"}
    assert rows.out_axes == [[("i0",), ("i1",), ("d1",)]] and rows.flops == 0


def test_rules_read_folded_constants_or_raise_rule_error():
    spec = _spec("ReduceSum", [(2, 3, 4), (1,)], [(2, 4)], {"keepdims": 0}, consts={"in1": np.array([1])})
    assert spec.reduction == {"d1"} and spec.out_axes == [[("d0",), ("d2",)]] and spec.flops == 24
    with pytest.raises(RuleError, match="needs the constant value of 'in1'"):
        _spec("ReduceSum", [(2, 3, 4), (1,)], [(2, 4)], {"keepdims": 0})


def test_softmax_axis_depends_on_the_opset():
    new = _spec("Softmax", [(2, 3, 4)], [(2, 3, 4)], opset=13)
    old = _spec("Softmax", [(2, 3, 4)], [(2, 3, 4)], opset=11)
    assert new.fixed == {"d2"} and old.fixed == {"d1", "d2"}  # opset < 13: the axes from 1 on
    assert new.flops == old.flops == 5 * 24
