"""A static export to re-batch: one block whose Reshape targets hold the batch as constants, as
torch.onnx.export writes them (used by tests/model/test_rebatch.py and the app's batch-field test)."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

E, N = 8, 16


def block(b: int | str, s: int, symbolic: bool = False) -> onnx.ModelProto:
    """x [B, S, E] -> Reshape [B*S, E] -> MatMul W [E, N] -> Reshape [B, S, N] -> Relu.

    Static (``symbolic=False``): both Reshape targets are constants holding B, as
    torch.onnx.export writes them. Symbolic: the batch is named 'batch' and the targets use -1."""
    x_shape = ["batch", s, E] if symbolic else [b, s, E]
    flat = [-1, E] if symbolic else [b * s, E]
    unflat = [-1, s, N] if symbolic else [b, s, N]
    nodes = [
        helper.make_node("Constant", [], ["flat"], name="c0",
                         value=helper.make_tensor("v0", TensorProto.INT64, [2], flat)),
        helper.make_node("Reshape", ["x", "flat"], ["xf"], name="flatten"),
        helper.make_node("MatMul", ["xf", "W"], ["h"], name="mm"),
        helper.make_node("Reshape", ["h", "unflat"], ["h3"], name="unflatten"),
        helper.make_node("Relu", ["h3"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None if symbolic else [b, s, N])],
        [helper.make_tensor("W", TensorProto.FLOAT, [E, N], [0.0] * (E * N)),
         helper.make_tensor("unflat", TensorProto.INT64, [3], unflat)],
        value_info=[] if symbolic else [helper.make_tensor_value_info("h3", TensorProto.FLOAT, [b, s, N])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
