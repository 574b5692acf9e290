"""Quantised weights: which initializers are frozen parameters, and their true bits.

The rule (README, "How quantised weights are counted"):

- An initializer of rank >= 1 is a *quantised weight* when it is read as the weight operand of a
  quantisation operator (``DequantizeLinear``'s data, ``MatMulInteger``'s A or B,
  ``ConvInteger``'s and ``QLinearConv``'s weight, ``QLinearMatMul``'s A or B, onnxruntime's
  ``DynamicQuantizeMatMul``/``MatMulIntegerToFloat`` B, ``GatherBlockQuantized``'s data), or
  whatever its consumer when its element type exists only for weights (INT4, UINT4, FLOAT4E2M1,
  INT2, UINT2, FP6 and FP8). The scales and zero points of a quantised weight, when they are
  initializers of rank >= 1, belong to it.
- A quantised weight is a parameter with its element type's true size: 8 bits for INT8/UINT8/FP8,
  6 for FP6, 4 for INT4/UINT4/FLOAT4E2M1, 2 for INT2/UINT2 (sub-byte types take that fraction of a
  byte in memory: an 8192x8192 INT4 weight is 67,108,864 parameters in 32 MiB).
- It is *frozen*: no gradient, no optimizer state, no gradient all-reduce (quantised weights are
  not trained; a QLoRA-style adapter is a separate float parameter and is trained as usual). The
  training precision (``--precision``) does not change its size.
"""

from __future__ import annotations

import onnx

# element-type name -> bits per element, for the types whose bits are not a whole number of bytes
SUB_BYTE_BITS = {"int4": 4, "uint4": 4, "float4e2m1": 4, "int2": 2, "uint2": 2, "float6e2m3": 6, "float6e3m2": 6}

# op type -> positions of the weight operand(s), and of the scale / zero-point operands
_WEIGHT_INPUTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "DequantizeLinear": ((0,), (1, 2)),
    "MatMulInteger": ((0, 1), (2, 3)),
    "ConvInteger": ((1,), (3,)),
    "QLinearMatMul": ((0, 3), (1, 2, 4, 5)),
    "QLinearConv": ((3,), (4, 5)),
    "DynamicQuantizeMatMul": ((1,), (2, 3)),
    "MatMulIntegerToFloat": ((1,), (3, 5)),
    "GatherBlockQuantized": ((0,), (2, 3)),
}

_WEIGHT_ONLY_TYPES = {
    onnx.TensorProto.INT4, onnx.TensorProto.UINT4, onnx.TensorProto.FLOAT4E2M1,
    onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E4M3FNUZ, onnx.TensorProto.FLOAT8E5M2,
    onnx.TensorProto.FLOAT8E5M2FNUZ,
    *(getattr(onnx.TensorProto, n) for n in ("INT2", "UINT2", "FLOAT6E2M3", "FLOAT6E3M2", "FLOAT8E8M0")
      if hasattr(onnx.TensorProto, n)),
}


def quantised_weights(graph: onnx.GraphProto) -> set[str]:
    """Names of the initializers that are quantised weights (and their scales and zero points)."""
    inits = {i.name: i for i in graph.initializer}
    found = {name for name, init in inits.items() if len(init.dims) > 0 and init.data_type in _WEIGHT_ONLY_TYPES}
    for node in graph.node:
        positions = _WEIGHT_INPUTS.get(node.op_type)
        if positions is None:
            continue
        weights, companions = positions
        has_weight = False
        for k in weights:
            name = node.input[k] if k < len(node.input) else ""
            if name in inits and len(inits[name].dims) > 0:
                found.add(name)
                has_weight = True
        if has_weight or any((node.input[k] if k < len(node.input) else "") in found for k in weights):
            for k in companions:
                name = node.input[k] if k < len(node.input) else ""
                if name in inits and len(inits[name].dims) > 0:
                    found.add(name)
    return found
