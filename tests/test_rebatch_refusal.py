"""A static export whose batch is baked into a constant the re-batching cannot rewrite (TorchScript
expands an attention mask to a shape that reaches ``Expand`` through ``Where(Equal(shape, -1), ...)``)
is refused with one line instead of being planned with the mask at the exported batch (found by a
new-user trial: a static GPT-2 at batch 8 planned with ``--batch 512`` came out 15x slower than its
symbolic export, with a 512-against-8 broadcast accepted silently)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from planner.cli.main import main
from planner.onnx.importer import import_model

B, S = 8, 4


def _static_masked(tmp_path):
    shape = numpy_helper.from_array(np.array([B, S], dtype=np.int64), "mask_shape")
    minus_one = numpy_helper.from_array(np.array(-1, dtype=np.int64), "minus_one")
    ones = numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "ones")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    w = numpy_helper.from_array(np.ones((S, S), dtype=np.float32), "w")
    nodes = [helper.make_node("Equal", ["mask_shape", "minus_one"], ["eq"], name="eq"),
             helper.make_node("Where", ["eq", "ones", "mask_shape"], ["shape2"], name="where"),
             helper.make_node("Expand", ["zero", "shape2"], ["mask"], name="expand"),
             helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "mask"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "masked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, S])],
                              initializer=[shape, minus_one, ones, zero, w])
    path = tmp_path / "static_masked.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def test_as_exported_it_imports_without_a_broadcast_warning(tmp_path):
    graph = import_model(_static_masked(tmp_path))
    assert not [w for w in graph.warnings if "cannot broadcast" in w]


def test_rebatching_a_baked_mask_is_refused_in_one_line(tmp_path, capsys):
    code = main(["inspect", str(_static_masked(tmp_path)), "--batch", "64"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "from 8 to 64" in err and "'add'" in err and "dynamic batch axis" in err


@pytest.mark.parametrize("batch", [8])
def test_the_exported_batch_itself_is_accepted(tmp_path, batch, capsys):
    assert main(["inspect", str(_static_masked(tmp_path)), "--batch", str(batch)]) == 0
