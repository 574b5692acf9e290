"""Re-batching a static export whose batch is baked into a constant.

A mask expanded to the exported batch through ``Expand(mask, Where(Equal(shape, -1), ones, shape))``
(as the TorchScript exporter writes a shape that may hold -1) is followed back from the operator
that adds it to batch-carrying data, and re-batches (``planner.model.rebatch_constants``); before,
it was refused. A mask baked into a constant tensor, one row per sample, cannot be extended to other
samples: that re-batching is refused with one line instead of being planned with the mask at the
exported batch (found by a new-user trial: a static GPT-2 at batch 8 planned with ``--batch 512``
came out 15x slower than its symbolic export, with a 512-against-8 broadcast accepted silently)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from planner.cli.main import main
from planner.onnx.importer import import_model

B, S = 8, 4


def _write(tmp_path, name, nodes, b, initializers):
    w = numpy_helper.from_array(np.ones((S, S), dtype=np.float32), "w")
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, S])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, S])],
                              initializer=[w, *initializers])
    path = tmp_path / f"{name}_{b}.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def _expanded_mask(tmp_path, b=B):
    """y = x @ w + Expand(0, Where(Equal([b, S], -1), [1, 1], [b, S])): a mask no data reaches."""
    shape = numpy_helper.from_array(np.array([b, S], dtype=np.int64), "mask_shape")
    minus_one = numpy_helper.from_array(np.array(-1, dtype=np.int64), "minus_one")
    ones = numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "ones")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    nodes = [helper.make_node("Equal", ["mask_shape", "minus_one"], ["eq"], name="eq"),
             helper.make_node("Where", ["eq", "ones", "mask_shape"], ["shape2"], name="where"),
             helper.make_node("Expand", ["zero", "shape2"], ["mask"], name="expand"),
             helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "mask"], ["y"], name="add")]
    return _write(tmp_path, "expanded", nodes, b, [shape, minus_one, ones, zero])


def _baked_mask(tmp_path):
    """y = x @ w + Cast(mask): ``mask`` [B, S] a constant with one padding length per sample."""
    lengths = np.array([4, 3, 4, 1, 2, 4, 4, 3])
    mask = (np.arange(S)[None, :] < lengths[:, None]).astype(np.int64)
    nodes = [helper.make_node("Cast", ["mask"], ["mask_f"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "mask_f"], ["y"], name="add")]
    return _write(tmp_path, "baked", nodes, B, [numpy_helper.from_array(mask, "mask")])


@pytest.mark.parametrize("build", [_expanded_mask, _baked_mask])
def test_as_exported_it_imports_without_a_broadcast_warning(tmp_path, build):
    graph = import_model(build(tmp_path))
    assert not [w for w in graph.warnings if "cannot broadcast" in w]


def test_a_mask_expanded_to_the_batch_rebatches(tmp_path):
    """Re-batched from 8 to 64, the graph is the one built at 64: every shape and FLOP."""
    rebatched = import_model(_expanded_mask(tmp_path), {"batch": 64})
    built = import_model(_expanded_mask(tmp_path, 64))
    assert not [w for w in rebatched.warnings if "cannot broadcast" in w]
    assert rebatched.tensors["mask"].shape == (64, S) == built.tensors["mask"].shape
    for name, op in built.operators.items():
        assert rebatched.operators[name].flops == op.flops  # add: 64 * 4, mm: 2 * 64 * 4 * 4
    assert rebatched.flops_forward == built.flops_forward == 64 * S + 2 * 64 * S * S


def test_rebatching_a_baked_mask_is_refused_in_one_line(tmp_path, capsys):
    code = main(["inspect", str(_baked_mask(tmp_path)), "--batch", "64"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "from 8 to 64" in err and "'add'" in err and "dynamic batch axis" in err


def test_the_exported_batch_itself_is_accepted(tmp_path, capsys):
    assert main(["inspect", str(_baked_mask(tmp_path)), "--batch", str(B)]) == 0
