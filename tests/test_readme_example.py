"""The README's worked example, checked against the cost model (numbers worked out by hand)."""

import pytest
from onnx import TensorProto, helper

from planner.cost.model import CostModel
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model
from planner.search.drec import plan_drec


def one_matmul_fp16():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [4096, 12288])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, [4096, 12288])
    w = TensorProto(name="w", data_type=TensorProto.FLOAT16, dims=[12288, 12288], data_location=TensorProto.EXTERNAL)
    w.external_data.add(key="location", value="absent.bin")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_worked_example():
    cm = CostModel(import_model(one_matmul_fp16().SerializeToString()), load_preset("dgx_a100"))
    compute = 3 * 2 * 4096 * 12288 * 12288 / 8 / 312e12            # 1.487 ms
    w_allreduce = 2 * 7 / 8 * 12288 * 12288 * 2 / 300e9 + 2 * 5e-6  # 1.772 ms
    y_allreduce = 2 * 7 / 8 * 4096 * 12288 * 2 / 300e9 + 2 * 5e-6   # 0.597 ms
    assert cm.op_seconds("mm", ("m",) * 3) == pytest.approx(compute + w_allreduce, rel=1e-12)
    assert cm.op_seconds("mm", ("n",) * 3) == pytest.approx(compute, rel=1e-12)
    assert cm.op_seconds("mm", ("k",) * 3) == pytest.approx(compute + y_allreduce, rel=1e-12)
    assert compute + w_allreduce == pytest.approx(3.258e-3, rel=1e-3)
    assert plan_drec(cm).strategies["mm"] == ("n", "n", "n")
