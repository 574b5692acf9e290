"""One small ONNX model per operator rule of the importer, built with onnx.helper.

Each case is a single node (two for the rules that need a constant operand) on data inputs, so the
operator is planned (not static shape arithmetic) and the rule that the importer looks up for its
op type decides its dims, axes and FLOPs. ``CASES`` holds (label, model) pairs; the labels name
the variant (``Softmax_opset11``, ``Gemm_transB``, ...). Used by ``bench/import_digest.py`` (the
graph digest before and after a refactoring of the importer) and ``tests/onnx/test_onnx_rules.py``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def _model(label, nodes, inputs, outputs, inits=(), opset=17, value_info=()):
    graph = helper.make_graph(nodes, label, inputs, outputs, list(inits), value_info=list(value_info))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def _unary(op, shape=(2, 3, 4), out=None, **attrs):
    """op(x) with x a data input; ``out`` the output shape when it differs (None: inferred)."""
    return [helper.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)], [_vi("x", list(shape))], \
        [_vi("y", None if out is None else list(out))], []


def _binary(op, a=(2, 3, 4), b=(3, 4), elem=F):
    return [helper.make_node(op, ["a", "b"], ["y"], name=op.lower())], [_vi("a", list(a), elem), _vi("b", list(b), elem)], \
        [_vi("y", None)], []


def _elementwise_cases():
    unary = ["Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan",
             "Sinh", "Cosh", "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid",
             "HardSwish", "Softplus", "Softsign", "Tanh", "Erf", "Floor", "Ceil", "Round", "Sign", "IsNaN",
             "IsInf", "Mish", "ThresholdedRelu", "Cast", "Identity", "Dropout", "Not"]
    cases = {op: _unary(op, **({"to": F} if op == "Cast" else {})) for op in unary if op != "Not"}
    cases["Mish"] += (18,)
    cases["Not"] = ([helper.make_node("Not", ["x"], ["y"], name="not")], [_vi("x", [2, 3], TensorProto.BOOL)],
                    [_vi("y", None)], [])
    for op in ("Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Sum", "Mean", "PRelu", "Mod", "Equal",
               "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "CastLike"):
        cases[op] = _binary(op)
    for op in ("And", "Or", "Xor"):
        cases[op] = _binary(op, elem=TensorProto.BOOL)
    cases["BitShift"] = ([helper.make_node("BitShift", ["a", "b"], ["y"], name="bs", direction="LEFT")],
                         [_vi("a", [2, 3], TensorProto.UINT32), _vi("b", [2, 3], TensorProto.UINT32)], [_vi("y", None)], [])
    cases["Where"] = ([helper.make_node("Where", ["c", "a", "b"], ["y"], name="where")],
                      [_vi("c", [3, 1], TensorProto.BOOL), _vi("a", [2, 3, 4]), _vi("b", [1, 4])], [_vi("y", None)], [])
    cases["Clip"] = ([helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")], [_vi("x", [2, 3])],
                     [_vi("y", None)], [numpy_helper.from_array(np.array(0, np.float32), "lo"),
                                        numpy_helper.from_array(np.array(6, np.float32), "hi")])
    cases["Trilu"] = ([helper.make_node("Trilu", ["x", "k"], ["y"], name="trilu")], [_vi("x", [2, 4, 4])],
                      [_vi("y", None)], [_const("k", 1)])
    cases["Expand"] = ([helper.make_node("Expand", ["x", "s"], ["y"], name="expand")], [_vi("x", [3, 1])],
                       [_vi("y", None)], [_const("s", [2, 3, 4])])
    cases["QuantizeLinear"] = ([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q")],
                               [_vi("x", [2, 3])], [_vi("y", None)],
                               [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                                numpy_helper.from_array(np.array(0, np.uint8), "z")])
    cases["DequantizeLinear"] = ([helper.make_node("DequantizeLinear", ["x", "s"], ["y"], name="dq")],
                                 [_vi("x", [2, 3], TensorProto.INT8)], [_vi("y", None)],
                                 [numpy_helper.from_array(np.array(0.1, np.float32), "s")])
    for op in ("FastGelu", "BiasGelu", "QuickGelu"):  # onnxruntime contrib ops, no schema: shape kept
        cases[op] = ([helper.make_node(op, ["x"], ["y"], name=op.lower(), domain="com.microsoft")],
                     [_vi("x", [2, 3, 4])], [_vi("y", None)], [])
    return cases


def _compute_cases():
    w = numpy_helper.from_array(np.zeros((4, 5), np.float32), "w")
    return {
        "MatMul": _binary("MatMul", (2, 3, 4), (4, 5)),
        "MatMul_batched": _binary("MatMul", (2, 1, 3, 4), (6, 4, 5)),
        "MatMul_vector": _binary("MatMul", (3, 4), (4,)),
        "MatMul_weight": ([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [_vi("x", [3, 4])],
                          [_vi("y", None)], [w]),
        "Gemm": ([helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="gemm")],
                 [_vi("a", [3, 4]), _vi("b", [4, 5]), _vi("c", [5])], [_vi("y", None)], []),
        "Gemm_transA_transB": ([helper.make_node("Gemm", ["a", "b"], ["y"], name="gemm", transA=1, transB=1)],
                               [_vi("a", [4, 3]), _vi("b", [5, 4])], [_vi("y", None)], []),
        "Conv": ([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                   strides=[2, 2])],
                 [_vi("x", [2, 4, 8, 8]), _vi("w", [6, 4, 3, 3]), _vi("b", [6])], [_vi("y", None)], []),
        "Conv_grouped_dilated": ([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=2, dilations=[2])],
                                 [_vi("x", [2, 4, 9]), _vi("w", [6, 2, 3])], [_vi("y", None)], []),
        "ConvTranspose": ([helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="convt", strides=[2, 2])],
                          [_vi("x", [2, 4, 5, 5]), _vi("w", [4, 3, 3, 3]), _vi("b", [3])], [_vi("y", None)], []),
        "ConvTranspose_grouped": ([helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="convt", group=2)],
                                  [_vi("x", [2, 4, 5]), _vi("w", [4, 3, 2])], [_vi("y", None)], []),
        "Einsum": ([helper.make_node("Einsum", ["a", "b"], ["y"], name="einsum", equation="bij,bjk->bik")],
                   [_vi("a", [2, 3, 4]), _vi("b", [2, 4, 5])], [_vi("y", None)], []),
        "Einsum_ellipsis_implicit": ([helper.make_node("Einsum", ["a", "b"], ["y"], name="einsum", equation="...ij,jk")],
                                     [_vi("a", [2, 3, 4]), _vi("b", [4, 5])], [_vi("y", None)], []),
        "Einsum_unary": ([helper.make_node("Einsum", ["a"], ["y"], name="einsum", equation="ij->j")],
                         [_vi("a", [3, 4])], [_vi("y", None)], []),
    }


def _norm_cases():
    scale = [_vi("g", [4]), _vi("b", [4])]
    ch = [_vi("s", [3]), _vi("bb", [3])]
    return {
        "LayerNormalization": ([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="ln")],
                               [_vi("x", [2, 3, 4])] + scale, [_vi("y", None)], []),
        "LayerNormalization_axis1": ([helper.make_node("LayerNormalization", ["x", "g2"], ["y"], name="ln", axis=1)],
                                     [_vi("x", [2, 3, 4]), _vi("g2", [3, 4])], [_vi("y", None)], []),
        "SimplifiedLayerNormalization": ([helper.make_node("SimplifiedLayerNormalization", ["x", "g"], ["y"], name="sln")],
                                         [_vi("x", [2, 3, 4]), _vi("g", [4])], [_vi("y", None)], []),
        "RMSNormalization": ([helper.make_node("RMSNormalization", ["x", "g"], ["y"], name="rms")],
                             [_vi("x", [2, 3, 4]), _vi("g", [4])], [_vi("y", [2, 3, 4])], []),
        "BatchNormalization": ([helper.make_node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["y"], name="bn")],
                               [_vi("x", [2, 3, 5, 5])] + ch + [_vi("m", [3]), _vi("v", [3])], [_vi("y", None)], []),
        "InstanceNormalization": ([helper.make_node("InstanceNormalization", ["x", "s", "bb"], ["y"], name="in")],
                                  [_vi("x", [2, 3, 5, 5])] + ch, [_vi("y", None)], []),
        "GroupNormalization": ([helper.make_node("GroupNormalization", ["x", "s", "bb"], ["y"], name="gn", num_groups=3)],
                               [_vi("x", [2, 3, 5, 5])] + ch, [_vi("y", None)], [], 21, [_vi("y", [2, 3, 5, 5])]),
        "Softmax": _unary("Softmax", axis=1),
        "Softmax_opset11": _unary("Softmax") + (11,),
        "LogSoftmax": _unary("LogSoftmax"),
        "CumSum": ([helper.make_node("CumSum", ["x", "ax"], ["y"], name="cumsum")], [_vi("x", [2, 3, 4])],
                   [_vi("y", None)], [_const("ax", 1)]),
        "TopK": ([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk", axis=1)], [_vi("x", [2, 8, 4])],
                 [_vi("v", None), _vi("i", None)], [_const("k", [3])]),
    }


def _reduce_cases():
    cases = {}
    for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSumExp", "ReduceSumSquare", "ReduceLogSum"):
        cases[op] = _unary(op, axes=[1]) + (13 if op != "ReduceSum" else 11,)
    cases["ReduceSum_axes_input"] = ([helper.make_node("ReduceSum", ["x", "ax"], ["y"], name="rs", keepdims=0)],
                                     [_vi("x", [2, 3, 4])], [_vi("y", None)], [_const("ax", [-1])])
    cases["ReduceMean_all"] = _unary("ReduceMean", keepdims=0) + (13,)
    cases["ReduceSum_noop"] = ([helper.make_node("ReduceSum", ["x"], ["y"], name="rs", noop_with_empty_axes=1)],
                               [_vi("x", [2, 3])], [_vi("y", None)], [])
    cases["ArgMax"] = _unary("ArgMax", axis=2)
    cases["ArgMin"] = _unary("ArgMin", axis=0, keepdims=0)
    pool = dict(kernel_shape=[3, 3], strides=[2, 2])
    cases["MaxPool"] = _unary("MaxPool", shape=(2, 3, 9, 9), **pool)
    cases["AveragePool"] = _unary("AveragePool", shape=(2, 3, 9, 9), **pool)
    cases["LpPool"] = _unary("LpPool", shape=(2, 3, 9), kernel_shape=[2])
    for op in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
        cases[op] = _unary(op, shape=(2, 3, 5, 5))
    return cases


def _movement_cases():
    return {
        "Reshape": ([helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")], [_vi("x", [6, 4])],
                    [_vi("y", None)], [_const("s", [2, 3, 2, 2])]),
        "Reshape_no_refinement": ([helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")], [_vi("x", [6, 4])],
                                  [_vi("y", None)], [_const("s", [4, 6])]),
        "Flatten": _unary("Flatten", axis=1),
        "Squeeze": ([helper.make_node("Squeeze", ["x", "ax"], ["y"], name="sq")], [_vi("x", [2, 1, 4])],
                    [_vi("y", None)], [_const("ax", [1])]),
        "Unsqueeze": ([helper.make_node("Unsqueeze", ["x", "ax"], ["y"], name="usq")], [_vi("x", [2, 4])],
                      [_vi("y", None)], [_const("ax", [0])]),
        "Transpose": _unary("Transpose", perm=[2, 0, 1]),
        "Transpose_default": _unary("Transpose"),
        "Concat": ([helper.make_node("Concat", ["a", "b"], ["y"], name="cat", axis=-1)],
                   [_vi("a", [2, 3]), _vi("b", [2, 5])], [_vi("y", None)], []),
        "Split_equal": ([helper.make_node("Split", ["x"], ["p", "q", "r"], name="split", axis=1, num_outputs=3)],
                        [_vi("x", [2, 6])], [_vi(o, None) for o in "pqr"], [], 18),
        "Split_unequal": ([helper.make_node("Split", ["x", "s"], ["p", "q"], name="split", axis=1)],
                          [_vi("x", [2, 6])], [_vi("p", None), _vi("q", None)], [_const("s", [2, 4])]),
        "Slice": ([helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"], name="slice")], [_vi("x", [4, 6])],
                  [_vi("y", None)], [_const("st", [1]), _const("en", [4]), _const("ax", [1])]),
        "Pad": ([helper.make_node("Pad", ["x", "p"], ["y"], name="pad")], [_vi("x", [4, 6])], [_vi("y", None)],
                [_const("p", [0, 1, 0, 2])]),
        "Tile": ([helper.make_node("Tile", ["x", "r"], ["y"], name="tile")], [_vi("x", [4, 6])], [_vi("y", None)],
                 [_const("r", [1, 3])]),
    }


def _gather_cases():
    emb = numpy_helper.from_array(np.zeros((10, 4), np.float32), "emb")
    return {
        "Gather": ([helper.make_node("Gather", ["x", "i"], ["y"], name="gather", axis=1)],
                   [_vi("x", [2, 5, 3]), _vi("i", [4], I64)], [_vi("y", None)], []),
        "Gather_embedding": ([helper.make_node("Gather", ["emb", "i"], ["y"], name="gather")],
                             [_vi("i", [2, 7], I64)], [_vi("y", None)], [emb]),
        "GatherElements": ([helper.make_node("GatherElements", ["x", "i"], ["y"], name="ge", axis=1)],
                           [_vi("x", [2, 5, 3]), _vi("i", [2, 4, 3], I64)], [_vi("y", None)], []),
        "GatherND": ([helper.make_node("GatherND", ["x", "i"], ["y"], name="gnd", batch_dims=1)],
                     [_vi("x", [2, 5, 3]), _vi("i", [2, 4, 1], I64)], [_vi("y", None)], []),
        "ScatterElements": ([helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], name="se", axis=1)],
                            [_vi("x", [2, 5]), _vi("i", [2, 3], I64), _vi("u", [2, 3])], [_vi("y", None)], []),
        "ScatterND": ([helper.make_node("ScatterND", ["x", "i", "u"], ["y"], name="snd")],
                      [_vi("x", [5, 3]), _vi("i", [2, 1], I64), _vi("u", [2, 3])], [_vi("y", None)], []),
    }


def _source_cases():
    return {
        "ConstantOfShape": ([helper.make_node("Shape", ["x"], ["s"], name="shape"),
                             helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos"),
                             helper.make_node("Add", ["x", "c"], ["y"], name="add")],
                            [_vi("x", [2, 3])], [_vi("y", None)], []),
        "EyeLike": _unary("EyeLike", shape=(3, 4)),
        "RandomNormal": ([helper.make_node("RandomNormal", [], ["r"], name="rn", shape=[2, 3]),
                          helper.make_node("Add", ["x", "r"], ["y"], name="add")],
                         [_vi("x", [2, 3])], [_vi("y", None)], []),
        "RandomUniform": ([helper.make_node("RandomUniform", [], ["r"], name="ru", shape=[2, 3]),
                           helper.make_node("Mul", ["x", "r"], ["y"], name="mul")],
                          [_vi("x", [2, 3])], [_vi("y", None)], []),
        "Constant": ([helper.make_node("Constant", [], ["c"], name="const",
                                       value=numpy_helper.from_array(np.ones((2, 3), np.float32))),
                      helper.make_node("Add", ["x", "c"], ["y"], name="add")],
                     [_vi("x", [2, 3])], [_vi("y", None)], []),
        "Size": ([helper.make_node("Size", ["x"], ["n"], name="size"),
                  helper.make_node("Cast", ["n"], ["f"], name="cast", to=F),
                  helper.make_node("Mul", ["x", "f"], ["y"], name="mul")],
                 [_vi("x", [2, 3])], [_vi("y", None)], []),
    }


def _fallback_cases():
    """Operators no rule handles (ONNX has no schema for them: value_info gives their shapes), a
    malformed node of a known type and a rule that cannot apply: each planned as opaque."""
    return {
        "Unknown_ops": ([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                         helper.make_node("Frobnicate", ["r"], ["f"], name="frob", domain="com.example"),
                         helper.make_node("Twiddle", ["f"], ["y"], name="twiddle")],
                        [_vi("x", [2, 3, 4])], [_vi("y", None)], [], 17, [_vi("f", [2, 3, 4]), _vi("y", [2, 3, 4])]),
        "Malformed_Gemm": ([helper.make_node("Gemm", ["a"], ["y"], name="gemm", domain="com.example")],
                           [_vi("a", [3, 4])], [_vi("y", None)], [], 17, [_vi("y", [3, 4])]),
        "RuleError_CumSum_runtime_axis": ([helper.make_node("CumSum", ["x", "ax"], ["y"], name="cumsum")],
                                          [_vi("x", [2, 3]), _vi("ax", [], I64)], [_vi("y", None)], []),
    }


def _build_cases() -> list[tuple[str, onnx.ModelProto]]:
    groups = (_elementwise_cases(), _compute_cases(), _norm_cases(), _reduce_cases(), _movement_cases(),
              _gather_cases(), _source_cases(), _fallback_cases())
    cases = []
    for group in groups:
        for label, spec in group.items():
            nodes, inputs, outputs, inits, *opset = spec
            model = _model(label, nodes, inputs, outputs, inits, *opset)
            for domain in sorted({n.domain for n in nodes if n.domain}):
                model.opset_import.append(helper.make_opsetid(domain, 1))
            cases.append((label, model))
    return cases


CASES = _build_cases()
