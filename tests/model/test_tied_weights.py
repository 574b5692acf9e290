"""Tied weights stored twice (an initializer that is the transpose of another) and lifted buffers.

Models are written with onnx.helper; the real exports (GPT-2, T5, Llama, MultiheadAttention) are
checked against torch's own parameter count in tests/test_real_exports.py.
"""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from planner.model.buffers import non_parameter_initializers
from planner.onnx.importer import import_model
from planner.onnx.strip_weights import strip_weights
from planner.model.tied_weights import fold_transposed_copies, transposed_copies


def tied_lm(vocab: int, hidden: int, copy_name: str = "onnx::MatMul_7", seed: int = 0) -> onnx.ModelProto:
    """logits = Gather(wte, ids) @ wte^T, with wte^T stored as its own initializer (as exported)."""
    rng = np.random.default_rng(seed)
    wte = rng.standard_normal((vocab, hidden)).astype(np.float32)
    inits = [numpy_helper.from_array(wte, "transformer.wte.weight"),
             numpy_helper.from_array(np.ascontiguousarray(wte.T), copy_name)]
    nodes = [helper.make_node("Gather", ["transformer.wte.weight", "ids"], ["h"], name="embed"),
             helper.make_node("MatMul", ["h", copy_name], ["logits"], name="lm_head")]
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unstripped_tied_export_counts_the_table_once():
    # the file holds wte [96, 32] and its transpose [32, 96]; the module has one 96*32 table
    graph = import_model(tied_lm(96, 32), {"batch": 2, "seq": 4})
    assert graph.parameter_count == 96 * 32


def test_strip_weights_folds_the_transposed_copy():
    stripped = strip_weights(tied_lm(96, 32), "w.bin")
    assert [i.name for i in stripped.graph.initializer] == ["transformer.wte.weight"]
    assert stripped.graph.node[0].op_type == "Transpose"
    assert list(stripped.graph.node[0].output) == ["onnx::MatMul_7"]
    graph = import_model(stripped, {"batch": 2, "seq": 4})
    assert graph.parameter_count == 96 * 32


@settings(max_examples=25, deadline=None)
@given(vocab=st.integers(2, 40), hidden=st.integers(1, 40), seed=st.integers(0, 1000),
       generated_first=st.booleans())
def test_fold_keeps_the_values_and_one_copy(vocab, hidden, seed, generated_first):
    """For any non-square tied table: one initializer left, the one with the module's name, and
    the model computes exactly what it computed before."""
    if vocab == hidden:
        hidden += 1
    model = tied_lm(vocab, hidden, seed=seed)
    if generated_first:
        inits = list(model.graph.initializer)[::-1]
        del model.graph.initializer[:]
        model.graph.initializer.extend(inits)
    ids = np.random.default_rng(seed).integers(0, vocab, size=(2, 3))
    before = ReferenceEvaluator(model).run(None, {"ids": ids})[0]
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    assert fold_transposed_copies(folded) == [("onnx::MatMul_7", "transformer.wte.weight")]
    onnx.checker.check_model(folded)
    assert [i.name for i in folded.graph.initializer] == ["transformer.wte.weight"]
    after = ReferenceEvaluator(folded).run(None, {"ids": ids})[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)  # same products, maybe summed in another order


def test_nearly_transposed_is_not_folded():
    model = tied_lm(12, 5)
    copy = numpy_helper.to_array(model.graph.initializer[1]).copy()
    copy[0, 0] += 1e-3
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(copy, "onnx::MatMul_7"))
    assert transposed_copies(model.graph) == []


# ---- lifted buffers --------------------------------------------------------------------------------

def rotary_model() -> onnx.ModelProto:
    """A rotary embedding as the dynamo exporter writes it: inv_freq[4] times float(position_ids),
    cos of that multiplies q = x @ wq; plus a [1] attention scale and an [8] weight that meets q."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "wq"),
             numpy_helper.from_array(rng.random(4).astype(np.float32), "rotary_emb.inv_freq"),
             numpy_helper.from_array(np.array([0.35], np.float32), "val_71"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "norm.weight"),
             numpy_helper.from_array(np.array([0], np.int64), "axes0"),
             numpy_helper.from_array(np.array([2], np.int64), "axes2")]
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]),
             helper.make_node("Cast", ["position_ids"], ["pos_f"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["rotary_emb.inv_freq", "axes0"], ["inv_u"]),  # [1, 4]
             helper.make_node("Unsqueeze", ["pos_f", "axes2"], ["pos_u"]),  # [2, 4, 1]
             helper.make_node("Mul", ["pos_u", "inv_u"], ["freqs"]),
             helper.make_node("Cos", ["freqs"], ["cos"]),
             helper.make_node("Mul", ["q", "val_71"], ["q_scaled"]),
             helper.make_node("Mul", ["q_scaled", "norm.weight"], ["q_norm"]),
             helper.make_node("Concat", ["cos", "cos"], ["cos2"], axis=-1),
             helper.make_node("Mul", ["q_norm", "cos2"], ["y"])]
    graph = helper.make_graph(
        nodes, "rotary",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8]),
         helper.make_tensor_value_info("position_ids", TensorProto.INT64, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_lifted_buffers_are_not_parameters():
    model = rotary_model()
    assert non_parameter_initializers(model.graph) == {"rotary_emb.inv_freq", "val_71"}
    # wq 8*8 + norm.weight 8; the rotary inv_freq and the [1] scale are not parameters
    assert import_model(strip_weights(model, "w.bin")).parameter_count == 64 + 8


def test_an_embedding_table_is_a_parameter_even_though_indexed_by_integers():
    model = tied_lm(10, 3)
    assert non_parameter_initializers(model.graph) == set()


def test_a_one_element_module_weight_stays_a_parameter():
    """Linear(8, 1): weight 8 + bias 1 = 9 parameters; only exporter-named one-element tensors
    (val_71, onnx::Mul_5) are constants."""
    inits = [numpy_helper.from_array(np.ones((8, 1), np.float32), "head.weight"),
             numpy_helper.from_array(np.ones(1, np.float32), "head.bias"),
             numpy_helper.from_array(np.full(1, 0.5, np.float32), "onnx::Mul_5")]
    nodes = [helper.make_node("MatMul", ["x", "head.weight"], ["h"]),
             helper.make_node("Add", ["h", "head.bias"], ["hb"]),
             helper.make_node("Mul", ["hb", "onnx::Mul_5"], ["y"])]
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert non_parameter_initializers(model.graph) == {"onnx::Mul_5"}
    assert import_model(model).parameter_count == 9
