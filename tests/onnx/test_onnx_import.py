"""The ONNX importer on hand-built models: the operator table, FLOPs, parameters, factor tracking,
and every way a file can be wrong.

Every expected number is worked out by hand in a comment next to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from planner.model.graph import OpKind, TensorRole
from planner.onnx.importer import ModelImportError, import_model, load_model_proto, require_bound, symbolic_dims

REPO = Path(__file__).resolve().parents[2]
F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


# ---- building models -----------------------------------------------------------------------------

def vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def out(name, dtype=F):
    """A graph output with no shape: the importer infers it."""
    return helper.make_tensor_value_info(name, dtype, None)


def ints(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def floats(name, shape, seed=0):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def scalar(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def make(nodes, inputs, outputs, inits=(), opset=17, name="g", value_info=()):
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=list(inits),
                              value_info=list(value_info))
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))


def node(op_type, inputs, outputs, name="n", **attrs):
    return helper.make_node(op_type, inputs, outputs, name=name, **attrs)


# ---- every op type the issue lists maps to a non-opaque operator ---------------------------------

@dataclass
class Case:
    id: str
    nodes: list
    inputs: list
    outputs: list
    inits: list = field(default_factory=list)
    opset: int = 17
    kind: OpKind = OpKind.FOLLOW
    value_info: list = field(default_factory=list)


X = vi("x", [2, 3, 4])
XB = vi("xb", [2, 3, 4], BOOL)
IMG = vi("img", [2, 4, 8, 8])

UNARY = ["Relu", "Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log", "Sin", "Cos", "Sigmoid", "Tanh", "Erf",
         "Floor", "Ceil", "Softplus", "LeakyRelu", "Elu", "HardSigmoid"]
BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Equal", "Greater", "Less", "LessOrEqual", "GreaterOrEqual"]

CASES = [
    Case("MatMul", [node("MatMul", ["x", "w"], ["y"])], [X], [out("y")], [floats("w", [4, 5])], kind=OpKind.COMPUTE),
    Case("Gemm", [node("Gemm", ["a", "w", "b"], ["y"], transB=1)], [vi("a", [4, 8])], [out("y")],
         [floats("w", [16, 8]), floats("b", [16])], kind=OpKind.COMPUTE),
    Case("Conv1d", [node("Conv", ["s", "w"], ["y"])], [vi("s", [2, 4, 16])], [out("y")], [floats("w", [8, 4, 3])],
         kind=OpKind.COMPUTE),
    Case("Conv2d", [node("Conv", ["img", "w", "b"], ["y"], pads=[1, 1, 1, 1])], [IMG], [out("y")],
         [floats("w", [8, 4, 3, 3]), floats("b", [8])], kind=OpKind.COMPUTE),
    Case("Conv3d", [node("Conv", ["v", "w"], ["y"], pads=[1] * 6)], [vi("v", [1, 2, 4, 4, 4])], [out("y")],
         [floats("w", [4, 2, 3, 3, 3])], kind=OpKind.COMPUTE),
    Case("Conv-grouped", [node("Conv", ["img", "w"], ["y"], group=2)], [IMG], [out("y")], [floats("w", [8, 2, 3, 3])],
         kind=OpKind.COMPUTE),
    Case("Conv-depthwise", [node("Conv", ["img", "w"], ["y"], group=4)], [IMG], [out("y")], [floats("w", [4, 1, 3, 3])],
         kind=OpKind.COMPUTE),
    Case("ConvTranspose", [node("ConvTranspose", ["img", "w"], ["y"], strides=[2, 2])], [IMG], [out("y")],
         [floats("w", [4, 6, 2, 2])], kind=OpKind.COMPUTE),
    Case("BatchNormalization", [node("BatchNormalization", ["img", "s", "b", "m", "v"], ["y"])], [IMG], [out("y")],
         [floats("s", [4]), floats("b", [4], 1), floats("m", [4], 2), floats("v", [4], 3)]),
    Case("LayerNormalization", [node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1)], [X], [out("y")],
         [floats("s", [4]), floats("b", [4], 1)]),
    Case("RMSNormalization", [node("RMSNormalization", ["x", "s"], ["y"], axis=-1)], [X], [out("y")],
         [floats("s", [4])], opset=23),
    # onnxruntime's contrib op in the default domain: ONNX has no schema for it.
    Case("SimplifiedLayerNormalization", [node("SimplifiedLayerNormalization", ["x", "s"], ["y"], axis=-1)], [X],
         [out("y")], [floats("s", [4])]),
    *[Case(op, [node(op, ["x"], ["y"])], [X], [out("y")]) for op in UNARY],
    Case("Gelu", [node("Gelu", ["x"], ["y"])], [X], [out("y")], opset=20),
    Case("Not", [node("Not", ["xb"], ["y"])], [XB], [out("y", BOOL)]),
    *[Case(op, [node(op, ["x", "z"], ["y"])], [X], [out("y")], [floats("z", [3, 1])]) for op in BINARY],
    Case("And", [node("And", ["xb", "zb"], ["y"])], [XB, vi("zb", [4], BOOL)], [out("y", BOOL)]),
    Case("Or", [node("Or", ["xb", "zb"], ["y"])], [XB, vi("zb", [1, 3, 1], BOOL)], [out("y", BOOL)]),
    Case("Max-variadic", [node("Max", ["x", "z", "u"], ["y"])], [X], [out("y")], [floats("z", [4]), floats("u", [2, 1, 1])]),
    Case("Where", [node("Where", ["c", "x", "z"], ["y"])], [vi("c", [2, 1, 4], BOOL), X], [out("y")], [scalar("z", -1e9)]),
    Case("Cast", [node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16)], [X], [out("y", TensorProto.FLOAT16)]),
    Case("Dropout", [node("Dropout", ["x", "r"], ["y"])], [X], [out("y")], [scalar("r", 0.1)], opset=13),
    Case("Clip", [node("Clip", ["x", "lo", "hi"], ["y"])], [X], [out("y")], [scalar("lo", 0.0), scalar("hi", 6.0)]),
    Case("Softmax", [node("Softmax", ["x"], ["y"], axis=-1)], [X], [out("y")]),
    *[Case(f"{op}-opset13-attribute", [node(op, ["x"], ["y"], axes=[1], keepdims=0)], [X], [out("y")], opset=13)
      for op in ("ReduceMean", "ReduceMax")],
    # ReduceSum took its axes as an input from opset 13 on, the others from 18: attribute form at 11.
    Case("ReduceSum-opset11-attribute", [node("ReduceSum", ["x"], ["y"], axes=[1], keepdims=0)], [X], [out("y")], opset=11),
    *[Case(f"{op}-opset18-input", [node(op, ["x", "axes"], ["y"], keepdims=1)], [X], [out("y")], [ints("axes", [-1])],
           opset=18) for op in ("ReduceMean", "ReduceSum", "ReduceMax")],
    Case("MaxPool", [node("MaxPool", ["img"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], [IMG], [out("y")]),
    Case("AveragePool", [node("AveragePool", ["img"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], [IMG], [out("y")]),
    Case("GlobalAveragePool", [node("GlobalAveragePool", ["img"], ["y"])], [IMG], [out("y")]),
    Case("Reshape", [node("Reshape", ["x", "shape"], ["y"])], [X], [out("y")], [ints("shape", [6, 4])]),
    Case("Transpose", [node("Transpose", ["x"], ["y"], perm=[0, 2, 1])], [X], [out("y")]),
    Case("Flatten", [node("Flatten", ["img"], ["y"], axis=1)], [IMG], [out("y")]),
    Case("Squeeze", [node("Squeeze", ["s", "axes"], ["y"])], [vi("s", [2, 1, 4])], [out("y")], [ints("axes", [1])]),
    Case("Unsqueeze", [node("Unsqueeze", ["x", "axes"], ["y"])], [X], [out("y")], [ints("axes", [1])]),
    Case("Squeeze-opset11", [node("Squeeze", ["s"], ["y"], axes=[1])], [vi("s", [2, 1, 4])], [out("y")], opset=11),
    Case("Concat", [node("Concat", ["x", "z"], ["y"], axis=1)], [X, vi("z", [2, 5, 4])], [out("y")]),
    Case("Split-equal", [node("Split", ["s"], ["y0", "y1", "y2"], axis=1)], [vi("s", [2, 6])],
         [out("y0"), out("y1"), out("y2")], opset=13),
    Case("Split-sizes", [node("Split", ["s", "sizes"], ["y0", "y1"], axis=1)], [vi("s", [2, 6])], [out("y0"), out("y1")],
         [ints("sizes", [2, 4])], opset=13),
    Case("Split-opset18", [node("Split", ["s"], ["y0", "y1"], axis=1, num_outputs=2)], [vi("s", [2, 6])],
         [out("y0"), out("y1")], opset=18),
    Case("Slice", [node("Slice", ["x", "st", "en", "ax"], ["y"])], [X], [out("y")],
         [ints("st", [1]), ints("en", [3]), ints("ax", [1])]),
    Case("Gather-embedding", [node("Gather", ["emb", "ids"], ["y"], axis=0)], [vi("ids", [2, 3], I64)], [out("y")],
         [floats("emb", [10, 4])], kind=OpKind.COMPUTE),
    Case("Gather-activation", [node("Gather", ["x", "idx"], ["y"], axis=1)], [X, vi("idx", [2], I64)], [out("y")]),
    Case("GatherND", [node("GatherND", ["x", "idx"], ["y"])], [X, vi("idx", [5, 1], I64)], [out("y")]),
    Case("TopK", [node("TopK", ["x", "k"], ["v", "i"], axis=-1)], [X], [out("v"), out("i", I64)], [ints("k", [2])]),
    Case("Tile", [node("Tile", ["x", "rep"], ["y"])], [X], [out("y")], [ints("rep", [1, 2, 1])]),
    Case("Expand", [node("Expand", ["e", "shape"], ["y"])], [vi("e", [3, 1])], [out("y")], [ints("shape", [2, 3, 4])]),
    # not in the list, but the sample MoE layer's router uses ScatterElements
    Case("ScatterElements", [node("ScatterElements", ["x", "idx", "upd"], ["y"], axis=-1)],
         [X, vi("idx", [2, 3, 2], I64), vi("upd", [2, 3, 2])], [out("y")]),
    Case("ScatterND", [node("ScatterND", ["x", "idx", "upd"], ["y"])],
         [X, vi("idx", [5, 1], I64), vi("upd", [5, 3, 4])], [out("y")]),
    Case("Shape", [node("Shape", ["x"], ["y"])], [X], [out("y", I64)], kind=OpKind.STATIC),
    Case("ConstantOfShape", [node("ConstantOfShape", ["shape"], ["y"])], [], [out("y")], [ints("shape", [2, 3])],
         kind=OpKind.STATIC),
    Case("Range", [node("Range", ["a", "b", "c"], ["y"])], [], [out("y", I64)],
         [ints("a", 0), ints("b", 10), ints("c", 2)], kind=OpKind.STATIC),
    Case("Einsum", [node("Einsum", ["x", "z"], ["y"], equation="bij,bjk->bik")], [X], [out("y")],
         [floats("z", [2, 4, 5])], kind=OpKind.COMPUTE),
    Case("Identity", [node("Identity", ["x"], ["y"])], [X], [out("y")]),
    Case("Constant", [node("Constant", [], ["y"], value=numpy_helper.from_array(np.ones((2, 2), np.float32)))], [],
         [out("y")], kind=OpKind.STATIC),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_listed_op_types_are_not_opaque(case):
    model = make(case.nodes, case.inputs, case.outputs, case.inits, case.opset, value_info=case.value_info)
    graph = import_model(model)
    assert graph.unsupported_op_types == []
    assert graph.warnings == []
    op = graph.operators["n"]
    assert op.op_type == case.nodes[-1].op_type
    assert op.kind is case.kind


def test_unknown_op_type_is_opaque_and_reported():
    # ONNX knows no schema for these, so the outputs' shapes come from value_info.
    nodes = [
        node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Frobnicate", ["r"], ["f"], name="frob", domain="com.example"),
        node("Twiddle", ["f"], ["y"], name="twiddle"),
    ]
    model = make(nodes, [X], [out("y")], value_info=[vi("f", [2, 3, 4]), vi("y", [2, 3, 4])])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    graph = import_model(model)
    assert graph.unsupported_op_types == ["Twiddle", "com.example.Frobnicate"]
    assert graph.operators["frob"].kind is OpKind.OPAQUE
    assert graph.operators["twiddle"].kind is OpKind.OPAQUE
    assert graph.operators["relu"].kind is OpKind.FOLLOW
    assert any("Twiddle" in w and "com.example.Frobnicate" in w for w in graph.warnings)
    # an opaque operator can only be replicated: none of its dims may be split
    assert graph.operators["twiddle"].splittable_dims() == []


def test_elementwise_broadcasting_axes():
    # [2,1,4] - [3,1] -> [2,3,4]: a's middle axis and b's last axis are broadcast (size 1)
    model = make([node("Sub", ["a", "b"], ["y"])], [vi("a", [2, 1, 4]), vi("b", [3, 1])], [out("y")])
    op = import_model(model).operators["n"]
    assert op.dims == {"d0": 2, "d1": 3, "d2": 4}
    assert op.inputs[0].axes == (("d0",), (), ("d2",))
    assert op.inputs[1].axes == (("d1",), ())
    assert op.outputs[0].axes == (("d0",), ("d1",), ("d2",))
    assert op.flops == 2 * 3 * 4  # one FLOP per output element


# ---- FLOPs, by hand ------------------------------------------------------------------------------

def _single_op(nodes, inputs, inits=(), opset=17):
    outputs = [out(o) for o in nodes[-1].output]
    graph = import_model(make(nodes, inputs, outputs, inits, opset))
    assert graph.unsupported_op_types == [] and graph.warnings == []
    return graph.operators["n"]


def test_flops_matmul_batched_with_broadcast():
    # [2,3,4,5] x [3,5,6] -> [2,3,4,6]: B's batch (3) broadcasts against A's (2,3);
    # 2 * (2*3 batches) * m=4 * n=6 * k=5 = 1440
    op = _single_op([node("MatMul", ["a", "b"], ["y"])], [vi("a", [2, 3, 4, 5]), vi("b", [3, 5, 6])])
    assert op.flops == 1440
    assert op.dims == {"b0": 2, "b1": 3, "m": 4, "n": 6, "k": 5}
    assert op.inputs[1].axes == (("b1",), ("k",), ("n",))  # no b0: a broadcast batch axis
    assert op.reduction_dims == {"k"}


def test_flops_matmul_vector():
    # [4,5] x [5] -> [4]: 2 * 4 * 5 = 40
    op = _single_op([node("MatMul", ["a", "b"], ["y"])], [vi("a", [4, 5]), vi("b", [5])])
    assert op.flops == 40


def test_flops_gemm_transposed():
    # A [4,8], B [16,8] with transB: m=4, n=16, k=8: 2*4*16*8 = 1024
    op = _single_op([node("Gemm", ["a", "w", "c"], ["y"], transB=1)], [vi("a", [4, 8])],
                    [floats("w", [16, 8]), floats("c", [16])])
    assert op.flops == 1024
    assert op.inputs[1].axes == (("n",), ("k",))
    # transA: A stored [8,4] (k, m): same product, 2*4*16*8 = 1024
    op = _single_op([node("Gemm", ["a", "w"], ["y"], transA=1, transB=1)], [vi("a", [8, 4])], [floats("w", [16, 8])])
    assert op.flops == 1024
    assert op.dims == {"m": 4, "n": 16, "k": 8}


def test_flops_conv_grouped():
    # X [2,8,8,8], W [16,4,3,3], 2 groups, pad 1 -> Y [2,16,8,8];
    # each output sums IC/groups * 3*3 = 36 products: 2 * (2*16*8*8) * 36 = 147456
    op = _single_op([node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])], [vi("x", [2, 8, 8, 8])],
                    [floats("w", [16, 4, 3, 3])])
    assert op.flops == 147456
    assert op.dims["g"] == 2 and op.dims["oc"] == 8 and op.dims["ic"] == 4


def test_flops_conv_depthwise():
    # X [2,8,8,8], W [8,1,3,3], 8 groups, pad 1 -> Y [2,8,8,8]: 2 * (2*8*8*8) * 9 = 18432
    op = _single_op([node("Conv", ["x", "w"], ["y"], group=8, pads=[1, 1, 1, 1])], [vi("x", [2, 8, 8, 8])],
                    [floats("w", [8, 1, 3, 3])])
    assert op.flops == 18432


def test_flops_conv_strided():
    # X [1,3,9,9], W [4,3,3,3], stride 2, no pad: (9-3)/2 + 1 = 4 -> Y [1,4,4,4];
    # 2 * (1*4*4*4) * (3*3*3) = 3456
    op = _single_op([node("Conv", ["x", "w"], ["y"], strides=[2, 2])], [vi("x", [1, 3, 9, 9])], [floats("w", [4, 3, 3, 3])])
    assert op.flops == 3456
    assert (op.dims["o0"], op.dims["o1"]) == (4, 4)


def test_flops_conv_1d_and_3d():
    # 1-D: X [2,4,16], W [8,4,3] -> 14 outputs: 2 * (2*8*14) * (4*3) = 5376
    op = _single_op([node("Conv", ["x", "w"], ["y"])], [vi("x", [2, 4, 16])], [floats("w", [8, 4, 3])])
    assert op.flops == 5376
    # 3-D: X [1,2,4,4,4], W [4,2,3,3,3], pad 1 -> [1,4,4,4,4]: 2 * (1*4*64) * (2*27) = 27648
    op = _single_op([node("Conv", ["x", "w"], ["y"], pads=[1] * 6)], [vi("x", [1, 2, 4, 4, 4])], [floats("w", [4, 2, 3, 3, 3])])
    assert op.flops == 27648


def test_flops_conv_transpose():
    # X [2,8,4,4], W [8,4,2,2] (IC, OC/group, kh, kw), stride 2 -> Y [2,4,8,8];
    # every input element meets OC*kh*kw = 16 weights: 2 * (2*8*4*4) * 16 = 8192
    op = _single_op([node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])], [vi("x", [2, 8, 4, 4])],
                    [floats("w", [8, 4, 2, 2])])
    assert op.flops == 8192
    # grouped: X [1,4,3,3], W [4,1,3,3], 2 groups (OC = 2): 2 * (1*4*3*3) * (1*3*3) = 648
    op = _single_op([node("ConvTranspose", ["x", "w"], ["y"], group=2)], [vi("x", [1, 4, 3, 3])],
                    [floats("w", [4, 1, 3, 3])])
    assert op.flops == 648


def test_flops_einsum():
    # bij,bjk->bik with b=2, i=3, j=4, k=5: 2 * 2*3*4*5 = 240, j reduced
    op = _single_op([node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik")], [vi("a", [2, 3, 4]), vi("b", [2, 4, 5])])
    assert op.flops == 240
    assert op.reduction_dims == {"j"}
    # with an ellipsis and implicit output: ...ij,jk over [2,3,4] x [4,5]: 2 * 2*3*4*5 = 240
    op = _single_op([node("Einsum", ["a", "b"], ["y"], equation="...ij,jk")], [vi("a", [2, 3, 4]), vi("b", [4, 5])])
    assert op.flops == 240


# ---- parameters ----------------------------------------------------------------------------------

def test_shared_initializer_counted_once_and_constants_are_not_parameters():
    nodes = [
        node("MatMul", ["x", "w"], ["h1"], name="mm1"),
        node("MatMul", ["h1", "w"], ["h2"], name="mm2"),  # the same weight, shared
        node("Add", ["h2", "b"], ["h3"], name="bias"),
        node("Constant", [], ["c"], name="const", value=numpy_helper.from_array(np.ones(4, np.float32))),
        node("Mul", ["h3", "c"], ["h4"], name="scale"),
        node("Mul", ["h4", "half"], ["h5"], name="half_mul"),
        node("Reshape", ["h5", "shape"], ["y"], name="reshape"),
    ]
    inits = [floats("w", [4, 4]), floats("b", [4]), scalar("half", 0.5), ints("shape", [6, 4])]
    graph = import_model(make(nodes, [X], [out("y")], inits))
    # w 4*4 = 16 (once, although two MatMuls read it) + b 4 = 20; the Constant's 4 floats, the
    # rank-0 float 0.5 and the int64 reshape target are constants
    assert graph.parameter_count == 20
    assert graph.tensors["w"].role is TensorRole.PARAMETER
    assert graph.tensors["c"].role is TensorRole.CONSTANT
    assert graph.tensors["half"].role is TensorRole.CONSTANT
    assert graph.tensors["shape"].role is TensorRole.CONSTANT
    assert graph.parameter_bytes == 20 * 4


def test_float16_initializers_are_parameters_and_int_initializers_are_not():
    w16 = numpy_helper.from_array(np.ones((4, 3), np.float16) * np.arange(3, dtype=np.float16), "w16")
    table = numpy_helper.from_array(np.arange(40, dtype=np.int32).reshape(10, 4), "table")
    nodes = [node("Cast", ["x"], ["x16"], name="cast", to=TensorProto.FLOAT16), node("MatMul", ["x16", "w16"], ["y"])]
    graph = import_model(make(nodes, [X], [out("y", TensorProto.FLOAT16)], [w16, table]))
    assert graph.parameter_count == 12  # 4*3 float16; the int32 table is no parameter
    assert graph.parameter_bytes == 24  # 12 * 2 bytes
    assert graph.tensors["table"].role is TensorRole.CONSTANT


def test_initializers_listed_as_graph_inputs_are_parameters():
    # IR version 3 files list every initializer among the graph inputs as well
    model = make([node("MatMul", ["x", "w"], ["y"])], [X, vi("w", [4, 5])], [out("y")], [floats("w", [4, 5])])
    model.ir_version = 3
    graph = import_model(model)
    assert graph.inputs == ["x"]
    assert graph.tensors["w"].role is TensorRole.PARAMETER
    assert graph.parameter_count == 20
    assert symbolic_dims(model) == []


# ---- factor tracking: Megatron's heads split flows through Split, Reshape, Transpose -------------

def _fused_qkv_model():
    """MatMul [b,s,h] x [h,3h] -> Split in 3 -> Reshape [b,s,heads,hd] -> Transpose -> Q K^T.

    h = 24, heads = 4, head_dim = 6, s = 5, batch symbolic.
    """
    b, s, h, heads, hd = "batch", 5, 24, 4, 6
    nodes = [
        node("MatMul", ["x", "w_qkv"], ["qkv"], name="qkv"),
        node("Split", ["qkv"], ["q", "k", "v"], name="split", axis=-1),
        node("Reshape", ["q", "heads_shape"], ["q4"], name="reshape_q"),
        node("Reshape", ["k", "heads_shape"], ["k4"], name="reshape_k"),
        node("Reshape", ["v", "heads_shape"], ["v4"], name="reshape_v"),
        node("Transpose", ["q4"], ["qt"], name="transpose_q", perm=[0, 2, 1, 3]),
        node("Transpose", ["k4"], ["kt"], name="transpose_k", perm=[0, 2, 3, 1]),
        node("Transpose", ["v4"], ["vt"], name="transpose_v", perm=[0, 2, 1, 3]),
        node("MatMul", ["qt", "kt"], ["scores"], name="scores"),
        node("Softmax", ["scores"], ["probs"], name="softmax", axis=-1),
        node("MatMul", ["probs", "vt"], ["ctx"], name="context"),
    ]
    # the reshape target keeps batch and sequence with 0 ("copy this axis")
    inits = [floats("w_qkv", [h, 3 * h]), ints("heads_shape", [0, 0, heads, hd])]
    return make(nodes, [vi("x", [b, s, h])], [out("ctx")], inits, opset=13)


def test_fused_qkv_heads_factor_flows_to_the_matmul():
    graph = import_model(_fused_qkv_model(), {"batch": 2})
    qkv = graph.operators["qkv"]
    # n = 3h = 72 = 3 (q, k, v) x 4 heads x 6 head_dim
    assert qkv.dims["n"] == 72
    assert qkv.dim_factors["n"] == (3, 4, 6)
    assert graph.tensors["qkv"].axis_factors == ((2,), (5,), (3, 4, 6))
    assert graph.tensors["q"].axis_factors == ((2,), (5,), (4, 6))
    # the attention products are batched over (batch, heads)
    scores = graph.operators["scores"]
    assert scores.dims == {"b0": 2, "b1": 4, "m": 5, "n": 5, "k": 6}
    # 2 * (2*4) * 5*5*6 = 2400 for each attention product; 2 * 2*5*72*24 = 34560 for the projection
    assert scores.flops == 2400 and graph.operators["context"].flops == 2400
    assert qkv.flops == 34560


def test_fused_qkv_batch_dim_found_for_every_operator():
    graph = import_model(_fused_qkv_model(), {"batch": 2})
    batch = graph.batch_dims()
    planned = [n for n in graph.planned_operators() if graph.operators[n].inputs]
    assert sorted(planned) == sorted(["qkv", "split", "reshape_q", "reshape_k", "reshape_v", "transpose_q",
                                      "transpose_k", "transpose_v", "scores", "softmax", "context"])
    assert all(batch[n] is not None for n in planned), batch
    assert batch["qkv"] == "b0" and batch["scores"] == "b0" and batch["context"] == "b0"
    # the batch dim is, in each operator, the one that indexes the batch axis of its data input
    for n in planned:
        op = graph.operators[n]
        assert op.dims[batch[n]] == 2


def test_reshape_merged_rows_factor_into_batch_and_sequence():
    # Gemm on [b*s, h] = [6, 8], then Reshape to [b, s, h] = [2, 3, 8]
    nodes = [
        node("Gemm", ["x2", "w"], ["g"], name="gemm"),
        node("Reshape", ["g", "shape"], ["y"], name="n"),
    ]
    graph = import_model(make(nodes, [vi("x2", [6, 8])], [out("y")], [floats("w", [8, 8]), ints("shape", [2, 3, 8])]))
    reshape = graph.operators["n"]
    first = reshape.inputs[0].axes[0]
    assert [reshape.dims[d] for d in first] == [2, 3]  # the merged axis is (b, s)
    assert graph.tensors["g"].axis_factors[0] == (2, 3)
    assert graph.operators["gemm"].factors_of("m") == (2, 3)


# ---- real-export patterns --------------------------------------------------------------------------

def test_shape_arithmetic_is_folded_through_div():
    """TorchScript's attention computes head_dim = hidden // heads with Div: ONNX's own data
    propagation stops there, the importer does not."""
    nodes = [
        node("Shape", ["x"], ["shp"], name="shape"),
        node("Gather", ["shp", "i2"], ["hidden"], name="hidden", axis=0),
        node("Div", ["hidden", "heads"], ["hd"], name="head_dim"),
        node("Unsqueeze", ["hd", "ax0"], ["hd1"], name="hd1"),
        node("Concat", ["lead", "hd1"], ["target"], name="target", axis=0),
        node("Reshape", ["x", "target"], ["y"], name="n"),
    ]
    inits = [ints("i2", 2), ints("heads", 2), ints("ax0", [0]), ints("lead", [2, 3, 2])]
    graph = import_model(make(nodes, [X], [out("y")], inits))
    # x [2,3,4], head_dim = 4 // 2 = 2 -> y [2,3,2,2]
    assert graph.tensors["y"].shape == (2, 3, 2, 2)
    assert graph.operators["n"].kind is OpKind.FOLLOW
    assert graph.warnings == []


def test_nodes_out_of_topological_order_are_sorted():
    nodes = [node("Relu", ["h"], ["y"], name="second"), node("Neg", ["x"], ["h"], name="first")]
    graph = import_model(make(nodes, [X], [out("y")]))
    assert graph.topological_order() == ["first", "second"]


def test_exporter_value_info_is_used_when_inference_cannot():
    # a contrib op ONNX has no schema for; value_info gives the output's shape
    nodes = [helper.make_node("FusedThing", ["x"], ["f"], name="fused", domain="com.microsoft"),
             node("Relu", ["f"], ["y"])]
    model = make(nodes, [X], [out("y")], value_info=[vi("f", [2, 3, 7])])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    graph = import_model(model)
    assert graph.tensors["y"].shape == (2, 3, 7)


# ---- symbolic dimensions ---------------------------------------------------------------------------

def _symbolic_model():
    nodes = [node("MatMul", ["x", "w"], ["y"])]
    return make(nodes, [vi("x", ["batch", "seq", 8])], [out("y")], [floats("w", [8, 4])])


def test_unbound_dims_are_listed_and_taken_as_one():
    model = _symbolic_model()
    assert symbolic_dims(model) == ["batch", "seq"]
    graph = import_model(model)
    assert graph.unbound_dims == ["batch", "seq"]
    assert graph.operators["n"].flops == 2 * 1 * 1 * 4 * 8  # batch = seq = 1: 64
    with pytest.raises(ModelImportError) as err:
        require_bound(graph)
    message = str(err.value)
    assert "batch" in message and "seq" in message and "--bind batch=" in message and "--bind seq=" in message


def test_bound_dims():
    graph = import_model(_symbolic_model(), {"batch": 3, "seq": 7})
    assert graph.unbound_dims == []
    require_bound(graph)
    assert graph.operators["n"].flops == 2 * 3 * 7 * 4 * 8  # 1344
    partly = import_model(_symbolic_model(), {"batch": 3})
    assert partly.unbound_dims == ["seq"]


def test_binding_an_unknown_name_is_an_error():
    with pytest.raises(ModelImportError) as err:
        import_model(_symbolic_model(), {"batch": 2, "sequence": 128})
    message = str(err.value)
    assert "sequence" in message and "batch, seq" in message


@pytest.mark.parametrize("value", [0, -4, True, 2.5, "32", None])
def test_binding_must_be_a_positive_integer(value):
    with pytest.raises(ModelImportError) as err:
        import_model(_symbolic_model(), {"batch": value})
    assert "batch" in str(err.value) and "positive integer" in str(err.value)


def test_binding_accepts_numpy_integers():
    graph = import_model(_symbolic_model(), {"batch": np.int64(2), "seq": 3})
    assert graph.tensors["y"].shape == (2, 3, 4)


def test_fixed_model_has_no_symbolic_dims_to_bind():
    model = make([node("Relu", ["x"], ["y"])], [X], [out("y")])
    with pytest.raises(ModelImportError) as err:
        import_model(model, {"seq": 2})  # 'batch' re-batches a static export (tests/model/test_rebatch.py)
    assert "seq" in str(err.value) and "fixed" in str(err.value)


# ---- bad input: one exception type, a message that says what to do ------------------------------

def _small_model_bytes() -> bytes:
    nodes = [node("MatMul", ["x", "w"], ["h"], name="mm"), node("Relu", ["h"], ["r"], name="relu"),
             node("Reshape", ["r", "shape"], ["y"], name="reshape")]
    model = make(nodes, [vi("x", ["batch", 3, 4])], [out("y")], [floats("w", [4, 6]), ints("shape", [-1, 6])])
    return model.SerializeToString()


def _error(source, bindings=None) -> str:
    with pytest.raises(ModelImportError) as err:
        import_model(source, bindings)
    return str(err.value)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    message = _error(path)
    assert "empty" in message and "0 bytes" in message
    assert "empty" in _error(b"")


def test_missing_file(tmp_path):
    message = _error(tmp_path / "nope.onnx")
    assert "not found" in message and "nope.onnx" in message


def test_directory_is_not_a_model(tmp_path):
    assert "is not a regular file: it is a directory" in _error(tmp_path)


def test_random_bytes(tmp_path):
    path = tmp_path / "random.onnx"
    path.write_bytes(np.random.default_rng(1).bytes(2000))
    message = _error(path)
    assert "ONNX" in message and str(path) in message


def test_truncated_model(tmp_path):
    data = _small_model_bytes()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    message = _error(path)
    assert "not a valid ONNX model" in message and "truncated" in message


def test_text_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("This is not a model.\nname,value\nbatch,32\n")
    message = _error(path)
    assert "ONNX" in message


def test_valid_protobuf_that_is_not_a_model():
    # a GraphProto or a NodeProto parse as a ModelProto with unknown fields, no IR version, no graph
    graph = helper.make_graph([node("Relu", ["x"], ["y"])], "g", [X], [out("y")])
    for data in (graph.SerializeToString(), node("Relu", ["x"], ["y"]).SerializeToString()):
        message = _error(data)
        assert "not an ONNX model" in message and "no IR version or no graph" in message
    # a TensorProto's fields clash with ModelProto's wire types
    tensor = numpy_helper.from_array(np.arange(12, dtype=np.float32), "t")
    assert "not a valid ONNX model" in _error(tensor.SerializeToString())


def test_empty_graph():
    model = make([], [X], [out("x")])
    message = _error(model.SerializeToString())
    assert "empty graph" in message
    assert "empty graph" in _error(model)  # a ModelProto is checked as well


def test_cycle():
    nodes = [node("Relu", ["x", "b"], ["a"], name="first"), node("Neg", ["a"], ["b"], name="second")]
    # Relu takes one input; use Add so that each node reads the other's output
    nodes = [node("Add", ["x", "b"], ["a"], name="first"), node("Neg", ["a"], ["b"], name="second")]
    message = _error(make(nodes, [X], [out("b")]))
    assert "cycle" in message and "'first'" in message and "'second'" in message


def test_self_loop():
    message = _error(make([node("Add", ["x", "y"], ["y"], name="loop")], [X], [out("y")]))
    assert "cycle" in message and "'loop'" in message


def test_undefined_tensor():
    message = _error(make([node("Add", ["x", "ghost"], ["y"], name="adder")], [X], [out("y")]))
    assert "'adder'" in message and "'ghost'" in message and "not the output of any node" in message


def test_tensor_written_twice():
    nodes = [node("Relu", ["x"], ["y"], name="a"), node("Neg", ["x"], ["y"], name="b")]
    message = _error(make(nodes, [X], [out("y")]))
    assert "'y'" in message and "'a'" in message and "'b'" in message


def test_unresolvable_shape_names_the_node():
    # the reshape target is a graph input: its value, hence y's shape, is known only at run time
    nodes = [node("Reshape", ["x", "target"], ["y"], name="dynamic_reshape"), node("Relu", ["y"], ["z"], name="relu")]
    message = _error(make(nodes, [X, vi("target", [3], I64)], [out("z")]))
    assert "'dynamic_reshape'" in message and "'y'" in message and "value_info" in message


def test_unknown_op_without_shapes_names_the_node():
    nodes = [node("Mystery", ["x"], ["m"], name="mystery"), node("Relu", ["m"], ["y"], name="relu")]
    message = _error(make(nodes, [X], [out("y")]))
    assert "'mystery'" in message and "Mystery" in message


def test_malformed_node_is_opaque_with_a_warning():
    # a Gemm with a single input does not match its schema
    nodes = [node("Gemm", ["a"], ["y"], name="n")]
    model = make(nodes, [vi("a", [4, 8])], [out("y")], value_info=[vi("y", [4, 8])])
    graph = import_model(model)
    assert graph.operators["n"].kind is OpKind.OPAQUE
    assert any("'n'" in w and "Gemm" in w for w in graph.warnings)


# ---- external data: never opened --------------------------------------------------------------------

def _external_model(location: str) -> onnx.ModelProto:
    """A MatMul whose 4x6 float weight lives in an external file at ``location``."""
    w = TensorProto(name="w", data_type=F, dims=[4, 6], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * 24))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    return make([node("MatMul", ["x", "w"], ["y"])], [X], [out("y")], [w])


def test_external_data_imports_without_the_data_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(_external_model("model.weights.bin").SerializeToString())
    graph = import_model(path)
    assert graph.parameter_count == 24  # 4*6, from the dims alone
    assert graph.operators["n"].flops == 2 * 2 * 3 * 6 * 4  # [2,3,4] x [4,6]: 288
    assert not (tmp_path / "model.weights.bin").exists()


_OPEN_AUDIT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[2])
from planner.onnx.importer import import_model
import onnx.reference.ops  # lazily imported by the importer: load it before auditing
opened = []
def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        opened.append(os.fsdecode(args[0]))
    elif event == "os.listdir":
        opened.append(os.fsdecode(args[0]) if args and args[0] is not None else ".")
sys.addaudithook(hook)
graph = import_model(sys.argv[1])
print(json.dumps({"opened": opened, "parameters": graph.parameter_count}))
"""


