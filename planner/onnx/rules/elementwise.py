"""Rules for element-wise operators: one dim per output axis, inputs broadcast against it.

Arithmetic counts one FLOP per output element; casts, copies and ``Expand`` (data movement)
count none. ``Expand``'s shape operand and the scalar bounds of ``Clip``/``Trilu`` index nothing.
"""

from __future__ import annotations

import math

from planner.onnx.rules.base import NodeContext, OpSpec, axis_names, broadcast_axes, rule

ELEMENTWISE_FLOPS = {
    # one FLOP per output element for arithmetic; data movement counts none
    **{t: 1 for t in (
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log", "Sin",
        "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Min", "Max", "Sum", "Mean", "Relu",
        "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish",
        "Softplus", "Softsign", "Tanh", "Erf", "Where", "Clip", "And", "Or", "Xor", "Not", "Equal",
        "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Floor", "Ceil", "Round", "Sign",
        "IsNaN", "IsInf", "Mod", "Mish", "BitShift", "ThresholdedRelu", "FastGelu", "BiasGelu",
        "QuickGelu", "Trilu", "QuantizeLinear", "DequantizeLinear",
    )},
    **{t: 0 for t in ("Cast", "CastLike", "Identity", "Dropout", "Expand")},
}


def _indexes_nothing(op_type: str, k: int, shape) -> bool:
    """Operands that are not data: Expand's shape, Clip's and Trilu's scalar bounds."""
    return op_type == "Expand" and k > 0 or op_type in ("Clip", "Trilu") and k > 0 and len(shape) == 0


@rule(*ELEMENTWISE_FLOPS)
def elementwise(ctx: NodeContext) -> OpSpec:
    out_shape = ctx.out_shapes[0]
    names = axis_names(len(out_shape))
    dims = dict(zip(names, out_shape))
    in_axes = []
    for k, s in enumerate(ctx.in_shapes):
        if _indexes_nothing(ctx.op_type, k, s):
            in_axes.append(() if len(s) == 0 else [() for _ in s])
            continue
        in_axes.append(broadcast_axes(s, names, out_shape))
    out_axes = [broadcast_axes(s, names, out_shape) for s in ctx.out_shapes]
    return OpSpec(dims, in_axes, out_axes, ELEMENTWISE_FLOPS[ctx.op_type] * math.prod(out_shape))
