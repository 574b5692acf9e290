"""Hand-built ONNX graphs of a causal attention mask, as the two PyTorch exporters write it.

Both build ``y = Softmax(scores + mask)`` for ``scores = Unsqueeze(x, 1) @ W`` (``[B, 1, S, S]``),
where the mask combines a causal ``[1, 1, S, S]`` constant with the padding mask input
``attention_mask [B, S]``, row by row (one row per sample):

* :func:`torchscript_mask`, as ``torch.onnx.export(dynamo=False)`` writes Hugging Face's mask: the
  padding mask flattened to ``(B*S, 1)`` rows and gathered with the indices
  ``arange(B) * S + arange(S)`` (a ``Gather`` over its rows), reshaped to ``[B, 1, 1, S]``,
  ``And``-ed with the causal mask, expanded to the shape ``Where(Equal(shape, -1), ones, shape)``
  and turned into a bias ``Where(mask, 0, -inf)`` that is added to the scores. Symbolic: ``arange(B)`` is a ``Range`` over the
  input's ``Shape`` and the expand shape a ``Concat``; static: both are constants holding B, as
  a static export bakes them.
* :func:`dynamo_mask`, as ``torch.onnx.export(dynamo=True)`` writes it: a ``GatherND`` of the
  padding mask with the indices ``stack(arange(B)[:, None], arange(S)[None, :])``, unsqueezed to
  ``[B, 1, 1, S]``, ``And``-ed with the causal mask and turned into a bias ``Where(mask, 0, -inf)``
  that is added to the scores.

Sizes: B samples (``batch``), S = 8 positions, E = 16 features.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

S, E = 8, 16


def _const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"c_{name}", value=numpy_helper.from_array(np.asarray(value), name))


def _causal_and_scores() -> list[onnx.NodeProto]:
    """The causal mask ``causal [1, 1, S, S]`` (bool) and ``scores [B, 1, S, S]``."""
    return [_const("causal_i", np.tril(np.ones((1, 1, S, S), dtype=np.int64))),
            helper.make_node("Cast", ["causal_i"], ["causal"], name="causal_cast", to=TensorProto.BOOL),
            _const("ax1", np.array([1], dtype=np.int64)),
            helper.make_node("Unsqueeze", ["x", "ax1"], ["x4"], name="x_unsqueeze"),
            helper.make_node("MatMul", ["x4", "W"], ["scores"], name="scores")]


def _model(nodes, batch, symbolic: bool, name: str) -> onnx.ModelProto:
    b = "batch" if symbolic else batch
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((E, S)).astype(np.float32), "W")
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, S, E]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [b, S])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, 1, S, S])], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _batch_scalar() -> list[onnx.NodeProto]:
    """``nb`` = the batch, a scalar read from the mask's shape at run time."""
    return [helper.make_node("Shape", ["attention_mask"], ["mshape"], name="mask_shape"),
            _const("zero_i", np.array(0, dtype=np.int64)),
            helper.make_node("Gather", ["mshape", "zero_i"], ["nb"], name="batch_size")]


