"""The batch traced through an attention mask, as both PyTorch exporters write it (issue 10).

Hand-built graphs (``tests/mask_models.py``): the TorchScript exporter gathers the padding mask's
``(batch*seq)`` rows with the indices ``arange(batch) * seq + arange(seq)``; before the ``Gather``
rule of ``planner.model.batch_trace`` the batch stopped there, and the mask's ``And`` and the
attention ``Where`` (FLOPs: one per element) were left unsplit by data parallelism, as they were in
the TorchScript GPT-2, Llama, Mixtral and BERT of the real-export corpus. The dynamo form (a
``GatherND`` with per-sample indices) is checked alongside. Static exports of the mask re-batch:
the re-batched graph is the one built at the new batch, operator by operator.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from mask_models import S, dynamo_mask, torchscript_mask
from planner.api import PlanOptions, plan_model
from planner.machine.tree import load_preset
from planner.model.graph import OpKind
from planner.onnx.importer import import_model

B = 16
FORMS = {"torchscript": lambda b: torchscript_mask(b), "torchscript_static": lambda b: torchscript_mask(b, symbolic=False),
         "dynamo": dynamo_mask}


def _import(form: str, b: int = B):
    model = FORMS[form](b)
    return import_model(model, None if form.endswith("static") else {"batch": b})


@pytest.mark.parametrize("form", FORMS)
def test_the_models_compute_a_padded_causal_mask(form):
    """The graphs are what they claim: sample 1 padded after 5 tokens gets no weight there."""
    x = np.random.default_rng(0).standard_normal((4, S, 16)).astype(np.float32)
    mask = np.ones((4, S), dtype=np.int64)
    mask[1, 5:] = 0
    y = ReferenceEvaluator(FORMS[form](4)).run(None, {"x": x, "attention_mask": mask})[0]
    assert y.shape == (4, 1, S, S)
    assert np.allclose(y.sum(-1), 1.0)
    assert np.all(y[1, 0, 7, 5:] == 0) and np.all(y[0, 0, 7] > 0)  # padded columns; full row
    assert np.all(y[0, 0, 2, 3:] == 0)  # causal


@pytest.mark.parametrize("form", FORMS)
def test_every_mask_operator_carries_the_batch(form):
    graph = _import(form)
    dims = graph.batch_dims()
    for name in ("mask_and", "mask_where", "attn_add", "softmax", "scores"):
        op = graph.operators[name]
        assert dims[name] is not None, name
        assert op.dims[dims[name]] == B, name  # the dim is the batch: 16 samples
        assert op.flops > 0
    # And, Where and Add each do one operation per element of [B, 1, S, S]
    assert {graph.operators[n].flops for n in ("mask_and", "mask_where", "attn_add")} == {B * S * S}
    assert all(dims[n] is not None for n, op in graph.operators.items() if op.kind is not OpKind.STATIC)


@pytest.mark.parametrize("form", FORMS)
def test_data_parallelism_splits_the_mask(form):
    """Pure data parallelism over one DGX (8 GPUs: three cuts of 2) splits the mask's operators
    along the batch at every cut, as it splits the scores."""
    graph = _import(form)
    dims = graph.batch_dims()
    result = plan_model(graph, load_preset("dgx_a100"), PlanOptions(algorithm="data_parallel", mode="infer"))
    for name in ("mask_and", "mask_where", "attn_add", "scores"):
        assert dims[name] is not None and result.plan.strategies[name] == (dims[name],) * 3, name


def _row_gather(rows: int) -> onnx.ModelProto:
    """y = Gather(x [B*S, 1] (x [B, S] flattened), idx [rows, S]) * w, idx = (arange(rows) % B) * S
    + arange(S) a constant: per-sample rows when ``rows == B``."""
    idx = ((np.arange(rows) % B)[:, None] * S + np.arange(S)[None, :]).astype(np.int64)
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], name="flatten", axis=2),
             helper.make_node("Gather", ["flat", "idx"], ["g"], name="gather", axis=0),
             helper.make_node("Mul", ["g", "w"], ["y"], name="mul")]
    graph = helper.make_graph(
        nodes, "row_gather", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", S])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, S, 1])],
        initializer=[numpy_helper.from_array(idx, "idx"), numpy_helper.from_array(np.ones((S, 1), np.float32), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_per_sample_row_gather_passes_the_batch():
    graph = import_model(_row_gather(B), {"batch": B})
    dims = graph.batch_dims()
    assert dims["gather"] == graph.operators["gather"].inputs[1].axes[0][0]  # the indices' rows
    assert graph.operators["mul"].dims[dims["mul"]] == B


def test_a_gather_of_other_rows_stops_the_batch():
    """7 index rows for a batch of 16: a gather of tokens, not one row per sample."""
    graph = import_model(_row_gather(7), {"batch": B})
    assert graph.batch_dims()["mul"] is None


def _bytes(graph, op) -> float:
    return sum(graph.tensors[u.tensor].nbytes for u in op.uses())


def test_a_static_torchscript_mask_rebatches_to_the_graph_built_at_the_new_batch():
    """Exported at batch 2, re-batched to 8: the arange(batch) rows, the Reshape and the expand shape
    behind Where(Equal(shape, -1), ...) are rewritten; every planned operator has the FLOPs and bytes
    of the static graph built at batch 8 (the mask's And: 8 * 8 * 8 = 512 FLOPs)."""
    rebatched = import_model(torchscript_mask(2, symbolic=False), {"batch": 8})
    built = import_model(torchscript_mask(8, symbolic=False))
    assert not [w for w in rebatched.warnings if "cannot broadcast" in w]
    planned = built.planned_operators()
    assert sorted(planned) == sorted(rebatched.planned_operators())
    for name in planned:
        a, b = rebatched.operators[name], built.operators[name]
        assert (a.flops, _bytes(rebatched, a)) == (b.flops, _bytes(built, b)), name
    assert built.operators["mask_and"].flops == 8 * S * S
    assert rebatched.batch_dims()["mask_and"] is not None