def _run_import_auditing_opens(model_path: Path) -> dict:
    """Import in a fresh interpreter that records every file it opens.

    Python-level opens are caught by an audit hook; a location that is a FIFO also catches
    opens from C++ code (onnx's), since opening a FIFO for reading blocks until the timeout.
    """
    proc = subprocess.run([sys.executable, "-c", _OPEN_AUDIT, str(model_path), str(REPO)],
                          capture_output=True, text=True, timeout=120, cwd=model_path.parent)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    prefixes = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, str(REPO / "planner"))})
    result["foreign"] = [p for p in result["opened"]
                         if os.path.realpath(p) != os.path.realpath(model_path)
                         and not os.path.realpath(p).startswith(prefixes)]
    return result


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_external_data_location_is_never_opened(tmp_path):
    fifo = tmp_path / "weights.bin"
    os.mkfifo(fifo)  # opening it for reading would block: the import would time out
    path = tmp_path / "model.onnx"
    path.write_bytes(_external_model("weights.bin").SerializeToString())
    result = _run_import_auditing_opens(path)
    assert result["parameters"] == 24
    assert result["foreign"] == []


def test_absolute_external_location_is_never_opened(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(_external_model("/etc/passwd").SerializeToString())
    result = _run_import_auditing_opens(path)
    assert result["parameters"] == 24
    assert not any("passwd" in p for p in result["opened"])
    assert result["foreign"] == []


def test_external_location_escaping_the_folder_is_never_opened(tmp_path, monkeypatch):
    import builtins
    import io

    real_open = builtins.open
    opened = []

    def spy(file, *args, **kwargs):
        opened.append(os.fspath(file) if isinstance(file, (str, bytes, os.PathLike)) else file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    data = _external_model("../../../../etc/shadow").SerializeToString()
    graph = import_model(data)  # from bytes: no file at all
    assert graph.parameter_count == 24
    assert not any("shadow" in str(p) for p in opened)


# ---- fuzzing: corrupted bytes give a graph or ModelImportError, nothing else ----------------------

# Two seeds: a MatMul -> Relu -> Reshape chain with a symbolic batch, and the attention block
# above (Split, Reshape with 0s, Transpose, batched MatMul, Softmax).
SEEDS = [_small_model_bytes(), _fused_qkv_model().SerializeToString()]


def _import_or_error(data: bytes) -> None:
    for bindings in (None, {"batch": 2}):
        try:
            graph = import_model(data, bindings)
        except ModelImportError as exc:
            assert str(exc)
        else:
            graph.summary()  # the totals are computable too


@st.composite
def flipped(draw):
    seed = draw(st.sampled_from(SEEDS))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(seed) - 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flipped())
def test_fuzz_bit_flips(data):
    _import_or_error(data)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SEEDS), st.floats(0, 1))
def test_fuzz_truncation(seed, fraction):
    _import_or_error(seed[: int(len(seed) * fraction)])


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    _import_or_error(data)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.floats(0, 1), st.binary(min_size=1, max_size=16))
def test_fuzz_spliced_bytes(seed, fraction, junk):
    at = int(len(seed) * fraction)
    _import_or_error(seed[:at] + junk + seed[at:])