def torchscript_mask(batch: int, symbolic: bool = True) -> onnx.ModelProto:
    """The TorchScript form (see the module docstring); static with ``symbolic=False``."""
    nodes = _causal_and_scores()
    if symbolic:
        nodes += _batch_scalar() + [
            _const("start", np.array(0, dtype=np.int64)), _const("step", np.array(1, dtype=np.int64)),
            helper.make_node("Range", ["start", "nb", "step"], ["rb"], name="arange_batch"),
            _const("ax123", np.array([1, 2, 3], dtype=np.int64)),
            helper.make_node("Unsqueeze", ["rb", "ax123"], ["rows"], name="rows_unsqueeze"),
            _const("ax0", np.array([0], dtype=np.int64)),
            helper.make_node("Unsqueeze", ["nb", "ax0"], ["nb1"], name="batch_1d"),
            _const("rest", np.array([-1, S, S], dtype=np.int64)),
            helper.make_node("Concat", ["nb1", "rest"], ["shp"], name="expand_shape", axis=0)]
    else:
        nodes += [_const("rows", np.arange(batch, dtype=np.int64).reshape(batch, 1, 1, 1)),
                  _const("shp", np.array([batch, -1, S, S], dtype=np.int64))]
    nodes += [
        _const("seq", np.array([S], dtype=np.int64)),
        helper.make_node("Mul", ["rows", "seq"], ["starts"], name="row_starts"),
        _const("cols", np.arange(S, dtype=np.int64)),
        helper.make_node("Add", ["starts", "cols"], ["idx"], name="flat_index"),
        helper.make_node("Cast", ["attention_mask"], ["mask_b"], name="mask_cast", to=TensorProto.BOOL),
        helper.make_node("Flatten", ["mask_b"], ["flat"], name="mask_flatten", axis=2),
        helper.make_node("Gather", ["flat", "idx"], ["picked"], name="mask_gather", axis=0),
        _const("minus1", np.array([-1], dtype=np.int64)),
        helper.make_node("Reshape", ["picked", "minus1"], ["picked1"], name="mask_reshape_flat"),
        helper.make_node("Shape", ["idx"], ["idx_shape"], name="index_shape"),
        helper.make_node("Reshape", ["picked1", "idx_shape"], ["padding"], name="mask_reshape"),
        helper.make_node("And", ["causal", "padding"], ["both"], name="mask_and"),
        _const("m1", np.array(-1, dtype=np.int64)),
        helper.make_node("Equal", ["shp", "m1"], ["is_m1"], name="shape_equal"),
        _const("ones4", np.ones(4, dtype=np.int64)),
        helper.make_node("Where", ["is_m1", "ones4", "shp"], ["shp2"], name="shape_where"),
        helper.make_node("Expand", ["both", "shp2"], ["mask"], name="mask_expand"),
        _const("zero_f", np.array(0.0, dtype=np.float32)), _const("neg_inf", np.array(-np.inf, dtype=np.float32)),
        helper.make_node("Where", ["mask", "zero_f", "neg_inf"], ["bias"], name="mask_where"),
        helper.make_node("Add", ["scores", "bias"], ["masked"], name="attn_add"),
        helper.make_node("Softmax", ["masked"], ["y"], name="softmax", axis=-1),
    ]
    return _model(nodes, batch, symbolic, "torchscript_mask")


def dynamo_mask(batch: int) -> onnx.ModelProto:
    """The dynamo form (see the module docstring), symbolic batch."""
    nodes = _causal_and_scores() + _batch_scalar() + [
        _const("start", np.array(0, dtype=np.int64)), _const("step", np.array(1, dtype=np.int64)),
        _const("seq_n", np.array(S, dtype=np.int64)),
        helper.make_node("Range", ["start", "nb", "step"], ["rb"], name="arange_batch"),
        helper.make_node("Range", ["start", "seq_n", "step"], ["rs"], name="arange_seq"),
        _const("ax0", np.array([0], dtype=np.int64)), _const("axm1", np.array([-1], dtype=np.int64)),
        helper.make_node("Unsqueeze", ["rb", "ax1"], ["rb2"], name="rows_unsqueeze"),
        helper.make_node("Unsqueeze", ["rs", "ax0"], ["rs2"], name="cols_unsqueeze"),
        helper.make_node("Shape", ["attention_mask"], ["bs"], name="bs_shape"),
        helper.make_node("Expand", ["rb2", "bs"], ["rb3"], name="rows_expand"),
        helper.make_node("Expand", ["rs2", "bs"], ["rs3"], name="cols_expand"),
        helper.make_node("Unsqueeze", ["rb3", "axm1"], ["rb4"], name="rows_last"),
        helper.make_node("Unsqueeze", ["rs3", "axm1"], ["rs4"], name="cols_last"),
        helper.make_node("Concat", ["rb4", "rs4"], ["idx"], name="index", axis=-1),
        helper.make_node("Cast", ["attention_mask"], ["mask_b"], name="mask_cast", to=TensorProto.BOOL),
        helper.make_node("GatherND", ["mask_b", "idx"], ["padding2"], name="mask_gather"),
        _const("ax12", np.array([1, 2], dtype=np.int64)),
        helper.make_node("Unsqueeze", ["padding2", "ax12"], ["padding"], name="mask_unsqueeze"),
        helper.make_node("And", ["causal", "padding"], ["mask"], name="mask_and"),
        _const("zero_f", np.array(0.0, dtype=np.float32)), _const("neg_inf", np.array(-np.inf, dtype=np.float32)),
        helper.make_node("Where", ["mask", "zero_f", "neg_inf"], ["bias"], name="mask_where"),
        helper.make_node("Add", ["scores", "bias"], ["masked"], name="attn_add"),
        helper.make_node("Softmax", ["masked"], ["y"], name="softmax", axis=-1),
    ]
    return _model(nodes, batch, True, "dynamo_mask")
